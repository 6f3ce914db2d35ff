# Modbus points: decoding of every type / word order / byte order, and
# report-on-change with deadband. Pure core: no machine imports; runs on CPython too.
#
# A point's reading keeps the raw decoded value (scale/offset are applied by the consumer from
# the birth point table); the deadband is given in scaled units and compared here as the
# equivalent raw threshold deadband / |scale| (offset cancels in a difference).
#
# 32-bit boards (ESP32, RP2040): small ints have 31 bits and floats are boxed, so an int of
# 2**30 or more, or any float, is a heap object. Decoding therefore never builds a value wider
# than 16 bits: register words are moved as 16-bit halves, 64-bit values and floats as raw
# bytes straight into the record (float32 is widened to binary64 by integer arithmetic on its
# fields), and deadband differences are taken limb by limb.
#
# Allocation contract: pack_reading() writes one record into the caller's buffer and allocates
# nothing, for every type, with or without a deadband, with two exceptions: a float point
# with a nonzero deadband boxes its floats for the comparison, and an integer deadband of
# 2**29 raw counts or more compares exact big ints (test_modbus_points measures both).
import struct

from otlink.core import modbus
from otlink.core.compat import const
from otlink.core.reading import (FLAG_UNTIMED, HEADER, KIND_ERR, KIND_FLOAT, KIND_INT,
                                 KIND_TEXT, MAX_TEXT, OFF_T, SIZE)

try:
    from array import array
except ImportError:  # pragma: no cover
    array = None

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
WORDS = (1, 1, 2, 2, 4, 4, 2, 4, 0, 1, 1)  # registers per type (string: its length)
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")  # bit 0: word swap, bit 1: byte swap
_ORDER_FLAGS = (0, 1, 2, 3)
TABLES = ("coil", "discrete", "holding", "input")
# Which fields a point has, their defaults and ranges: the config schema (core/config.py).

_NEAR = const(8191)  # |high-half difference| up to which d = dh * 65536 + dl stays < 2**29
_FAR = const(536805377)  # 8192 * 65536 - 65535: the least |d| when |dh| > _NEAR
_SMALL = const(0x20000000)  # 2**29: differences below it are computed as small ints


class Point:
    """One configured point plus its report-on-change state.

    RAM matters (60 points must fit next to WiFi + MQTT on an ESP32): an instance keeps at
    most 16 attributes - what decoding needs, 12 for a point without deadband, bit or byte
    buffer (class defaults) - and the cold config (name, table, scale, offset, unit,
    deadband) in one tuple behind properties. err is -1 until something was reported, 0 after
    a value, else the error code last reported. The last reported raw value: 16/32-bit types
    and float32 keep it as high/low 16-bit halves in last/last_lo (small ints on any board);
    64-bit types keep its 8 bytes (little endian) in self.text; strings keep the text in
    self.text and its length in last."""

    # Defaults an instance does not store unless it differs: MicroPython keeps instance
    # attributes in a hash table of 8, 10, 12 or 17 slots (8 bytes each on 32-bit), so 12
    # stored attributes instead of 16 save 48 bytes per point (a 60-point map: 12.3 -> 9.5 KB).
    bit = 0
    onchange = False  # no deadband configured: report every poll (the real interval)
    db_raw = 0
    text = None

    def __init__(self, pid, name, slave, table, address, typ, order, bit, words, scale,
                 offset, unit, group, deadband):
        self.id = pid
        self.slave = slave
        self.fc = modbus.read_fc(table)
        self.address = address
        self.type = typ
        self.order = order  # index into ORDERS: bit 0 word swap, bit 1 byte swap
        if bit:
            self.bit = bit
        self.words = words  # registers (or 1 bit, for coil/discrete)
        self.group = group
        # A deadband (0 included): report on change beyond it only.
        if deadband is not None:
            self.onchange = True
            if typ == T_FLOAT32 or typ == T_FLOAT64:
                self.db_raw = deadband / abs(scale)  # float threshold
            else:
                # |d_raw| * |scale| >= deadband  <=>  |d_raw| >= ceil(deadband / |scale|)
                q = deadband / abs(scale)
                n = int(q)
                self.db_raw = n if n == q else n + 1
        else:
            deadband = 0
        if typ == T_STRING:
            self.text = bytearray(2 * words)
        elif typ == T_INT64 or typ == T_UINT64 or typ == T_FLOAT64:
            self.text = bytearray(8)
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


def _u16(data, off, bswap):
    if bswap:
        return data[off] | (data[off + 1] << 8)
    return (data[off] << 8) | data[off + 1]


def order_word(data, off, w, nwords, order):
    """Value word w (0 = most significant) of an nwords value whose registers start at
    data[off], as an unsigned 16-bit int: word swap reverses the registers, byte swap the two
    bytes inside each. The firmware's one word-order rule (ORDERS): both swaps are their own
    inverse, so given big-endian value bytes it returns register w to write (commands.py)."""
    if order & 1:
        w = nwords - 1 - w
    return _u16(data, off + 2 * w, order >> 1)


