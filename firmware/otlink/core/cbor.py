# CBOR encoder (RFC 8949) writing into a caller-provided, preallocated buffer.
#
# Preferred serialization (RFC 8949 §4.1, §4.2.1 rules for heads and floats):
#   - every head (integer, length, tag, simple value) uses the shortest argument form;
#   - a float is written in the shortest of half / single / double precision that keeps its
#     exact value (§4.2.2 / Appendix B of IEEE 754 widths); NaN is the canonical half 0xf97e00,
#     infinities are half 0xf97c00 / 0xf9fc00;
#   - only definite lengths are produced.
#
# Allocation contract: after Writer() returns, uint/nint/int (64-bit range)/int_le/float/f64le/
# bool/null/undefined/simple/tag/array_head/map_head/bytes (from a bytes-like object) and
# raw_from allocate nothing, on 32-bit ports too: an integer argument of any size is read by
# comparisons and struct.pack_into, never shifted or masked (that would make a new long int
# when it is 2**30 or more), and int_le/f64le take integers and floats as raw bytes. text()
# of a str creates one memoryview (MicroPython str exposes its UTF-8 bytes only through the
# buffer protocol); text_bytes() of UTF-8 bytes does not.
# Integers outside the 64-bit range become bignums (tags 2/3) and allocate: not a hot path.
#
# A write that does not fit raises BufferFull and writes nothing of that item's head
# (multi-part items such as a text string check the whole size first). Nothing is ever
# written at or past the end limit.
import struct

from otlink.core.compat import const

_MT_UINT = const(0x00)
_MT_NINT = const(0x20)
_MT_BYTES = const(0x40)
_MT_TEXT = const(0x60)
_MT_ARRAY = const(0x80)
_MT_MAP = const(0xA0)
_MT_TAG = const(0xC0)
_MT_SIMPLE = const(0xE0)

_FALSE = const(0xF4)
_TRUE = const(0xF5)
_NULL = const(0xF6)
_UNDEFINED = const(0xF7)
_F16 = const(0xF9)
_F32 = const(0xFA)
_F64 = const(0xFB)
_U64_MAX = const(0xFFFFFFFFFFFFFFFF)
_N64_MIN = const(-0x10000000000000000)


class BufferFull(Exception):
    """The item does not fit in the space left in the buffer."""


def _low_zero(s, i, nbits):
    # True when the low nbits bits of the little-endian bytes s[i..] are all zero.
    while nbits >= 8:
        if s[i]:
            return False
        i += 1
        nbits -= 8
    if nbits:
        return (s[i] & ((1 << nbits) - 1)) == 0
    return True


def head_size(v):
    """Bytes a head with argument v takes (v >= 0)."""
    if v < 24:
        return 1
    if v < 0x100:
        return 2
    if v < 0x10000:
        return 3
    if v < 0x100000000:
        return 5
    return 9


