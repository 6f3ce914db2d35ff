# heapsize: 256K 32:160K
# Fuzzing the command path (docs/reliability.md, "Fuzzing"): generated JSON and garbage as
# the body of a command, through commands.parse() (what runs once a command is authentic:
# the point lookup, the allow-list and limits, the exact conversion to registers) and
# reply(); and through Commands.on_msg()/step() as the uplink hands them in (signature
# split, request id, busy and retained refusals, the reply). What must hold for every case:
# only CommandError comes out of parse (so every command is answered), the reply is valid
# JSON, nothing stays on the heap (no growth over the run), and the point table is intact.
# Counts: FUZZ_CMD_N (environment), small here; `make fuzz` runs 10^6.
import asyncio
import gc
import json
import os
import random

import mptest
from mptest import eq, true

from otlink.commands import CommandError, Commands, parse, reply, request_id
from otlink.core.config import parse_points, parse_serial

N = int(os.getenv("FUZZ_CMD_N") or "4000")
SEED = int(os.getenv("FUZZ_SEED") or "1")
SER = parse_serial({"baud": 9600, "groups": {"g": {"interval_ms": 1000}}})


def _pt(pid, table, addr, typ, **kw):
    d = {"id": pid, "slave": 1, "table": table, "address": addr, "type": typ, "group": "g"}
    d.update(kw)
    return d


POINTS = parse_points([
    _pt(1, "holding", 0, "int16"), _pt(2, "holding", 1, "uint16", scale=0.001),
    _pt(3, "holding", 2, "int32", order="CDAB", offset=-40.0), _pt(4, "holding", 4, "uint32"),
    _pt(5, "holding", 6, "float32", order="DCBA"), _pt(6, "holding", 8, "float64"),
    _pt(7, "holding", 12, "int64", scale=0.1), _pt(8, "holding", 16, "uint64"),
    _pt(9, "coil", 0, "bool"), _pt(10, "input", 0, "uint16"), _pt(11, "discrete", 0, "bool"),
    _pt(12, "holding", 20, "string", length=4)], SER)
WRITABLE = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
LIMITS = {1: (-100, 100), 5: (-1.5, 1e30), 6: (0, 0.001)}

NUMS = ("0", "-0", "1", "-1", "0.1", "1e999", "-1e999", "1e-999", "1E+308",
        "1.7976931348623157e308", "4.9e-324", "3.4028235e38", "3.4028236e38", "1.4e-45",
        "65535", "65536", "-32769", "2147483648", "18446744073709551615",
        "18446744073709551616", "9223372036854775807", "-9223372036854775809", "1" + "0" * 40,
        "0." + "0" * 60 + "1", "NaN", "Infinity", "-Infinity", "nan", "inf", "1e", "--1",
        "1.e5", ".5", "0x10", "1_000", "0.30000000000000004", "123456.789", "16777217", "1e400",
        "-1e-400", "true", "false", "null", '"5"', "[]", "{}", "[1,2]", '{"a":1}')
KEYS = ('"id"', '"op"', '"point"', '"value"', '"ctr"', '"x"', '""', '"value\\u0000"', '"\\ud800"')
VALS = ('"write"', '"read"', '"WRITE"', "null", "1", '"r-1"', "[]", "{}", '"' + "x" * 300 + '"',
        "0", "12", "13", "-1", "65536", "5.0", "true")


class Gen:
    def __init__(self, seed):
        random.seed(seed)

    def pick(self, seq):
        return seq[random.getrandbits(16) % len(seq)]

    def number(self):
        k = random.getrandbits(2)
        if k < 2:
            return self.pick(NUMS)
        # a random decimal: sign, digits, fraction, exponent
        s = "-" if random.getrandbits(1) else ""
        s += str(random.getrandbits(20)) * (1 + random.getrandbits(2))
        if random.getrandbits(1):
            s += "." + str(random.getrandbits(24))
        if random.getrandbits(1):
            s += "e" + self.pick(("", "+", "-")) + str(random.getrandbits(10))
        return s

    def body(self):
        k = random.getrandbits(4)
        if k == 0:  # garbage bytes
            return bytes(random.getrandbits(8) for _ in range(random.getrandbits(6)))
        if k == 1:  # deep nesting, or a string of escapes
            d = 1 + random.getrandbits(9)
            return self.pick((b"[" * d + b"]" * d, b'{"id":' * d + b"1" + b"}" * d,
                              b'{"id": "' + b"\\u12" * d + b'"}', b'"' + b"\\" * d))
        parts = []
        if random.getrandbits(3):
            parts.append('"op": ' + ('"write"' if random.getrandbits(2) else self.pick(VALS)))
        if random.getrandbits(3):
            parts.append('"point": ' + (str(random.getrandbits(4)) if random.getrandbits(2)
                                        else self.pick(VALS + NUMS)))
        if random.getrandbits(3):
            parts.append('"value": ' + self.number())
        if random.getrandbits(1):
            parts.append('"id": ' + self.pick(VALS + NUMS))
        for _ in range(random.getrandbits(1)):
            parts.append(self.pick(KEYS) + ": " + self.pick(VALS + NUMS))
        text = "{" + ", ".join(parts) + "}"
        b = bytearray(text.encode())
        if k < 4 and len(b):  # mutate: one byte replaced, dropped or doubled
            i = random.getrandbits(12) % len(b)
            m = random.getrandbits(2)
            if m == 0:
                b[i] = random.getrandbits(8)
            elif m == 1:
                b = b[:i] + b[i + 1:]
            else:
                b = b[:i] + b[i:i + 1] + b[i:]
        return bytes(b)


