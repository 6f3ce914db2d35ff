# heapsize: 128K 32:48K
# Command path: a value written to a point reads back as the same value through the
# point decoder, for every writable type and word/byte order; refusals name the reason;
# conversion without floats (the 32-bit build has the boards' single-precision floats);
# every command answered, busy ones too; a fuzz of a few thousand commands.
import gc
import json

import mptest
from otlink import commands
from otlink.core import reading
from otlink.core.config import parse_points
from otlink.core.points import ORDERS, pack_reading

SERIAL = {"port": "/dev/null", "baud": 9600, "groups": {"fast": {"interval_ms": 1000}}}


def point(typ, order="ABCD", table="holding", scale=1.0, offset=0.0):
    cfg = {"id": 7, "slave": 1, "table": table, "address": 10, "type": typ, "order": order,
           "scale": scale, "offset": offset}
    if table == "coil":
        del cfg["order"]
    return parse_points([cfg], SERIAL)[0]


def read_back(p, regs):
    data = bytearray(3 + 2 * len(regs) + 2)
    for i, r in enumerate(regs):
        data[3 + 2 * i] = r >> 8
        data[4 + 2 * i] = r & 0xFF
    rec = bytearray(reading.MAX_SIZE)
    n = pack_reading(p.tab, p.i, data, 3, rec, 0, 0)
    return reading.unpack(rec, n)[4]


def test_every_type_and_order_round_trips():
    cases = (("int16", -1234), ("uint16", 65000), ("int32", -70000), ("uint32", 4000000000),
             ("int64", -(1 << 40)), ("uint64", 1 << 50), ("float32", 229.5),
             ("float64", 1.0e-3))
    for typ, v in cases:
        for order in ORDERS:
            p = point(typ, order)
            regs = commands.encode_registers(p, v)
            mptest.eq(read_back(p, regs), v, "%s %s" % (typ, order))


def test_scale_and_offset_are_inverted():
    p = point("int16", scale=0.001)
    regs = commands.encode_registers(p, 0.95)
    mptest.eq(regs, [950], "0.95 at scale 0.001")
    p = point("uint16", scale=0.1, offset=-40.0)
    mptest.eq(read_back(p, commands.encode_registers(p, 21.5)), 615, "raw of 21.5 degC")


def test_out_of_range_and_read_only_are_refused():
    e = mptest.raises(commands.CommandError, commands.encode_registers, point("int16"), 40000)
    mptest.true("outside int16" in str(e), str(e))
    e = mptest.raises(commands.CommandError, commands.encode_registers,
                      point("float32", table="input"), 1.0)
    mptest.true("read-only" in str(e), str(e))
    mptest.eq(commands.encode_registers(point("bool", table="coil"), True), [1], "coil")


def test_parse_checks_the_allow_list():
    pts = point("int16", scale=0.001).tab
    msg = json.dumps({"id": "r1", "op": "write", "point": 7, "value": 0.5})
    rid, (p, regs, note) = commands.parse(msg, pts, [7])
    mptest.eq((rid, p.id, regs), ("r1", 7, [500]), "allowed write")
    e = mptest.raises(commands.CommandError, commands.parse, msg, pts, [])
    mptest.true("disabled" in str(e), str(e))
    e = mptest.raises(commands.CommandError, commands.parse, msg, pts, [8])
    mptest.true("not writable" in str(e), str(e))
    mptest.eq(e.rid, "r1", "refusal keeps the request id")
    mptest.raises(commands.CommandError, commands.parse, b"{nope", pts, [7])
    e = mptest.raises(commands.CommandError, commands.parse, json.dumps({"op": "erase"}), pts,
                      [7])
    mptest.true("unknown op" in str(e), str(e))


def cmd(pid, value_text, rid="r"):
    return '{"id": "%s", "op": "write", "point": %d, "value": %s}' % (rid, pid, value_text)


def refused(msg, pts, what):
    e = mptest.raises(commands.CommandError, commands.parse, msg, pts, [7])
    mptest.true(what in str(e), str(e))
    mptest.eq(e.rid, "r", "refusal keeps the request id")
    return e


