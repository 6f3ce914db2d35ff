# heapsize: 96K
# Stored ticks across the boards' 2**30 wrap outside the Modbus path: the clock's uptime after
# an idle longer than half a period, the wall clock from a port with a 2000 epoch, and the
# publisher's and uplink's deadlines after idles of days (each a case that went wrong before).
import struct

from modbus_sim import T0, sim_clock
from mptest import eq, no_alloc, true

from otlink.core import reading
from otlink.hal.clock import Clock, epoch_shift_ms

P = 1 << 30
DAY_MS = 86400000


def test_uptime_counts_an_idle_longer_than_half_a_period():
    # nobody reads the clock for 7 and then 12 days: ticks_diff's distance went negative and
    # the uptime stepped back by 12.4 days
    for days in (1, 6, 7, 12):
        ticks, clock = sim_clock(ms=P - 5000)
        ticks.advance(days * DAY_MS * 1000)
        eq(clock.uptime_ms(), days * DAY_MS, "uptime after %d idle days" % days)
        rec = bytearray(reading.SIZE)
        no_alloc(clock.stamp_into, rec, reading.OFF_T)
        eq(struct.unpack_from("<q", rec, reading.OFF_T)[0], T0 + days * DAY_MS, "stamp")


class Wall:
    """A wall clock source as a port's time module: time_ns() counted from its epoch."""

    def __init__(self, epoch_year, unix_ms):
        self.year = epoch_year
        self.ns = (unix_ms - epoch_shift_ms(epoch_year)) * 1000000

    def time_ns(self):
        return self.ns

    def gmtime(self, secs):
        true(secs == 0, "only the epoch is asked")
        return (self.year, 1, 1, 0, 0, 0, 5, 1)


def test_epoch_shift():
    eq(epoch_shift_ms(1970), 0, "Unix")
    eq(epoch_shift_ms(2000), 946684800000, "2000-01-01T00:00:00Z")
    eq(epoch_shift_ms(2001), 946684800000 + 366 * DAY_MS, "2000 is a leap year")


def test_sync_counts_from_the_ports_epoch():
    # 2026-01-01T00:00:00Z; an ESP32's time_ns() counts from 2000: read as Unix time it was
    # 30 years early
    unix_ms = 1767225600000
    for year in (2000, 1970):
        c = Clock(synced=True, wall=Wall(year, unix_ms))
        got = c.now_ms()
        true(unix_ms <= got < unix_ms + 1000, "epoch %d: %d, want %d" % (year, got, unix_ms))
    c = Clock()  # this port's own time module
    import time
    eq(time.gmtime(0)[0], 1970, "the Unix port counts from 1970")
    true(abs(c.now_ms() - time.time_ns() // 1000000) < 1000, "the Unix port's wall clock")


import mptest  # noqa: E402

mptest.main(globals())
