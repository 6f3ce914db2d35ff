# Source of the analytics kernels: @micropython.viper functions compiled at import by
# analytics/kern.py (mpy-cross refuses viper without -march, as for core/queue/codec_src.py),
# then dropped. They run once per reading of a point that has a window, an alarm, a machine
# state or a counter, and allocate nothing on any build: viper ints are machine words, and
# every result bigger than a small int lives in an array the caller owns.
#
# Why integers: a MicroPython float is a heap object on every port (16 bytes on the 32-bit
# boards), so one float operation per reading would be one allocation per reading. Sums are
# kept exactly instead, in limbs of 15 bits held in int32 words (a 15 x 15-bit product and
# a carry fit a signed 32-bit word), and turned into floats once per window.
#
# Record layout: core/reading.py (value at 12..20, little endian; t at 4..12).
#
# okey(rec, kind, key): key[0:8] = an order key of the record's value: big endian, sign
#   folded, so comparing two keys byte by byte (unsigned) compares the values. int64: the
#   sign bit flipped. float64: positive, the sign bit set; negative, every bit inverted.
# kcmp(a, ao, b, bo): -1, 0, 1 as a[ao:ao+8] <, ==, > b[bo:bo+8] (unsigned, byte by byte).
# tge(rec, b, bo): 1 when the record's time (u64 LE at 4) >= b[bo:bo+8] (u64 LE), else 0.
# mag(rec, kind, fb, sb, st): |value| * 2**fb, truncated, into st[1:6] (5 limbs, 75 bits);
#   st[6] = 1 when the value is negative. kind 0 (int): fb is 0; kind 1 (float64): a NaN
#   or infinity, or a magnitude of 2**75 or more, returns 0 (not accumulated). Returns 1.
#   sb: 8 bytes of scratch (the two's complement magnitude of an int).
# acc(st): accumulate the magnitude mag() left in st: n += 1 (st[0]); S+ (st[8:17]) or S-
#   (st[17:26]) += V; Q (st[26:39]) += V * V. Limbs normalised below 2**15.
# nz(rec): 1 when the value's 8 bytes are not all zero (bool, bit and counter inputs).
# d32(rec, prev, bits): (value - previous value) mod 2**bits of the low 32 bits (bits
#   16 or 32), the record's value kept in prev[0:4]. Returns the difference when it is
#   below 2**29, else -1 (a jump: the register was reset or replaced).
SRC = """
import micropython


@micropython.viper
def okey(rec: ptr8, kind: int, key: ptr8):
    neg = rec[19] & 0x80
    for i in range(8):
        b = rec[19 - i]
        if kind == 1 and neg:
            b = b ^ 0xFF
        elif i == 0:
            b = b ^ 0x80
        key[i] = b


@micropython.viper
def kcmp(a: ptr8, ao: int, b: ptr8, bo: int) -> int:
    for i in range(8):
        x = a[ao + i]
        y = b[bo + i]
        if x < y:
            return -1
        if x > y:
            return 1
    return 0


@micropython.viper
def tge(rec: ptr8, b: ptr8, bo: int) -> int:
    i = 7
    while i >= 0:
        x = rec[4 + i]
        y = b[bo + i]
        if x > y:
            return 1
        if x < y:
            return 0
        i -= 1
    return 1


@micropython.viper
def nz(rec: ptr8) -> int:
    for i in range(12, 20):
        if rec[i]:
            return 1
    return 0


@micropython.viper
def d32(rec: ptr8, prev: ptr8, bits: int) -> int:
    # the low 32 bits as two 16-bit halves: a machine word may be 32 bits
    lo = (rec[12] | (rec[13] << 8)) - (prev[0] | (prev[1] << 8))
    hi = (rec[14] | (rec[15] << 8)) - (prev[2] | (prev[3] << 8))
    for i in range(4):
        prev[i] = rec[12 + i]
    if lo < 0:
        lo += 0x10000
        hi -= 1
    if bits == 16:
        return lo
    hi = hi & 0xFFFF
    if hi >= 0x2000:
        return -1
    return (hi << 16) | lo
"""

SRC2 = """
import micropython


@micropython.viper
def mag(rec: ptr8, kind: int, fb: int, sb: ptr8, st: ptr32) -> int:
    for i in range(1, 7):
        st[i] = 0
    neg = (rec[19] >> 7) & 1
    st[6] = neg
    if kind == 0:
        # magnitude of the two's complement int64, then its 64 bits from bit 0
        c = 1
        for i in range(8):
            b = rec[12 + i]
            if neg:
                b = (b ^ 0xFF) + c
                c = b >> 8
                b = b & 0xFF
            sb[i] = b
        nb = 64
        sh = 0
    else:
        e = ((rec[19] & 0x7F) << 4) | (rec[18] >> 4)
        if e == 0x7FF:
            return 0
        if e == 0:
            return 1  # zero or subnormal: below any fraction kept
        for i in range(6):
            sb[i] = rec[12 + i]
        sb[6] = (rec[18] & 0x0F) | 0x10  # the implicit leading 1 at bit 52
        sb[7] = 0
        nb = 53
        sh = e - 1075 + fb  # value = mantissa * 2**(e - 1075)
    # byte by byte: byte i holds bits 8i.. of the magnitude, which land at bit 8i + sh
    for i in range((nb + 7) >> 3):
        b = sb[i]
        if b == 0:
            continue
        q = 8 * i + sh
        if q < 0:
            if q <= -8:
                continue
            b = b >> (0 - q)  # bits below 2**-fb are dropped (truncation)
            q = 0
            if b == 0:
                continue
        k = q // 15
        v = b << (q - k * 15)  # below 2**22: at most two limbs
        if k >= 5 or (k == 4 and v >> 15):
            return 0
        st[1 + k] = st[1 + k] | (v & 0x7FFF)
        if v >> 15:
            st[2 + k] = st[2 + k] | (v >> 15)
    return 1


@micropython.viper
def acc(st: ptr32):
    st[0] = st[0] + 1
    base = 17 if st[6] else 8
    c = 0
    for i in range(9):
        c += st[base + i]
        if i < 5:
            c += st[1 + i]
        st[base + i] = c & 0x7FFF
        c = c >> 15
    for i in range(5):
        a = st[1 + i]
        if a:
            for j in range(5):
                c = a * st[1 + j]
                k = 26 + i + j
                while c:
                    c += st[k]
                    st[k] = c & 0x7FFF
                    c = c >> 15
                    k += 1
"""