def test_overflow_refused_not_inf_not_crash():
    refused(cmd(7, "1e300"), point("float32").tab, "outside float32")
    refused(cmd(7, "-3.5e38"), point("float32").tab, "outside float32")
    refused(cmd(7, "1e999"), point("int16").tab, "out of range")
    refused(cmd(7, "1e999"), point("float64").tab, "out of range")
    refused(cmd(7, "2e308"), point("float64").tab, "outside float64")
    refused(cmd(7, "40000"), point("int16").tab, "outside int16")
    refused(cmd(7, "1e5"), point("int16").tab, "outside int16")
    rid, (p, regs, note) = commands.parse(cmd(7, "3.4028235e38"), point("float32").tab, [7])
    mptest.eq(regs, [0x7F7F, 0xFFFF], "largest float32, rounded to it")
    mptest.eq(note, {"rounded": True}, "rounded, said so")


def test_exact_without_floats():
    # on the boards a float in the path turns 16777217 into 16777216
    rid, (p, regs, note) = commands.parse(cmd(7, "16777217"), point("int32").tab, [7])
    mptest.eq((regs, note), ([0x0100, 0x0001], None), "int32 16777217 exactly")
    rid, (p, regs, note) = commands.parse(cmd(7, "9007199254740993"), point("int64").tab, [7])
    mptest.eq(regs, [0x0020, 0, 0, 1], "int64 2**53 + 1 exactly")
    # the nearest double to 123456.789, not the single 123456.7890625 widened
    rid, (p, regs, note) = commands.parse(cmd(7, "123456.789"), point("float64").tab, [7])
    mptest.eq(regs, [0x40FE, 0x240C, 0x9FBE, 0x76C9], "float64 123456.789")
    mptest.eq(note, {"rounded": True}, "no double holds it exactly: said so")
    rid, (p, regs, note) = commands.parse(cmd(7, "0.1"), point("float32", "DCBA").tab, [7])
    mptest.eq(regs, [0xCDCC, 0xCC3D], "float32 0.1 (3dcccccd), bytes reversed")
    rid, (p, regs, note) = commands.parse(cmd(7, "21.5"), point("float32").tab, [7])
    mptest.eq((regs, note), ([0x41AC, 0x0000], None), "exact float32")
    rid, (p, regs, note) = commands.parse(cmd(7, "0.95"), point("int16", scale=0.001).tab, [7])
    mptest.eq((regs, note), ([950], None), "0.95 / 0.001 is 950 exactly (decimal scale)")
    rid, (p, regs, note) = commands.parse(cmd(7, "0.9504"), point("int16", scale=0.001).tab, [7])
    mptest.eq((regs, note), ([950], {"rounded": True, "raw": 950}), "scaled, rounded")
    rid, (p, regs, note) = commands.parse(cmd(7, "-2.5e-2"), point("int16", scale=0.001).tab,
                                          [7])
    mptest.eq(regs, [0x10000 - 25], "negative with exponent")
    refused(cmd(7, "1.5"), point("int16").tab, "whole numbers")
    refused(cmd(7, "1e-999"), point("float32").tab, "out of range")
    refused(cmd(7, "true"), point("int16").tab, "must be a number")


class FakeUplink:
    t_cmd = b"otlink/s/n/cmd"

    def __init__(self):
        self.sent = []
        self.retained = False

    def publish(self, topic, payload, qos=1, retain=False):
        self.sent.append((topic, json.loads(payload)))


class FakePoller:
    def __init__(self):
        self.writes = []

    async def write(self, slave, table, address, regs):
        self.writes.append((address, regs))
        return 0


def _run_all(c):
    import asyncio

    async def drain():
        while await c.step():
            pass
    asyncio.run(drain())


def test_every_command_answered_busy_ones_too():
    up = FakeUplink()
    pol = FakePoller()
    c = commands.Commands(up, pol, point("int16").tab, [7])
    for i in range(30):  # back to back, inside one MQTT read burst
        c.on_msg(cmd(7, str(i), "c%d" % i).encode())
    c.on_msg(b"{not json")
    _run_all(c)
    replies = [r for t, r in up.sent]
    mptest.eq(len(replies), 31, "every command answered")
    mptest.true(all(t == b"otlink/s/n/reply" for t, r in up.sent), "on the reply topic")
    ok = [r["id"] for r in replies if r["ok"]]
    busy = [r["id"] for r in replies if not r["ok"] and "busy" in r["error"]]
    mptest.eq(ok, ["c%d" % i for i in range(commands.MAX_PENDING)], "first ones written")
    named = sorted([b for b in busy if b is not None])
    mptest.eq(named, sorted(["c%d" % i for i in range(8, 30)]), "the rest refused as busy")
    mptest.eq(busy.count(None), 1, "the message without an id too")
    mptest.eq(len(pol.writes), commands.MAX_PENDING, "writes")
    mptest.eq((c.received, c.dropped), (31, 0), "counts")


