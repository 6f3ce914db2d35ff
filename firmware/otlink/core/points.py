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
#
# Plausibility range: a point's "range" (engineering units) is turned into raw bounds once, by
# raw_range() at validation, as sortable keys of 16-bit limbs (signed integers with the sign
# bit flipped, floats mapped so their bit patterns sort like their values); the hot path builds
# the reading's key in _K and compares limbs, so the check allocates nothing either. NaN and
# infinities sort outside every finite range. A reading outside is reported as ERR_RANGE.
import struct

from otlink.core import modbus
from otlink.core.compat import const
from otlink.core.errors import ERR_RANGE
from otlink.core.reading import (FLAG_UNTIMED, HEADER, KIND_ERR, KIND_FLOAT, KIND_INT,
                                 KIND_TEXT, OFF_T, SIZE)

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


_NB = const(8)  # bytes per point in Points.b
_B_SLAVE = const(0)
_B_FC = const(1)
_B_TYPE = const(2)
_B_ORDER = const(3)  # index into ORDERS: bit 0 word swap, bit 1 byte swap
_B_BIT = const(4)  # type bit: the bit 0..15; type string: its length in bytes 1..64
_B_GROUP = const(5)  # index into Points.groups
_B_FLAGS = const(6)  # _F_ONCHANGE | _F_RANGE
_F_ONCHANGE = const(1)  # a deadband is configured: report on change beyond it only
_F_RANGE = const(2)  # a plausibility range is configured: its raw keys in Points.range_[i]
_B_UNIT = const(7)  # index into Points.units
_NH = const(3)  # 16-bit fields per point in Points.h
_H_ID = const(0)
_H_ADDR = const(1)
_H_WORDS = const(2)  # registers (or 1 bit, for coil/discrete)
# offsets into the blobs, in Points.o (32-bit: names and texts may pass 64 KiB on a big host)
_O_TOFF = const(0)  # offset of the point's last-value bytes in Points.text
_O_NAME = const(1)  # end of the point's name in Points.names (it starts at the previous end)
_NS = const(3)  # report state per point in Points.s: err, last, last_lo


