# Wall clock + monotonic ticks behind one object, injected everywhere time is needed.
# Readings stamped before the wall clock is set carry uptime ms and FLAG_UNTIMED; once it
# is set, to_epoch() re-times them (epoch = uptime + offset). Portable: uses only `time`.
import time


class Clock:
    def __init__(self, synced=True):
        self._t0 = time.ticks_ms()
        self._up = 0  # uptime ms accumulated up to _t0 (ticks wrap, so we fold them in)
        self._offset = None  # epoch_ms - uptime_ms, once the wall clock is known
        if synced:
            self.sync()

    # monotonic
    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, a, d):
        return time.ticks_add(a, d)

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def uptime_ms(self):
        # Fold elapsed ticks into _up at least every few minutes so wrap (2^30 ms on
        # some ports) never loses time; callers call often enough in practice.
        now = time.ticks_ms()
        d = time.ticks_diff(now, self._t0)
        if d > 60000:
            self._up += d
            self._t0 = now
            d = 0
        return self._up + d

    # wall clock
    def is_set(self):
        return self._offset is not None

    def set_epoch_ms(self, epoch_ms):
        """Called by NTP (boards) or sync() (Unix port)."""
        self._offset = epoch_ms - self.uptime_ms()

    def sync(self):
        # Unix port and boards after ntptime.settime(): time.time_ns() is the wall clock.
        self.set_epoch_ms(time.time_ns() // 1000000)

    def now_ms(self):
        """Epoch ms when set, else uptime ms (the caller flags the reading UNTIMED)."""
        if self._offset is None:
            return self.uptime_ms()
        return self.uptime_ms() + self._offset

    def to_epoch(self, uptime_ms):
        """Epoch ms for a reading stamped with uptime ms, or None while unset."""
        if self._offset is None:
            return None
        return uptime_ms + self._offset
