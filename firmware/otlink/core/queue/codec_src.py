# Source of the native (viper) queue record codec, compiled by core/queue/codec.py at import
# and then dropped from memory (the string is ~2 KB of heap on ports that load .mpy into RAM).
# Same loops and results as core/queue/codec_py.py: keep the two in step (the codec test
# compares them). 20 = CMP (reading.SIZE), 76 = MAX_REC (reading.MAX_SIZE), 0x80 = MASKED
# (core/queue/fmt.py).
# Three strings compiled one after the other: smaller parse trees lower the compile's peak
# (measured: the native compile then fits in a 4 KiB smaller heap than as one string).
SRC = """
import micropython


@micropython.viper
def enc(g: ptr8, o: int, rec: ptr8, prev: ptr8, n: int) -> int:
    m = n if n < 20 else 20
    mask = 0
    diff = 0
    for k in range(m):
        if rec[k] != prev[k]:
            mask |= 1 << k
            diff += 1
    if diff + 3 < m:
        g[o] = 0x80 | n
        g[o + 1] = mask & 0xFF
        g[o + 2] = (mask >> 8) & 0xFF
        g[o + 3] = mask >> 16
        o += 4
        for k in range(m):
            if mask & (1 << k):
                g[o] = rec[k]
                o += 1
        for k in range(m, n):
            g[o] = rec[k]
            o += 1
    else:
        g[o] = n
        o += 1
        for k in range(n):
            g[o + k] = rec[k]
        o += n
    for k in range(m):
        prev[k] = rec[k]
    return o

"""

SRC2 = """
import micropython


@micropython.viper
def decn(b: ptr8, p: int, end: int, rec: ptr8, prev: ptr8, cnt: int) -> int:
    for _ in range(cnt):
        if p >= end:
            return -1
        ln = b[p]
        n = ln & 0x7F
        if n == 0 or n > 76:
            return -1
        p += 1
        m = n if n < 20 else 20
        if ln & 0x80:
            if p + 3 > end:
                return -1
            mask = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16)
            p += 3
            for k in range(m):
                if mask & (1 << k):
                    if p >= end:
                        return -1
                    prev[k] = b[p]
                    p += 1
                rec[k] = prev[k]
        else:
            if p + m > end:
                return -1
            for k in range(m):
                c = b[p + k]
                prev[k] = c
                rec[k] = c
            p += m
        if p + n - m > end:
            return -1
        for k in range(m, n):
            rec[k] = b[p]
            p += 1
    return p

"""

SRC3 = """
import micropython


@micropython.viper
def squeeze(g: ptr8, o: int, cnt: int, n: int):
    d = o
    for _ in range(cnt):
        o += 1
        for k in range(n):
            g[d + k] = g[o + k]
        d += n
        o += n


@micropython.viper
def copy(b: ptr8, p: int, rec: ptr8, n: int):
    for k in range(n):
        rec[k] = b[p + k]


@micropython.viper
def zero(prev: ptr8):
    for k in range(20):
        prev[k] = 0
"""