class Points:
    """The configured Modbus points as a table: fixed-size rows in a few preallocated arrays
    (no object per point), indexed 0..len-1 in config order. RAM matters (60 points next to
    WiFi + MQTT on an ESP32): a row is 8 bytes (b) + 6 (h) + 8 (o) + 12 (s) + 12 (the scale,
    offset and db_raw slots; equal scales and offsets share one object) + its name in one
    blob: about 55 bytes on a 32-bit board (test_boot_heap measures it) instead of ~157 for
    an object with a dict of attributes. Units and groups are indices into short lists of the
    distinct ones (at most 255 each). A point with a plausibility range adds its raw bound keys
    (a tuple of 2, 4 or 8 small ints) in the dict range_; points without one cost nothing.

    Report-on-change state, in s: err is -1 until something was reported, 0 after a value,
    else the error code last reported; the last reported raw value: 16/32-bit types and
    float32 keep it as high/low 16-bit halves in last/last_lo (small ints on any board);
    64-bit types keep its 8 bytes (little endian) in text[toff:toff+8]; strings keep the text
    there and its length in last. db_raw: the deadband as the raw threshold (a float for
    float points). Cold fields (name, unit, table, scale, offset, group) have accessors;
    pts[i] gives a Point snapshot for cold code (allocates)."""

    def __init__(self, cap):
        self.n = 0
        self.b = bytearray(_NB * cap)
        self.h = array("H", bytes(2 * _NH * cap))
        self.o = array("I", bytes(8 * cap))
        self.s = array("i", bytes(4 * _NS * cap))
        self.scale_ = []
        self.offset_ = []
        self.db_raw = []
        self.range_ = {}  # index -> raw bound keys (raw_range()), only for points with a range
        self.names = bytearray()
        self.units = [None]
        self.groups = []
        self.text = None  # sized by seal()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("point index")
        return Point(self, i)

    def add(self, pid, name, slave, table, address, typ, order, bit, words, scale, offset,
            unit, group, deadband, rng=None):
        """Append one validated point (config.py); returns its index. bit: the bit of a type
        bit point, the length in bytes of a string (words = its registers); rng: raw_range()'s
        keys, or None."""
        gi = _index(self.groups, group)  # raises before the row is taken
        ui = _index(self.units, unit)
        i = self.n
        self.n = i + 1
        b = self.b
        k = i * _NB
        b[k + _B_SLAVE] = slave
        b[k + _B_FC] = modbus.read_fc(table)
        b[k + _B_TYPE] = typ
        b[k + _B_ORDER] = order
        b[k + _B_BIT] = bit
        b[k + _B_GROUP] = gi
        b[k + _B_UNIT] = ui
        h = self.h
        k = i * _NH
        h[k + _H_ID] = pid
        h[k + _H_ADDR] = address
        h[k + _H_WORDS] = words
        self.names.extend(name.encode())
        self.o[2 * i + _O_NAME] = len(self.names)
        db = 0
        if rng is not None:
            b[i * _NB + _B_FLAGS] = _F_RANGE
            self.range_[i] = rng
        if deadband is not None:
            b[i * _NB + _B_FLAGS] |= _F_ONCHANGE
            if typ == T_FLOAT32 or typ == T_FLOAT64:
                db = deadband / abs(scale)  # float threshold
            else:
                # |d_raw| * |scale| >= deadband  <=>  |d_raw| >= ceil(deadband / |scale|)
                q = deadband / abs(scale)
                db = int(q)
                if db != q:
                    db += 1
        self.db_raw.append(db)
        self.scale_.append(_shared(self.scale_, scale))
        self.offset_.append(_shared(self.offset_, offset))
        return i

    def seal(self):
        """After the last add(): size the last-value bytes of string and 64-bit points and
        forget every last report."""
        b = self.b
        t = 0
        for i in range(self.n):
            self.o[2 * i + _O_TOFF] = t
            typ = b[i * _NB + _B_TYPE]
            if typ == T_STRING:
                t += b[i * _NB + _B_BIT]
            elif typ == T_INT64 or typ == T_UINT64 or typ == T_FLOAT64:
                t += 8
        self.text = bytearray(t)
        for i in range(self.n):
            self.reset(i)
        return self

    def reset(self, i):
        """Forget point i's last report: its next value is always reported."""
        s = self.s
        s[i * _NS] = -1
        s[i * _NS + 1] = 0
        s[i * _NS + 2] = 0

    def find(self, pid):
        """Index of the point with id pid, or -1."""
        h = self.h
        for i in range(self.n):
            if h[i * _NH + _H_ID] == pid:
                return i
        return -1

    # cold accessors (config checks, planner, commands, birth)
    def id(self, i):
        return self.h[i * _NH + _H_ID]

    def slave(self, i):
        return self.b[i * _NB + _B_SLAVE]

    def fc(self, i):
        return self.b[i * _NB + _B_FC]

    def address(self, i):
        return self.h[i * _NH + _H_ADDR]

    def words(self, i):
        return self.h[i * _NH + _H_WORDS]

    def bit(self, i):
        return self.b[i * _NB + _B_BIT]

    def source(self, i):
        """Where point i is read, as the birth message names it: modbus:<slave>:<table>:
        <address>, and .<bit> for a type bit point (docs/payload.md)."""
        b = self.b
        k = i * _NB
        s = "modbus:%d:%s:%d" % (b[k + _B_SLAVE], self.table(i), self.address(i))
        if b[k + _B_TYPE] == T_BIT:
            s += ".%d" % b[k + _B_BIT]
        return s

    def bounds(self, i):
        """Point i's raw bound keys (raw_range()), or None."""
        return self.range_.get(i)

    def group(self, i):
        return self.groups[self.b[i * _NB + _B_GROUP]]

    def name(self, i):
        o = self.o
        a = o[2 * i - 2 + _O_NAME] if i else 0
        return str(self.names[a:o[2 * i + _O_NAME]], "utf-8")

    def err(self, i):
        return self.s[i * _NS]

    def type(self, i):
        return self.b[i * _NB + _B_TYPE]

    def table(self, i):
        return TABLES[self.b[i * _NB + _B_FC] - 1]  # FC 01..04 in TABLES order

    def unit(self, i):
        return self.units[self.b[i * _NB + _B_UNIT]]

    def scale(self, i):
        return self.scale_[i]

    def offset(self, i):
        return self.offset_[i]


def _index(lst, v):
    # index of v in lst, appended when new (a few distinct units / groups: one byte each)
    for k in range(len(lst)):
        if lst[k] == v:
            return k
    if len(lst) > 255:
        raise ValueError("more than 255 distinct units or groups")
    lst.append(v)
    return len(lst) - 1


