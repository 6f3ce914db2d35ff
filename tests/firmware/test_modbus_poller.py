# heapsize: 160K
# Poller scheduling on a simulated line and clock (deterministic, tests/firmware/modbus_sim.py):
# RTU timing, offline detection with backoff, retries, pipelined readings, write path, the
# counters, heap-locked cycles. The real-peer tests are in tests/host/test_modbus_rtu.py
# (pymodbus); time across the ticks wrap in test_modbus_time.py.
import asyncio
import micropython

import mptest
from modbus_sim import SimLine, sim_clock
from mptest import eq, true

from otlink.core import modbus, reading
from otlink.core.config import parse_points, parse_serial
from otlink.hal.clock import ticks_diff
from otlink.modbus_poller import Poller


SER = {"baud": 9600, "timeout_ms": 100, "offline_after": 2, "backoff_ms": [1000, 4000],
       "groups": {"fast": {"interval_ms": 0}}}


def make(points_cfg, ser=SER, **line_kw):
    ticks, clock = sim_clock()
    line = SimLine(ticks, **line_kw)
    got = []

    def sink(rec, n):
        got.append(reading.unpack(rec, n))

    ser = parse_serial(ser)
    p = Poller(line, clock, ser, parse_points(points_cfg, ser), sink)
    return ticks, line, p, got


def pts(*specs):
    out = []
    for i, (slave, addr) in enumerate(specs):
        # report on change: these tests count bus traffic, not readings
        out.append({"id": i + 1, "slave": slave, "table": "holding", "address": addr,
                    "type": "uint16", "group": "fast", "deadband": 0})
    return out


def run(coro):
    return asyncio.run(coro)


def test_reads_and_wire_timing():
    clock, line, p, got = make(pts((1, 0), (1, 1), (1, 5)))
    line.regs[1] = list(range(100, 200))
    t0 = clock.us
    run(p.poll_once())
    dt = ticks_diff(clock.us, t0)
    eq(sorted((r[0], r[4]) for r in got), [(1, 100), (2, 101), (3, 105)], "values")
    eq(line.requests, 1, "merged into one request")
    # one transaction: 8 chars request + t3.5 + turnaround + 17 chars answer + t3.5 silence
    want = (8 + 17) * line.char_us + 2 * line.t35_us + line.turn
    true(want <= dt <= want + 300, "cycle %d us, wire bound %d us" % (dt, want))
    eq((line.de_log[1], line.de_log[3]), (1, 0), "DE pulse")
    eq(line.de_log[2] - line.de_log[0], 8 * line.char_us, "DE high for 8 chars exactly")


def test_exception_reaches_only_its_points():
    clock, line, p, got = make(pts((1, 0), (1, 98), (1, 99)))
    line.regs[1] = [7] * 99  # register 99 does not exist
    run(p.poll_once())
    res = dict((r[0], (r[1], r[4])) for r in got)
    eq(res[1], (reading.KIND_INT, 7), "first request fine")
    eq(res[2], (reading.KIND_ERR, modbus.EX_ILLEGAL_ADDRESS),
       "illegal address for the request covering 99")
    eq(res[3], (reading.KIND_ERR, modbus.EX_ILLEGAL_ADDRESS), "same")
    eq(p.stats()[1]["exceptions"], 1, "counted")


def test_lost_port_reaches_every_point_and_polling_resumes():
    clock, line, p, got = make(pts((1, 0), (1, 50), (2, 0)))
    line.regs[1] = list(range(100, 200))
    line.regs[2] = [9] * 10
    run(p.poll_once())
    eq(len(got), 3, "all read")
    del got[:]
    line.gone = True
    run(p.run(cycles=2))
    errs = set((r[0], r[1], r[4]) for r in got)
    eq(errs, set((pid, reading.KIND_ERR, modbus.ERR_PORT) for pid in (1, 2, 3)),
       "every point of the group reports the failed port")
    true(p.bus_errors >= 2 and isinstance(p.last_bus_error, OSError), "counted, kept")
    eq(p.stats()[1]["timeouts"], 0, "not a slave's fault")
    del got[:]
    line.gone = False
    run(p.run(cycles=1))
    eq(sorted((r[0], r[4]) for r in got), [(1, 100), (2, 150), (3, 9)], "values again")


def test_dead_slave_backoff_costs_one_timeout_per_period():
    clock, line, p, got = make(pts((1, 0), (2, 0)))
    line.regs[1] = [1] * 10
    line.dead.add(2)
    run(p.run(cycles=400))
    s1, s2 = p.stats()[1], p.stats()[2]
    span_ms = clock.elapsed_ms
    # 2 timeouts to go offline, then probes at 1 s, 2 s, 4 s, 4 s ... (doubling, capped)
    probes = 0
    t = 0
    b = 1000
    while True:
        t += b
        if t > span_ms:
            break
        probes += 1
        b = min(2 * b, 4000)
    true(s2["timeouts"] <= 2 + probes + 1, "timeouts %d over %d ms" % (s2["timeouts"], span_ms))
    eq(s2["offline"], 1, "went offline once")
    true(not s2["online"], "still offline")
    eq(s1["ok"], 400, "slave 1 polled every cycle")
    true(s2["skipped"] > 300, "slave 2 skipped while in backoff")
    errs = [r for r in got if r[0] == 2]
    eq([r[4] for r in errs][:2], [modbus.ERR_TIMEOUT, modbus.ERR_OFFLINE], "timeout then offline")