class Writer:
    """Encodes CBOR items into buf[offset:end]. `pos` is the next write position,
    `n` the number of bytes written since `offset`."""

    def __init__(self, buf, offset=0, end=None):
        self.buf = buf
        self.start = offset
        self.pos = offset
        self.end = len(buf) if end is None else end
        if self.end > len(buf) or offset > self.end or offset < 0:
            raise ValueError("cbor: bad buffer bounds")
        # Scratch for float(): the value is packed here, then read byte by byte.
        self._s = bytearray(8)

    @property
    def n(self):
        return self.pos - self.start

    def reset(self, offset=None):
        if offset is not None:
            if offset < 0 or offset > self.end:
                raise ValueError("cbor: bad offset")
            self.start = offset
        self.pos = self.start

    def room(self):
        return self.end - self.pos

    # -- heads (RFC 8949 §3: major type in the top 3 bits, argument in the shortest form)

    def head(self, mt, v):
        # 4- and 8-byte arguments go through struct.pack_into, which reads an int object of
        # any size without creating another: on 32-bit ports (small ints below 2**30) a shift
        # or mask of v would allocate.
        b = self.buf
        o = self.pos
        if v < 24:
            if o >= self.end:
                raise BufferFull()
            b[o] = mt | v
            self.pos = o + 1
        elif v < 0x100:
            if o + 2 > self.end:
                raise BufferFull()
            b[o] = mt | 24
            b[o + 1] = v
            self.pos = o + 2
        elif v < 0x10000:
            if o + 3 > self.end:
                raise BufferFull()
            b[o] = mt | 25
            b[o + 1] = v >> 8
            b[o + 2] = v & 0xFF
            self.pos = o + 3
        elif v < 0x100000000:
            if o + 5 > self.end:
                raise BufferFull()
            struct.pack_into(">BI", b, o, mt | 26, v)
            self.pos = o + 5
        else:
            if v > _U64_MAX:
                raise ValueError("cbor: argument over 64 bits")
            if o + 9 > self.end:
                raise BufferFull()
            struct.pack_into(">BQ", b, o, mt | 27, v)
            self.pos = o + 9

    def _nhead(self, v):
        # Major type 1 for -2**64 <= v <= -1; the argument is -1 - v. Wide forms pack v's
        # two's complement and invert it in place, so no -1 - v object is made.
        if v >= -0x10000:
            self.head(_MT_NINT, -1 - v)
            return
        b = self.buf
        o = self.pos
        if v >= -0x100000000:
            if o + 5 > self.end:
                raise BufferFull()
            struct.pack_into(">BI", b, o, _MT_NINT | 26, v)  # the low 32 bits of v
            k = 4
        else:
            if o + 9 > self.end:
                raise BufferFull()
            struct.pack_into(">BQ", b, o, _MT_NINT | 27, v)
            k = 8
        self.pos = o + 1 + k
        while k:
            b[o + k] ^= 0xFF
            k -= 1

    def _byte(self, x):
        o = self.pos
        if o >= self.end:
            raise BufferFull()
        self.buf[o] = x
        self.pos = o + 1

    # -- integers

    def uint(self, v):
        if v < 0:
            raise ValueError("cbor: uint < 0")
        self.head(_MT_UINT, v)

    def nint(self, v):
        """A negative integer v (-2**64 <= v <= -1): major type 1 carries -1 - v."""
        if v >= 0:
            raise ValueError("cbor: nint >= 0")
        if v < _N64_MIN:
            raise ValueError("cbor: argument over 64 bits")
        self._nhead(v)

    def int(self, v):
        # Comparisons only (no shifts or masks of v): see head().
        if v >= 0:
            if v > _U64_MAX:
                self._bignum(2, v)
            else:
                self.head(_MT_UINT, v)
        elif v < _N64_MIN:
            self._bignum(3, -1 - v)
        else:
            self._nhead(v)

    def int_le(self, src, off, nb):
        """The signed integer stored little endian (two's complement) in src[off:off+nb]
        (nb >= 1), shortest head; reads bytes only, so no int object is created for it
        (timestamps in ms and 32-bit counters are heap objects on 32-bit ports). Raises
        ValueError when it is outside the 64-bit CBOR range."""
        top = off + nb - 1
        x = 0xFF if src[top] & 0x80 else 0  # negative: the argument -1 - v is the inverse
        k = top
        while k >= off and src[k] == x:
            k -= 1
        sig = k - off + 1  # significant bytes of the argument
        mt = _MT_NINT if x else _MT_UINT
        if sig <= 3:
            a = 0
            while k >= off:
                a = (a << 8) | (src[k] ^ x)
                k -= 1
            self.head(mt, a)
            return
        if sig > 8:
            raise ValueError("cbor: integer over 64 bits")
        w = 4 if sig == 4 else 8
        o = self.pos
        if o + 1 + w > self.end:
            raise BufferFull()
        b = self.buf
        b[o] = mt | (26 if w == 4 else 27)
        i = 0
        while i < w:
            b[o + w - i] = src[off + i] ^ x
            i += 1
        self.pos = o + 1 + w

    def _bignum(self, tag, a):
        # RFC 8949 §3.4.3: tag 2 (or 3 for -1 - a) over the big-endian magnitude bytes.
        # Allocates (bytes of a long int); only for values outside 64 bits.
        nb = 0
        x = a
        while x:
            x >>= 8
            nb += 1
        need = 1 + head_size(nb) + nb
        if self.pos + need > self.end:
            raise BufferFull()
        self.head(_MT_TAG, tag)
        self.bytes(a.to_bytes(nb, "big"))

    # -- floats

    def float(self, x):
        s = self._s
        struct.pack_into("<d", s, 0, x)
        self._f64(s, 0)

    def f64le(self, src, off):
        """Encode the IEEE 754 double stored little endian at src[off:off+8], shortest exact
        form. Reads bytes only: no float object is created."""
        self._f64(src, off)

    def _f64(self, s, o):
        # s[o:o+8]: little-endian bytes of a double. Exponent 11 bits, fraction 52 bits.
        b7 = s[o + 7]
        b6 = s[o + 6]
        sign = b7 & 0x80
        e = ((b7 & 0x7F) << 4) | (b6 >> 4)
        if e == 0x7FF:  # inf / NaN: always half precision
            if (b6 & 0x0F) or not _low_zero(s, o, 48):
                self._f16(0x7E00)
            else:
                self._f16(0xFC00 if sign else 0x7C00)
            return
        if e == 0:
            if (b6 & 0x0F) == 0 and _low_zero(s, o, 48):
                self._f16(0x8000 if sign else 0)
                return
            self._double(s, o)  # a double subnormal is below every narrower format
            return
        e -= 1023
        # Top 23 fraction bits (all a single can hold): 4 from b6, s[5], s[4], 3 from s[3].
        top = ((b6 & 0x0F) << 19) | (s[o + 5] << 11) | (s[o + 4] << 3) | (s[o + 3] >> 5)
        hs = 0x8000 if sign else 0
        # half: normal exponents -14..15, subnormals down to 2**-24 (10 fraction bits)
        if -14 <= e <= 15:
            if _low_zero(s, o, 42):
                self._f16(hs | ((e + 15) << 10) | (top >> 13))
                return
        elif -24 <= e < -14:
            k = e + 24  # fraction bits kept by the subnormal
            if _low_zero(s, o, 52 - k):
                self._f16(hs | (1 << k) | (top >> (23 - k)))
                return
        # single: normal exponents -126..127, subnormals down to 2**-149 (23 fraction bits)
        if -126 <= e <= 127:
            if _low_zero(s, o, 29):
                self._f32(sign, e + 127, top)
                return
        elif -149 <= e < -126:
            k = e + 149
            if _low_zero(s, o, 52 - k):
                self._f32(sign, 0, (1 << k) | (top >> (23 - k)))
                return
        self._double(s, o)

    def _f16(self, bits):
        o = self.pos
        if o + 3 > self.end:
            raise BufferFull()
        b = self.buf
        b[o] = _F16
        b[o + 1] = bits >> 8
        b[o + 2] = bits & 0xFF
        self.pos = o + 3

    def _f32(self, sign, be, frac):
        # Written byte by byte: sign << 31 would be a long int on 32-bit ports.
        o = self.pos
        if o + 5 > self.end:
            raise BufferFull()
        b = self.buf
        b[o] = _F32
        b[o + 1] = sign | (be >> 1)
        b[o + 2] = ((be & 1) << 7) | (frac >> 16)
        b[o + 3] = (frac >> 8) & 0xFF
        b[o + 4] = frac & 0xFF
        self.pos = o + 5

    def _double(self, s, so):
        o = self.pos
        if o + 9 > self.end:
            raise BufferFull()
        b = self.buf
        b[o] = _F64
        i = 7
        while i >= 0:
            o += 1
            b[o] = s[so + i]
            i -= 1
        self.pos = o + 1

    # -- strings

    def bytes(self, data):
        n = len(data)
        if self.pos + head_size(n) + n > self.end:
            raise BufferFull()
        self.head(_MT_BYTES, n)
        o = self.pos
        self.buf[o:o + n] = data
        self.pos = o + n

    def text(self, s):
        """A text string from a str (one memoryview allocated) or from UTF-8 bytes."""
        if isinstance(s, str):
            try:
                s = memoryview(s)  # MicroPython: the str's own UTF-8 bytes, no copy
            except TypeError:
                s = s.encode()  # CPython (host tools, tests)
        self.text_bytes(s)

    def text_bytes(self, data):
        n = len(data)
        if self.pos + head_size(n) + n > self.end:
            raise BufferFull()
        self.head(_MT_TEXT, n)
        o = self.pos
        self.buf[o:o + n] = data
        self.pos = o + n

    def raw_from(self, mt, src, start, stop):
        """A byte (mt=0x40) or text (mt=0x60) string copied from src[start:stop] without
        slicing src (a slice would allocate)."""
        n = stop - start
        if self.pos + head_size(n) + n > self.end:
            raise BufferFull()
        self.head(mt, n)
        b = self.buf
        o = self.pos
        while start < stop:
            b[o] = src[start]
            o += 1
            start += 1
        self.pos = o

    # -- containers, tags, simple values

    def array_head(self, n):
        self.head(_MT_ARRAY, n)

    def map_head(self, n):
        self.head(_MT_MAP, n)

    def tag(self, t):
        self.head(_MT_TAG, t)

    def bool(self, v):
        self._byte(_TRUE if v else _FALSE)

    def null(self):
        self._byte(_NULL)

    def undefined(self):
        self._byte(_UNDEFINED)

    def simple(self, v):
        # RFC 8949 §3.3: 0..23 in the head byte; 32..255 in one extra byte. 24..31 in the
        # two-byte form are not well-formed.
        if 0 <= v < 24:
            self._byte(_MT_SIMPLE | v)
        elif 32 <= v < 256:
            if self.pos + 2 > self.end:
                raise BufferFull()
            self.buf[self.pos] = 0xF8
            self.buf[self.pos + 1] = v
            self.pos += 2
        else:
            raise ValueError("cbor: simple value out of range")

    # -- generic (birth, state, tests): allocation-tolerant, recursive

    def obj(self, x):
        """Encode a Python value: None, bool, int, float, str, bytes-like, list/tuple, dict."""
        if x is None:
            self.null()
        elif x is True or x is False:
            self.bool(x)
        elif isinstance(x, int):
            self.int(x)
        elif isinstance(x, float):
            self.float(x)
        elif isinstance(x, str):
            self.text(x)
        elif isinstance(x, (bytes, bytearray, memoryview)):
            self.bytes(x)
        elif isinstance(x, (list, tuple)):
            self.array_head(len(x))
            for y in x:
                self.obj(y)
        elif isinstance(x, dict):
            self.map_head(len(x))
            for k in x:
                self.obj(k)
                self.obj(x[k])
        else:
            raise TypeError("cbor: cannot encode %s" % type(x).__name__)
