# On-wire payloads published by the agent (docs/payload.md is the spec; version 1).
#
#   topic  <prefix>/<site>/<node>/<kind>    kind: birth, data, state, ack, cmd, reply
#   data   {"v":1, "b":boot, "s":first seq, "e":last seq, "f":flags, "t":base ms, "r":[...]}
#   birth  {"v":1, "node":..., "fw":..., "cfg":..., "boot":..., "pts":[[id,name,unit,type,
#           scale,offset,source], ...]}
#   state  {"v":1, <field>: <value>, ...}
#   ack    {"v":1, "b":boot, "s":highest contiguous seq stored}
#
# The data stream "r" is flat: a reading is `pid value`; a negative integer -d before a
# reading advances the time of that reading and the ones after it by d ms (readings from one
# poll cycle share one timestamp and pay nothing for it). An integer value is absolute the
# first time its point appears in the batch and a difference from that point's previous
# integer value after that (energy counters and slow registers then take one byte). Floats are
# the shortest exact CBOR float, text a text string, an error a CBOR simple value (the code).
from otlink.core.cbor import BufferFull, Writer, head_size  # noqa: F401 (BufferFull re-exported)
from otlink.core.compat import const

# Error codes (docs/payload.md, "Error codes"): the one table is core/errors.py; CBOR simple
# values 20..31 are false, true, null, undefined and reserved, so codes never use them.
from otlink.core.errors import (ERR_CRC, ERR_ECHO, ERR_FRAME, ERR_OFFLINE,  # noqa: F401
                                ERR_SENSOR, ERR_SENSOR_CRC, ERR_TIMEOUT)
from otlink.core.errors import ERR_EXCEPTION as ERR_MODBUS_EXC  # noqa: F401

VERSION = const(1)

FLAG_HISTORICAL = const(1)  # replayed from the backlog, not live
FLAG_UNTIMED = const(2)  # timestamps are uptime ms: the clock was not set

SEQ_MASK = const(0xFFFFFFFF)

_HDR_MAX = const(48)  # largest data header: 7-entry map with 9-byte base time
_READING_MAX = const(21)  # time advance (9) + pid (3) + int or float value (9)
_TEXT_MAX = const(12)  # time advance (9) + pid (3); + text head and bytes

# Reading record layout (core/reading.py), repeated here because const() folds only names
# defined in the same module: reading.KIND_INT would be two dict lookups per use in add().
# tests/host/test_one_rule.py checks they are reading.py's values.
_KIND_INT = const(0)
_KIND_FLOAT = const(1)
_KIND_ERR = const(2)
_KIND_TEXT = const(3)
_REC_UNTIMED = const(1)
_REC_HEADER = const(12)
_REC_SIZE = const(20)
_REC_MAX_TEXT = const(64)

_K_V = const(0x76)  # "v"
_K_B = const(0x62)  # "b"
_K_S = const(0x73)  # "s"
_K_E = const(0x65)  # "e"
_K_F = const(0x66)  # "f"
_K_T = const(0x74)  # "t"
_K_R = const(0x72)  # "r"


def _small(rec, o):
    # The i64 at rec[o:o+8] (little endian) when it lies within +-2**29, else None: such a
    # value and the difference of two of them are small ints on every port (32-bit ports box
    # ints from 2**30 up). Reads bytes only.
    h = rec[o + 7]
    if h == 0:
        if rec[o + 6] | rec[o + 5] | rec[o + 4] or rec[o + 3] >= 0x20:
            return None
        return rec[o] | rec[o + 1] << 8 | rec[o + 2] << 16 | rec[o + 3] << 24
    if h == 0xFF:
        if rec[o + 6] & rec[o + 5] & rec[o + 4] != 0xFF or rec[o + 3] < 0xE0:
            return None
        return (rec[o] | rec[o + 1] << 8 | rec[o + 2] << 16 | (rec[o + 3] & 0x1F) << 24) \
            - 0x20000000
    return None


