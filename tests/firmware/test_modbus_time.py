# heapsize: 160K
# Time that wraps like the boards': tick arithmetic with TICKS_PERIOD 2**30 (hal/clock.py), the
# clock's split timestamps across the wrap and long runs, and the Modbus poller after long
# silences and over hours of slow polling, started just before the us and ms ticks wrap.
import asyncio
import struct
import time

import micropython
import mptest
from modbus_sim import NEAR_WRAP_US, T0, SimLine, sim_clock
from mptest import eq, no_alloc, true

from otlink.core import reading
from otlink.core.config import parse_points, parse_serial
from otlink.hal.clock import Clock, Ticks, ticks_add, ticks_diff
from otlink.modbus_poller import Poller

P = 1 << 30
NATIVE = time.ticks_add(0, -1) == P - 1  # the 32-bit build has the boards' period


def test_tick_arithmetic_is_the_boards():
    samples = (0, 1, 2, 1000, P // 2 - 1, P // 2, P // 2 + 1, P - 2, P - 1)
    deltas = (0, 1, -1, 999, -999, P // 2 - 1, -(P // 2), P // 2 - 7, -(P // 2) + 7, P - 1,
              -(P - 1))
    for a in samples:
        for d in deltas:
            want = (a + d) % P
            if NATIVE and -(P // 2) < d < P // 2:  # the native one refuses wider deltas
                eq(time.ticks_add(a, d), want, "native oracle")
            eq(ticks_add(a, d), want, "ticks_add(%d, %d)" % (a, d))
        for b in samples:
            want = (a - b + P // 2) % P - P // 2
            if NATIVE:
                eq(time.ticks_diff(a, b), want, "native oracle")
            eq(ticks_diff(a, b), want, "ticks_diff(%d, %d)" % (a, b))
    eq(no_alloc(ticks_add, P - 5, 10), 5, "no heap int past the wrap")
    eq(no_alloc(ticks_diff, 4, P - 5), 9, "no heap int past the wrap")


def test_ticks_source_starts_where_asked():
    t = Ticks(ms=P - 40, us=P - 40000)
    c = Clock(synced=False, ticks=t)
    ms0, us0 = c.ticks_ms(), c.ticks_us()
    true(P - 45 <= ms0 <= P - 1, "ms starts near the wrap: %d" % ms0)
    true(P - 45000 <= us0 <= P - 1, "us starts near the wrap: %d" % us0)
    c.sleep_ms(80)
    ms1, us1 = c.ticks_ms(), c.ticks_us()
    true(ms1 < 1000 and us1 < 1000000, "both wrapped: %d %d" % (ms1, us1))
    dms = c.ticks_diff(ms1, ms0)
    true(80 <= dms < 200, "ms distance across the wrap %d" % dms)
    dus = c.ticks_diff(us1, us0)  # the host's sleep and us clock differ by a few 10 us
    true(79000 <= dus < 200000, "us distance across the wrap %d" % dus)
    true(80 <= c.uptime_ms() < 300, "uptime counts across the wrap")


def test_clock_stamps_split_time_across_wraps_without_allocating():
    ticks, clock = sim_clock(us=NEAR_WRAP_US, ms=P - 5000)
    rec = bytearray(reading.MAX_SIZE)
    step_us = 7000123
    for i in range(2000):  # 3.9 hours of 7 s steps: the us ticks wrap 13 times, ms once
        ticks.advance(step_us)
        flags = no_alloc(clock.stamp_into, rec, reading.OFF_T)
        eq(flags, 0, "synced")
        want = T0 + ticks.elapsed_ms
        got = struct.unpack_from("<q", rec, reading.OFF_T)[0]
        if got != want:
            eq(got, want, "step %d" % i)
    eq(clock.now_ms(), T0 + ticks.elapsed_ms, "now_ms agrees")
    eq(clock.uptime_ms(), ticks.elapsed_ms, "uptime")
    # unsynced: uptime and FLAG_UNTIMED; a negative epoch offset packs too
    ticks2, c2 = sim_clock()
    c2 = Clock(synced=False, ticks=ticks2)
    ticks2.advance(123456000)
    eq(c2.stamp_into(rec, reading.OFF_T), reading.FLAG_UNTIMED, "untimed")
    eq(struct.unpack_from("<q", rec, reading.OFF_T)[0], 123456, "uptime ms")
    c2.set_epoch_ms(-1000)
    c2.stamp_into(rec, reading.OFF_T)
    eq(struct.unpack_from("<q", rec, reading.OFF_T)[0], -1000, "negative epoch")
    eq(c2.to_epoch(123456), -1000, "re-timed")


SER = {"baud": 9600, "timeout_ms": 100, "groups": {"slow": {"interval_ms": 900000}}}
PTS = [{"id": 1, "slave": 1, "table": "holding", "address": 0, "type": "uint16",
        "group": "slow"}]


def _poller(us, ms):
    ticks, clock = sim_clock(us=us, ms=ms)
    line = SimLine(ticks)
    line.regs[1] = [42] * 4
    got = []

    def sink(rec, n):
        got.append(reading.unpack(rec, n))

    ser = parse_serial(SER)
    return ticks, line, Poller(line, clock, ser, parse_points(PTS, ser), sink), got


def test_first_request_after_long_silence_waits_only_t35():
    # after 540-1,074 s of silence the us ticks' distance wraps: the next request used to wait
    # up to 537 s for a "silence" it already had (473.7 s after 600 s idle)
    one = (8 + 7) * 11000000 // 9600 + 2 * 4011 + 5000  # request + answer + 2 x t3.5 + turn
    for idle_s in (1, 300, 536, 537, 538, 540, 600, 1000, 1073, 1074, 1075, 1100, 3000, 86400):
        ticks, line, p, got = _poller(NEAR_WRAP_US, P - 2000)
        asyncio.run(p.poll_once())
        ticks.advance(idle_s * 1000000)
        line.wait_budget = line.waits + 200  # fail fast instead of waiting minutes
        t0 = ticks.us
        asyncio.run(p.poll_once())
        dt = ticks_diff(ticks.us, t0)
        true(dt <= one + 4011 + 500, "after %d s idle the poll took %d us (one transaction is "
             "%d us)" % (idle_s, dt, one))
        eq(p.stats()[1]["ok"], 2, "answered")
        eq(got[-1][4], 42, "value")


def test_slow_group_keeps_its_interval_across_wraps():
    # one 15-minute group, started 3 s before the us ticks wrap and 30 min before the ms
    # ticks wrap: ten polls, 900.000 s apart to the ms, each one transaction long
    ticks, line, p, got = _poller(NEAR_WRAP_US, P - 1800000)
    polls = 10
    state = [0]

    async def driver(task):
        # time flies while the poller naps (never inside a transaction), to the next due tick
        while line.requests < polls and not task.done():
            if p._st == 0 and line.requests:
                d = ticks_diff(p.groups[0].due, ticks.ticks_ms())
                if d > 0:
                    ticks.advance(d * 1000)
            state[0] += 1
            await asyncio.sleep_ms(0)
        await asyncio.sleep_ms(40)  # the last answer is decoded before the poller naps
        task.cancel()

    async def main():
        task = asyncio.create_task(p.run())
        await driver(task)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    eq(line.requests, polls, "polled %d times" % polls)
    ts = [r[3] for r in got]
    eq(len(ts), polls, "one reading per poll")
    for a, b in zip(ts, ts[1:]):
        true(abs(b - a - 900000) <= 2, "readings %d ms apart" % (b - a))
    true(ticks.elapsed_ms >= 9 * 900000, "8100 s simulated")
    s = p.stats()[1]
    eq(s["ok"], polls, "every poll answered")
    true(s["bus_ms"] <= polls * 40, "bus time %d ms for %d polls" % (s["bus_ms"], polls))


def test_poll_cycles_across_the_wrap_do_not_allocate():
    # back-to-back cycles while the us ticks wrap: still nothing allocated
    ticks, line, p, got = _poller(NEAR_WRAP_US, P - 100)
    n = [0]
    p.sink = lambda rec, k: None
    asyncio.run(p.run(cycles=2))
    locked = [0]

    def hook(poller):
        n[0] += 1
        if n[0] == 1:
            micropython.heap_lock()
            locked[0] = 1
        elif n[0] == 150:
            micropython.heap_unlock()
            locked[0] = 0

    p.on_cycle = hook
    u0 = ticks.us
    try:
        asyncio.run(p.run(cycles=150))
    finally:
        if locked[0]:
            micropython.heap_unlock()
    true(ticks.us < u0, "the us ticks wrapped during the locked cycles")
    eq(n[0], 150, "150 cycles, 149 locked")


mptest.main(globals())
