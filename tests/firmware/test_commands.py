# Command path: a value written to a point reads back as the same value through the
# point decoder, for every writable type and word/byte order; refusals name the reason.
# heapsize: 88K 32:64K
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
    n = pack_reading(p, data, 3, rec, 0, 0)
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
    pts = [point("int16", scale=0.001)]
    msg = json.dumps({"id": "r1", "op": "write", "point": 7, "value": 0.5})
    rid, (p, regs) = commands.parse(msg, pts, [7])
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


mptest.main(globals())
