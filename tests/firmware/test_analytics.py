# heapsize: 216K 32:72K
# Node analytics (otlink.analytics): tumbling windows, raw keep/thin/drop, alarms with
# hysteresis and dwell, machine state with micro-stops, debounced counters and their totals
# kept across a restart. Every reading that closes no window and changes no state is fed
# under heap_lock, on the 32-bit build too (epoch-ms times and float values are heap objects
# there: the path never makes one).
import gc
import struct
import sys

from modbus_sim import T0, sim_clock
from mptest import ACK_KEY, eq, no_alloc, true

from otlink.core import config, reading

BASE = {
    "node": {"id": "press-01", "site": "plant1"},
    "mqtt": {"host": "127.0.0.1", "ack_key": ACK_KEY},
    "serial": {"port": "/dev/null"},
    "points": [
        {"id": 1, "name": "current", "slave": 1, "table": "input", "address": 0,
         "type": "float32", "unit": "A"},
        {"id": 2, "name": "temp", "slave": 1, "table": "input", "address": 2,
         "type": "int16", "unit": "degC", "scale": 0.1, "offset": -40},
        {"id": 3, "name": "cycle_in", "slave": 1, "table": "discrete", "address": 0},
        {"id": 4, "name": "parts", "slave": 1, "table": "input", "address": 4,
         "type": "uint16"},
    ],
    "analytics": {
        "windows": [
            {"point": 2, "count": 5, "stats": {"count": 100, "min": 101, "max": 102,
                                               "mean": 103, "rms": 104, "std": 105,
                                               "first": 106, "last": 107}},
            {"point": 1, "every_ms": 10000, "stats": {"mean": 110, "max": 111}},
        ],
        "raw": {"2": 5, "1": "drop"},
        "alarms": [{"id": 200, "name": "temp_alarm", "point": 2, "high": 60, "low": -10,
                    "hysteresis": 5, "on_delay_ms": 2000, "off_delay_ms": 1000},
                   {"id": 201, "name": "current_mean_high", "point": 110, "high": 9.5}],
        "machines": [{"id": 300, "name": "press.state", "point": 1, "running": 5.0,
                      "idle": 1.0, "hysteresis": 0.5, "micro_stop_ms": 30000}],
        "counters": [{"id": 400, "name": "press.cycles", "point": 3, "mode": "rising",
                      "debounce_ms": 50, "machine": 300},
                     {"id": 401, "name": "press.parts", "point": 4, "mode": "delta",
                      "role": "rejects"}],
    },
}


class Sink:
    """The queue's append: keeps what it is given (copies, outside any locked section)."""

    def __init__(self):
        self.recs = []
        self.lock = False

    def __call__(self, rec, n):
        if self.lock:  # a locked test feeding a reading that emits: fail loudly
            raise MemoryError("emitted under lock")
        r = reading.unpack(bytes(rec[:n]), n)
        if r[1] == reading.KIND_TEXT:
            r = r[:4] + (r[4].decode(),)
        self.recs.append(r)

    def of(self, pid):
        return [r for r in self.recs if r[0] == pid]


CFG = config.validate(BASE)  # validated once; the schema module is then dropped
del config
sys.modules.pop("otlink.core.config", None)
gc.collect()


def build(path=None):
    from otlink.analytics import Analytics

    cfg = CFG
    ticks, clock = sim_clock(ms=(1 << 30) - 5000)  # ms ticks wrap during the tests
    sink = Sink()
    a = Analytics(cfg, clock, sink, path)
    return cfg, ticks, clock, sink, a


class Feeder:
    """Packs readings like a source does: the clock's stamp, then the value."""

    def __init__(self, clock, a):
        self.clock = clock
        self.a = a
        self.rec = bytearray(reading.SIZE)

    def int(self, pid, v):
        rec = self.rec
        fl = self.clock.stamp_into(rec, reading.OFF_T)
        struct.pack_into("<HBB", rec, 0, pid, reading.KIND_INT, fl)
        struct.pack_into("<q", rec, reading.HEADER, v)
        return self.a.feed(rec, reading.SIZE)

    def flt(self, pid, v):
        rec = self.rec
        fl = self.clock.stamp_into(rec, reading.OFF_T)
        struct.pack_into("<HBB", rec, 0, pid, reading.KIND_FLOAT, fl)
        struct.pack_into("<d", rec, reading.HEADER, v)
        return self.a.feed(rec, reading.SIZE)


