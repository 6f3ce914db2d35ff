# On-flash format constants and byte helpers of the store-and-forward queue (docs/queue.md,
# "On-flash format").
#
# Sequence numbers, sector sequences and boot counters are u32 serial numbers (RFC 1982).
# On a 32-bit port an int >= 2**30 is a heap object, so the helpers here take the plain
# difference first and fold it into range only when it leaves it: with operands below 2**30
# (the first ~1.1e9 readings of a node) they create no heap int. Masking with 0xFFFFFFFF
# would, on every call: the mask itself is a heap int there.
from otlink.core.compat import const
from otlink.core.reading import MAX_SIZE, SIZE  # the reading record's layout is reading.py's

MAGIC = 0x3151544F  # "OTQ1" little endian: sector header magic
M32 = 0xFFFFFFFF
_MOD = 0x100000000

SHDR = const(32)  # sector header: magic, sseq, erases, boot, next_seq, ack, drops, crc
GHDR = const(16)  # group header: type, count, body_len u16, first_seq, boot delta u16,
# ack delta u16, crc (a 'G' group of earlier images: boot u32 in place of the deltas)
DMAX = const(0xFFFF)  # largest boot or ack delta
ACK_SIZE = const(8)  # type, crc24, seq
BOOT_SIZE = const(12)  # type, 0, 0, 0, boot, crc
T_GROUP = const(0x67)  # 'g': group header with boot and ack deltas (written)
T_GROUP1 = const(0x47)  # 'G': group header with the whole boot counter (read only)
T_ACK = const(0x41)  # 'A'
T_BOOT = const(0x42)  # 'B'
UNIFORM = const(0x8000)  # group body_len bit 15: the body is count records of equal length,
# raw (no length bytes): body_len / count bytes each
MASKED = const(0x80)  # record length byte: bit 7 = bytes equal to the previous record omitted
CMP = SIZE  # leading bytes of a record eligible for masking (the numeric record size)
MAX_REC = MAX_SIZE  # largest record
MAX_ENC = MAX_SIZE + 1  # worst-case encoded record: length byte + raw bytes

POLICIES = ("drop_oldest", "drop_newest")


def sdiff(a, b):
    """a - b in 32-bit serial arithmetic (RFC 1982): negative when a is older than b.

    a and b are u32. No heap int when both are below 2**30. The bounds are literals: the
    compiler keeps them as constants, where `-_HALF` would build a heap int at every call."""
    d = a - b
    if d > 0x7FFFFFFF:
        return d - 0x100000000
    if d < -0x80000000:
        return d + 0x100000000
    return d


def wrap(x):
    """x (a u32 plus or minus less than 2**32) folded back into 0..2**32-1."""
    if x < 0:
        return x + _MOD
    if x > M32:
        return x - _MOD
    return x


def u16(b, o):
    return b[o] | (b[o + 1] << 8)


def u32(b, o):
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)


def put32(b, o, v):
    b[o] = v & 0xFF
    b[o + 1] = (v >> 8) & 0xFF
    b[o + 2] = (v >> 16) & 0xFF
    b[o + 3] = (v >> 24) & 0xFF