def _shared(lst, v):
    # an equal number of the same type already in lst, so equal scales share one float
    for x in lst:
        if x == v and type(x) is type(v):
            return x
    return v


class Point:
    """Point i of a Points table, its config as plain attributes: a snapshot for cold code
    (validation, commands, tools, tests); tab and i lead back to the table."""

    def __init__(self, tab, i):
        self.tab = tab
        self.i = i
        b = tab.b
        k = i * _NB
        self.id = tab.id(i)
        self.name = tab.name(i)
        self.slave = b[k + _B_SLAVE]
        self.fc = b[k + _B_FC]
        self.table = tab.table(i)
        self.address = tab.address(i)
        self.type = b[k + _B_TYPE]
        self.order = b[k + _B_ORDER]
        self.bit = b[k + _B_BIT]
        self.words = tab.words(i)
        self.group = tab.group(i)
        self.unit = tab.units[b[k + _B_UNIT]]
        self.scale = tab.scale_[i]
        self.offset = tab.offset_[i]
        self.onchange = b[k + _B_FLAGS] & _F_ONCHANGE != 0
        self.range = tab.range_.get(i)
        self.db_raw = tab.db_raw[i]

    def reset(self):
        self.tab.reset(self.i)

    def type_name(self):
        return TYPES[self.type]

    def order_name(self):
        return ORDERS[self.order]

    def span(self):
        """Registers (or bits) this point occupies from self.address."""
        return self.words


_SIGNED = (1, 0, 1, 0, 1, 0)  # per integer type: signed
_INT_FMT = (">h", ">H", ">i", ">I", ">q", ">Q")


def _key(typ, x):
    # The sortable key of a raw value x of type typ: big-endian 16-bit limbs (cold: config)
    n = WORDS[typ]
    if typ == T_FLOAT32 or typ == T_FLOAT64:
        limbs = list(struct.unpack(">%dH" % n, struct.pack(">f" if n == 2 else ">d", x)))
        if limbs[0] & 0x8000:
            for m in range(n):
                limbs[m] ^= 0xFFFF
        else:
            limbs[0] ^= 0x8000
        return limbs
    limbs = list(struct.unpack(">%dH" % n, struct.pack(_INT_FMT[typ], x)))
    if _SIGNED[typ]:
        limbs[0] ^= 0x8000
    return limbs


def raw_range(typ, scale, offset, lo, hi):
    """The plausibility range lo..hi in engineering units (raw * scale + offset) of a number
    point as raw bound keys: a tuple of the low bound's limbs then the high bound's (1, 2 or 4
    each), what pack_reading() compares. Integer types take the raw values inside (ceil/floor,
    clipped to the type); floats the nearest value of their precision. None when no raw value
    of the type lies inside."""
    a = (lo - offset) / scale
    z = (hi - offset) / scale
    if scale < 0:
        a, z = z, a
    if typ == T_FLOAT32 or typ == T_FLOAT64:
        if typ == T_FLOAT32 and (a > 3.4e38 or z < -3.4e38):
            return None
        a = max(a, -3.4e38) if typ == T_FLOAT32 else a
        z = min(z, 3.4e38) if typ == T_FLOAT32 else z
        # a bound of zero takes in both zeros: the key of -0.0 sorts just below that of +0.0
        # (written as limbs: a -0.0 constant may be folded to +0.0 on a board)
        n = WORDS[typ]
        ka = [0x7FFF] + [0xFFFF] * (n - 1) if a == 0 else _key(typ, a)
        kz = [0x8000] + [0] * (n - 1) if z == 0 else _key(typ, z)
        return tuple(ka + kz)
    bits = 16 * WORDS[typ]
    tmin = -(1 << (bits - 1)) if _SIGNED[typ] else 0
    tmax = (1 << (bits - 1)) - 1 if _SIGNED[typ] else (1 << bits) - 1
    if z < tmin or a > tmax:
        return None
    if a < tmin:
        a = float(tmin)
    if z > tmax:
        z = float(tmax)
    # a bound a rounding error away from a whole raw count is that count (0.3 / 0.1 is
    # 2.9999999999999996; single floats on the boards are off by 1 part in 2**24)
    a = _snap(a)
    z = _snap(z)
    ia = int(a)
    if ia < a:
        ia += 1
    iz = int(z)
    if iz > z:
        iz -= 1
    ia = max(ia, tmin)
    iz = min(iz, tmax)
    if ia > iz:
        return None
    return tuple(_key(typ, ia) + _key(typ, iz))