def close(a, b, what, rel=1e-6):
    true(abs(a - b) <= rel * max(abs(a), abs(b), 1e-30), "%s: %r vs %r" % (what, a, b))


def test_count_window_stats_in_engineering_units():
    cfg, ticks, clock, sink, a = build()
    f = Feeder(clock, a)
    raws = [250, 255, 249, 300, 262]  # temp: raw * 0.1 - 40
    for v in raws:
        f.int(2, v)
    eng = [r * 0.1 - 40 for r in raws]
    n = len(eng)
    mean = sum(eng) / n
    std = (sum([(x - mean) ** 2 for x in eng]) / n) ** 0.5
    rms = (sum([x * x for x in eng]) / n) ** 0.5
    got = {r[0]: r[4] for r in sink.recs if 100 <= r[0] <= 107}
    eq(got[100], 5, "count")
    close(got[101], min(eng), "min")
    close(got[102], max(eng), "max")
    close(got[103], mean, "mean")
    close(got[104], rms, "rms")
    close(got[105], std, "std", 1e-5)
    close(got[106], eng[0], "first")
    close(got[107], eng[-1], "last")
    # derived readings carry the window's last reading's time, and are floats but count
    t = [r[3] for r in sink.recs if r[0] == 103][0]
    eq(t, T0, "time of the derived reading")
    eq([r[1] for r in sink.recs if r[0] == 100], [reading.KIND_INT], "count is an int")


def test_time_window_closes_on_the_clock_boundary():
    cfg, ticks, clock, sink, a = build()
    f = Feeder(clock, a)
    # T0 is a multiple of 10 s: readings at +0, +3, +6, +9 s, then +10 s opens the next
    for v in (2.0, 4.0, 6.0, 8.0):
        f.flt(1, v)
        ticks.advance(3000000)
    eq(sink.of(110), [], "open window: nothing yet")
    ticks.advance(1000000)
    f.flt(1, 1.0)
    eq([r[4] for r in sink.of(110)], [5.0], "mean of the closed window")
    eq([r[4] for r in sink.of(111)], [8.0], "max")


def test_raw_thin_and_drop():
    cfg, ticks, clock, sink, a = build()
    f = Feeder(clock, a)
    kept = [f.int(2, 250) for _ in range(10)]
    eq(kept, [False, False, False, False, True] * 2, "temp: every 5th raw reading kept")
    eq(f.flt(1, 0.5), False, "current: raw dropped (its windows still run)")
    eq(f.int(4, 1), True, "parts: no policy, kept")


def test_no_allocation_per_reading():
    cfg, ticks, clock, sink, a = build()
    f = Feeder(clock, a)
    f.int(2, 250)  # warm-up: the first readings of every handler
    f.flt(1, 0.5)
    f.int(3, 0)
    f.int(4, 7)
    sink.lock = True
    gc.collect()
    for v in (251, 252, 253):  # the 5th would close the count window: not under lock
        no_alloc(f.int, 2, v)
    for _k in range(20):  # current: float values (boxed on every port), time window open,
        ticks.advance(100000)  # state stays stopped, no event
        no_alloc(f.flt, 1, 0.25)
    no_alloc(f.int, 3, 0)  # counter input low, no edge
    no_alloc(f.int, 4, 7)  # register unchanged
    sink.lock = False


def test_alarm_hysteresis_and_dwell():
    cfg, ticks, clock, sink, a = build()
    f = Feeder(clock, a)
    hot = 1010  # 61.0 degC, above high 60
    f.int(2, hot)
    ticks.advance(1500000)
    f.int(2, hot)
    eq(sink.of(200), [], "on delay 2 s not yet over")
    ticks.advance(600000)
    f.int(2, hot)
    eq([r[4] for r in sink.of(200)], ["on high 61"], "raised after 2.1 s")
    f.int(2, 960)  # 56 degC: above high - hysteresis (55): stays on
    ticks.advance(5000000)
    f.int(2, 960)
    eq(len(sink.of(200)), 1, "inside the hysteresis band")
    f.int(2, 940)  # 54 degC: below 55, off after the 1 s off delay
    eq(len(sink.of(200)), 1, "off delay")
    ticks.advance(1200000)
    f.int(2, 940)
    eq(sink.of(200)[-1][4], "off high 54", "cleared")
    f.int(2, 290)  # -11 degC: low, raised after 2 s
    ticks.advance(2000000)
    f.int(2, 290)
    eq(sink.of(200)[-1][4], "on low -11", "low alarm")
    eq(sink.of(200)[-1][1], reading.KIND_TEXT, "an event is a text reading")


