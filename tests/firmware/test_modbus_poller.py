# heapsize: 128K
# Poller scheduling on a simulated line and clock (deterministic): RTU timing, offline
# detection with backoff, retries, pipelined readings, write path, heap-locked cycles.
# The slave model answers like the serial line spec describes (t3.5 before answering, 11-bit
# characters); the real-peer tests are in tests/host/test_modbus_rtu.py (pymodbus).
import asyncio
import micropython

import mptest
from mptest import eq, true

from otlink.core import modbus, reading
from otlink.core.config import parse_points, parse_serial
from otlink.modbus_poller import Poller


class SimClock:
    """Time that moves only when the line waits: us resolution, no wrap in a test."""

    def __init__(self):
        self.us = 100000  # the line has been silent since 0

    def ticks_ms(self):
        return self.us // 1000

    def ticks_diff(self, a, b):
        return a - b

    def now_ms(self):
        return 1700000000000 + self.us // 1000

    def is_set(self):
        return True


class SimLine:
    """HAL UART over a simulated RS-485 line with slaves holding registers. Allocation-free
    once built (the heap-lock test runs through it): one preallocated answer buffer."""

    def __init__(self, clock, baud=9600, turnaround_us=5000):
        self.clock = clock
        self.char_us = 11000000 // baud
        self.t35_us = modbus.t35_us(baud)
        self.t15_us = modbus.t15_us(baud)
        self.turn = turnaround_us
        self.regs = {}  # slave -> list of holding registers
        self.dead = set()
        self.ans = bytearray(260)  # the answer on its way
        self.n = 0
        self.head = 0
        self.t_first = 0  # arrival of ans[0]; ans[i] arrives at t_first + i * char_us
        self.last_us = 0
        self._tx_end = 0
        self.de_log = [0, 0, 0, 0]  # last pulse: t_up, level, t_down, level
        self.requests = 0
        self.gone = False

    def now_us(self):
        self.clock.us += 5  # every look at the clock costs a little time: loops terminate
        return self.clock.us

    def write(self, req, n):
        if self.gone:
            raise OSError(5)  # EIO: the USB adapter was unplugged
        self.de_log[0] = self.clock.us
        self.de_log[1] = 1
        self._tx_end = self.clock.us + n * self.char_us
        self.requests += 1
        self.n = self.head = 0
        slave = req[0]
        if slave in self.dead or slave not in self.regs:
            return
        fc = req[1]
        addr = (req[2] << 8) | req[3]
        cnt = (req[4] << 8) | req[5]
        r = self.regs[slave]
        a = self.ans
        a[0] = slave
        if fc == 3 and addr + cnt <= len(r):
            a[1] = 3
            a[2] = 2 * cnt
            for i in range(cnt):
                a[3 + 2 * i] = r[addr + i] >> 8
                a[4 + 2 * i] = r[addr + i] & 0xFF
            k = 3 + 2 * cnt
        elif fc == 6:
            r[addr] = cnt
            for i in range(1, 6):
                a[i] = req[i]
            k = 6
        else:
            a[1] = fc | 0x80
            a[2] = 2 if fc == 3 else 1
            k = 3
        c = modbus.crc16(a, k)
        a[k] = c & 0xFF
        a[k + 1] = c >> 8
        self.n = k + 2
        # the slave waits t3.5 to see the request ended, then its turnaround
        self.t_first = self._tx_end + self.t35_us + self.turn + self.char_us

    def _due(self):
        return self.t_first + self.head * self.char_us

    def tx_done(self):
        if self._tx_end and self.clock.us >= self._tx_end:
            self.de_log[2] = self._tx_end
            self.de_log[3] = 0
            self.last_us = self._tx_end
            self._tx_end = 0
        return not self._tx_end

    def tx_end_us(self):
        return self._tx_end

    def wait(self, timeout_ms):
        nxt = self.clock.us + timeout_ms * 1000
        if self.head < self.n and self._due() < nxt:
            nxt = self._due()
        if nxt > self.clock.us:
            self.clock.us = nxt
        return self.head < self.n and self._due() <= self.clock.us

    def read_byte(self):
        if self.head < self.n and self._due() <= self.clock.us:
            b = self.ans[self.head]
            self.head += 1
            self.last_us = self.clock.us
            return b
        return -1


SER = {"baud": 9600, "timeout_ms": 100, "offline_after": 2, "backoff_ms": [1000, 4000],
       "groups": {"fast": {"interval_ms": 0}}}


def make(points_cfg, ser=SER, **line_kw):
    clock = SimClock()
    line = SimLine(clock, **line_kw)
    got = []

    def sink(rec, n):
        got.append(reading.unpack(rec, n))

    ser = parse_serial(ser)
    p = Poller(line, clock, ser, parse_points(points_cfg, ser), sink)
    return clock, line, p, got


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
    eq(sorted((r[0], r[4]) for r in got), [(1, 100), (2, 101), (3, 105)], "values")
    eq(line.requests, 1, "merged into one request")
    # one transaction: 8 chars request + t3.5 + turnaround + 17 chars answer + t3.5 silence
    want = (8 + 17) * line.char_us + 2 * line.t35_us + line.turn
    dt = clock.us - t0
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
    span_ms = clock.us // 1000
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
    clock.us += 1100000  # past the first backoff period
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
