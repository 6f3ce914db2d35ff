# heapsize: 208K 32:80K
# Command path: a value written to a point reads back as the same value through the
# point decoder, for every writable type and word/byte order; refusals name the reason;
# conversion without floats (the 32-bit build has the boards' single-precision floats);
# every command answered, busy ones too; a fuzz of a few thousand commands.
# Signed commands: unsigned, forged and replayed ones refused and counted, the counter kept
# across a reboot with one file write per window, writes limited to the configured range.
import gc
import json
import os

import mptest
from otlink import commands
from otlink.core import auth, reading
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


KEY = bytes(range(100, 132))
T_CMD = b"otlink/s/n/cmd"


def sign(text, ctr, key=KEY, topic=T_CMD):
    """A signed command: the JSON with "ctr" added, LF, the hex tag (as otlink write does)."""
    body = text[:-1] + ', "ctr": %d}' % ctr
    return body.encode() + b"\n" + bytes(auth.Hmac(key).hexdigest(topic, b"\n", body))


class FakeUplink:
    t_cmd = T_CMD

    def __init__(self):
        self.sent = []
        self.retained = False
        self.mac = auth.Hmac(KEY)

    def publish(self, topic, payload, qos=1, retain=False):
        # every reply is signed under the node's key over the reply topic
        body, tag = commands.split_signed(bytes(payload))
        mptest.true(self.mac.verify(tag, topic, b"\n", body), "reply signature")
        self.sent.append((topic, json.loads(bytes(body))))


_ctr = [0]


def scmd(pid, value_text, rid="r"):
    _ctr[0] += 1
    return sign(cmd(pid, value_text, rid), _ctr[0])


def counter_path(name):
    import sys

    path = "%s/%s" % (sys.argv[1] if len(sys.argv) > 1 else ".", name)
    try:
        os.remove(path)
    except OSError:
        pass
    return path


def make(up, pol, pts, writable=(7,), path=None, limits=None, log=None):
    gc.collect()
    path = path or counter_path("ctr-%d" % _ctr[0])
    return commands.Commands(up, pol, pts, list(writable), log, auth.Hmac(KEY),
                             commands.Counter(path), limits)


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
    c = make(up, pol, point("int16").tab)
    for i in range(30):  # back to back, inside one MQTT read burst
        c.on_msg(scmd(7, str(i), "c%d" % i))
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
    garbage = [r for r in replies if r["id"] is None]
    mptest.true(len(garbage) == 1 and "not signed" in garbage[0]["error"],
                "the garbage message answered too: %r" % garbage)
    mptest.eq(len(pol.writes), commands.MAX_PENDING, "writes")
    mptest.eq((c.received, c.dropped), (31, 0), "counts")


def test_retained_command_answered_not_run():
    up = FakeUplink()
    pol = FakePoller()
    c = make(up, pol, point("int16").tab)
    up.retained = True  # replayed by the broker from its retained store at subscribe
    c.on_msg(scmd(7, "5", "old"))
    up.retained = False
    c.on_msg(scmd(7, "6", "new"))
    c.on_msg(b"")  # clearing the retained one: not a command, no reply
    _run_all(c)
    replies = [r for t, r in up.sent]
    mptest.eq([(r["id"], r["ok"]) for r in replies], [("old", False), ("new", True)], "replies")
    mptest.true("retain" in replies[0]["error"], replies[0]["error"])
    mptest.eq(pol.writes, [(10, [6])], "only the live command written")


def replies_of(up):
    out = [r for t, r in up.sent]
    up.sent.clear()
    return out


def test_unsigned_and_forged_commands_refused_and_counted():
    up = FakeUplink()
    pol = FakePoller()
    c = make(up, pol, point("int16").tab)
    c.on_msg(cmd(7, "5", "plain").encode())  # no tag at all
    good = sign(cmd(7, "6", "forged"), 5)
    bad = bytearray(good)
    bad[-1] = 0x30 if bad[-1] != 0x30 else 0x31  # one tag digit changed
    c.on_msg(bytes(bad))
    body = bytearray(good)
    body[body.find(b'"value": 6') + 9] = 0x39  # the value changed, tag kept
    c.on_msg(bytes(body))
    c.on_msg(sign(cmd(7, "7", "otherkey"), 6, key=b"k" * 31 + b"!"))
    c.on_msg(sign(cmd(7, "8", "othernode"), 7, topic=b"otlink/s/other/cmd"))
    _run_all(c)
    r = replies_of(up)
    mptest.eq([x["id"] for x in r], ["plain", "forged", "forged", "otherkey", "othernode"], "ids")
    mptest.true(all(not x["ok"] for x in r), "all refused")
    mptest.true("not signed" in r[0]["error"], r[0]["error"])
    mptest.true(all("does not verify" in x["error"] for x in r[1:]), r[1]["error"])
    mptest.eq((pol.writes, c.forged, c.errors), ([], 5, 5), "nothing written, counted")
    mptest.eq(c.counter.last, 0, "a forged counter does not move the node's")


def test_forged_flood_does_not_crowd_out_authentic_commands():
    up = FakeUplink()
    pol = FakePoller()
    logged = []
    c = make(up, pol, point("int16").tab, log=logged.append)
    for i in range(commands.MAX_PENDING + 4):  # one MQTT read burst of forgeries
        c.on_msg(cmd(7, "9", "f%d" % i).encode() + b"\n" + b"0" * 64)
    c.on_msg(sign(cmd(7, "3", "real"), 1))
    _run_all(c)
    r = replies_of(up)
    real = [x for x in r if x["id"] == "real"]
    mptest.eq(real, [{"id": "real", "ok": True, "ctr": 1}], "the authentic one written")
    mptest.eq((pol.writes, c.forged), ([(10, [3])], commands.MAX_PENDING + 4), "writes")
    mptest.true(all("does not verify" in x["error"] for x in r if x["id"] != "real"), r)
    mptest.eq(len(logged), 4, "reported in the log at 1, 2, 4, 8 forgeries: %r" % logged)