def test_alarm_on_a_derived_point():
    cfg, ticks, clock, sink, a = build()
    f = Feeder(clock, a)
    for v in (10.0, 10.0, 9.0, 12.0):
        f.flt(1, v)
        ticks.advance(2500000)
    f.flt(1, 0.0)  # closes the window: mean 10.25 >= 9.5
    eq([r[4] for r in sink.of(201)], ["on high 10.25"], "alarm on the window's mean")


def test_machine_state_and_micro_stop():
    cfg, ticks, clock, sink, a = build()
    f = Feeder(clock, a)
    f.flt(1, 0.0)
    eq(sink.of(300)[-1][4], "stopped after unknown 0", "first state")
    ticks.advance(1000000)
    f.flt(1, 6.0)
    eq(sink.of(300)[-1][4], "running after micro_stop 1000", "a 1 s stop: a micro-stop")
    ticks.advance(60000000)
    f.flt(1, 4.8)  # above running - hysteresis: stays running
    eq(len(sink.of(300)), 2, "hysteresis keeps running")
    f.flt(1, 4.4)
    eq(sink.of(300)[-1][4], "idle after running 60000", "idle")
    ticks.advance(5000000)
    f.flt(1, 0.2)
    ticks.advance(10000000)
    f.flt(1, 7.0)
    ev = [r[4] for r in sink.of(300)]
    eq(ev[-2:], ["stopped after idle 5000", "running after micro_stop 10000"],
       "a 10 s stop is a micro-stop")
    ticks.advance(1000000)
    f.flt(1, 0.0)
    ticks.advance(45000000)
    f.flt(1, 6.0)
    eq(sink.of(300)[-1][4], "running after stopped 45000", "a 45 s stop is a stop")


def test_counters_debounce_wrap_and_persist():
    import os

    path = "/tmp/otlink-analytics-counters.bin"
    try:
        os.remove(path)
    except OSError:
        pass
    cfg, ticks, clock, sink, a = build(path)
    f = Feeder(clock, a)
    f.int(3, 0)
    for _k in range(3):  # three clean pulses: 100 ms high, 100 ms low
        f.int(3, 1)
        ticks.advance(60000)
        f.int(3, 1)
        ticks.advance(40000)
        f.int(3, 0)
        ticks.advance(60000)
        f.int(3, 0)
        ticks.advance(40000)
    f.int(3, 1)  # a 10 ms glitch: not counted
    ticks.advance(10000)
    f.int(3, 0)
    ticks.advance(100000)
    f.int(3, 0)
    eq([r[4] for r in sink.of(400)], [0, 1, 2, 3], "debounced rising edges")
    f.int(4, 65530)
    f.int(4, 65534)
    f.int(4, 3)  # wrapped: +5
    f.int(4, 50000)  # a jump: register reset, not counted
    f.int(4, 50002)
    eq([r[4] for r in sink.of(401)], [0, 4, 9, 11], "16-bit deltas, wrap, jump skipped")
    eq(a.save(), True, "changed: written")
    eq(a.save(), False, "unchanged: not written")
    cfg, ticks, clock, sink, b = build(path)
    f = Feeder(clock, b)
    f.int(3, 0)
    f.int(4, 10)
    eq([r[4] for r in sink.recs if r[0] in (400, 401)], [3, 11], "totals restored")


def test_birth_rows_of_derived_points():
    from otlink.analytics import derived_count, derived_rows

    cfg = CFG
    rows = list(derived_rows(cfg))
    eq(len(rows), derived_count(cfg), "count")
    eq(rows[3], (103, "temp.mean", "degC", "float64", 1, 0, "window:2:mean:5n"), "mean row")
    eq(rows[0][2:4], ("", "uint32"), "count has no unit")
    eq([r for r in rows if r[0] == 201][0][2], "A", "alarm on a derived point: its unit")
    eq([r for r in rows if r[0] == 300][0][3:], ("event", 1, 0, "machine:1"), "machine")
    eq([r for r in rows if r[0] == 400][0][6], "counter:3:cycles:300", "counter source")


import mptest  # noqa: E402

mptest.main(globals())