def test_retained_command_answered_not_run():
    up = FakeUplink()
    pol = FakePoller()
    c = commands.Commands(up, pol, point("int16").tab, [7])
    up.retained = True  # replayed by the broker from its retained store at subscribe
    c.on_msg(cmd(7, "5", "old").encode())
    up.retained = False
    c.on_msg(cmd(7, "6", "new").encode())
    c.on_msg(b"")  # clearing the retained one: not a command, no reply
    _run_all(c)
    replies = [r for t, r in up.sent]
    mptest.eq([(r["id"], r["ok"]) for r in replies], [("old", False), ("new", True)], "replies")
    mptest.true("retain" in replies[0]["error"], replies[0]["error"])
    mptest.eq(pol.writes, [(10, [6])], "only the live command written")


class Lcg:
    # the same sequence on both builds (no float, no 2**30+ ints)
    def __init__(self, seed):
        self.x = seed

    def below(self, n):
        self.x = (self.x * 1103515245 + 12345) % 2147483648
        return (self.x >> 8) % n


TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
SCALES = (1.0, 1.0, 0.1, 0.001, 10.0, -2.0, 1e-6)
OFFSETS = (0.0, 0.0, -40.0, 273.15, 1e9)
SPECIAL = ("0", "-0", "-0.0", "1e300", "-1e300", "1e999", "1e-999", "3.4028235e38", "5e-324",
           "1.7976931348623157e308", "2e308", "65535", "65536", "-32769", "4294967296",
           "18446744073709551615", "18446744073709551616", "-9223372036854775809",
           "0.5", "-0.5", "1.5", "2.5", "16777217", "123456.789", "1E3", "1e+3", "2.5E-3",
           "1" + "0" * 45, '"5"', "null", "[1]", "true")


def _value_text(r):
    k = r.below(6)
    if k == 0:
        return SPECIAL[r.below(len(SPECIAL))]
    sign = "-" if r.below(2) else ""
    digits = str(r.below(1000000)) + str(r.below(1000000))
    if k == 1:
        return sign + digits.lstrip("0") or "0"
    frac = str(r.below(100000))
    exp = r.below(700) - 350 if k == 2 else r.below(20) - 10
    return "%s%s.%se%d" % (sign, digits[:r.below(12) + 1], frac, exp)


def _whole(text):
    # the exact integer a decimal text denotes (reference without floats)
    t = text.lower()
    e = 0
    if "e" in t:
        t, x = t.split("e")
        e = int(x)
    ip, _, fp = t.partition(".")
    m = int(ip + fp) if ip not in ("", "-") else int(ip + fp or "0")
    e -= len(fp)
    if e >= 0:
        return m * 10 ** e
    q, r = divmod(abs(m), 10 ** -e)
    mptest.eq(r, 0, "accepted a fraction for an unscaled integer point: " + text)
    return -q if m < 0 else q


def test_fuzz_never_crashes_and_ints_are_exact():
    r = Lcg(8949)
    accepted = refused_n = 0
    for i in range(2500):
        typ = TYPES[r.below(len(TYPES))]
        scale = SCALES[r.below(len(SCALES))]
        offset = OFFSETS[r.below(len(OFFSETS))]
        p = point(typ, ORDERS[r.below(len(ORDERS))], scale=scale, offset=offset)
        text = _value_text(r)
        msg = cmd(7, text, "f%d" % i)
        try:
            rid, (pp, regs, note) = commands.parse(msg, p.tab, [7])
        except commands.CommandError as e:
            mptest.eq(e.rid, "f%d" % i, "refusal keeps the id")
            refused_n += 1
            continue
        accepted += 1
        mptest.eq(len(regs), p.words, "one value per register")
        for v in regs:
            mptest.true(0 <= v <= 0xFFFF, "register value %r" % v)
        if typ[0] != "f" and scale == 1.0 and offset == 0.0:
            mptest.eq(read_back(p, regs), _whole(text), "exact %s %s" % (typ, text))
        if i % 100 == 0:
            gc.collect()
    mptest.true(accepted > 500 and refused_n > 300, "both kinds: %d/%d" % (accepted, refused_n))


mptest.main(globals())