def _snap(x):
    r = float(round(x))
    d = x - r
    return r if -1e-6 * abs(r) <= d <= 1e-6 * abs(r) else x


_K = array("H", (0, 0, 0, 0)) if array else None  # the key of the reading being checked


def _outside(r, n):
    """_K[0:n] (a reading's key) lies outside the raw bound keys r (raw_range())."""
    k = _K
    for m in range(n):
        if k[m] != r[m]:
            if k[m] < r[m]:
                return True
            break
    for m in range(n):
        if k[m] != r[n + m]:
            return k[m] > r[n + m]
    return False


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
_RAW2 = bytearray(8)  # the last reported 8 bytes, copied out of Points.text for a comparison
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


def _float_moved(tab, i, rec, typ, hi, lo):
    # Deadband of a float point: boxes floats (the one allocating comparison, measured by
    # test_modbus_points). The new value is in hi/lo (float32) or _RAW (float64).
    if typ == T_FLOAT32:
        f = _FS
        s = tab.s
        struct.pack_into("<HHHH", f, 0, lo, hi, s[i * _NS + 2], s[i * _NS + 1])
    else:
        f = _DS
        struct.pack_into("<8s", f, 0, _RAW)
        t = tab.text
        o = tab.o[2 * i + _O_TOFF]
        for k in range(8):
            _RAW2[k] = t[o + k]
        struct.pack_into("<8s", f, 8, _RAW2)
    d = f[0] - f[1]
    if d < 0:
        d = -d
    return not d < tab.db_raw[i]  # NaN (to or from a number) counts as moved: it is reported