def check_reply(rid, err, note):
    r = reply(rid, err, note)
    true(isinstance(r, bytes), "reply is bytes")
    try:
        obj = json.loads(r)
    except ValueError:
        raise mptest.Fail("reply is not JSON: %r" % (r[:80],))
    true(isinstance(obj, dict) and "ok" in obj, "reply object")


def test_parse_refuses_with_command_error_only():
    g = Gen(SEED)
    stats = {"cases": 0, "ok": 0, "refused": 0}
    table_before = [POINTS[i].id for i in range(len(POINTS))]
    gc.collect()
    free0 = None
    for i in range(N):
        body = g.body()
        try:
            rid, res = parse(body, POINTS, WRITABLE, LIMITS)
        except CommandError as e:
            stats["refused"] += 1
            check_reply(e.rid, e.args[0] if e.args else "?", getattr(e, "note", None))
        except Exception as e:  # the finding: print the case
            raise mptest.Fail("case %d %r: %s %s" % (i, body[:120], type(e).__name__, e))
        else:
            stats["ok"] += 1
            p, regs, note = res
            true(p.id in WRITABLE and len(regs) in (1, 2, 4), "write of %r" % (body,))
            for r in regs:
                true(0 <= r <= 0xFFFF, "register %r" % (r,))
            check_reply(rid, None, note)
        stats["cases"] += 1
        if i == N // 4:
            gc.collect()
            free0 = gc.mem_free()  # after the first quarter: every lazily made object exists
    gc.collect()
    grew = free0 - gc.mem_free() if free0 is not None else 0
    print("FUZZ_CMD_PARSE cases=%d ok=%d refused=%d heap_delta=%d"
          % (stats["cases"], stats["ok"], stats["refused"], grew))
    eq([POINTS[i].id for i in range(len(POINTS))], table_before, "point table")
    true(stats["ok"] > N // 50 and stats["refused"] > N // 2, "both sides reached")
    true(grew <= 512, "heap grew by %d bytes" % grew)


def test_reply_echoes_only_ids_json_can_carry():
    # found by the fuzzer: {"id": -1e999} (read as -inf) gave a reply no JSON reader takes,
    # and a deeply nested id made reply() recurse past the stack (RuntimeError on the 32-bit
    # build), which killed the command task instead of answering
    deep = 1
    for _ in range(300):
        deep = {"id": deep}
    for rid, want in ((float("-inf"), None), (float("nan"), None), (deep, None), ([1], None),
                      (True, None), ("r-1", "r-1"), (7, 7), (2.5, 2.5)):
        for err in (None, "refused"):
            eq(json.loads(reply(rid, err))["id"], want, "id %r" % (type(rid),))


class Up:
    t_cmd = b"otlink/s/n/cmd"

    def __init__(self):
        self.sent = []
        self.retained = False

    def publish(self, topic, payload, qos, retain):
        if len(self.sent) < 4:
            self.sent.append(bytes(payload))
        self.n = getattr(self, "n", 0) + 1


class Poller:
    async def write(self, slave, table, address, values):
        return 0


def test_task_answers_every_message():
    g = Gen(SEED + 1)
    up = Up()
    c = Commands(up, Poller(), POINTS, WRITABLE)  # no key: every command refused, answered
    answered = 0
    for _ in range(N):
        msg = g.body()
        up.retained = not random.getrandbits(4)
        request_id(msg)  # never raises (busy refusals are answered with it)
        c.on_msg(msg)
        while asyncio.run(c.step()):
            answered += 1
    print("FUZZ_CMD_TASK messages=%d answered=%d dropped=%d" % (N, answered, c.dropped))
    eq(answered + c.dropped, c.received, "every message answered or counted")
    for r in up.sent:
        json.loads(r)


mptest.main(globals())
