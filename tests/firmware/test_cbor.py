# heapsize: 72K
# CBOR encoder tests (RFC 8949): Appendix A vectors from tests/data/, preferred serialization,
# bounds, no allocation. One file so the test bridge sees every test function.
import json
import struct

import mptest
from otlink.core.cbor import BufferFull, Writer

VECTORS = "tests/data/cbor_appendix_a.json"  # cwd: the repository root
INF = float("inf")
NAN = float("nan")


def hx(b, n):
    return "".join("%02x" % b[i] for i in range(n))


def enc(x):
    buf = bytearray(64)
    w = Writer(buf)
    put(w, x)
    return hx(buf, w.n)


def put(w, x):
    # Like Writer.obj but with map keys sorted: MicroPython's json does not keep key order,
    # and the Appendix A maps are written in sorted key order.
    if isinstance(x, dict):
        w.map_head(len(x))
        for k in sorted(x):
            put(w, k)
            put(w, x[k])
    elif isinstance(x, list):
        w.array_head(len(x))
        for y in x:
            put(w, y)
    else:
        w.obj(x)


# Vectors whose value JSON cannot hold, encoded through the specific Writer calls.
def _tag_text(t, s):
    return lambda w: (w.tag(t), w.text(s))


DIAGNOSTIC = {
    "Infinity": lambda w: w.float(INF),
    "NaN": lambda w: w.float(NAN),
    "-Infinity": lambda w: w.float(-INF),
    "undefined": lambda w: w.undefined(),
    "simple(16)": lambda w: w.simple(16),
    "simple(255)": lambda w: w.simple(255),
    '0("2013-03-21T20:04:00Z")': _tag_text(0, "2013-03-21T20:04:00Z"),
    "1(1363896240)": lambda w: (w.tag(1), w.uint(1363896240)),
    "1(1363896240.5)": lambda w: (w.tag(1), w.float(1363896240.5)),
    "23(h'01020304')": lambda w: (w.tag(23), w.bytes(b"\x01\x02\x03\x04")),
    "24(h'6449455446')": lambda w: (w.tag(24), w.bytes(b"dIETF")),
    '32("http://www.example.com")': _tag_text(32, "http://www.example.com"),
    "h''": lambda w: w.bytes(b""),
    "h'01020304'": lambda w: w.bytes(b"\x01\x02\x03\x04"),
    "{1: 2, 3: 4}": lambda w: (w.map_head(2), w.uint(1), w.uint(2), w.uint(3), w.uint(4)),
}


def test_appendix_a_vectors():
    with open(VECTORS) as f:
        vectors = json.load(f)
    done = 0
    skipped = []
    for v in vectors:
        if not v["roundtrip"]:
            continue  # indefinite lengths and non-preferred floats: an encoder must not emit them
        if "decoded" in v:
            got = enc(v["decoded"])
        elif v.get("diagnostic") in DIAGNOSTIC:
            buf = bytearray(64)
            w = Writer(buf)
            DIAGNOSTIC[v["diagnostic"]](w)
            got = hx(buf, w.n)
        else:
            skipped.append(v["diagnostic"])
            continue
        mptest.eq(got, v["hex"], "vector %s" % v["hex"])
        done += 1
    # simple(24) as f818 is not well-formed under RFC 8949 §3.3: the encoder refuses it.
    mptest.eq(skipped, ["simple(24)"], "vectors not encoded")
    mptest.true(done >= 60, "encoded %d vectors" % done)


def test_simple_24_31_refused():
    w = Writer(bytearray(4))
    for v in (24, 31, 256, -1):
        mptest.raises(ValueError, w.simple, v)
    mptest.eq(w.n, 0, "nothing written")


