# heapsize: 128K 32:96K
# Uplink without a broker: topics, reconnect backoff bounds with jitter (exponential, capped,
# reset by a connection), no TLS module loaded unless configured, the write-coalescing path
# of the deadline socket under heap_lock, and the deadline itself. Time runs on the boards'
# 2**30 ticks period, starting just before the wrap, and comes from the injected clock only.
import errno
import gc
import sys

from otlink import uplink
from otlink.core.config import parse_mqtt
from otlink.hal.clock import Clock, Ticks, ticks_add, ticks_diff
gc.collect()
import mptest  # noqa: E402

P = 1 << 30
DAY_MS = 86400000


class FakeClock:
    """ms ticks on the boards' period that move only when the test says (advance)."""

    def __init__(self):
        self.t = P - 100  # the first backoff delays end past the wrap

    def ticks_ms(self):
        return self.t

    def ticks_add(self, a, d):
        return ticks_add(a, d)

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def advance(self, ms):
        while ms > 0:
            step = ms if ms < 0x10000000 else 0x10000000
            self.t = ticks_add(self.t, step)
            ms -= step


def make(rand, **cfg):
    c = {"host": "127.0.0.1", "port": 1, "backoff_ms": [500, 8000]}
    c.update(cfg)
    if c.get("ack", "consumer") == "consumer":
        c["ack_key"] = mptest.ACK_KEY
    return uplink.Uplink(parse_mqtt(c), {"id": "node-7", "site": "plant"}, FakeClock(),
                         rand=rand)


def delays(up, n):
    out = []
    for _ in range(n):
        up._failed(OSError(errno.ECONNREFUSED))
        out.append(ticks_diff(up._next_try, up.clock.t))
    return out


def test_topics():
    up = make(None)
    mptest.eq((up.t_birth, up.t_data, up.t_state, up.t_ack, up.t_cmd),
              (b"otlink/plant/node-7/birth", b"otlink/plant/node-7/data",
               b"otlink/plant/node-7/state", b"otlink/plant/node-7/ack",
               b"otlink/plant/node-7/cmd"), "topics")


def test_backoff_bounds_low_jitter():
    up = make(lambda n: 0)
    mptest.eq(delays(up, 7), [250, 500, 1000, 2000, 4000, 4000, 4000], "lower bounds b/2")


def test_backoff_bounds_high_jitter():
    up = make(lambda n: n - 1)
    mptest.eq(delays(up, 7), [500, 1000, 2000, 4000, 8000, 8000, 8000], "upper bounds b")


def test_backoff_default_jitter_within_bounds_and_spread():
    up = make(None)
    seen = set()
    for _ in range(40):
        up._backoff = 0
        d = delays(up, 1)[0]
        mptest.true(250 <= d <= 500, "first delay %d within [250, 500]" % d)
        seen.add(d)
    mptest.true(len(seen) > 5, "jitter spreads retries (%d distinct)" % len(seen))


def test_backoff_gates_connect_and_counts():
    up = make(lambda n: 0)
    up._failed(OSError(errno.ETIMEDOUT))
    mptest.eq((up.due(), up.wait_ms()), (False, 250), "not due yet")
    mptest.eq(up.connect(), False, "connect refused by the schedule")
    mptest.eq(up.failures, 1, "no attempt made")
    mptest.eq(up.last_error, "MQTT: timed out", "error text")
    up.clock.advance(249)
    mptest.eq((up.due(), up.wait_ms()), (False, 1), "1 ms to go, past the wrap")
    up.clock.advance(1)
    mptest.eq(up.due(), True, "due after the delay")


def test_backoff_schedule_read_days_later_is_due():
    # _next_try is re-armed only by a failure: read a week later (after close(), or the time
    # set at construction) ticks_diff's distance had wrapped and connect waited up to 6.2 days
    for days in (7, 10, 12):
        up = make(lambda n: n - 1, backoff_ms=[500, 60000])
        up._failed(OSError(errno.ECONNREFUSED))
        up.clock.advance(days * DAY_MS)
        mptest.eq((up.due(), up.wait_ms()), (True, 0), "due after %d days" % days)
    up = make(None)
    up.clock.advance(7 * DAY_MS)
    mptest.eq(up.due(), True, "the construction time a week on")


def test_no_tls_module_without_tls():
    make(None)
    mptest.true("ussl" not in sys.modules and "ssl" not in sys.modules,
                "plain MQTT does not load ssl")


def test_deadline_socket_write_coalesces_without_allocating():
    buf = bytearray(64)
    s = uplink.DeadlineSocket(buf, 1000)
    try:
        data = b"\x30\x10abcdef"
        mv = memoryview(b"0123456789")
        mptest.no_alloc(s.write, data)
        mptest.no_alloc(s.write, mv, 4)
        mptest.eq(bytes(buf[:12]), b"\x30\x10abcdef0123", "bytes gathered")
        mptest.eq(s._nout, 12, "pending")
    finally:
        s._nout = 0
        s.close()


def test_deadline_socket_deadline():
    for ticks in (None, Clock(synced=False, ticks=Ticks(ms=P - 3000))):
        s = uplink.DeadlineSocket(bytearray(16), 0, ticks)
        try:
            e = mptest.raises(OSError, s.left_ms)
            mptest.eq(e.args[0], errno.ETIMEDOUT, "past the deadline")
            s.arm(10000)  # on the clock started near the wrap: the deadline is past it
            mptest.true(9000 < s.left_ms() <= 10000, "re-armed")
            if ticks is not None:
                mptest.true(s._deadline < 10000, "deadline past the wrap")
        finally:
            s.close()


def test_session_time_is_the_clocks():
    # the socket's deadlines and keepalive times are the uplink's clock's ticks (they mixed
    # the time module's with the clock's: right only while the clock was the time module)
    up = make(None)
    up.clock = Clock(synced=False, ticks=Ticks(ms=P - 3000))
    s = up._new_socket()
    try:
        mptest.true(ticks_diff(s.last_rx, up.clock.ticks_ms()) <= 0 and
                    ticks_diff(up.clock.ticks_ms(), s.last_rx) < 1000, "last_rx on the clock")
        mptest.true(s._deadline < 10000, "deadline on the clock, past its wrap")
    finally:
        s.close()


mptest.main(globals())
