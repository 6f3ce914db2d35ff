# Alarms, machine state and production counters: state machines fed one reading at a time
# (docs/analytics.md). A reading that changes nothing allocates nothing on any build: the
# value is compared as an 8-byte order key against thresholds converted to the point's raw
# values at boot (analytics/kern.py okey / kcmp), and delays are ms ticks (small ints). A
# transition allocates its event's text, once per transition.
#
# Events are readings of the event point (its own id in the birth table, type "event"), a
# text value (core/reading.py KIND_TEXT, at most 64 bytes):
#   alarm:   "on high 87.3" / "off high 79.1" / "on low 3.2"  (the value in engineering units)
#   machine: "running after micro_stop 4200"  (new state, the state it ends and its ms)
# Counters are integer readings of the counter point: the total.
import struct

from otlink.analytics import kern
from otlink.core import reading
from otlink.core.compat import const

STATES = ("stopped", "idle", "running", "micro_stop")  # codes 0..3 (docs/analytics.md)
S_STOPPED = const(0)
S_IDLE = const(1)
S_RUNNING = const(2)
S_MICRO = const(3)
_UNKNOWN = const(-1)
_INT64 = 1 << 63


def raw_key(eng, kind, scale, offset, strict=False):
    """8-byte order key K such that, for a raw value v of this kind, key(v) >= K holds
    exactly when v * scale + offset >= eng (strict: > eng). scale > 0 (the config checks)."""
    r = (eng - offset) / scale
    rec = bytearray(reading.SIZE)
    if kind == reading.KIND_FLOAT:
        if strict:  # the next float64 above r: v > r is v >= next(r)
            struct.pack_into("<d", rec, reading.HEADER, r)
            bits = struct.unpack_from("<q", rec, reading.HEADER)[0]
            bits = bits + 1 if r >= 0 else bits - 1
            if r == 0:
                bits = 1
            struct.pack_into("<q", rec, reading.HEADER, bits)
        else:
            struct.pack_into("<d", rec, reading.HEADER, r)
    else:
        i = int(r)
        if strict:
            i = i + 1 if i <= r else i  # the smallest integer > r
        elif i < r:
            i += 1  # the smallest integer >= r
        if i >= _INT64:
            i = _INT64 - 1
        if i < -_INT64:
            i = -_INT64
        struct.pack_into("<q", rec, reading.HEADER, i)
    key = bytearray(8)
    kern.okey(rec, kind, key)
    return key


def eng_value(rec, kind, scale, offset):
    if kind == reading.KIND_FLOAT:
        return struct.unpack_from("<d", rec, reading.HEADER)[0] * scale + offset
    return struct.unpack_from("<q", rec, reading.HEADER)[0] * scale + offset


def _fmt(v):
    return "%.7g" % v


class _Event:
    """What the three share: the point's raw kind and scale, a key scratch, the out record."""

    def __init__(self, cfg, emit, clock):
        self.id = cfg["id"]
        self.kind = cfg["kind"]
        self.scale = cfg["scale"]
        self.offset = cfg["offset"]
        self.emit = emit
        self.clock = clock
        self.k = bytearray(8)
        self.rec = bytearray(reading.MAX_SIZE)
        self.events = 0

    def _ge(self, key):
        return kern.kcmp(self.k, 0, key, 0) >= 0

    def _text(self, src, text):
        r = self.rec
        for i in range(reading.HEADER):
            r[i] = src[i]
        n = reading.pack_text(r, self.id, 0, text.encode(), src[reading.OFF_FLAGS])
        for i in range(8):  # the triggering reading's time
            r[reading.OFF_T + i] = src[reading.OFF_T + i]
        self.events += 1
        self.emit(r, n)


class Alarm(_Event):
    """High and/or low limit with hysteresis, and on/off delays (dwell): the condition must
    hold for on_delay_ms before the alarm is raised, its end for off_delay_ms before it
    clears. States: 0 normal, 1 high, 2 low."""

    def __init__(self, cfg, emit, clock):
        _Event.__init__(self, cfg, emit, clock)
        kd, sc, of, h = self.kind, self.scale, self.offset, cfg["hysteresis"]
        hi = cfg["high"]
        lo = cfg["low"]
        self.hi_on = raw_key(hi, kd, sc, of) if hi is not None else None  # v >= high
        self.hi_stay = raw_key(hi - h, kd, sc, of) if hi is not None else None  # v >= high-h
        self.lo_out = raw_key(lo, kd, sc, of, True) if lo is not None else None  # v > low
        self.lo_stay = raw_key(lo + h, kd, sc, of, True) if lo is not None else None
        self.on_ms = cfg["on_delay_ms"]
        self.off_ms = cfg["off_delay_ms"]
        self.state = 0
        self.want = 0
        self.since = 0

    def add(self, rec):
        kern.okey(rec, self.kind, self.k)
        s = self.state
        if s == 1:
            want = 1 if self._ge(self.hi_stay) else 0
        elif s == 2:
            want = 2 if not self._ge(self.lo_stay) else 0
        else:
            want = 0
        if want == 0:
            if self.hi_on is not None and self._ge(self.hi_on):
                want = 1
            elif self.lo_out is not None and not self._ge(self.lo_out):
                want = 2
        if want == s:
            self.want = s
            return
        now = self.clock.ticks_ms()
        if want != self.want:
            self.want = want
            self.since = now
        delay = self.on_ms if want else self.off_ms
        if self.clock.ticks_diff(now, self.since) < delay:
            return
        v = _fmt(eng_value(rec, self.kind, self.scale, self.offset))
        if s:
            self._text(rec, "off %s %s" % ("high" if s == 1 else "low", v))
        if want:
            self._text(rec, "on %s %s" % ("high" if want == 1 else "low", v))
        self.state = want


