# Modbus points: decoding of every type / word order / byte order, and
# report-on-change with deadband. Pure core: no machine imports; runs on CPython too.
#
# A point's reading keeps the raw decoded value (scale/offset are applied by the consumer from
# the birth point table); the deadband is given in scaled units and compared here as the
# equivalent raw threshold deadband / |scale| (offset cancels in a difference).
#
# Allocation contract: pack_reading() writes one record into the caller's buffer and allocates
# nothing for 16/32-bit integers, bits, float32/float64 without deadband, strings, and
# int64/uint64 whose value fits a small int; float points with a nonzero deadband box two
# floats per comparison (see docs/modbus.md).
import struct

from otlink.core import modbus
from otlink.core.compat import const
from otlink.core.reading import (FLAG_UNTIMED, HEADER, KIND_ERR, KIND_FLOAT, KIND_INT,
                                 KIND_TEXT, MAX_TEXT, SIZE)

T_INT16 = const(0)
T_UINT16 = const(1)
T_INT32 = const(2)
T_UINT32 = const(3)
T_INT64 = const(4)
T_UINT64 = const(5)
T_FLOAT32 = const(6)
T_FLOAT64 = const(7)
T_STRING = const(8)
T_BIT = const(9)  # one bit of a holding/input register
T_BOOL = const(10)  # a coil or discrete input

TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
         "string", "bit", "bool")
_WORDS = (1, 1, 2, 2, 4, 4, 2, 4, 0, 1, 1)
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")  # bit 0: word swap, bit 1: byte swap
_ORDER_FLAGS = (0, 1, 2, 3)
TABLES = ("coil", "discrete", "holding", "input")
_FIELDS = ("id", "name", "slave", "table", "address", "type", "order", "bit", "length",
           "scale", "offset", "unit", "group", "deadband")
_MAX_STRING_REGS = const(32)  # MAX_TEXT bytes of the reading record

DEFAULT_GROUP = "default"
DEFAULT_INTERVAL_MS = const(1000)


class Point:
    """One configured point plus its report-on-change state.

    RAM matters (60 points must fit next to WiFi + MQTT on an ESP32): an instance keeps 15
    attributes - what decoding needs - and the cold config (name, table, scale, offset, unit,
    deadband) in one tuple behind properties. err is -1 until something was reported, 0 after
    a value, else the error code last reported; last/last_lo hold the last reported raw value
    (for strings: last is the text length, the text is in self.text)."""

    def __init__(self, pid, name, slave, table, address, typ, order, bit, words, scale,
                 offset, unit, group, deadband):
        self.id = pid
        self.slave = slave
        self.fc = modbus.read_fc(table)
        self.address = address
        self.type = typ
        self.order = order  # index into ORDERS: bit 0 word swap, bit 1 byte swap
        self.bit = bit
        self.words = words  # registers (or 1 bit, for coil/discrete)
        self.group = group
        # No deadband configured: report every poll (a consumer sees the real interval).
        # A deadband (0 included): report on change beyond it only.
        self.onchange = deadband is not None
        if deadband is None:
            deadband = 0
        if typ == T_FLOAT32 or typ == T_FLOAT64:
            self.db_raw = deadband / abs(scale)  # float threshold
        else:
            # |d_raw| * |scale| >= deadband  <=>  |d_raw| >= ceil(deadband / |scale|)
            q = deadband / abs(scale)
            n = int(q)
            self.db_raw = n if n == q else n + 1
        self.text = bytearray(2 * words) if typ == T_STRING else None
        self.meta = (name, table, scale, offset, unit, deadband)
        self.reset()

    def reset(self):
        """Forget the last report: the next value is always reported."""
        self.err = -1
        self.last = 0
        self.last_lo = 0

    @property
    def name(self):
        return self.meta[0]

    @property
    def table(self):
        return self.meta[1]

    @property
    def scale(self):
        return self.meta[2]

    @property
    def offset(self):
        return self.meta[3]

    @property
    def unit(self):
        return self.meta[4]

    @property
    def deadband(self):
        return self.meta[5]

    def type_name(self):
        return TYPES[self.type]

    def order_name(self):
        return ORDERS[self.order]

    def span(self):
        """Registers (or bits) this point occupies from self.address."""
        return self.words


def _u32(data, off, first, wswap, bswap, nwords):
    # Value bytes first..first+3 (big-endian weight) from the registers at data[off:]. Word w of
    # the value sits in register (nwords-1-w) when words are swapped; bytes within a register
    # are swapped when bswap.
    v = 0
    for i in range(first, first + 4):
        w = i >> 1
        b = i & 1
        if wswap:
            w = nwords - 1 - w
        if bswap:
            b = 1 - b
        v = (v << 8) | data[off + 2 * w + b]
    return v


def _u16(data, off, bswap):
    if bswap:
        return data[off] | (data[off + 1] << 8)
    return (data[off] << 8) | data[off + 1]