class DataEncoder:
    """Builds one data batch at a time in a buffer allocated here, once.

    start() begins a batch; add() appends one reading record and returns False (writing
    nothing) when the reading cannot join this batch: buffer or count full, sequence not
    contiguous, time running backwards, timed/untimed mix, or too many distinct integer
    points. The caller then publishes finish() and starts the next batch with that reading.
    add() allocates nothing, on 32-bit ports too: times are split into 24-bit parts and
    integer values wider than 30 bits go from the record's bytes to CBOR (differences taken
    byte by byte). finish() allocates one memoryview (plus, on 32-bit ports, whatever the
    caller's sequence numbers of 2**30 and more cost to compare).
    """

    def __init__(self, capacity_bytes, max_count=0, int_points=64):
        if capacity_bytes < _HDR_MAX + _READING_MAX:
            raise ValueError("DataEncoder capacity too small")
        self._buf = bytearray(capacity_bytes)
        self._mv = memoryview(self._buf)
        self._w = Writer(self._buf, _HDR_MAX)
        self._hdr = bytearray(_HDR_MAX)
        self._hw = Writer(self._hdr)
        self._max = max_count
        # Last integer value per point in this batch, for differences (see module comment).
        self._pids = [0] * int_points
        self._last = [0] * int_points  # the value, when within +-2**29 (see _small)
        self._wide = bytearray(int_points)  # 1: the value is in _lastb instead
        self._lastb = bytearray(8 * int_points)  # i64 little endian per slot
        self._d = bytearray(9)  # a difference of two i64, 65-bit two's complement
        self._t0b = bytearray(8)  # base time, the record's bytes
        self._nslots = 0
        self._hint = 0
        self.boot = 0
        self.historical = False
        self.first_seq = 0
        self.last_seq = 0
        self.count = 0
        self._untimed = 0
        self._thi = 0  # time of the last reading: ms >> 24 (signed) ...
        self._tlo = 0  # ... and ms & 0xFFFFFF
        self._nitems = 0

    def start(self, boot, historical=False):
        if boot < 0 or boot > SEQ_MASK:
            raise ValueError("boot counter out of u32 range")
        self.boot = boot
        self.historical = bool(historical)
        self.count = 0
        self.first_seq = self.last_seq = 0
        self._nslots = 0
        self._hint = 0
        self._nitems = 0
        self._w.reset(_HDR_MAX)

    def add(self, seq, rec, n):
        count = self.count
        if self._max and count >= self._max:
            return False
        kind = rec[2]
        untimed = rec[3] & _REC_UNTIMED
        # time in ms as (hi, lo) = (t >> 24, t & 0xFFFFFF): both small ints for |t| < 2**54
        tlo = rec[4] | rec[5] << 8 | rec[6] << 16
        h = rec[11]
        if h == 0 and rec[10] < 0x40:
            thi = rec[7] | rec[8] << 8 | rec[9] << 16 | rec[10] << 24
        elif h == 0xFF and rec[10] >= 0xC0:
            thi = (rec[7] | rec[8] << 8 | rec[9] << 16 | (rec[10] & 0x3F) << 24) - 0x40000000
        else:
            raise ValueError("reading time beyond +-2**54 ms")
        if count:
            nxt = self.last_seq + 1
            if nxt > SEQ_MASK:
                nxt = 0
            if seq != nxt:
                return False
            if untimed != self._untimed:
                return False
            dhi = thi - self._thi
            if dhi < 0 or dhi > 63:  # backwards, or ~2**30 ms (12 days) later: a new batch
                return False
            dt = (dhi << 24) + tlo - self._tlo
            if dt < 0:
                return False
        else:
            if seq < 0 or seq > SEQ_MASK:
                raise ValueError("seq out of u32 range")
            dt = 0
        w = self._w
        if kind == _KIND_TEXT:
            tl = n - _REC_HEADER
            if tl < 0 or tl > _REC_MAX_TEXT:
                raise ValueError("text record length")
            need = _TEXT_MAX + head_size(tl) + tl
        elif kind == _KIND_INT or kind == _KIND_FLOAT or kind == _KIND_ERR:
            if n != _REC_SIZE:
                raise ValueError("reading record length")
            need = _READING_MAX
        else:
            raise ValueError("reading record kind")
        if w.end - w.pos < need:
            return False
        pid = rec[0] | rec[1] << 8
        slot = -1
        if kind == _KIND_INT:
            pids = self._pids
            ns = self._nslots
            h = self._hint
            if h < ns and pids[h] == pid:
                slot = h
            else:
                i = 0
                while i < ns:
                    if pids[i] == pid:
                        slot = i
                        break
                    i += 1
            if slot < 0:
                if ns >= len(pids):
                    return False
        elif kind == _KIND_ERR:
            code = rec[12]
            if (rec[13] | rec[14] | rec[15] | rec[16] | rec[17] | rec[18] | rec[19]
                    or 20 <= code < 32):
                raise ValueError("reading error code")
        # Commit point: from here on the reading is written completely.
        if count == 0:
            self.first_seq = seq
            self._untimed = untimed
            t0 = self._t0b
            i = 0
            while i < 8:
                t0[i] = rec[4 + i]
                i += 1
        elif dt:
            w.head(0x20, dt - 1)  # CBOR negative integer -dt: advance time by dt ms
            self._nitems += 1
        self._thi = thi
        self._tlo = tlo
        w.head(0, pid)
        if kind == _KIND_INT:
            v = _small(rec, 12)
            if slot < 0:
                slot = self._nslots
                self._pids[slot] = pid
                self._nslots = slot + 1
                if v is None:
                    w.int_le(rec, 12, 8)
                else:
                    w.int(v)
            elif v is not None and not self._wide[slot]:
                w.int(v - self._last[slot])
            else:
                self._wide_delta(slot, rec)
            if v is None:
                lb = self._lastb
                o = slot << 3
                i = 0
                while i < 8:
                    lb[o + i] = rec[12 + i]
                    i += 1
                self._wide[slot] = 1
            else:
                self._last[slot] = v
                self._wide[slot] = 0
            self._hint = slot + 1
        elif kind == _KIND_FLOAT:
            w.f64le(rec, 12)
        elif kind == _KIND_ERR:
            w.simple(rec[12])
        else:
            w.raw_from(0x60, rec, _REC_HEADER, n)
        self.last_seq = seq
        self.count = count + 1
        self._nitems += 2
        return True

    def _wide_delta(self, slot, rec):
        # rec's i64 value minus the slot's previous one, exactly (65 bits), written from bytes.
        lb = self._lastb
        o = slot << 3
        if not self._wide[slot]:  # the previous value is a small int: its bytes first
            x = self._last[slot]
            i = 0
            while i < 8:
                lb[o + i] = x & 0xFF
                x >>= 8
                i += 1
        d = self._d
        borrow = 0
        i = 0
        while i < 8:
            x = rec[12 + i] - lb[o + i] - borrow
            borrow = 1 if x < 0 else 0
            d[i] = x & 0xFF
            i += 1
        # ninth byte: sign extensions of both operands, minus the borrow
        x = (0xFF if rec[19] & 0x80 else 0) - (0xFF if lb[o + 7] & 0x80 else 0) - borrow
        d[8] = x & 0xFF
        self._w.int_le(d, 0, 9)

    def finish(self):
        """The encoded batch as a memoryview into this encoder's buffer (valid until the next
        start()). Raises ValueError on an empty batch."""
        if not self.count:
            raise ValueError("empty data batch")
        h = self._hw
        h.reset()
        h.map_head(7)
        self._key(h, _K_V)
        h.uint(VERSION)
        self._key(h, _K_B)
        h.uint(self.boot)
        self._key(h, _K_S)
        h.uint(self.first_seq)
        self._key(h, _K_E)
        h.uint(self.last_seq)
        self._key(h, _K_F)
        h.uint((FLAG_HISTORICAL if self.historical else 0)
               | (FLAG_UNTIMED if self._untimed else 0))
        self._key(h, _K_T)
        h.int_le(self._t0b, 0, 8)
        self._key(h, _K_R)
        h.array_head(self._nitems)
        hn = h.pos
        start = _HDR_MAX - hn
        b = self._buf
        hb = self._hdr
        i = 0
        while i < hn:
            b[start + i] = hb[i]
            i += 1
        return self._mv[start:self._w.pos]

    def _key(self, h, k):
        h._byte(0x61)  # text string of length 1
        h._byte(k)