def test_float_shortest():
    cases = [
        (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (65504.0, "f97bff"),
        (65505.0, "fa477fe100"), (5.960464477539063e-08, "f90001"), (2.0 ** -25, "fa33000000"),
        (2.0 ** -149, "fa00000001"), (2.0 ** -150, "fb3690000000000000"),
        (3.0517578125e-05, "f90200"),  # half subnormal 2**-15
        (1.1754943508222875e-38, "fa00800000"),  # smallest single normal
        (3.4028234663852886e38, "fa7f7fffff"), (2.0 ** 128, "fb47f0000000000000"),
        (230.10000610351562, "fa4366199a"), (21.5625, "f94d64"), (0.1, "fb3fb999999999999a"),
        (-4.0, "f9c400"), (1e300, "fb7e37e43c8800759c"), (5e-324, "fb0000000000000001"),
    ]
    for x, want in cases:
        mptest.eq(enc(x), want, repr(x))


def test_f64le_matches_float():
    s = bytearray(8)
    b1 = bytearray(16)
    b2 = bytearray(16)
    for x in (0.0, -2.5, 230.1, 1e-7, 6.103515625e-05, 1e39, -INF, 123456.75):
        struct.pack_into("<d", s, 0, x)
        w1 = Writer(b1)
        w1.f64le(s, 0)
        w2 = Writer(b2)
        w2.float(x)
        mptest.eq(hx(b1, w1.n), hx(b2, w2.n), repr(x))


def test_int_heads():
    cases = [(0, "00"), (23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"),
             (65535, "19ffff"), (65536, "1a00010000"), (4294967295, "1affffffff"),
             (4294967296, "1b0000000100000000"), (-1, "20"), (-24, "37"), (-25, "3818"),
             (-256, "38ff"), (-257, "390100"), (-4294967297, "3b0000000100000000"),
             (-(2 ** 63), "3b7fffffffffffffff")]
    for v, want in cases:
        mptest.eq(enc(v), want, str(v))
    w = Writer(bytearray(16))
    mptest.raises(ValueError, w.uint, -1)
    mptest.raises(ValueError, w.nint, 0)
    mptest.raises(ValueError, w.head, 0, 2 ** 64)


def test_buffer_full_writes_nothing_past_end():
    buf = bytearray(8)
    w = Writer(buf, 2, 6)  # window of 4 bytes; guards on both sides must stay 0xAA
    for i in range(8):
        buf[i] = 0xAA
    w.uint(1)
    mptest.raises(BufferFull, w.uint, 1000000)  # 5 bytes: does not fit in the 3 left
    mptest.raises(BufferFull, w.text, "abcd")
    mptest.raises(BufferFull, w.float, 0.1)
    mptest.raises(BufferFull, w.bytes, b"xyz")
    mptest.eq(w.n, 1, "only the first item written")
    w.bytes(b"xy")
    mptest.eq(w.n, 4, "exactly full")
    mptest.raises(BufferFull, w.null)
    mptest.eq(buf[0], 0xAA, "guard before")
    mptest.eq(buf[6], 0xAA, "guard after")
    mptest.eq(buf[7], 0xAA, "guard after")
    mptest.eq(hx(buf, 6)[4:], "01427879", "content")
    w.reset()
    mptest.eq(w.n, 0, "reset")
    mptest.raises(ValueError, Writer, bytearray(4), 0, 5)


def test_memoryview_target_and_offset():
    buf = bytearray(12)
    mv = memoryview(buf)
    w = Writer(mv, 4)
    w.array_head(2)
    w.text("ab")
    w.int(-500)
    mptest.eq(hx(buf, 12), "00000000826261623901f300", "encoded at offset 4")
    mptest.eq(w.n, 7, "n")


_DATA = b"\x01\x02\x03"
_UTF8 = b"caf\xc3\xa9"
_X = (1.5, 230.1, 0.1)


def _encode_all(w, rec):
    # Module level on purpose: a closure over more than a few variables makes MicroPython
    # allocate its argument array at each call.
    w.reset()
    w.map_head(3)
    w.uint(0)
    w.uint(1234567890123)
    w.int(-70000)
    w.nint(-1)
    w.float(_X[0])
    w.float(_X[1])
    w.float(_X[2])
    w.f64le(rec, 0)
    w.bytes(_DATA)
    w.text_bytes(_UTF8)
    w.raw_from(0x60, _UTF8, 0, 3)
    w.array_head(30)
    w.tag(1)
    w.bool(True)
    w.null()
    w.undefined()
    w.simple(16)
    w.simple(200)
    return w.n


def test_no_alloc_encode_paths():
    w = Writer(bytearray(256))
    rec = bytearray(8)
    struct.pack_into("<d", rec, 0, 230.1)
    n = mptest.no_alloc(_encode_all, w, rec)
    mptest.eq(n, 70, "bytes encoded")
    # The same again: reset() reuses the buffer and the result is identical.
    first = bytes(w.buf[:n])
    mptest.no_alloc(_encode_all, w, rec)
    mptest.eq(bytes(w.buf[:n]), first, "re-encoded identically")


def test_bignum_outside_64_bits():
    mptest.eq(enc(2 ** 64), "c249010000000000000000", "2**64")
    mptest.eq(enc(-(2 ** 64) - 1), "c349010000000000000000", "-2**64-1")
    mptest.eq(enc(2 ** 64 - 1), "1bffffffffffffffff", "2**64-1 still a head")


mptest.main(globals())
