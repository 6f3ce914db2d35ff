# heapsize: 112K 32:96K
# Uplink without a broker: topics, reconnect backoff bounds with jitter (exponential, capped,
# reset by a connection), no TLS module loaded unless configured, the write-coalescing path
# of the deadline socket under heap_lock, and the deadline itself.
import errno
import gc
import sys
import time

from otlink import uplink
from otlink.core.config import parse_mqtt
gc.collect()
import mptest  # noqa: E402


class FakeClock:
    def __init__(self):
        self.t = 5000

    def ticks_ms(self):
        return self.t


def make(rand, **cfg):
    c = {"host": "127.0.0.1", "port": 1, "backoff_ms": [500, 8000]}
    c.update(cfg)
    return uplink.Uplink(parse_mqtt(c), {"id": "node-7", "site": "plant"}, FakeClock(),
                         rand=rand)


def delays(up, n):
    out = []
    for _ in range(n):
        up._failed(OSError(errno.ECONNREFUSED))
        out.append(time.ticks_diff(up._next_try, up.clock.t))
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
    up.clock.t += 250
    mptest.eq(up.due(), True, "due after the delay")


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
    s = uplink.DeadlineSocket(bytearray(16), 0)
    try:
        e = mptest.raises(OSError, s.left_ms)
        mptest.eq(e.args[0], errno.ETIMEDOUT, "past the deadline")
        s.arm(10000)
        mptest.true(9000 < s.left_ms() <= 10000, "re-armed")
    finally:
        s.close()


mptest.main(globals())
