# Modbus points: config validation, decoding of every type / word order / byte order, and
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
from otlink.core.errors import ConfigError
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


# ---- config ---------------------------------------------------------------------------------

def _int(cfg, key, where, lo, hi, default=None):
    v = cfg.get(key, default)
    if v is None:
        raise ConfigError(where + key, "required")
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(where + key, "must be an integer, got %r" % (v,))
    if v < lo or v > hi:
        raise ConfigError(where + key, "%d out of range %d..%d" % (v, lo, hi))
    return v


def _num(cfg, key, where, default):
    v = cfg.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(where + key, "must be a number, got %r" % (v,))
    return v


def _choice(cfg, key, where, options, default=None):
    v = cfg.get(key, default)
    if v is None:
        raise ConfigError(where + key, "required (one of %s)" % ", ".join(options))
    if v not in options:
        raise ConfigError(where + key, "unknown %s %r (one of %s)" % (key, v, ", ".join(options)))
    return v


_SERIAL_KEYS = ("backoff_ms", "baud", "char_timeout_ms", "echo", "frame_gap_us", "groups",
                "max_bits", "max_gap_bits", "max_gap_regs", "max_regs", "offline_after",
                "parity", "port", "retries", "stop_bits", "timeout_ms", "turnaround_ms")


def parse_serial(serial_cfg):
    """Validate the serial section and return a dict with every default filled in."""
    if not isinstance(serial_cfg, dict):
        raise ConfigError("serial", "must be an object")
    w = "serial."
    for k in serial_cfg:
        if k not in _SERIAL_KEYS:
            raise ConfigError(w + k, "unknown field (allowed: %s)" % ", ".join(_SERIAL_KEYS))
    out = {}
    port = serial_cfg.get("port")
    if port is not None and (not isinstance(port, str) or not port):
        raise ConfigError(w + "port", "must be a device path such as /dev/ttyUSB0, got %r"
                          % (port,))
    out["port"] = port
    out["baud"] = _int(serial_cfg, "baud", w, 300, 4000000, 9600)
    out["parity"] = _choice(serial_cfg, "parity", w, ("N", "E", "O"), "N")
    out["stop_bits"] = _int(serial_cfg, "stop_bits", w, 1, 2, 1)
    out["timeout_ms"] = _int(serial_cfg, "timeout_ms", w, 1, 60000, 200)
    out["turnaround_ms"] = _int(serial_cfg, "turnaround_ms", w, 0, 60000, 100)
    out["char_timeout_ms"] = _int(serial_cfg, "char_timeout_ms", w, 0, 1000, 5)
    out["frame_gap_us"] = _int(serial_cfg, "frame_gap_us", w, 0, 1000000, 0)
    out["retries"] = _int(serial_cfg, "retries", w, 0, 10, 0)
    out["offline_after"] = _int(serial_cfg, "offline_after", w, 1, 1000000, 2)
    bo = serial_cfg.get("backoff_ms", [1000, 30000])
    if (not isinstance(bo, (list, tuple)) or len(bo) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in bo)
            or bo[0] > bo[1]):
        raise ConfigError(w + "backoff_ms", "must be [first_ms, max_ms] with 0 < first <= max")
    out["backoff_ms"] = (bo[0], bo[1])
    echo = serial_cfg.get("echo", False)
    if not isinstance(echo, bool):
        raise ConfigError(w + "echo", "must be true or false")
    out["echo"] = echo
    out["max_gap_regs"] = _int(serial_cfg, "max_gap_regs", w, -1, 124, 10)
    out["max_regs"] = _int(serial_cfg, "max_regs", w, 1, modbus.MAX_REGS, modbus.MAX_REGS)
    out["max_bits"] = _int(serial_cfg, "max_bits", w, 1, modbus.MAX_BITS, modbus.MAX_BITS)
    out["max_gap_bits"] = _int(serial_cfg, "max_gap_bits", w, -1, 1999, 64)
    groups = serial_cfg.get("groups")
    if groups is None:
        groups = {DEFAULT_GROUP: {"interval_ms": DEFAULT_INTERVAL_MS}}
    if not isinstance(groups, dict) or not groups:
        raise ConfigError(w + "groups", "must be an object of {name: {interval_ms}}")
    g = {}
    for name in groups:
        spec = groups[name]
        if not isinstance(spec, dict):
            raise ConfigError(w + "groups." + name, "must be an object with interval_ms")
        g[name] = _int(spec, "interval_ms", w + "groups." + name + ".", 0, 86400000)
    out["groups"] = g
    return out


