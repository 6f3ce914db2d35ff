# The reading record: what a source produces and the queue stores, byte for byte.
# Fixed layout so sources pack it into one preallocated buffer (no allocation per reading,
# on 32-bit ports too: t and the value are the caller's objects, written by pack_into;
# tests/firmware/test_payload.py checks it under heap_lock):
#
#   off size field
#   0   2    point id (u16, little endian) - the integer id from the node config
#   2   1    kind: KIND_INT (value i64), KIND_FLOAT (value f64), KIND_ERR (value = error code),
#            KIND_TEXT (value = text bytes, length = record length - HEADER)
#   3   1    flags: FLAG_UNTIMED (t is uptime ms: the clock was not set yet)
#   4   8    t: ms since the Unix epoch (i64), or uptime ms when FLAG_UNTIMED
#   12  8    value (i64 / f64 / error code as i64), or 0..MAX_TEXT text bytes
#
# Sequence number and boot counter are not in the record: the queue assigns and stores them.
# This module is the layout's one owner: the queue (core/queue/fmt.py), the publisher and
# the sources take the sizes and offsets from here. core/payload.py keeps const() copies
# for its hot path (tests/firmware/test_payload.py checks they match).
import struct

from otlink.core.compat import const

KIND_INT = const(0)
KIND_FLOAT = const(1)
KIND_ERR = const(2)
KIND_TEXT = const(3)

FLAG_UNTIMED = const(1)

OFF_KIND = const(2)  # field offsets (the table above)
OFF_FLAGS = const(3)
OFF_T = const(4)
HEADER = const(12)  # and the offset of the value
SIZE = const(20)  # numeric and error records
MAX_TEXT = const(64)
MAX_SIZE = const(76)  # HEADER + MAX_TEXT


def pack_int(buf, pid, t, v, flags=0):
    struct.pack_into("<HBBqq", buf, 0, pid, KIND_INT, flags, t, v)
    return SIZE


def pack_float(buf, pid, t, v, flags=0):
    struct.pack_into("<HBBqd", buf, 0, pid, KIND_FLOAT, flags, t, v)
    return SIZE


def pack_err(buf, pid, t, code, flags=0):
    struct.pack_into("<HBBqq", buf, 0, pid, KIND_ERR, flags, t, code)
    return SIZE


def pack_text(buf, pid, t, text, flags=0):
    n = len(text)
    if n > MAX_TEXT:
        n = MAX_TEXT
    struct.pack_into("<HBBq", buf, 0, pid, KIND_TEXT, flags, t)
    if n == len(text):
        buf[HEADER:HEADER + n] = text  # a slice store allocates nothing
    else:
        for i in range(n):  # text[:n] would be a new object
            buf[HEADER + i] = text[i]
    return HEADER + n


def unpack(rec, n=None):
    """(pid, kind, flags, t, value) of one record. Allocates: for consumers, not hot paths."""
    if n is None:
        n = len(rec)
    if n < HEADER:
        raise ValueError("reading record too short")
    pid, kind, flags, t = struct.unpack_from("<HBBq", rec, 0)
    if kind == KIND_TEXT:
        return pid, kind, flags, t, bytes(rec[HEADER:n])
    if n != SIZE:
        raise ValueError("reading record length")
    if kind == KIND_FLOAT:
        v = struct.unpack_from("<d", rec, HEADER)[0]
    elif kind == KIND_INT or kind == KIND_ERR:
        v = struct.unpack_from("<q", rec, HEADER)[0]
    else:
        raise ValueError("reading record kind")
    return pid, kind, flags, t, v