def test_replayed_command_refused_counter_survives_reboot():
    up = FakeUplink()
    pol = FakePoller()
    path = counter_path("ctr-replay")
    c = make(up, pol, point("int16").tab, path=path)
    first = sign(cmd(7, "1", "a"), 10)
    c.on_msg(first)
    c.on_msg(first)  # the same bytes again: a capture replayed
    c.on_msg(sign(cmd(7, "2", "b"), 9))  # authentic but older
    c.on_msg(sign(cmd(7, "3", "c"), 11))
    _run_all(c)
    r = replies_of(up)
    mptest.eq([(x["id"], x["ok"], x["ctr"]) for x in r],
              [("a", True, 10), ("a", False, 10), ("b", False, 9), ("c", True, 11)], "replies")
    mptest.true("replayed" in r[1]["error"] and r[1]["ctr_min"] == 11, r[1])
    mptest.eq((pol.writes, c.replayed), ([(10, [1]), (10, [3])], 2), "each written once")
    mptest.eq(c.counter.writes, 1, "one file write for the window")
    # counters up to the window: no more writes
    for k in range(12, 10 + commands.WINDOW + 1):
        c.on_msg(sign(cmd(7, "4", "w%d" % k), k))
        _run_all(c)
    mptest.eq(c.counter.writes, 1, "still one write after %d commands" % commands.WINDOW)
    c.on_msg(sign(cmd(7, "4", "next"), 11 + commands.WINDOW))
    _run_all(c)
    mptest.eq(c.counter.writes, 2, "a new window: a second write")
    replies_of(up)
    # reboot: a new Commands on the same file; every counter up to the mark counts as used
    pol2 = FakePoller()
    c2 = make(up, pol2, point("int16").tab, path=path)
    c2.on_msg(first)
    c2.on_msg(sign(cmd(7, "5", "late"), 11 + commands.WINDOW + 1))
    _run_all(c2)
    r = replies_of(up)
    mptest.true(not r[0]["ok"] and not r[1]["ok"], r)
    mptest.eq(r[1]["ctr_min"], 11 + 2 * commands.WINDOW + 1, "the lowest counter it takes")
    c2.on_msg(sign(cmd(7, "6", "ok"), r[1]["ctr_min"]))
    _run_all(c2)
    mptest.eq(replies_of(up)[0]["ok"], True, "the counter it names is taken")
    mptest.eq(pol2.writes, [(10, [6])], "after the reboot: only the fresh one written")


def test_unreadable_counter_refuses_commands():
    path = counter_path("ctr-bad")
    with open(path, "w") as f:
        f.write("garbage")
    up = FakeUplink()
    pol = FakePoller()
    c = make(up, pol, point("int16").tab, path=path)
    c.on_msg(sign(cmd(7, "1", "x"), 1000))
    _run_all(c)
    r = replies_of(up)
    mptest.true(not r[0]["ok"] and "counter record unreadable" in r[0]["error"], r)
    mptest.eq(pol.writes, [], "not written")


def test_counter_that_cannot_be_persisted_refuses_the_command():
    up = FakeUplink()
    pol = FakePoller()
    c = make(up, pol, point("int16").tab, path=counter_path("no-such-dir") + "/ctr")
    c.on_msg(sign(cmd(7, "1", "x"), 5))
    _run_all(c)
    r = replies_of(up)
    mptest.true(not r[0]["ok"] and "cannot persist" in r[0]["error"], r)
    mptest.eq((pol.writes, c.counter.last), ([], 0), "not run, counter unchanged")


def test_writes_limited_to_the_configured_range():
    pts = point("int16", scale=0.001).tab
    lim = {7: (0.8, 1.0)}
    rid, (p, regs, note) = commands.parse(cmd(7, "0.95"), pts, [7], lim)
    mptest.eq(regs, [950], "inside")
    rid, (p, regs, note) = commands.parse(cmd(7, "1"), pts, [7], lim)
    mptest.eq(regs, [1000], "the bound itself")
    for v in ("0.7999", "1.001", "-1", "30", "1e3"):
        e = mptest.raises(commands.CommandError, commands.parse, cmd(7, v), pts, [7], lim)
        mptest.true("outside" in str(e) and "commands.writable" in str(e), str(e))
    # without a limit the type's range alone applies (coils: no range)
    up = FakeUplink()
    pol = FakePoller()
    c = make(up, pol, pts, limits=lim)
    c.on_msg(scmd(7, "0.9"))
    c.on_msg(scmd(7, "0.5"))
    _run_all(c)
    mptest.eq([x["ok"] for x in replies_of(up)], [True, False], "range enforced in the task")
    mptest.eq(pol.writes, [(10, [900])], "only the value inside the range")


def test_no_key_means_no_commands():
    up = FakeUplink()
    pol = FakePoller()
    c = commands.Commands(up, pol, point("int16").tab, [7], None)
    up.publish = lambda t, p, q=1, r=False: up.sent.append((t, json.loads(p)))
    c.on_msg(sign(cmd(7, "1", "k"), 1))
    _run_all(c)
    mptest.true(not up.sent[0][1]["ok"] and "disabled" in up.sent[0][1]["error"], up.sent)
    mptest.eq(pol.writes, [], "nothing written")


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