class Machine(_Event):
    """Machine state from a digital input or a current/power point: running at or above
    `running`, idle at or above `idle` (when configured), else stopped; a state is left
    downwards only below its threshold minus `hysteresis`. A stop shorter than
    micro_stop_ms is reported, when it ends, as a micro-stop."""

    def __init__(self, cfg, emit, clock):
        _Event.__init__(self, cfg, emit, clock)
        kd, sc, of, h = self.kind, self.scale, self.offset, cfg["hysteresis"]
        self.run_on = raw_key(cfg["running"], kd, sc, of)
        self.run_stay = raw_key(cfg["running"] - h, kd, sc, of)
        idle = cfg["idle"]
        self.idle_on = raw_key(idle, kd, sc, of) if idle is not None else None
        self.idle_stay = raw_key(idle - h, kd, sc, of) if idle is not None else None
        self.micro_ms = cfg["micro_stop_ms"]
        self.state = _UNKNOWN
        self.t_enter = None

    def add(self, rec):
        kern.okey(rec, self.kind, self.k)
        s = self.state
        if self._ge(self.run_on) or (s == S_RUNNING and self._ge(self.run_stay)):
            new = S_RUNNING
        elif self.idle_on is not None and (self._ge(self.idle_on) or (
                s >= S_IDLE and self._ge(self.idle_stay))):
            new = S_IDLE
        else:
            new = S_STOPPED
        if new != s:
            self._change(rec, new)

    def _change(self, rec, new):
        t = struct.unpack_from("<q", rec, reading.OFF_T)[0]
        s = self.state
        if s == _UNKNOWN:
            prev, dur = "unknown", 0
        else:
            dur = t - self.t_enter
            if s == S_STOPPED and dur < self.micro_ms:
                s = S_MICRO
            prev = STATES[s]
        self._text(rec, "%s after %s %d" % (STATES[new], prev, dur))
        self.state = new
        self.t_enter = t


class Counter(_Event):
    """Production counter: "rising" counts debounced 0 -> non-zero changes of a digital
    input (the new level must be seen for debounce_ms); "delta" adds a counter register's
    increments (16- or 32-bit wrap), taking a jump above max_step as a reset of the
    register (resynchronised, not counted). Emits the total on every change, and once at
    its first reading after boot (so a consumer's increments start from it)."""

    def __init__(self, cfg, emit, clock, total=0):
        _Event.__init__(self, cfg, emit, clock)
        self.mode = cfg["mode"]
        self.bits = cfg["bits"]
        self.debounce = cfg["debounce_ms"]
        self.max_step = cfg["max_step"]
        self.total = total
        self.prev = bytearray(4)
        self.level = -1  # rising: the debounced level; -1 before the first reading
        self.pend = -1
        self.since = 0
        self.jumps = 0
        self.dirty = False

    def add(self, rec):
        if self.mode == "rising":
            lv = kern.nz(rec)
            if self.level < 0:
                self.level = lv
                self._out(rec)
                return
            if lv == self.level:
                self.pend = -1
                return
            now = self.clock.ticks_ms()
            if self.pend != lv:
                self.pend = lv
                self.since = now
            if self.clock.ticks_diff(now, self.since) < self.debounce:
                return
            self.level = lv
            self.pend = -1
            if lv:
                self.total += 1
                self._out(rec)
            return
        d = kern.d32(rec, self.prev, self.bits)
        if self.level < 0:
            self.level = 1
            self._out(rec)
            return
        if d < 0 or d > self.max_step:
            self.jumps += 1
            return
        if d:
            self.total += d
            self._out(rec)

    def _out(self, src):
        r = self.rec
        for i in range(reading.OFF_T, reading.OFF_T + 8):
            r[i] = src[i]
        struct.pack_into("<HBB", r, 0, self.id, reading.KIND_INT, src[reading.OFF_FLAGS])
        struct.pack_into("<q", r, reading.HEADER, self.total)
        self.dirty = True
        self.emit(r, reading.SIZE)