def pack_reading(tab, i, data, off, rec, t, flags):
    """Decode point i of the table tab (Points) from a response and pack its reading into rec.

    data[off:] holds the point's first register (big-endian 16-bit words as on the wire); for
    coil/discrete points off is the bit index into data[3:]. t is the timestamp (ms), or None
    when the caller already stamped rec[4:12]. Returns the record length, or 0 when the value
    is within the deadband of the last report (nothing to send)."""
    b = tab.b
    k = i * _NB
    typ = b[k + _B_TYPE]
    order = b[k + _B_ORDER]
    onchange = b[k + _B_FLAGS] & _F_ONCHANGE
    ranged = b[k + _B_FLAGS] & _F_RANGE
    pid = tab.h[i * _NH + _H_ID]
    s = tab.s
    j = i * _NS  # s[j]: err, s[j + 1]: last, s[j + 2]: last_lo
    if typ <= T_UINT16 or typ == T_BIT or typ == T_BOOL:
        if typ == T_BOOL:
            v = (data[3 + (off >> 3)] >> (off & 7)) & 1
        else:
            v = _u16(data, off, order >> 1)
            if typ == T_BIT:
                v = (v >> b[k + _B_BIT]) & 1
            elif typ == T_INT16 and v & 0x8000:
                v -= 0x10000
        if ranged:
            _K[0] = (v & 0xFFFF) ^ 0x8000 if typ == T_INT16 else v
            if _outside(tab.range_[i], 1):
                return pack_error(tab, i, ERR_RANGE, rec, t, flags)
        if s[j] == 0 and onchange:
            d = v - s[j + 1]
            if d < 0:
                d = -d
            if d == 0 or d < tab.db_raw[i]:
                return 0
        s[j] = 0
        s[j + 1] = v
        _head(rec, pid, KIND_INT, flags, t)
        struct.pack_into("<q", rec, HEADER, v)
        return SIZE
    if typ == T_INT32 or typ == T_UINT32 or typ == T_FLOAT32:
        # two 16-bit halves; the value itself (up to 2**32) is never built
        hi = order_word(data, off, 0, 2, order)
        lo = order_word(data, off, 1, 2, order)
        if ranged:
            if typ == T_FLOAT32:
                if hi & 0x8000:
                    _K[0] = hi ^ 0xFFFF
                    _K[1] = lo ^ 0xFFFF
                else:
                    _K[0] = hi | 0x8000
                    _K[1] = lo
            else:
                _K[0] = hi ^ 0x8000 if typ == T_INT32 else hi
                _K[1] = lo
            if _outside(tab.range_[i], 2):
                return pack_error(tab, i, ERR_RANGE, rec, t, flags)
        if typ == T_INT32 and hi & 0x8000:
            hi -= 0x10000
        if s[j] == 0 and onchange:
            if hi == s[j + 1] and lo == s[j + 2]:
                return 0
            db = tab.db_raw[i]
            if db:
                if typ == T_FLOAT32:
                    if not _float_moved(tab, i, rec, typ, hi, lo):
                        return 0
                elif not _beyond32(hi - s[j + 1], lo - s[j + 2], db):
                    return 0
        s[j] = 0
        s[j + 1] = hi
        s[j + 2] = lo
        if typ == T_FLOAT32:
            _head(rec, pid, KIND_FLOAT, flags, t)
            _f32_into(rec, hi & 0xFFFF, lo)
        else:
            _head(rec, pid, KIND_INT, flags, t)
            # little-endian int64: low half, high half, then the sign extension
            struct.pack_into("<HHi", rec, HEADER, lo, hi & 0xFFFF, -1 if hi < 0 else 0)
        return SIZE
    tx = tab.text
    to = tab.o[2 * i + _O_TOFF]
    if typ == T_STRING:
        # Decode straight into the record, then compare with our own copy of the last report.
        n = 0
        lim = b[k + _B_BIT]  # the length in bytes (at most MAX_TEXT)
        bswap = order >> 1
        while n < lim:
            c = data[off + (n ^ 1 if bswap else n)]
            if c == 0:  # NUL-padded fixed-width field
                break
            rec[HEADER + n] = c
            n += 1
        if s[j] == 0 and onchange and n == s[j + 1]:
            m = 0
            while m < n and tx[to + m] == rec[HEADER + m]:
                m += 1
            if m == n:
                return 0
        for m in range(n):
            tx[to + m] = rec[HEADER + m]
        s[j + 1] = n
        s[j] = 0
        _head(rec, pid, KIND_TEXT, flags, t)
        return HEADER + n
    # 64-bit integers and float64: the 8 value bytes, little endian, as they go in the record
    raw = _RAW
    for w in range(4):
        x = order_word(data, off, w, 4, order)
        raw[7 - 2 * w] = x >> 8
        raw[6 - 2 * w] = x & 0xFF
    if ranged:
        kk = _K
        for w in range(4):
            kk[w] = (raw[7 - 2 * w] << 8) | raw[6 - 2 * w]
        if typ == T_FLOAT64 and raw[7] & 0x80:
            for w in range(4):
                kk[w] ^= 0xFFFF
        elif typ != T_UINT64:
            kk[0] ^= 0x8000
        if _outside(tab.range_[i], 4):
            return pack_error(tab, i, ERR_RANGE, rec, t, flags)
    if s[j] == 0 and onchange:
        m = 0
        while m < 8 and raw[m] == tx[to + m]:
            m += 1
        if m == 8:
            return 0
        db = tab.db_raw[i]
        if db:
            if typ == T_FLOAT64:
                if not _float_moved(tab, i, rec, typ, 0, 0):
                    return 0
            else:
                last = _RAW2
                for m in range(8):
                    last[m] = tx[to + m]
                if not _beyond64(raw, last, typ == T_INT64, db):
                    return 0
    s[j] = 0
    for m in range(8):
        tx[to + m] = raw[m]
    if typ == T_UINT64 and raw[7] & 0x80:
        # Beyond int64: carried as the nearest float64 (documented), computed on limbs.
        _head(rec, pid, KIND_FLOAT, flags, t)
        _u64_float_into(rec, raw)
        return SIZE
    _head(rec, pid, KIND_FLOAT if typ == T_FLOAT64 else KIND_INT, flags, t)
    for m in range(8):
        rec[HEADER + m] = raw[m]
    return SIZE


def pack_error(tab, i, code, rec, t, flags):
    """Pack an error reading for point i of tab, or return 0 when the same error was already
    reported. t as for pack_reading()."""
    s = tab.s
    if s[i * _NS] == code:
        return 0
    s[i * _NS] = code
    _head(rec, tab.h[i * _NH + _H_ID], KIND_ERR, flags, t)
    struct.pack_into("<q", rec, HEADER, code)
    return SIZE


def record_flags(clock):
    return 0 if clock.is_set() else FLAG_UNTIMED
