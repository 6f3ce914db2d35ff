# heapsize: 80K
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
    "1(1363896240.5)": lambda w: (w.tag(1), w.f64le(le("41d452d9ec200000"), 0)),
    "23(h'01020304')": lambda w: (w.tag(23), w.bytes(b"\x01\x02\x03\x04")),
    "24(h'6449455446')": lambda w: (w.tag(24), w.bytes(b"dIETF")),
    '32("http://www.example.com")': _tag_text(32, "http://www.example.com"),
    "h''": lambda w: w.bytes(b""),
    "h'01020304'": lambda w: w.bytes(b"\x01\x02\x03\x04"),
    "{1: 2, 3: 4}": lambda w: (w.map_head(2), w.uint(1), w.uint(2), w.uint(3), w.uint(4)),
}


def f64_of_cbor(h):
    """8 little-endian bytes of the double equal to the CBOR float h (hex of f9/fa/fb)."""
    b = bytes.fromhex(h)
    if b[0] == 0xFB:
        return bytes(b[8 - i] for i in range(8))
    v = 0
    for x in b[1:]:
        v = (v << 8) | x
    eb, fb = (5, 10) if b[0] == 0xF9 else (8, 23)
    sign = v >> (eb + fb)
    e = (v >> fb) & ((1 << eb) - 1)
    f = v & ((1 << fb) - 1)
    bias = (1 << (eb - 1)) - 1
    if e == (1 << eb) - 1:
        ed = 0x7FF
    elif e == 0 and f == 0:
        ed = 0
    elif e == 0:  # subnormal: normal as a double
        ed = 1 - bias + 1023
        while not f & (1 << fb):
            f <<= 1
            ed -= 1
        f &= (1 << fb) - 1
    else:
        ed = e - bias + 1023
    d = (sign << 63) | (ed << 52) | (f << (52 - fb))
    return d.to_bytes(8, "little")


def test_appendix_a_vectors():
    with open(VECTORS) as f:
        vectors = json.load(f)
    done = 0
    skipped = []
    for v in vectors:
        if not v["roundtrip"]:
            continue  # indefinite lengths and non-preferred floats: an encoder must not emit them
        if v["hex"][:2] in ("f9", "fa", "fb"):
            # floats from their bits (JSON gives single-precision objects on 32-bit builds)
            got = enc_bits(f64_of_cbor(v["hex"]))
        elif "decoded" in v:
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


# (IEEE 754 double, big-endian hex; shortest CBOR). Given as bits and encoded with f64le, so
# the 32-bit build (single-precision float objects) checks the same doubles.
FLOATS = [
    ("0000000000000000", "f90000"),  # 0.0
    ("8000000000000000", "f98000"),  # -0.0
    ("3ff0000000000000", "f93c00"),  # 1.0
    ("40effc0000000000", "f97bff"),  # 65504.0
    ("40effc2000000000", "fa477fe100"),  # 65505.0
    ("3e70000000000000", "f90001"),  # 2**-24, smallest half subnormal
    ("3e60000000000000", "fa33000000"),  # 2**-25
    ("36a0000000000000", "fa00000001"),  # 2**-149, smallest single subnormal
    ("3690000000000000", "fb3690000000000000"),  # 2**-150
    ("3f00000000000000", "f90200"),  # half subnormal 2**-15
    ("3810000000000000", "fa00800000"),  # smallest single normal
    ("47efffffe0000000", "fa7f7fffff"),  # largest single
    ("47f0000000000000", "fb47f0000000000000"),  # 2**128
    ("406cc33340000000", "fa4366199a"),  # float32(230.1)
    ("4035900000000000", "f94d64"),  # 21.5625
    ("3fb999999999999a", "fb3fb999999999999a"),  # 0.1
    ("c010000000000000", "f9c400"),  # -4.0
    ("7e37e43c8800759c", "fb7e37e43c8800759c"),  # 1e300
    ("0000000000000001", "fb0000000000000001"),  # 5e-324
    ("7ff0000000000000", "f97c00"),  # inf
    ("fff0000000000000", "f9fc00"),  # -inf
    ("7ff8000000000000", "f97e00"),  # NaN
    ("7ff0000000000001", "f97e00"),  # signalling NaN: canonical
]


def le(hexbe):
    """8 little-endian bytes from the big-endian hex of a double."""
    b = bytes.fromhex(hexbe)
    return bytes(b[7 - i] for i in range(8))


def enc_bits(src):
    buf = bytearray(16)
    w = Writer(buf)
    w.f64le(src, 0)
    return hx(buf, w.n)


def test_float_shortest():
    for bits, want in FLOATS:
        mptest.eq(enc_bits(le(bits)), want, bits)


def test_float_objects_this_build():
    # float() of this build's float objects: doubles on 64-bit, singles on the boards
    for x in (0.0, 1.0, 65504.0, 21.5625, -4.0, 1.5):
        mptest.eq(enc(x), enc_bits(struct.pack("<d", x)), repr(x))
    if float("1e300") != INF:  # double-precision build
        mptest.eq(enc(0.1), "fb3fb999999999999a", "0.1 as a double")
    else:
        mptest.eq(enc(0.1), "fa3dcccccd", "0.1 as a single")


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
_X = (1.5, 65505.0, 21.5625)  # exact in single precision: same bytes on both builds
_T = b"\x80\x20\xfd\x7a\x9a\x01\x00\x00"  # 1763000000640 ms, little endian
_NEG = b"\x00\x00\x00\x00\x00\xff\xff\xff"  # -2**40, little endian


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
    w.uint(4000000000)  # 2**30 and more: a heap int on 32-bit ports, written without another
    w.int(-3000000000)
    w.int(-(2 ** 63))
    w.nint(-(2 ** 64))
    w.int_le(_T, 0, 8)
    w.int_le(_NEG, 0, 8)
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


_ALL = ("a3001b0000011f71fb04cb3a0001116f20f93e00fa477fe100f94d64fb3fb999999999999a1aee6b2800"
        "3ab2d05dff3b7fffffffffffffff3bffffffffffffffff1b0000019a7afd20803b000000ffffffffff"
        "4301020365636166c3a963636166981ec1f5f6f7f0f8c8")  # checked with cbor2


def test_no_alloc_encode_paths():
    w = Writer(bytearray(256))
    rec = le("3fb999999999999a")  # 0.1 as a double, by its bits
    n = mptest.no_alloc(_encode_all, w, rec)
    mptest.eq(hx(w.buf, n), _ALL, "encoded")
    # The same again: reset() reuses the buffer and the result is identical.
    first = bytes(w.buf[:n])
    mptest.no_alloc(_encode_all, w, rec)
    mptest.eq(bytes(w.buf[:n]), first, "re-encoded identically")


def test_bignum_outside_64_bits():
    mptest.eq(enc(2 ** 64), "c249010000000000000000", "2**64")
    mptest.eq(enc(-(2 ** 64) - 1), "c349010000000000000000", "-2**64-1")
    mptest.eq(enc(2 ** 64 - 1), "1bffffffffffffffff", "2**64-1 still a head")


mptest.main(globals())