_RAW = bytearray(8)  # the 8 value bytes of a 64-bit point, little endian
_D = [0, 0, 0, 0, 0]  # 16-bit limbs of a difference, least significant first
_FS = array("f", (0.0, 0.0)) if array else None  # float deadband scratch (boxes on read)
_DS = array("d", (0.0, 0.0)) if array else None


def _head(rec, pid, kind, flags, t):
    # t None: the caller stamped rec[OFF_T:HEADER] already (Clock.stamp_into: no int >= 2**30)
    struct.pack_into("<HBB", rec, 0, pid, kind, flags)
    if t is not None:
        struct.pack_into("<q", rec, OFF_T, t)


def _beyond32(dh, dl, db):
    """|dh * 65536 + dl| >= db, for a difference given as its high part (|dh| < 2**17) and low
    part (|dl| < 2**16); makes no int >= 2**30 unless db is itself that large."""
    if -_NEAR <= dh <= _NEAR:
        d = dh * 65536 + dl
        if d < 0:
            d = -d
        return d >= db
    if db <= _FAR:
        return True
    d = dh * 65536 + dl  # a deadband of 2**29 raw counts or more: exact, allocates
    if d < 0:
        d = -d
    return d >= db


def _beyond64(a, b, signed, db):
    """|a - b| >= db for two 8-byte little-endian integers (int64 when signed, else uint64),
    computed on 16-bit limbs with an 80-bit two's complement result; no int >= 2**30 unless
    the difference and db are both >= 2**29."""
    d = _D
    br = 0
    for k in range(4):
        x = (a[2 * k] | (a[2 * k + 1] << 8)) - (b[2 * k] | (b[2 * k + 1] << 8)) - br
        br = 0
        if x < 0:
            x += 65536
            br = 1
        d[k] = x
    x = (0xFFFF if signed and a[7] & 0x80 else 0) - (0xFFFF if signed and b[7] & 0x80 else 0)
    d[4] = (x - br) & 0xFFFF
    if d[4] & 0x8000:  # negative: negate in place
        c = 1
        for k in range(5):
            x = (d[k] ^ 0xFFFF) + c
            d[k] = x & 0xFFFF
            c = x >> 16
    if d[4] == 0 and d[3] == 0 and d[2] == 0 and d[1] < 0x2000:
        return ((d[1] << 16) | d[0]) >= db
    if db <= _SMALL:
        return True
    fmt = "<q" if signed else "<Q"  # a deadband of 2**29 raw counts or more: allocates
    x = struct.unpack_from(fmt, a, 0)[0] - struct.unpack_from(fmt, b, 0)[0]
    return (x if x >= 0 else -x) >= db


def _f32_into(rec, hi, lo):
    """IEEE 754 binary32 given as 16-bit halves -> the equal binary64 in rec[12:20] (little
    endian), by integer arithmetic on sign, exponent and mantissa: no float object."""
    s = hi >> 15
    e = (hi >> 7) & 0xFF
    m = ((hi & 0x7F) << 16) | lo  # 23 bits
    if e == 0xFF:  # inf / nan keep their payload
        e64 = 0x7FF
    elif e == 0:
        if m == 0:
            struct.pack_into("<HHHH", rec, HEADER, 0, 0, 0, s << 15)
            return
        e = 1  # subnormal: normalise, binary64 has the range
        while not m & 0x800000:
            m <<= 1
            e -= 1
        m &= 0x7FFFFF
        e64 = e - 127 + 1023
    else:
        e64 = e - 127 + 1023
    # the 23 mantissa bits become the top of binary64's 52: bits 22..19, 18..3, 2..0
    struct.pack_into("<HHHH", rec, HEADER, 0, (m & 7) << 13, (m >> 3) & 0xFFFF,
                     (s << 15) | (e64 << 4) | (m >> 19))


def _u64_float_into(rec, raw):
    """A uint64 >= 2**63 (raw, little endian) -> the nearest binary64 (round half to even) in
    rec[12:20], on 16-bit limbs."""
    l0 = raw[0] | (raw[1] << 8)
    l1 = raw[2] | (raw[3] << 8)
    l2 = raw[4] | (raw[5] << 8)
    l3 = raw[6] | (raw[7] << 8)
    # q = value >> 11: 53 significant bits, the leading one at bit 52 (bit 4 of q3)
    q0 = ((l0 >> 11) | (l1 << 5)) & 0xFFFF
    q1 = ((l1 >> 11) | (l2 << 5)) & 0xFFFF
    q2 = ((l2 >> 11) | (l3 << 5)) & 0xFFFF
    q3 = l3 >> 11
    r = l0 & 0x7FF
    e = 1086  # 2**63: exponent 63 + bias 1023
    if r > 0x400 or (r == 0x400 and q0 & 1):
        q0 += 1
        if q0 > 0xFFFF:
            q0 = 0
            q1 += 1
            if q1 > 0xFFFF:
                q1 = 0
                q2 += 1
                if q2 > 0xFFFF:
                    q2 = 0
                    q3 += 1
        if q3 == 0x20:  # rounded up to 2**64
            q3 = 0x10
            e += 1
    struct.pack_into("<HHHH", rec, HEADER, q0, q1, q2, (e << 4) | (q3 & 0xF))