def encode_birth(buf, node_id, fw_version, config_hash, boot, points, t_ms=None):
    """Birth message into buf; returns its length. points: dicts with id, name, unit, type,
    scale, offset, source (scale/offset default 1 and 0, unit/source default None)."""
    rows = ((p.get("id"), p.get("name"), p.get("unit"), p.get("type"), p.get("scale", 1),
             p.get("offset", 0), p.get("source")) for p in points)
    return encode_birth_rows(buf, node_id, fw_version, config_hash, boot, len(points), rows,
                             t_ms)


def encode_birth_rows(buf, node_id, fw_version, config_hash, boot, n, rows, t_ms=None,
                      sec=None):
    """Birth message into buf from n point rows, each a tuple (id, name, unit, type, scale,
    offset, source), taken from any iterable (a generator over the point table: no list of
    the table is built). sec: the security posture map (otlink/posture.py), or None.
    Returns its length; raises BufferFull when buf is too small (birth_bound() gives a size
    that fits)."""
    w = Writer(buf)
    w.map_head(6 + (t_ms is not None) + (sec is not None))
    w.text("v")
    w.uint(VERSION)
    w.text("node")
    w.text(node_id)
    w.text("fw")
    w.text(fw_version)
    w.text("cfg")
    w.obj(config_hash)
    w.text("boot")
    w.uint(boot)
    if t_ms is not None:
        w.text("t")
        w.int(t_ms)
    if sec is not None:
        w.text("sec")
        w.obj(sec)
    w.text("pts")
    w.array_head(n)
    k = 0
    for r in rows:
        pid = r[0]
        if not isinstance(pid, int) or pid < 0 or pid > 0xFFFF:
            raise ValueError("birth point id %r" % (pid,))
        w.array_head(7)
        w.uint(pid)
        w.text(r[1])
        for i in range(2, 7):
            w.obj(r[i])
        k += 1
    if k != n:
        raise ValueError("birth: %d point rows, %d announced" % (k, n))
    return w.n


