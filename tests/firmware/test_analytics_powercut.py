# heapsize: 2M
# Derived readings and events survive a power cut like readings: the analytics pipeline
# (windows, alarms, machine state, counters: otlink.analytics) writes into a flash queue on
# the emulated NOR chip, and power is cut at every STRIDE-th program/erase operation. After
# each cut: reboot, recover, and assert what must hold at any cut: every record committed
# before the cut - raw, derived or event - comes back, bit for bit and in order, none is
# garbled, none invented. (The queue's own sweep, test_queue_sweep.py, covers acks and
# reboots; this one covers the records the analytics make.)
import struct

import mptest
from modbus_sim import sim_clock

from otlink.analytics import Analytics
from otlink.core import config, reading
from otlink.core.queue import Queue
from otlink.hal.unix.norflash import NorFlash, PowerCut

SIZE = 32 * 1024  # 8 sectors: the log wraps in this workload
STRIDE = 3
READINGS = 1500
CFG = config.validate({
    "node": {"id": "press-01", "site": "plant1"},
    "mqtt": {"host": "127.0.0.1", "ack_key": mptest.ACK_KEY},
    "serial": {"port": "/dev/null"},
    "points": [
        {"id": 1, "name": "current", "slave": 1, "table": "input", "address": 0,
         "type": "float32", "unit": "A"},
        {"id": 2, "name": "temp", "slave": 1, "table": "input", "address": 2,
         "type": "int16", "unit": "degC", "scale": 0.1},
        {"id": 3, "name": "cycle_in", "slave": 1, "table": "discrete", "address": 0},
    ],
    "analytics": {
        "windows": [{"point": 2, "count": 10, "stats": {"mean": 100, "max": 101,
                                                        "std": 102}},
                    {"point": 1, "every_ms": 5000, "stats": {"rms": 110, "count": 111}}],
        "raw": {"1": 4},
        "alarms": [{"id": 200, "name": "hot", "point": 100, "high": 60, "hysteresis": 2}],
        "machines": [{"id": 300, "name": "state", "point": 1, "running": 5.0, "idle": 1.0,
                      "micro_stop_ms": 3000}],
        "counters": [{"id": 400, "name": "cycles", "point": 3, "mode": "rising"}],
    },
})
DERIVED = (100, 101, 102, 110, 111, 200, 300, 400)


def feed(f, i):
    """Reading i of the workload: current, temperature and the cycle input, in turn."""
    k = i % 3
    phase = (i // 90) % 4  # 9 s running, 9 s idle, 9 s stopped, 9 s running...
    if k == 0:
        v = (7.5, 2.0, 0.2, 7.5)[phase] + (i % 7) * 0.01
        f.flt(1, v)
    elif k == 1:
        f.int(2, 500 + (i * 37) % 160 if phase != 3 else 650 + (i % 5))
    else:
        f.int(3, 1 if (i // 6) % 2 else 0)


class Feeder:
    def __init__(self, clock, a):
        self.clock = clock
        self.a = a
        self.rec = bytearray(reading.SIZE)

    def _go(self, pid, kind, fmt, v):
        rec = self.rec
        fl = self.clock.stamp_into(rec, reading.OFF_T)
        struct.pack_into("<HBB", rec, 0, pid, kind, fl)
        struct.pack_into(fmt, rec, reading.HEADER, v)
        if self.a.feed(rec, reading.SIZE):
            self.a.store(rec, reading.SIZE)

    def int(self, pid, v):
        self._go(pid, reading.KIND_INT, "<q", v)

    def flt(self, pid, v):
        self._go(pid, reading.KIND_FLOAT, "<d", v)


class Log:
    """The queue's append, remembering every record and its sequence number."""

    def __init__(self, q):
        self.q = q
        self.recs = []
        self.seqs = []

    def __call__(self, rec, n):
        self.q.append(rec, n)
        self.recs.append(bytes(rec[:n]))
        self.seqs.append(self.q.last_seq)


def run(nor, cut_at):
    """The workload on nor; returns (log, committed count, cut?)."""
    ticks, clock = sim_clock()
    if cut_at is not None:
        nor.cut_after(cut_at - nor.ops)
    log = None
    committed = 0
    try:
        q = Queue(nor.region(0, SIZE), clock, commit_ms=1000)
        log = Log(q)
        a = Analytics(CFG, clock, log)
        f = Feeder(clock, a)
        for i in range(READINGS):
            feed(f, i)
            ticks.advance(100000)
            q.tick(clock.ticks_ms())
            committed = len(log.recs) - q.staged
        q.commit()
        return log, len(log.recs), False
    except PowerCut:
        return log, committed, True


def verify(nor, log, committed, what):
    nor.power_on()
    ticks, clock = sim_clock()
    q = Queue(nor.region(0, SIZE), clock)
    got = []
    by_seq = {}
    if log is not None:
        for k in range(len(log.recs)):
            by_seq[log.seqs[k]] = k
    for seq, _boot, rec, n in q.peek(100000):
        k = by_seq.get(seq)
        if k is None or bytes(rec[:n]) != log.recs[k]:
            raise mptest.Fail("%s: record seq %d garbled or invented" % (what, seq))
        got.append(k)
    for a in range(1, len(got)):
        if got[a] <= got[a - 1]:
            raise mptest.Fail("%s: order broken at %d" % (what, got[a]))
    have = set(got)
    derived = 0
    for k in range(committed):
        if k not in have:
            raise mptest.Fail("%s: committed record %d (point %d) is missing"
                              % (what, k, log.recs[k][0] | log.recs[k][1] << 8))
        if (log.recs[k][0] | log.recs[k][1] << 8) in DERIVED:
            derived += 1
    return derived


def test_workload_makes_derived_points_and_events():
    log, n, cut = run(NorFlash(None, SIZE, page=1, seed=1), None)
    pids = [r[0] | r[1] << 8 for r in log.recs]
    for pid in DERIVED:
        mptest.true(pid in pids, "the workload emits point %d" % pid)
    texts = [r[reading.HEADER:] for r in log.recs if (r[0] | r[1] << 8) in (200, 300)]
    mptest.true(b"on high" in b" ".join(texts), "an alarm event")
    mptest.true(b"after micro_stop" in b" ".join(texts) or b"after stopped" in b" ".join(texts),
                "machine state events")


def test_power_cut_sweep_keeps_derived_points_and_events():
    nor = NorFlash(None, SIZE, page=1, seed=1)
    run(nor, None)
    ops = nor.ops
    cuts = 0
    derived_max = 0
    for cut in range(1, ops, STRIDE):
        nor = NorFlash(None, SIZE, page=1, seed=1000003 + cut)
        log, committed, was_cut = run(nor, cut)
        mptest.true(was_cut, "cut at op %d of %d happened" % (cut, ops))
        d = verify(nor, log, committed, "cut at op %d of %d" % (cut, ops))
        derived_max = max(derived_max, d)
        cuts += 1
    mptest.true(cuts >= 20, "%d cuts of %d ops" % (cuts, ops))
    mptest.true(derived_max >= 50, "derived records committed before a cut: %d" % derived_max)


mptest.main(globals())
