# heapsize: 208K 32:64K
# Stored ticks across the boards' 2**30 wrap outside the Modbus path: the clock's uptime after
# an idle longer than half a period, the wall clock from a port with a 2000 epoch, and the
# publisher's and uplink's deadlines after idles of days (each a case that went wrong before).
import gc
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


# --- the publisher ---------------------------------------------------------------------
class Up:
    """What the Publisher needs of an Uplink: publish() stands for a completed QoS1 publish."""

    def __init__(self):
        self.t_data = b"otlink/s/n/data"
        self.t_state = b"otlink/s/n/state"
        self.connected = True
        self.connects = 1
        self.on_ack = None
        self.sent = []  # (topic, payload bytes)

    def publish(self, topic, payload, qos=1, retain=False):
        self.sent.append((topic, bytes(payload)))

    def poll(self):
        pass

    def count(self, topic):
        return len([1 for t, _p in self.sent if t == topic])


BIRTH = {"node": "n", "fw": "t", "config_hash": "0" * 8, "boot": 1,
         "points": [{"id": 1, "name": "p1", "unit": "V", "type": "int32", "scale": 1.0,
                     "offset": 0, "source": "test"}]}


def _pub(mode="broker", **cfg):
    from otlink.core.config import parse_mqtt
    from otlink.publisher import Publisher
    from ramqueue import RamQueue
    gc.collect()
    ticks, clock = sim_clock(ms=P - 5000)  # the ms ticks wrap in the first 5 s
    q = RamQueue(clock, capacity=128, slot=reading.SIZE)
    up = Up()
    c = {"host": "127.0.0.1", "ack": mode, "qos": 1, "batch_max": 50, "linger_ms": 0,
         "replay_rate": 10}
    c.update(cfg)
    if c["ack"] == "consumer":  # plain acks here: signed ones are test_hmac_acks'
        c["insecure_unsigned_acks"] = True
    return ticks, q, up, Publisher(q, up, clock, parse_mqtt(c), BIRTH)


def _put(q, n):
    rec = bytearray(reading.SIZE)
    for i in range(n):
        reading.pack_int(rec, 1, T0 + i, i)
        q.append(rec, reading.SIZE)


def test_replay_after_days_without_one_is_not_held():
    # the replay deadline is refreshed only by a replay: a backlog a week after the last one
    # compared against it and waited up to 6.2 more days
    ticks, q, up, p = _pub()
    _put(q, 60)
    p._session_start()
    n = 0
    while n < 10 and q.depth():
        p.step()
        ticks.advance(100000)
        n += 1
    eq((q.depth(), p.hist_batches), (0, 2), "first backlog replayed")
    for days in (7, 13):
        ticks.advance(days * DAY_MS * 1000)
        _put(q, 60)
        p._session_start()  # reconnected with a backlog
        eq(p.step(), True, "after %d days the new backlog's first batch goes out at once"
           % days)
        eq(p.step(), False, "the next waits its gap")
        ticks.advance(100000)
        eq(p.step(), True, "then goes")


def test_state_resumes_after_a_long_gap():
    # the state time is refreshed only by a state message; compared after a week (here: the
    # loop's first turn a week after the last state) it waited up to 6.2 more days
    import asyncio
    ticks, q, up, p = _pub(state_interval_s=60)
    p._session_start()
    eq(up.count(up.t_state), 1, "state at session start")
    true(not p.state_due(), "not due yet")
    ticks.advance(61000000)
    true(p.state_due(), "due after state_interval_s")
    p._publish_state()
    ticks.advance(7 * DAY_MS * 1000)

    async def go():
        t = asyncio.create_task(p.run())
        await asyncio.sleep_ms(50)
        p.running = False
        await t

    asyncio.run(go())
    eq(up.count(up.t_state), 3, "a state message on the loop's first turn")


def test_linger_and_ack_timeout_after_a_long_gap():
    ticks, q, up, p = _pub(linger_ms=200)
    p._session_start()
    _put(q, 3)
    eq(p.step(), False, "partial batch lingers")
    ticks.advance(7 * DAY_MS * 1000)
    eq(p.step(), True, "a linger deadline from a week ago has passed")
    ticks, q, up, p = _pub("consumer")
    p._session_start()
    _put(q, 3)
    eq(p.step(), True, "sent, awaiting the consumer's ack")
    ticks.advance(7 * DAY_MS * 1000)
    p.step()
    eq(p.ack_timeouts, 1, "an ack awaited for a week has timed out")


def test_ram_queue_oldest_age_past_half_a_period():
    from ramqueue import RamQueue
    ticks, clock = sim_clock(ms=P - 5000)
    q = RamQueue(clock, capacity=4, slot=reading.SIZE)
    _put(q, 1)
    for days in (1, 6, 7, 12):
        ticks.advance(days * DAY_MS * 1000 - (ticks.elapsed_ms * 1000))
        eq(q.stats()["oldest_age_ms"], days * DAY_MS, "age after %d days" % days)


import mptest  # noqa: E402

mptest.main(globals())