def _text_bound(s):
    if s is None:
        return 1
    try:
        n = len(memoryview(s))  # MicroPython: the UTF-8 bytes, no copy
    except TypeError:
        n = len(s.encode())  # CPython
    return head_size(n) + n


def birth_bound(node_id, fw_version, config_hash, rows, sec=None):
    """An upper bound of encode_birth_rows()'s length for these rows (numbers counted at their
    widest, 9 bytes): size the one buffer the birth is encoded into."""
    b = 64 + _text_bound(node_id) + _text_bound(fw_version) + _text_bound(config_hash)
    if sec is not None:  # texts and booleans: each key and value at most its text bound
        b += 8
        for k in sec:
            v = sec[k]
            b += _text_bound(k) + (_text_bound(v) if isinstance(v, str) else 1)
    for r in rows:
        b += 4 + _text_bound(r[1]) + _text_bound(r[2]) + _text_bound(r[3]) + 18 + \
            _text_bound(r[6])
    return b


# State fields and their types (docs/payload.md, "state"). Unknown fields are refused so a
# typo cannot reach the wire; add new ones here and in the doc.
STATE_FIELDS = {
    "online": bool,  # False in the last will (the death state)
    "boot": int,
    "uptime_s": int,
    "t": int,  # node clock, ms since epoch (absent when unset)
    "queue_depth": int,
    "oldest_unsent_s": int,
    "drops": int,
    "free_heap": int,
    "reset_cause": str,
    "slave_errors": dict,  # slave address -> error count
    "mqtt_reconnects": int,
    "clock_set": bool,
    "queue_corrupt": int,  # unacknowledged readings lost to flash damage found at recovery
    "sensor_errors": int,  # failed local sensor reads since boot
    "task_errors": int,  # agent tasks that failed and were restarted since boot
    "bus_errors": int,  # times the serial port itself failed since boot
    "msgs_refused": int,  # ack/cmd messages discarded unread (over 2 KiB) since boot
    "insecure": str,  # explicit insecure options in force, e.g. "plaintext_auth" (security.md)
    "cmd_forged": int,  # commands refused since boot: unsigned or a tag that does not verify
    "cmd_replayed": int,  # signed commands refused since boot: counter already used
    "acks_forged": int,  # consumer acks refused since boot: unsigned or forged
    "point_errors": dict,  # point id -> error code, points whose last report is an error
    "stopped": bool,  # True in the state of a node that stopped cleanly (not the last will)
    "config": str,  # ok, trial (committed, not yet healthy), rolled_back (console_config.py)
    "safe_mode": str,  # why the node runs in safe mode: no polling (bootguard.py); absent: normal
}