def _float_moved(p, rec, typ, hi, lo):
    # Deadband of a float point: boxes floats (the one allocating comparison, measured by
    # test_modbus_points). The new value is in hi/lo (float32) or _RAW (float64).
    if typ == T_FLOAT32:
        f = _FS
        struct.pack_into("<HHHH", f, 0, lo, hi, p.last_lo, p.last)
    else:
        f = _DS
        struct.pack_into("<8s8s", f, 0, _RAW, p.text)
    d = f[0] - f[1]
    if d < 0:
        d = -d
    return not d < p.db_raw  # NaN (to or from a number) counts as moved: it is reported


def pack_reading(p, data, off, rec, t, flags):
    """Decode point p from a response and pack its reading into rec.

    data[off:] holds p's first register (big-endian 16-bit words as on the wire); for
    coil/discrete points off is the bit index into data[3:]. t is the timestamp (ms), or None
    when the caller already stamped rec[4:12]. Returns the record length, or 0 when the value
    is within the deadband of the last report (nothing to send)."""
    typ = p.type
    order = p.order
    if typ <= T_UINT16 or typ == T_BIT or typ == T_BOOL:
        if typ == T_BOOL:
            v = (data[3 + (off >> 3)] >> (off & 7)) & 1
        else:
            v = _u16(data, off, order >> 1)
            if typ == T_BIT:
                v = (v >> p.bit) & 1
            elif typ == T_INT16 and v & 0x8000:
                v -= 0x10000
        if p.err == 0 and p.onchange:
            d = v - p.last
            if d < 0:
                d = -d
            if d == 0 or d < p.db_raw:
                return 0
        p.err = 0
        p.last = v
        _head(rec, p.id, KIND_INT, flags, t)
        struct.pack_into("<q", rec, HEADER, v)
        return SIZE
    if typ == T_INT32 or typ == T_UINT32 or typ == T_FLOAT32:
        # two 16-bit halves; the value itself (up to 2**32) is never built
        hi = order_word(data, off, 0, 2, order)
        lo = order_word(data, off, 1, 2, order)
        if typ == T_INT32 and hi & 0x8000:
            hi -= 0x10000
        if p.err == 0 and p.onchange:
            if hi == p.last and lo == p.last_lo:
                return 0
            if p.db_raw:
                if typ == T_FLOAT32:
                    if not _float_moved(p, rec, typ, hi, lo):
                        return 0
                elif not _beyond32(hi - p.last, lo - p.last_lo, p.db_raw):
                    return 0
        p.err = 0
        p.last = hi
        p.last_lo = lo
        if typ == T_FLOAT32:
            _head(rec, p.id, KIND_FLOAT, flags, t)
            _f32_into(rec, hi & 0xFFFF, lo)
        else:
            _head(rec, p.id, KIND_INT, flags, t)
            # little-endian int64: low half, high half, then the sign extension
            struct.pack_into("<HHi", rec, HEADER, lo, hi & 0xFFFF, -1 if hi < 0 else 0)
        return SIZE
    if typ == T_STRING:
        # Decode straight into the record, then compare with our own copy of the last report.
        n = 0
        lim = 2 * p.words
        if lim > MAX_TEXT:
            lim = MAX_TEXT
        bswap = order >> 1
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
        _head(rec, p.id, KIND_TEXT, flags, t)
        return HEADER + n
    # 64-bit integers and float64: the 8 value bytes, little endian, as they go in the record
    raw = _RAW
    for w in range(4):
        x = order_word(data, off, w, 4, order)
        raw[7 - 2 * w] = x >> 8
        raw[6 - 2 * w] = x & 0xFF
    tx = p.text
    if p.err == 0 and p.onchange:
        i = 0
        while i < 8 and raw[i] == tx[i]:
            i += 1
        if i == 8:
            return 0
        if p.db_raw:
            if typ == T_FLOAT64:
                if not _float_moved(p, rec, typ, 0, 0):
                    return 0
            elif not _beyond64(raw, tx, typ == T_INT64, p.db_raw):
                return 0
    p.err = 0
    for i in range(8):
        tx[i] = raw[i]
    if typ == T_UINT64 and raw[7] & 0x80:
        # Beyond int64: carried as the nearest float64 (documented), computed on limbs.
        _head(rec, p.id, KIND_FLOAT, flags, t)
        _u64_float_into(rec, raw)
        return SIZE
    _head(rec, p.id, KIND_FLOAT if typ == T_FLOAT64 else KIND_INT, flags, t)
    for i in range(8):
        rec[HEADER + i] = raw[i]
    return SIZE


def pack_error(p, code, rec, t, flags):
    """Pack an error reading for p, or return 0 when the same error was already reported.
    t as for pack_reading()."""
    if p.err == code:
        return 0
    p.err = code
    _head(rec, p.id, KIND_ERR, flags, t)
    struct.pack_into("<q", rec, HEADER, code)
    return SIZE


def record_flags(clock):
    return 0 if clock.is_set() else FLAG_UNTIMED
