# Record codec of the queue's group bodies (docs/queue.md, "On-flash format", Group): the
# masked encoding of one reading record against the previous record of its group, and the
# decoding back. These loops run once per byte of every reading appended and read back, so
# they are the queue's hot path.
#
# Two implementations with the same results, byte for byte (tests/firmware/test_queue_codec.py):
# - native: the same loops as @micropython.viper functions, compiled when this module is
#   imported by the runtime compiler (exec), which emits machine code for the CPU it runs on
#   (x64 on the Unix port, xtensawin on the ESP32, armv6m on the Pico W). The source is a
#   string, not decorated functions in this file, because mpy-cross refuses viper code unless
#   given -march, and the firmware's .mpy files are built for any architecture. Measured on
#   the Unix port (.mpy, 128K heap): append+commit 6.3 -> ~1 us/reading, read-back ~4 ->
#   ~1.5 us/reading (docs/queue.md "Measured").
# - bytecode: plain Python, used when the port has no native emitter or no runtime compiler
#   (or the compile fails, e.g. out of memory), and on CPython.
#
# Contracts (both versions): enc(g, o, rec, prev, n) writes the encoded record at g[o..] and
# returns the offset after it; the caller guarantees n <= len(rec), n <= MAX_REC and
# len(g) - o >= MAX_ENC; prev (CMP bytes) becomes the record's first CMP bytes. Does not
# allocate. decn(b, p, end, rec, prev, cnt) decodes cnt records from b[p..end) into rec
# (the last one stays there) and prev; returns the offset after them, or -1 when the bytes
# are not a well-formed encoding (never reads at or past end). zero(prev) clears prev.
from otlink.core.queue_fmt import MASKED, CMP, MAX_REC


def enc(g, o, rec, prev, n):
    m = n if n < CMP else CMP
    mask = 0
    diff = 0
    for k in range(m):
        if rec[k] != prev[k]:
            mask |= 1 << k
            diff += 1
    if diff + 3 < m:
        g[o] = MASKED | n
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


def decn(b, p, end, rec, prev, cnt):
    for _ in range(cnt):
        if p >= end:
            return -1
        ln = b[p]
        n = ln & 0x7F
        if n == 0 or n > MAX_REC:
            return -1
        p += 1
        m = n if n < CMP else CMP
        if ln & MASKED:
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
                rec[k] = prev[k] = b[p + k]
            p += m
        if p + n - m > end:
            return -1
        for k in range(m, n):
            rec[k] = b[p]
            p += 1
    return p


def zero(prev):
    for k in range(CMP):
        prev[k] = 0


NATIVE = False
py_enc, py_decn, py_zero = enc, decn, zero  # kept for the test comparing both versions

# The same three functions for the native emitter (keep in step with the ones above; the
# codec test compares them on random records). 20 = CMP, 76 = MAX_REC, 0x80 = MASKED.
_SRC = """
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


@micropython.viper
def zero(prev: ptr8):
    for k in range(20):
        prev[k] = 0
"""


def _native():
    ns = {}
    exec(_SRC, ns)
    return ns["enc"], ns["decn"], ns["zero"]


try:
    enc, decn, zero = _native()
    NATIVE = True
except Exception:  # noqa: BLE001 - no native emitter / no compiler / CPython: bytecode above
    pass
_SRC = None  # the source string is not needed once compiled