def encode_state(buf, fields):
    """State/health message into buf; returns its length. fields: see STATE_FIELDS."""
    w = Writer(buf)
    w.map_head(len(fields) + 1)
    w.text("v")
    w.uint(VERSION)
    for k in fields:
        typ = STATE_FIELDS.get(k)
        if typ is None:
            raise ValueError("state field %r unknown" % (k,))
        v = fields[k]
        if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError("state field %s: int wanted" % k)
        if typ is not int and not isinstance(v, typ):
            raise ValueError("state field %s: %s wanted" % (k, typ.__name__))
        w.text(k)
        if typ is dict:
            w.map_head(len(v))
            for a in v:
                w.uint(a)
                w.uint(v[a])
        else:
            w.obj(v)
    return w.n


def encode_ack(buf, boot, seq):
    """Ack message: the consumer has stored everything up to seq of boot."""
    w = Writer(buf)
    w.map_head(3)
    w.text("v")
    w.uint(VERSION)
    w.text("b")
    w.uint(boot)
    w.text("s")
    w.uint(seq)
    return w.n


def _uint_at(b, o, end):
    # (value, next offset) of an unsigned integer at b[o]; ValueError otherwise.
    if o >= end:
        raise ValueError("ack: truncated")
    ib = b[o]
    if ib & 0xE0:
        raise ValueError("ack: integer wanted")
    ai = ib & 0x1F
    if ai < 24:
        return ai, o + 1
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(ai)
    if size is None or o + 1 + size > end:
        raise ValueError("ack: bad integer")
    v = 0
    for i in range(size):
        v = (v << 8) | b[o + 1 + i]
    return v, o + 1 + size


def decode_ack(payload):
    """(boot, seq) from an ack payload. Raises ValueError naming what is wrong."""
    b = payload
    end = len(b)
    if end < 1 or b[0] & 0xE0 != 0xA0 or b[0] & 0x1F >= 24:
        raise ValueError("ack: map wanted")
    n = b[0] & 0x1F
    o = 1
    got = {}
    for _ in range(n):
        if o + 2 > end or b[o] != 0x61:
            raise ValueError("ack: one-letter key wanted")
        k = b[o + 1]
        v, o = _uint_at(b, o + 2, end)
        got[k] = v
    if o != end:
        raise ValueError("ack: trailing bytes")
    if got.get(_K_V) != VERSION:
        raise ValueError("ack: version")
    if _K_B not in got or _K_S not in got:
        raise ValueError("ack: b and s required")
    if got[_K_B] > SEQ_MASK or got[_K_S] > SEQ_MASK:
        raise ValueError("ack: out of u32 range")
    return got[_K_B], got[_K_S]
