# Wall clock + monotonic ticks behind one object, injected everywhere time is needed.
# Readings stamped before the wall clock is set carry uptime ms and FLAG_UNTIMED; once it
# is set, to_epoch() re-times them (epoch = uptime + offset). Portable: uses only `time`.
#
# Ticks wrap. On esp32 and rp2 ticks_ms() and ticks_us() count modulo TICKS_PERIOD = 2**30
# (ms: 12.4 days, us: 17.9 minutes) and ticks_diff() is only meaningful for two ticks less
# than half a period (2**29) apart: every stored tick must be refreshed or judged before it
# goes that stale. The ticks source is injectable: Clock(ticks=Ticks(ms=..., us=...)) runs a
# node (Unix port included, whose own period is 2**62) on the boards' period, started anywhere,
# e.g. seconds before the wrap.
#
# 32-bit boards: an int of 2**30 or more is a heap object, and epoch ms (~1.7e12) is one. The
# clock keeps uptime and the epoch offset split in two small ints (value = hi * 2**24 + lo) so
# stamp_into() writes a reading's timestamp without allocating; now_ms() and uptime_ms() build
# the whole int (they allocate: status messages, not hot paths).
#
# Wall clock: time.time_ns() counts from the port's epoch, 1970 on the Unix port and 2000 on
# ports built with a 2000 epoch (time.gmtime(0)[0] says which); sync() converts it to Unix
# epoch ms, the readings' time base. The source is injectable too: Clock(wall=...), any
# object with time_ns() and gmtime(secs).
import struct
import time

from otlink.core.compat import const
from otlink.core.reading import FLAG_UNTIMED

TICKS_PERIOD = 1 << 30  # esp32 / rp2 (MICROPY_PY_TIME_TICKS_PERIOD); a heap int on 32-bit
_MASK = const(0x3FFFFFFF)  # TICKS_PERIOD - 1
_HALF = const(0x20000000)  # TICKS_PERIOD // 2
_LO = const(0xFFFFFF)  # split ints: value = hi * 2**24 + lo, 0 <= lo < 2**24
_FOLD_MS = const(60000)  # fold elapsed ticks into the uptime at least this often when read
_DAY_MS = const(86400000)


def epoch_shift_ms(year):
    """ms from 1970-01-01 to January 1st of `year` (a port's epoch), proleptic Gregorian."""
    days = 0
    for y in range(1970, year):
        days += 366 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 365
    return days * _DAY_MS


def ticks_add(a, d):
    """time.ticks_add() with the boards' period, for 0 <= a < 2**30 and |d| < 2**30; never
    forms an int >= 2**30."""
    if d >= 0:
        if a > _MASK - d:
            return a - (_MASK - d) - 1
        return a + d
    if a >= -d:
        return a + d
    return _MASK + (a + d) + 1


def ticks_diff(a, b):
    """time.ticks_diff() with the boards' period: the signed distance a - b in
    [-2**29, 2**29)."""
    d = a - b
    if d >= _HALF:
        return d - _MASK - 1
    if d < -_HALF:
        return d + _MASK + 1
    return d


class Ticks:
    """A ticks source on the boards' period (2**30) that reads ms/us now: Clock(ticks=...)
    starts a node near the wrap. On the 32-bit port it is the time module's own counter,
    shifted; on the 64-bit Unix port it folds the host's counter onto the boards' period."""

    def __init__(self, ms=None, us=None):
        self._oms = 0
        self._ous = 0
        if ms is not None:
            self._oms = (ms & _MASK) - (time.ticks_ms() & _MASK)
        if us is not None:
            self._ous = (us & _MASK) - (time.ticks_us() & _MASK)

    def ticks_ms(self):
        return ticks_add(time.ticks_ms() & _MASK, self._oms)

    def ticks_us(self):
        return ticks_add(time.ticks_us() & _MASK, self._ous)

    def ticks_add(self, a, d):
        return ticks_add(a, d)

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def sleep_ms(self, ms):
        time.sleep_ms(ms)


class Clock:
    def __init__(self, synced=True, ticks=None, wall=None):
        t = time if ticks is None else ticks
        self._wall = time if wall is None else wall
        # the source's functions as attributes: a call costs no method lookup, allocates nothing
        self.ticks_ms = t.ticks_ms
        self.ticks_us = t.ticks_us
        self.ticks_add = t.ticks_add
        self.ticks_diff = t.ticks_diff
        self.sleep_ms = t.sleep_ms
        self._t0 = self.ticks_ms()
        self._up_hi = 0  # uptime ms accumulated up to _t0, split (ticks wrap: fold them in)
        self._up_lo = 0
        self._set = False
        self._off_hi = 0  # epoch_ms - uptime_ms, split, once the wall clock is known
        self._off_lo = 0
        if synced:
            self.sync()

    def _elapsed(self):
        # ms since _t0, after folding into the uptime when more than _FOLD_MS. _t0 is never
        # ahead of now, so a negative distance means more than half a period (6.2 days) went
        # by without a read: it is then the distance modulo the period (up to 12.4 days). The
        # agent reads the clock at least once a day (every reading stamps it; intervals and
        # the state interval are at most a day), far inside that.
        now = self.ticks_ms()
        d = self.ticks_diff(now, self._t0)
        if d < 0:
            d = d + _MASK + 1  # small ints only: d + 2**30 < 2**30 here
        if d > _FOLD_MS:
            lo = self._up_lo + d
            self._up_hi += lo >> 24
            self._up_lo = lo & _LO
            self._t0 = now
            d = 0
        return d

    def uptime_ms(self):
        d = self._elapsed()
        return (self._up_hi << 24) + self._up_lo + d

    # wall clock
    def is_set(self):
        return self._set

    def set_epoch_ms(self, epoch_ms):
        """Called by NTP (boards) or sync() (Unix port)."""
        off = epoch_ms - self.uptime_ms()
        self._off_hi = off >> 24
        self._off_lo = off & _LO
        self._set = True

    def sync(self):
        """Unix port and boards after ntptime.settime(): time.time_ns() is the wall clock,
        counted from the port's epoch (time.gmtime(0)[0]: 1970 or 2000)."""
        w = self._wall
        ns = w.time_ns()
        self.set_epoch_ms(ns // 1000000 + epoch_shift_ms(w.gmtime(0)[0]))

    def _offset(self):
        return (self._off_hi << 24) + self._off_lo

    def now_ms(self):
        """Epoch ms when set, else uptime ms (the caller flags the reading UNTIMED).
        Allocates on 32-bit (an int >= 2**30): hot paths use stamp_into()."""
        if not self._set:
            return self.uptime_ms()
        return self.uptime_ms() + self._offset()

    def stamp_into(self, buf, off):
        """Write now_ms() as a little-endian int64 into buf[off:off + 8] and return the
        reading flags (FLAG_UNTIMED while the wall clock is unset). Does not allocate: the
        time is summed in 24-bit low / high parts and packed as 2 + 1 + 4 + 1 bytes."""
        d = self._elapsed()  # first: it may fold into _up_hi/_up_lo
        lo = self._up_lo + d
        hi = self._up_hi
        flags = FLAG_UNTIMED
        if self._set:
            lo += self._off_lo
            hi += self._off_hi
            flags = 0
        hi += lo >> 24
        lo &= _LO
        struct.pack_into("<HBiB", buf, off, lo & 0xFFFF, lo >> 16, hi, 0xFF if hi < 0 else 0)
        return flags

    def to_epoch(self, uptime_ms):
        """Epoch ms for a reading stamped with uptime ms, or None while unset."""
        if not self._set:
            return None
        return uptime_ms + self._offset()
