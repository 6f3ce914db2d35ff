# heapsize: 224K
# Points: config validation, decoding of every type x order, deadband, planner merging.
import struct
import sys

import mptest
from mptest import eq, no_alloc, raises, true

from otlink.core import modbus, planner, reading
from otlink.core.errors import ERR_RANGE, ConfigError
from otlink.core.config import parse_points, parse_serial
from otlink.core.points import ORDERS, pack_error, pack_reading

SER = {"baud": 9600, "groups": {"fast": {"interval_ms": 1000}, "slow": {"interval_ms": 60000}}}
FMT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
       "int64": ">q", "uint64": ">Q", "float64": ">d"}
VALUES = {"int16": (-12345, 0, 32767), "uint16": (0, 54321, 65535),
          "int32": (-123456789, 2147483647, -1), "uint32": (4000000000, 7, 0x01020304),
          "float32": (230.5, -0.15625, 1e-40), "int64": (-1234567890123, 2 ** 61 + 5, -1),
          "uint64": (2 ** 40 + 3, 12345, 2 ** 62 - 1), "float64": (49.99, -1e300, 0.1)}


def wire(value_bytes, order):
    """Big-endian value bytes -> register bytes on the wire for an order (test oracle)."""
    words = [value_bytes[i:i + 2] for i in range(0, len(value_bytes), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [bytes((w[1], w[0])) for w in words]
    return b"".join(words)


def one(cfg):
    base = {"id": 7, "slave": 1, "table": "holding", "address": 0, "group": "fast"}
    base.update(cfg)
    return parse_points([base], SER)[0]


def frame_with(data):
    # a response ADU body: slave, fc, count, data... (CRC not needed for decoding)
    return bytearray(b"\x01\x03" + bytes((len(data),)) + data + b"\0\0")


def test_every_type_and_order():
    rec = bytearray(reading.MAX_SIZE)
    for typ in FMT:
        for order in ORDERS:
            for v in VALUES[typ]:
                p = one({"type": typ, "order": order})
                data = frame_with(wire(struct.pack(FMT[typ], v), order))
                n = pack_reading(p.tab, p.i, data, 3, rec, 1000, 0)
                pid, kind, flags, t, got = reading.unpack(rec, n)
                if typ == "float32":
                    v = struct.unpack(">f", struct.pack(">f", v))[0]  # binary32 exactly
                eq(got, v, "%s %s %r" % (typ, order, v))
                eq(pid, 7, "pid")
                eq(kind, reading.KIND_FLOAT if typ.startswith("float") else reading.KIND_INT,
                   "kind")


def test_float32_special_values():
    rec = bytearray(reading.MAX_SIZE)
    for bits in (0x7F800000, 0xFF800000, 0x00000001, 0x80000000, 0x007FFFFF):
        p = one({"type": "float32"})
        n = pack_reading(p.tab, p.i, frame_with(struct.pack(">I", bits)), 3, rec, 0, 0)
        got = reading.unpack(rec, n)[4]
        want = struct.unpack(">f", struct.pack(">I", bits))[0]
        eq(struct.pack(">d", got), struct.pack(">d", want), "bits %08x" % bits)


def test_uint64_beyond_int64_is_float():
    rec = bytearray(reading.MAX_SIZE)
    p = one({"type": "uint64"})
    n = pack_reading(p.tab, p.i, frame_with(struct.pack(">Q", 2 ** 63 + 2 ** 40)), 3, rec, 0, 0)
    _, kind, _, _, got = reading.unpack(rec, n)
    eq(kind, reading.KIND_FLOAT, "kind")
    eq(got, float(2 ** 63 + 2 ** 40), "value")


def test_bits_strings_bools():
    rec = bytearray(reading.MAX_SIZE)
    p = one({"type": "bit", "bit": 9})
    n = pack_reading(p.tab, p.i, frame_with(b"\x02\x00"), 3, rec, 0, 0)
    eq(reading.unpack(rec, n)[4], 1, "bit 9 of 0x0200")
    p = one({"type": "bit", "bit": 9, "order": "BADC"})
    n = pack_reading(p.tab, p.i, frame_with(b"\x00\x02"), 3, rec, 0, 0)
    eq(reading.unpack(rec, n)[4], 1, "bit 9, byte-swapped register")
    p = one({"type": "string", "length": 8})
    n = pack_reading(p.tab, p.i, frame_with(b"AB-123\0\0"), 3, rec, 0, 0)
    eq(reading.unpack(rec, n)[4], b"AB-123", "string, NUL padded")
    p = one({"type": "string", "length": 4, "order": "BADC"})
    n = pack_reading(p.tab, p.i, frame_with(b"BADC"), 3, rec, 0, 0)
    eq(reading.unpack(rec, n)[4], b"ABCD", "byte-swapped string")
    c = one({"table": "coil"})
    data = bytearray(b"\x01\x01\x02\xCD\x01\0\0")
    for bit, want in ((0, 1), (1, 0), (2, 1), (8, 1), (9, 0)):
        c.reset()
        n = pack_reading(c.tab, c.i, data, bit, rec, 0, 0)
        eq(reading.unpack(rec, n)[4], want, "coil bit %d" % bit)


def test_report_on_change_and_deadband():
    rec = bytearray(reading.MAX_SIZE)
    p = one({"type": "int16", "scale": 0.1, "deadband": 0.5})  # 0.5 scaled = 5 raw
    d = lambda v: frame_with(struct.pack(">h", v))  # noqa: E731
    true(pack_reading(p.tab, p.i, d(100), 3, rec, 0, 0) > 0, "first value reported")
    eq(pack_reading(p.tab, p.i, d(104), 3, rec, 0, 0), 0, "0.4 < deadband")
    true(pack_reading(p.tab, p.i, d(105), 3, rec, 0, 0) > 0, "0.5 >= deadband")
    eq(pack_reading(p.tab, p.i, d(105), 3, rec, 0, 0), 0, "unchanged")
    true(pack_error(p.tab, p.i, 2, rec, 0, 0) > 0, "error reported")
    eq(reading.unpack(rec, reading.SIZE)[1:], (reading.KIND_ERR, 0, 0, 2), "error record")
    eq(pack_error(p.tab, p.i, 2, rec, 0, 0), 0, "same error not repeated")
    true(pack_reading(p.tab, p.i, d(105), 3, rec, 0, 0) > 0, "value after an error is reported")
    f = one({"type": "float32", "deadband": 1.0})
    fd = lambda v: frame_with(struct.pack(">f", v))  # noqa: E731
    true(pack_reading(f.tab, f.i, fd(230.0), 3, rec, 0, 0) > 0, "float first")
    eq(pack_reading(f.tab, f.i, fd(230.5), 3, rec, 0, 0), 0, "float inside deadband")
    true(pack_reading(f.tab, f.i, fd(231.0), 3, rec, 0, 0) > 0, "float at deadband")
    true(pack_reading(f.tab, f.i, fd(float("nan")), 3, rec, 0, 0) > 0, "a NaN is a change")
    true(pack_reading(f.tab, f.i, fd(231.0), 3, rec, 0, 0) > 0, "and so is its end")
    s = one({"type": "string", "length": 4, "deadband": 0})
    true(pack_reading(s.tab, s.i, frame_with(b"ABCD"), 3, rec, 0, 0) > 0, "string first")
    eq(pack_reading(s.tab, s.i, frame_with(b"ABCD"), 3, rec, 0, 0), 0, "string unchanged")
    true(pack_reading(s.tab, s.i, frame_with(b"ABCE"), 3, rec, 0, 0) > 0, "string changed")


def test_without_deadband_every_poll_is_reported():
    rec = bytearray(reading.MAX_SIZE)
    for cfg, data in (({"type": "int16"}, struct.pack(">h", 7)),
                      ({"type": "float32"}, struct.pack(">f", 230.0)),
                      ({"type": "uint64"}, struct.pack(">Q", 5)),
                      ({"type": "string", "length": 4}, b"ABCD")):
        p = one(cfg)
        for i in range(3):
            true(pack_reading(p.tab, p.i, frame_with(data), 3, rec, 0, 0) > 0,
                 "%s poll %d reported" % (cfg["type"], i))
    p = one({"type": "int16", "deadband": 0})
    true(pack_reading(p.tab, p.i, frame_with(struct.pack(">h", 7)), 3, rec, 0, 0) > 0, "first")
    eq(pack_reading(p.tab, p.i, frame_with(struct.pack(">h", 7)), 3, rec, 0, 0), 0,
       "deadband 0: change only")


def _stamp(rec):
    # what the poller does: the clock writes the timestamp once, decoding leaves it (t None)
    struct.pack_into("<q", rec, 4, 1700000000000)


def test_decode_does_not_allocate():
    # every type and order, first reports and deadband comparisons, 32-bit values beyond 2**30
    # and uint64 beyond int64: nothing allocates, on the 32-bit build too
    rec = bytearray(reading.MAX_SIZE)
    _stamp(rec)
    cases = []
    for typ in ("int16", "uint32", "int32", "float32", "float64", "int64", "uint64"):
        for order in ORDERS:
            cases.append((one({"type": typ, "order": order}),
                          frame_with(wire(struct.pack(FMT[typ], VALUES[typ][0]), order))))
    cases.append((one({"type": "uint64"}), frame_with(struct.pack(">Q", 2 ** 64 - 1))))
    cases.append((one({"type": "string", "length": 8}), frame_with(b"METER-01")))
    cases.append((one({"type": "string", "length": 11}), frame_with(b"SERIAL-4711X")))
    # plausibility ranges: inside and outside, every width and float mapping (one table)
    ranged = (("int16", [-10, 10], -5), ("int16", [-10, 10], -11),
                        ("uint16", [0, 500], 501), ("int32", [-5, 5], -2147483648),
                        ("uint32", [0, 10], 4000000000), ("float32", [0, 500], 230.5),
                        ("float32", [0, 500], -6.04e23), ("float32", [0, 500], float("nan")),
                        ("int64", [-1, 1], -(2 ** 62)), ("uint64", [0, 10], 2 ** 64 - 1),
                        ("float64", [-1, 1], 0.5), ("float64", [-1, 1], -1e300))
    rp = _pts([{"address": 10 * k, "type": typ, "range": rng}
               for k, (typ, rng, v) in enumerate(ranged)])
    for k, (typ, _rng, v) in enumerate(ranged):
        cases.append((rp[k], frame_with(struct.pack(FMT[typ], v))))
    cases.append((one({"type": "bit", "bit": 3}), frame_with(b"\x00\x08")))
    # report on change: pairs of values compared against the last report, both ways
    moving = []
    for typ, db, a, b in (("uint32", 10, 4000000000, 4000000005),
                          ("uint32", 10, 4000000000, 7),
                          ("int32", 1000, -2147483648, 2147483647),
                          ("int32", 0, 2000000000, 2000000001),
                          ("int64", 50, -(2 ** 62), -(2 ** 62) + 49),
                          ("int64", 50, 2 ** 62, -(2 ** 62)),
                          ("uint64", 3, 2 ** 64 - 1, 2 ** 64 - 2),
                          ("float32", 0, 230.5, 230.25),
                          ("float64", 0, 49.99, 50.01)):
        p = one({"type": typ, "deadband": db})
        moving.append((p, frame_with(struct.pack(FMT[typ], a)),
                       frame_with(struct.pack(FMT[typ], b))))

    def hot():
        total = 0
        for p, data in cases:
            p.reset()
            total += pack_reading(p.tab, p.i, data, 3, rec, None, 0)
            total += pack_error(p.tab, p.i, 0x82, rec, None, 0)
        for p, da, db in moving:
            for _ in range(3):
                total += pack_reading(p.tab, p.i, da, 3, rec, None, 0)
                total += pack_reading(p.tab, p.i, db, 3, rec, None, 0)
        return total

    hot()
    true(no_alloc(hot) > 0, "decoded under heap lock")
    eq(struct.unpack_from("<q", rec, 4)[0], 1700000000000, "the stamped time is left as it was")


def test_string_length_counts_characters():
    # "length": 11 characters: 6 registers read, 11 characters reported (the 12th byte, the
    # pad of the last register, is not part of the string)
    rec = bytearray(reading.MAX_SIZE)
    p = one({"type": "string", "length": 11})
    eq(p.words, 6, "registers of an 11-character string")
    n = pack_reading(p.tab, p.i, frame_with(b"SERIAL-4711X"), 3, rec, 0, 0)
    eq(reading.unpack(rec, n)[4], b"SERIAL-4711", "11 characters")
    n = pack_reading(p.tab, p.i, frame_with(b"SN-42\0\0\0\0\0\0\0"), 3, rec, 0, 0)
    eq(reading.unpack(rec, n)[4], b"SN-42", "NUL padded: ends at the first NUL")
    p = one({"type": "string", "length": 64})
    eq(p.words, 32, "the longest string: 64 characters, 32 registers")
    n = pack_reading(p.tab, p.i, frame_with(b"x" * 64), 3, rec, 0, 0)
    eq(len(reading.unpack(rec, n)[4]), 64, "64 characters")


def _code(rec, n):
    pid, kind, flags, t, v = reading.unpack(rec, n)
    return v if kind == reading.KIND_ERR else None


def test_range_reports_implausible_values_as_an_error():
    # the off-by-one: a float32 voltage read one register off (the low half of the value
    # before and the high half of the voltage) is plausible-looking garbage
    rec = bytearray(reading.MAX_SIZE)
    regs = struct.pack(">ff", 1.5, 230.5)  # a current at 0, the voltage at 2
    p = one({"type": "float32", "range": [100, 300], "unit": "V"})
    off_by_one = frame_with(regs[2:6])  # 2.4e-41
    n = pack_reading(p.tab, p.i, off_by_one, 3, rec, 0, 0)
    eq(_code(rec, n), ERR_RANGE, "address one off: out of range")
    eq(pack_reading(p.tab, p.i, off_by_one, 3, rec, 0, 0), 0, "the same error is not repeated")
    n = pack_reading(p.tab, p.i, frame_with(regs[4:8]), 3, rec, 0, 0)
    eq(reading.unpack(rec, n)[1:], (reading.KIND_FLOAT, 0, 0, 230.5), "the right address")
    for typ, rng, extra, vals in (
            ("int16", [-10, 10], {}, ((-10, 1), (10, 1), (-11, 0), (11, 0), (0, 1))),
            # scaled: engineering = raw * 0.1 + 20, so 0..50 is raw -200..300
            ("int16", [0, 50], {"scale": 0.1, "offset": 20}, ((-200, 1), (-201, 0), (300, 1),
                                                                (301, 0))),
            # a negative scale swaps the bounds: raw -500..0
            ("int32", [0, 50], {"scale": -0.1}, ((-500, 1), (-501, 0), (0, 1), (1, 0))),
            ("uint16", [0, 500], {}, ((500, 1), (501, 0), (65535, 0))),
            ("uint32", [1e9, 4e9], {}, ((10 ** 9, 1), (10 ** 9 - 1, 0), (4 * 10 ** 9, 1),
                                        (4 * 10 ** 9 + 1, 0))),
            ("int32", [-70000, 70000], {}, ((-70000, 1), (-70001, 0), (70000, 1),
                                            (-2147483648, 0), (2147483647, 0))),
            ("int64", [-1e10, 1e10], {}, ((-10 ** 10, 1), (-10 ** 10 - 1, 0), (10 ** 10, 1),
                                          (10 ** 10 + 1, 0), (-(2 ** 63), 0))),
            ("uint64", [0, 1e10], {}, ((10 ** 10, 1), (10 ** 10 + 1, 0), (2 ** 64 - 1, 0))),
            ("float32", [-1, 1], {}, ((-1.0, 1), (1.0, 1), (-0.0, 1), (0.0, 1), (-1.5, 0),
                                      (1.5, 0), (float("inf"), 0), (float("-inf"), 0),
                                      (float("nan"), 0))),
            ("float32", [0, 500], {}, ((-0.0, 1), (0.0, 1), (-1e-30, 0))),
            ("float64", [-1, 1], {}, ((-1.0, 1), (0.5, 1), (-0.0, 1), (-1.5, 0), (1.5, 0),
                                      (float("nan"), 0), (float("-inf"), 0)))):
        cfg = {"type": typ, "range": rng}
        cfg.update(extra)
        p = one(cfg)
        for v, ok in vals:
            p.reset()
            n = pack_reading(p.tab, p.i, frame_with(struct.pack(FMT[typ], v)), 3, rec, 0, 0)
            eq(_code(rec, n), None if ok else ERR_RANGE, "%s range %r %r: %r" % (typ, rng,
                                                                             extra, v))
    # a value back in range after the error is reported even when a deadband holds it
    p = one({"type": "int16", "range": [0, 100], "deadband": 50})
    d = lambda v: frame_with(struct.pack(">h", v))  # noqa: E731
    true(pack_reading(p.tab, p.i, d(10), 3, rec, 0, 0) > 0, "first")
    eq(_code(rec, pack_reading(p.tab, p.i, d(-1), 3, rec, 0, 0)), ERR_RANGE, "out")
    n = pack_reading(p.tab, p.i, d(10), 3, rec, 0, 0)
    eq(reading.unpack(rec, n)[4], 10, "back in range: reported")
    eq(modbus.error_name(ERR_RANGE), "out_of_range", "the code's name")


def test_bit_point_source_names_the_bit():
    pts = _pts([{"address": 100, "type": "bit", "bit": 3}, {"address": 100},
                {"address": 5, "table": "input", "slave": 2, "type": "bit", "bit": 15}])
    eq([pts.source(i) for i in range(len(pts))],
       ["modbus:1:holding:100.3", "modbus:1:holding:100", "modbus:2:input:5.15"], "sources")


def test_given_time_is_packed():
    rec = bytearray(reading.MAX_SIZE)
    p = one({"type": "uint16"})
    n = pack_reading(p.tab, p.i, frame_with(b"\x00\x07"), 3, rec, -5, 1)
    eq(reading.unpack(rec, n), (7, reading.KIND_INT, 1, -5, 7), "t, flags")
    n = pack_error(p.tab, p.i, 1, rec, 1700000000123, 0)
    eq(reading.unpack(rec, n), (7, reading.KIND_ERR, 0, 1700000000123, 1), "error record")


def test_uint64_beyond_int64_rounds_to_nearest_even():
    # raw binary64 bits from the record (the single-precision build cannot hold the double)
    rec = bytearray(reading.MAX_SIZE)
    for v, bits in ((2 ** 64 - 1, 0x43F0000000000000),  # rounds up into the next binade
                    (2 ** 63, 0x43E0000000000000),
                    (2 ** 63 + 1024, 0x43E0000000000000),  # half way, even: down
                    (2 ** 63 + 3072, 0x43E0000000000002),  # half way, odd: up
                    (2 ** 63 + 1025, 0x43E0000000000001),
                    (2 ** 63 + 2047, 0x43E0000000000001)):
        p = one({"type": "uint64", "order": "DCBA"})
        pack_reading(p.tab, p.i, frame_with(wire(struct.pack(">Q", v), "DCBA")), 3, rec, 0, 0)
        eq(rec[2], reading.KIND_FLOAT, "kind")
        eq(bytes(rec[12:20]), struct.pack("<Q", bits), "%x" % v)


def test_integer_deadbands_are_exact_at_any_width():
    rec = bytearray(reading.MAX_SIZE)
    for typ, db, last, seq in (
            ("int32", 100, 1000, ((1099, 0), (1100, 1), (1001, 0), (-2147483648, 1),
                                   (2147483647, 1))),
            ("uint32", 100, 4000000000, ((4000000099, 0), (3999999900, 1), (99, 1))),
            ("int64", 100, -(2 ** 40), ((-(2 ** 40) + 99, 0), (-(2 ** 40) - 100, 1),
                                         (2 ** 62, 1), (-(2 ** 63), 1))),
            ("uint64", 100, 2 ** 64 - 1, ((2 ** 64 - 100, 0), (2 ** 64 - 101, 1),
                                          (2 ** 64 - 200, 0), (0, 1))),
            # a deadband of 2**31 raw counts: the exact (allocating) comparison
            ("int64", 2 ** 31, 0, ((2 ** 31 - 1, 0), (2 ** 31, 1), (0, 1), (1 - 2 ** 31, 0)))):
        p = one({"type": typ, "deadband": db})
        fmt = FMT[typ]
        true(pack_reading(p.tab, p.i, frame_with(struct.pack(fmt, last)), 3, rec, 0, 0) > 0,
             "first")
        for v, reported in seq:
            n = pack_reading(p.tab, p.i, frame_with(struct.pack(fmt, v)), 3, rec, 0, 0)
            eq(n > 0, bool(reported), "%s deadband %d: %d after %d" % (typ, db, v, last))
            if reported:
                if typ != "uint64" or v < 2 ** 63:
                    eq(reading.unpack(rec, n)[4], v, "value")
                last = v


def test_float_deadband_allocation_bound():
    # The one allocating comparison: a float point with a nonzero deadband boxes its floats
    # (floats are heap objects on the boards). Measured here and bounded: 3 float objects per
    # comparison (the two values read back and their difference), one GC block each.
    import gc

    rec = bytearray(reading.MAX_SIZE)
    f32 = one({"type": "float32", "deadband": 1.0})
    f64 = one({"type": "float64", "deadband": 1.0})
    frames = []
    for typ, p in (("float32", f32), ("float64", f64)):
        frames.append((p, frame_with(struct.pack(FMT[typ], 230.0)),
                       frame_with(struct.pack(FMT[typ], 230.5))))

    def compare(n):
        for p, a, b in frames:
            pack_reading(p.tab, p.i, a, 3, rec, None, 0)  # first: reported
            for _ in range(n):
                pack_reading(p.tab, p.i, b, 3, rec, None, 0)  # within the deadband: compared
                pack_reading(p.tab, p.i, a, 3, rec, None, 0)  # the same bits as reported: no floats

    compare(2)
    n = 50
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        compare(n)
        used = gc.mem_alloc() - a0
    finally:
        gc.enable()
    block = 16 if sys.maxsize <= 0x7FFFFFFF else 32  # one float object: one GC block
    per = used / (2 * n)  # two points, n comparisons each
    print("float deadband: %.1f bytes per comparison (%d-byte blocks)" % (per, block))
    true(per <= 3 * block, "%.1f bytes per comparison, bound %d" % (per, 3 * block))
    true(per > 0, "floats are boxed: the measurement sees them")


def test_config_errors_name_the_field():
    e = raises(ConfigError, parse_points, [{"id": 1, "slave": 1, "table": "holding",
                                           "address": 0, "type": "flaot32"}], SER)
    eq(e.field, "points[0].type", "field")
    true("flaot32" in e.problem and "float32" in e.problem, e.problem)
    bad = [
        ({"type": "int16", "table": "holdng"}, "points[0].table"),
        ({"type": "int16", "order": "ABDC"}, "points[0].order"),
        ({"type": "bit"}, "points[0].bit"),
        ({"type": "bit", "bit": 16}, "points[0].bit"),
        ({"type": "string"}, "points[0].length"),
        ({"type": "string", "length": 65}, "points[0].length"),
        ({"type": "string", "length": 0}, "points[0].length"),
        ({"type": "float32", "range": [500, 0]}, "points[0].range"),
        ({"type": "float32", "range": [1, 1]}, "points[0].range"),
        ({"type": "float32", "range": [0]}, "points[0].range"),
        ({"type": "float32", "range": "0..500"}, "points[0].range"),
        ({"type": "float32", "range": [0, "500"]}, "points[0].range.max"),
        ({"type": "float32", "range": [float("nan"), 1]}, "points[0].range.min"),
        ({"type": "float32", "range": [0, float("inf")]}, "points[0].range.max"),
        ({"type": "string", "length": 4, "range": [0, 1]}, "points[0].range"),
        ({"type": "bit", "bit": 1, "range": [0, 1]}, "points[0].range"),
        ({"type": "uint16", "range": [-10, -1]}, "points[0].range"),
        ({"type": "int16", "range": [0.2, 0.8]}, "points[0].range"),
        ({"type": "int16", "slave": 0}, "points[0].slave"),
        ({"type": "int16", "slave": 248}, "points[0].slave"),
        ({"type": "int32", "address": 65535}, "points[0].address"),
        ({"type": "int16", "scale": 0}, "points[0].scale"),
        ({"type": "int16", "deadband": -1}, "points[0].deadband"),
        ({"type": "int16", "group": "medium"}, "points[0].group"),
        ({"type": "int16", "scael": 2}, "points[0].scael"),
        ({"type": "int16", "table": "coil"}, "points[0].type"),
        ({"type": "bool"}, "points[0].type"),
    ]
    for extra, field in bad:
        cfg = {"id": 1, "slave": 1, "table": "holding", "address": 0, "group": "fast"}
        cfg.update(extra)
        e = raises(ConfigError, parse_points, [cfg], SER)
        eq(e.field, field, repr(extra))
    two = [{"id": 1, "slave": 1, "table": "coil", "address": 0},
           {"id": 1, "slave": 1, "table": "coil", "address": 1}]
    eq(raises(ConfigError, parse_points, two, SER).field, "points[1].id", "duplicate id")
    eq(raises(ConfigError, parse_serial, {"parity": "X"}).field, "serial.parity", "parity")
    eq(raises(ConfigError, parse_serial, {"backoff_ms": [5, 1]}).field, "serial.backoff_ms", "bo")
    eq(raises(ConfigError, parse_serial, {"max_regs": 126}).field, "serial.max_regs", "max")


def _pts(specs):
    cfg = []
    for i, s in enumerate(specs):
        c = {"id": i + 1, "slave": 1, "table": "holding", "type": "uint16", "group": "fast"}
        c.update(s)
        cfg.append(c)
    return parse_points(cfg, SER)


def test_planner_merges_near_contiguous():
    ser = parse_serial(SER)
    pts = _pts([{"address": 0}, {"address": 1, "type": "float32"}, {"address": 10},
                {"address": 30}, {"address": 0, "slave": 2}, {"address": 5, "table": "input"},
                {"address": 3, "group": "slow"}])
    plan = planner.plan(pts, ser)
    g = plan.groups
    fast = plan.requests(g[0])
    eq([(r.slave, r.fc, r.start, r.count) for r in fast],
       [(1, 3, 0, 11), (1, 3, 30, 1), (1, 4, 5, 1), (2, 3, 0, 1)], "fast plan")
    eq(list(fast[0].offs), [3, 5, 23], "byte offsets of points in the response")
    eq([(r.start, r.count) for r in plan.requests(g[1])], [(3, 1)], "slow group apart")
    eq(fast[0].adu, bytes(b"\x01\x03\x00\x00\x00\x0b") + fast[0].adu[6:], "prebuilt ADU")
    eq(fast[0].resp_len, 5 + 22, "response length")
    eq(planner.wire_chars(plan), (8 * 5, 27 + 7 + 7 + 7 + 7, 5), "one cycle's characters")
    naive = planner.plan(pts, ser, merge=False)
    eq(len(naive.requests(naive.groups[0])), 6, "one request per point")


def _reqs(plan):
    return plan.requests(plan.groups[0])


def test_planner_respects_caps():
    ser = parse_serial({"max_regs": 20, "max_gap_regs": 3, "groups": SER["groups"]})
    pts = _pts([{"address": a} for a in range(0, 40, 2)])
    reqs = _reqs(planner.plan(pts, ser))
    for r in reqs:
        true(r.count <= 20, "cap")
    eq(sum(len(r.idx) for r in reqs), 20, "every point planned once")
    eq(len(reqs), 2, "40 registers / 20")
    ser = parse_serial({"max_gap_regs": 3, "groups": SER["groups"]})
    reqs = _reqs(planner.plan(_pts([{"address": 0}, {"address": 4}, {"address": 9}]), ser))
    eq([(r.start, r.count) for r in reqs], [(0, 5), (9, 1)], "gap 3 merges, gap 4 does not")
    coils = _pts([{"table": "coil", "type": "bool", "address": a} for a in (0, 1, 2000, 2100)])
    reqs = _reqs(planner.plan(coils, parse_serial(SER)))
    eq([(r.fc, r.start, r.count) for r in reqs], [(1, 0, 2), (1, 2000, 1), (1, 2100, 1)], "bits")
    eq(list(reqs[0].offs), [0, 1], "bit offsets")


mptest.main(globals())
