# The clock of the publisher tests (test_publisher.py, test_stop_state.py, test_hmac_acks.py):
# hal/clock.py's interface where ticks and uptime are one counter `t` (ms) that moves only when
# the test adds to it, and the wall clock is that counter plus EPOCH once set. No wrap: these
# tests are about batching and acks, test_uplink.py and test_wrap.py own the ticks period.
EPOCH = 1767225600000  # 2026-01-01T00:00:00Z in ms


class FakeClock:
    """t: ticks and uptime in ms (a test advances it: clock.t += ms). synced=False: the wall
    clock is not set until the test sets clock.offset (NTP answered)."""

    def __init__(self, synced=True, t=1000):
        self.t = t
        self.offset = EPOCH if synced else None

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, d):
        return a + d

    def uptime_ms(self):
        return self.t

    def is_set(self):
        return self.offset is not None

    def now_ms(self):
        return self.t + (self.offset or 0)

    def to_epoch(self, up):
        return None if self.offset is None else up + self.offset