def test_slave_comes_back():
    clock, line, p, got = make(pts((1, 0), (2, 0)))
    line.regs[1] = [1] * 10
    line.regs[2] = [5] * 10
    line.dead.add(2)
    run(p.run(cycles=20))
    true(not p.stats()[2]["online"], "offline")
    line.dead.discard(2)
    clock.advance(1100000)  # past the first backoff period
    run(p.run(cycles=2))
    true(p.stats()[2]["online"], "back online after a successful probe")
    eq(got[-1][:2], (2, reading.KIND_INT), "value reported again")


def test_write_path():
    clock, line, p, got = make(pts((1, 0)))
    line.regs[1] = [0] * 10
    eq(run(p.write(1, "holding", 3, [4321])), 0, "fc6 ok")
    eq(line.regs[1][3], 4321, "written")
    eq(run(p.write(1, "coil", 3, [True])), modbus.EX_ILLEGAL_FUNCTION, "sim has no coils")
    eq(run(p.write(9, "holding", 3, [1])), modbus.ERR_TIMEOUT, "nobody home")
    mptest.raises(ValueError, run, p.write(1, "input", 0, [1]))


def test_foreign_frames_count_as_wrong_not_exceptions():
    # a valid frame from another slave id is "wrong" (and its code wrong_slave), not a slave
    # exception; retried like any line failure
    clock, line, p, got = make(pts((1, 0)), ser=dict(SER, retries=1))
    line.regs[1] = [5] * 10
    line.other_slave = 9
    run(p.run(cycles=3))
    s1 = p.stats()[1]
    eq(s1["wrong"], 6, "3 requests x 2 attempts")
    eq(s1["exceptions"], 0, "no exception was answered")
    eq(s1["retries"], 3, "one retry each")
    eq(p.stats()["codes"], {"wrong_slave": 6}, "codes")
    eq((got[-1][1], got[-1][4]), (reading.KIND_ERR, modbus.ERR_WRONG_SLAVE), "the reading")
    clock2, line2, p2, got2 = make(pts((1, 99)))  # register 99 does not exist: an exception
    line2.regs[1] = [7] * 98
    run(p2.poll_once())
    eq((p2.stats()[1]["exceptions"], p2.stats()[1]["wrong"]), (1, 0), "exception counted apart")


def test_writes_are_retried():
    clock, line, p, got = make(pts((1, 0)), ser=dict(SER, retries=2))
    line.regs[1] = [0] * 10
    line.drop = 2  # the first two answers are lost
    eq(run(p.write(1, "holding", 3, [4321])), 0, "third attempt confirmed")
    eq(line.requests, 3, "sent three times")
    eq(line.regs[1][3], 4321, "written")
    s1 = p.stats()[1]
    eq((s1["timeouts"], s1["retries"], s1["ok"]), (2, 2, 1), "counted")
    line.drop = 5
    eq(run(p.write(1, "holding", 3, [1])), modbus.ERR_TIMEOUT, "gives up after 1 + 2 tries")
    eq(line.requests, 6, "no fourth attempt")
    line.drop = 0
    eq(run(p.write(1, "coil", 3, [True])), modbus.EX_ILLEGAL_FUNCTION, "exception: an answer")
    eq(line.requests, 7, "not retried")


def test_counters_carry_without_heap_ints():
    # a counter would reach 2**30 (a heap int on a board) after 2**30 transactions; it carries
    # into a second word at 2**29 instead
    clock, line, p, got = make(pts((1, 0)))
    line.regs[1] = [1] * 10
    p._cnt[0] = (1 << 29) - 1  # slave 1's "ok"
    p._cycles[0] = (1 << 29) - 1
    mptest.no_alloc(p._inc, 0)
    eq((p._cnt[0], p._cnt_hi[0]), (0, 1), "carried")
    run(p.run(cycles=2))
    eq(p.stats()[1]["ok"], (1 << 29) + 2, "ok counted on")
    eq(p.cycles, (1 << 29) + 1, "cycles counted on")


def test_poll_cycles_do_not_allocate():
    clock, line, p, got = make(pts((1, 0), (1, 1), (1, 3), (2, 0), (3, 7)))
    line.regs[1] = list(range(10))
    line.regs[3] = list(range(10))
    line.dead.add(2)
    keep = [0]

    def sink(rec, n):  # count only: the test's own list would allocate
        keep[0] += 1

    p.sink = sink
    state = [0, 0]

    def hook(poller):
        state[0] += 1
        if state[0] == 2:
            micropython.heap_lock()
            state[1] = 1
        elif state[0] == 60:
            micropython.heap_unlock()
            state[1] = 0

    for _ in range(3):  # warm up every path (timeouts and offline included)
        run(p.poll_once())
    p.on_cycle = hook
    try:
        run(p.run(cycles=60))
    finally:
        if state[1]:
            micropython.heap_unlock()
    eq(state[0], 60, "60 cycles, 58 with the heap locked")


mptest.main(globals())
