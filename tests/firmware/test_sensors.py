# heapsize: 72K
# Local sensor task (otlink.sensors.SensorTask) on the SHT3x driver: one sample is begin()
# (stamp + start) and finish() (read + one record per point); both run under heap_lock on the
# 32-bit build too, with the wall clock at epoch ms (a heap int there) and the ms ticks just
# before the wrap. The bus answers a fixed datasheet-valid frame without allocating.
import struct

from modbus_sim import T0, sim_clock
from mptest import eq, no_alloc, true

from otlink.core import reading
from otlink.core.errors import ERR_BUS_STUCK, ERR_SENSOR, ERR_SENSOR_CRC
from otlink.drivers import sht3x
from otlink.drivers.sht3x import crc8
from otlink.hal.clock import Clock
from otlink.sensors import SensorTask

P = 1 << 30
ST, SRH = 0x6666, 0x8000  # raw temperature and humidity the bus answers


class FixedBus:
    """machine.I2C's writeto/readfrom_into for one SHT3x that always has a measurement ready;
    fail: the OSError the next call raises (absent / NACK)."""

    def __init__(self):
        self.frame = bytearray((ST >> 8, ST & 0xFF, 0, SRH >> 8, SRH & 0xFF, 0))
        self.frame[2] = crc8(self.frame, 0, 2)
        self.frame[5] = crc8(self.frame, 3, 2)
        self.fail = None
        self.starts = 0

    def writeto(self, addr, buf, stop=True):
        if self.fail is not None:
            raise self.fail
        self.starts += 1
        return 2

    def readfrom_into(self, addr, buf, stop=True):
        if self.fail is not None:
            raise self.fail
        f = self.frame
        for i in range(6):
            buf[i] = f[i]


CFG = {"name": "room", "driver": "sht3x", "bus": "i2c0", "address": 0x44,
       "points": [{"id": 7, "channel": "humidity"}, {"id": 5, "channel": "temperature"}]}


class Sink:
    """Keeps the records it is given in preallocated slots (does not allocate)."""

    def __init__(self, n=8):
        self.buf = bytearray(n * reading.SIZE)
        self.n = 0

    def __call__(self, rec, n):
        o = self.n * reading.SIZE
        for i in range(n):
            self.buf[o + i] = rec[i]
        self.n += 1

    def records(self):
        return [reading.unpack(self.buf[i * reading.SIZE:(i + 1) * reading.SIZE],
                               reading.SIZE) for i in range(self.n)]


def _task(clock):
    bus = FixedBus()
    sink = Sink()
    return bus, sink, SensorTask(CFG, sht3x.Driver(bus, CFG, clock), clock, sink, 1000)


def test_sample_does_not_allocate_near_the_wrap():
    ticks, clock = sim_clock(ms=P - 3)  # wall clock set: epoch ms, >= 2**30
    bus, sink, task = _task(clock)
    for _k in range(3):  # the ms ticks wrap during the second sample
        eq(no_alloc(task.begin), True, "begin")
        ticks.advance(16000)
        no_alloc(task.finish)
        ticks.advance(984000)
    true(ticks.ms < 3000, "the ms ticks wrapped: %d" % ticks.ms)
    recs = sink.records()
    eq(len(recs), 6, "two points per sample")
    for k in range(3):
        want_t = T0 + k * 1000
        eq(recs[2 * k][:5], (7, reading.KIND_INT, 0, want_t, SRH), "humidity %d" % k)
        eq(recs[2 * k + 1][:5], (5, reading.KIND_INT, 0, want_t, ST), "temperature %d" % k)
    eq((task.ok, task.errors, bus.starts), (3, 0, 3), "counters")


def test_untimed_samples_carry_uptime_and_the_flag():
    ticks, clock = sim_clock(ms=P - 3)
    clock = Clock(synced=False, ticks=ticks)
    bus, sink, task = _task(clock)
    ticks.advance(5000000)
    no_alloc(task.begin)
    no_alloc(task.finish)
    r = sink.records()[0]
    eq((r[2], r[3]), (reading.FLAG_UNTIMED, 5000), "flag and uptime ms")


def test_bus_errors_become_error_records_with_the_sample_time():
    ticks, clock = sim_clock()
    bus, sink, task = _task(clock)
    bus.fail = OSError(19)
    eq(task.begin(), False, "start failed")
    bus.fail = OSError(110)
    eq(task.begin(), False, "bus stuck")
    bus.fail = None
    task.begin()
    bus.frame[1] ^= 4  # corrupt the temperature word: only its point fails
    task.finish()
    recs = sink.records()
    eq([(r[0], r[1], r[3], r[4]) for r in recs],
       [(7, reading.KIND_ERR, T0, ERR_SENSOR), (5, reading.KIND_ERR, T0, ERR_SENSOR),
        (7, reading.KIND_ERR, T0, ERR_BUS_STUCK), (5, reading.KIND_ERR, T0, ERR_BUS_STUCK),
        (7, reading.KIND_INT, T0, SRH), (5, reading.KIND_ERR, T0, ERR_SENSOR_CRC)],
       "error records")
    eq((task.ok, task.errors), (0, 3), "counted")
    raw = struct.unpack_from("<q", task.rec, reading.OFF_T)[0]
    eq(raw, T0, "stamp kept in the record")


def test_wide_values_and_backdated_events_do_not_allocate():
    # a counter's total above 2**30 (hi, lo) and an event 1234 ms old: packed byte by byte
    from otlink.sensors import _backdate, _pack_wide

    rec = bytearray(reading.SIZE)
    struct.pack_into("<q", rec, reading.OFF_T, T0)
    no_alloc(_pack_wide, rec, reading.HEADER, 5, 123456789)
    no_alloc(_backdate, rec, reading.OFF_T, 1234)
    eq(struct.unpack_from("<qq", rec, reading.OFF_T), (T0 - 1234, 5 * P + 123456789), "bytes")
    no_alloc(_pack_wide, rec, reading.HEADER, 0x3FFFFFF, P - 1)
    eq(struct.unpack_from("<q", rec, reading.HEADER)[0], 0x3FFFFFF * P + P - 1, "56 bits")


import mptest  # noqa: E402

mptest.main(globals())