def parse_points(points_cfg, serial_cfg):
    """Validate the points list against the serial section; return a list of Point.

    Poll groups are read from serial_cfg["groups"] ({name: {"interval_ms": n}}); a point
    without "group" joins "default" if declared, else the fastest group (ties: first name).
    Raises ConfigError(field, problem)."""
    ser = parse_serial(serial_cfg)
    groups = ser["groups"]
    first_group = DEFAULT_GROUP
    if first_group not in groups:
        first_group = sorted(groups, key=lambda n: (groups[n], n))[0]
    if not isinstance(points_cfg, list):
        raise ConfigError("points", "must be a list")
    out = []
    seen = {}
    for i, cfg in enumerate(points_cfg):
        w = "points[%d]." % i
        if not isinstance(cfg, dict):
            raise ConfigError("points[%d]" % i, "must be an object")
        for k in cfg:
            if k not in _FIELDS:
                raise ConfigError(w + str(k), "unknown field (one of %s)" % ", ".join(_FIELDS))
        pid = _int(cfg, "id", w, 0, 65535)
        if pid in seen:
            raise ConfigError(w + "id", "duplicate id %d (also points[%d])" % (pid, seen[pid]))
        seen[pid] = i
        name = cfg.get("name", "p%d" % pid)
        if not isinstance(name, str) or not name:
            raise ConfigError(w + "name", "must be a non-empty string")
        slave = _int(cfg, "slave", w, 1, 247)
        table = _choice(cfg, "table", w, TABLES)
        bits_table = table == "coil" or table == "discrete"
        tname = cfg.get("type")
        if tname is None and bits_table:
            tname = "bool"
        if tname is None:
            raise ConfigError(w + "type", "required (one of %s)" % ", ".join(TYPES))
        if tname not in TYPES:
            raise ConfigError(w + "type", "unknown type %r (one of %s)" % (tname, ", ".join(TYPES)))
        typ = TYPES.index(tname)
        if bits_table and typ != T_BOOL:
            raise ConfigError(w + "type", "a %s point is a single bit: type must be bool" % table)
        if not bits_table and typ == T_BOOL:
            raise ConfigError(w + "type", "bool is for coil/discrete; use bit with \"bit\": 0..15")
        address = _int(cfg, "address", w, 0, 65535)
        order = ORDERS.index(_choice(cfg, "order", w, ORDERS, "ABCD"))
        bit = cfg.get("bit")
        if typ == T_BIT:
            bit = _int(cfg, "bit", w, 0, 15)
        elif bit is not None:
            raise ConfigError(w + "bit", "only for type bit")
        else:
            bit = 0
        length = cfg.get("length")
        if typ == T_STRING:
            words = _int(cfg, "length", w, 1, _MAX_STRING_REGS)
        elif length is not None:
            raise ConfigError(w + "length", "only for type string (registers)")
        else:
            words = _WORDS[typ]
        if address + words > 65536:
            raise ConfigError(w + "address", "%d + %d registers runs past 65535" % (address, words))
        scale = _num(cfg, "scale", w, 1.0)
        if scale == 0:
            raise ConfigError(w + "scale", "must not be 0")
        offset = _num(cfg, "offset", w, 0.0)
        unit = cfg.get("unit", "")
        if not isinstance(unit, str):
            raise ConfigError(w + "unit", "must be a string")
        group = cfg.get("group", first_group)
        if not isinstance(group, str) or group not in groups:
            raise ConfigError(w + "group", "unknown group %r (declared: %s)"
                              % (group, ", ".join(sorted(groups))))
        deadband = None  # absent: report every poll
        if cfg.get("deadband") is not None:
            deadband = _num(cfg, "deadband", w, 0)
            if deadband < 0:
                raise ConfigError(w + "deadband", "must be >= 0")
        out.append(Point(pid, name, slave, table, address, typ, order, bit, words, scale,
                         offset, unit, group, deadband))
    return out