def _f32_to_f64(bits, out):
    """IEEE 754 binary32 bit pattern -> out[0], out[1] = hi, lo 32-bit words of the equal
    binary64, by integer arithmetic so no float object (nor tuple) is allocated."""
    s = bits >> 31
    e = (bits >> 23) & 0xFF
    m = bits & 0x7FFFFF
    if e == 0xFF:  # inf / nan keep their payload
        e64 = 0x7FF
    elif e == 0:
        if m == 0:
            out[0] = s << 31
            out[1] = 0
            return
        e = 1  # subnormal: normalise, binary64 has the range
        while not m & 0x800000:
            m <<= 1
            e -= 1
        m &= 0x7FFFFF
        e64 = e - 127 + 1023
    else:
        e64 = e - 127 + 1023
    # 23-bit mantissa into the top of 52 bits: 20 go to hi, 3 to the top of lo.
    out[0] = (s << 31) | (e64 << 20) | (m >> 3)
    out[1] = (m & 7) << 29


_W = [0, 0]


def _float_of(hi, lo):
    # Allocates (boxes a float): only for deadband comparison of float points.
    struct.pack_into("<II", _SCRATCH, 0, lo, hi)
    return struct.unpack_from("<d", _SCRATCH, 0)[0]


_SCRATCH = bytearray(8)


def pack_reading(p, data, off, rec, t, flags):
    """Decode point p from a response and pack its reading into rec.

    data[off:] holds p's first register (big-endian 16-bit words as on the wire); for
    coil/discrete points off is the bit index into data[3:]. Returns the record length, or 0
    when the value is within the deadband of the last report (nothing to send)."""
    typ = p.type
    kind = KIND_INT
    wswap = p.order & 1
    bswap = p.order >> 1
    if typ <= T_UINT32 or typ == T_BIT or typ == T_BOOL:
        if typ == T_BOOL:
            v = (data[3 + (off >> 3)] >> (off & 7)) & 1
        elif typ <= T_UINT16 or typ == T_BIT:
            v = _u16(data, off, bswap)
            if typ == T_BIT:
                v = (v >> p.bit) & 1
            elif typ == T_INT16 and v & 0x8000:
                v -= 0x10000
        else:
            v = _u32(data, off, 0, wswap, bswap, 2)
            if typ == T_INT32 and v & 0x80000000:
                v -= 0x100000000
        if p.err == 0 and p.onchange:
            d = v - p.last
            if d < 0:
                d = -d
            if d == 0 or d < p.db_raw:
                return 0
        p.err = 0
        p.last = v
        struct.pack_into("<HBBqq", rec, 0, p.id, KIND_INT, flags, t, v)
        return SIZE
    if typ == T_STRING:
        # Decode straight into the record, then compare with our own copy of the last report.
        n = 0
        lim = 2 * p.words
        if lim > MAX_TEXT:
            lim = MAX_TEXT
        while n < lim:
            c = data[off + (n ^ 1 if bswap else n)]
            if c == 0:  # NUL-padded fixed-width field
                break
            rec[HEADER + n] = c
            n += 1
        tx = p.text
        if p.err == 0 and p.onchange and n == p.last:
            i = 0
            while i < n and tx[i] == rec[HEADER + i]:
                i += 1
            if i == n:
                return 0
        for i in range(n):
            tx[i] = rec[HEADER + i]
        p.last = n
        p.err = 0
        struct.pack_into("<HBBq", rec, 0, p.id, KIND_TEXT, flags, t)
        return HEADER + n
    # 64-bit integers and floats: work on two 32-bit halves, no big ints.
    if typ == T_FLOAT32:
        _f32_to_f64(_u32(data, off, 0, wswap, bswap, 2), _W)
        hi = _W[0]
        lo = _W[1]
        kind = KIND_FLOAT
    else:
        hi = _u32(data, off, 0, wswap, bswap, 4)
        lo = _u32(data, off, 4, wswap, bswap, 4)
        if typ == T_FLOAT64:
            kind = KIND_FLOAT
        elif typ == T_UINT64 and hi & 0x80000000:
            # Beyond int64: carried as the nearest float64 (documented; allocates).
            v = float(hi) * 4294967296.0 + lo
            struct.pack_into("<d", _SCRATCH, 0, v)
            lo, hi = struct.unpack_from("<II", _SCRATCH, 0)
            kind = KIND_FLOAT
    if p.err == 0 and p.onchange:
        if hi == p.last and lo == p.last_lo:
            return 0
        if p.db_raw:
            if kind == KIND_FLOAT:
                d = _float_of(hi, lo) - _float_of(p.last, p.last_lo)
            else:
                d = _i64(hi, lo) - _i64(p.last, p.last_lo)
            if d < 0:
                d = -d
            if d < p.db_raw:
                return 0
    p.err = 0
    p.last = hi
    p.last_lo = lo
    struct.pack_into("<HBBqII", rec, 0, p.id, kind, flags, t, lo, hi)
    return SIZE


def _i64(hi, lo):
    if hi & 0x80000000:
        hi -= 0x100000000
    return (hi << 32) | lo


def pack_error(p, code, rec, t, flags):
    """Pack an error reading for p, or return 0 when the same error was already reported."""
    if p.err == code:
        return 0
    p.err = code
    struct.pack_into("<HBBqq", rec, 0, p.id, KIND_ERR, flags, t, code)
    return SIZE


def record_flags(clock):
    return 0 if clock.is_set() else FLAG_UNTIMED
