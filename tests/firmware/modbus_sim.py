# A simulated RS-485 line and time for the Modbus firmware tests (test_modbus_poller.py,
# test_modbus_time.py): deterministic, and wrapping like the boards' ticks (period 2**30 for
# both ms and us), so a test can start anywhere, e.g. seconds before the wrap.
# The slave model answers like the serial line spec describes (t3.5 before answering, 11-bit
# characters). Allocation-free once built: the heap-locked poll test runs through it.
from otlink.core import modbus
from otlink.hal.clock import Clock, ticks_add, ticks_diff

T0 = 1700000000000  # wall clock at the start of a simulation (epoch ms)
NEAR_WRAP_US = (1 << 30) - 3000000  # 3 s before the us ticks wrap


class SimTicks:
    """A ticks source (hal/clock.py's interface) that moves only when the line waits or the
    test says so; us and ms ticks both wrap at 2**30, like on an esp32 or rp2."""

    def __init__(self, us=100000, ms=None):
        self.us = us
        self.ms = us // 1000 if ms is None else ms
        self._frac = 0  # us into the current ms
        self.elapsed_ms = 0  # since the start (a test runs for less than 2**29 ms)

    def advance(self, dt_us):
        while dt_us > 0:
            step = dt_us if dt_us < 0x10000000 else 0x10000000
            dt_us -= step
            self.us = ticks_add(self.us, step)
            f = self._frac + step
            self.ms = ticks_add(self.ms, f // 1000)
            self.elapsed_ms += f // 1000
            self._frac = f % 1000

    def ticks_us(self):
        return self.us

    def ticks_ms(self):
        return self.ms

    def ticks_add(self, a, d):
        return ticks_add(a, d)

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def sleep_ms(self, ms):
        self.advance(ms * 1000)


def sim_clock(us=100000, ms=None):
    """(SimTicks, the real Clock running on it, wall clock set to T0)."""
    t = SimTicks(us, ms)
    c = Clock(synced=False, ticks=t)
    c.set_epoch_ms(T0)
    return t, c


class SimLine:
    """HAL UART over a simulated RS-485 line with slaves holding registers. Allocation-free
    once built: one preallocated answer buffer.

    Faults: dead (slaves that never answer), drop (the next n answers are lost),
    other_slave (answer with this slave id instead, valid CRC)."""

    def __init__(self, ticks, baud=9600, turnaround_us=5000):
        self.t = ticks
        self.char_us = 11000000 // baud
        self.t35_us = modbus.t35_us(baud)
        self.t15_us = modbus.t15_us(baud)
        self.turn = turnaround_us
        self.regs = {}  # slave -> list of holding registers
        self.dead = set()
        self.drop = 0
        self.other_slave = 0
        self.ans = bytearray(260)  # the answer on its way
        self.n = 0
        self.head = 0
        self.t_first = 0  # arrival of ans[0]; ans[i] arrives at t_first + i * char_us
        self.last_us = ticks_add(ticks.us, -100000)  # silent for the last 100 ms
        self._tx_end = 0
        self._busy = False
        self.de_log = [0, 0, 0, 0]  # last pulse: t_up, level, t_down, level
        self.requests = 0
        self.sent_at = 0  # ticks_us of the last request's first byte
        self.gone = False
        self.waits = 0  # wait() calls, and a budget after which the test fails fast
        self.wait_budget = 1000000

    def now_us(self):
        self.t.advance(5)  # every look at the clock costs a little time: loops terminate
        return self.t.us

    def write(self, req, n):
        if self.gone:
            raise OSError(5)  # EIO: the USB adapter was unplugged
        self.de_log[0] = self.t.us
        self.de_log[1] = 1
        self.sent_at = self.t.us
        self._tx_end = ticks_add(self.t.us, n * self.char_us)
        self._busy = True
        self.requests += 1
        self.n = self.head = 0
        slave = req[0]
        if slave in self.dead or slave not in self.regs:
            return
        if self.drop:
            self.drop -= 1
            return
        fc = req[1]
        addr = (req[2] << 8) | req[3]
        cnt = (req[4] << 8) | req[5]
        r = self.regs[slave]
        a = self.ans
        a[0] = self.other_slave or slave
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
        self.t_first = ticks_add(self._tx_end, self.t35_us + self.turn + self.char_us)

    def _due(self):
        return ticks_add(self.t_first, self.head * self.char_us)

    def _arrived(self):
        return self.head < self.n and ticks_diff(self.t.us, self._due()) >= 0

    def tx_done(self):
        if self._busy and ticks_diff(self.t.us, self._tx_end) >= 0:
            self.de_log[2] = self._tx_end
            self.de_log[3] = 0
            self.last_us = self._tx_end
            self._busy = False
        return not self._busy

    def flush(self):
        # the line's time runs on to the last stop bit, then DE drops (hal/rs485.py flush)
        d = ticks_diff(self._tx_end, self.t.us)
        if d > 0:
            self.t.advance(d)
        self.tx_done()

    def tx_end_us(self):
        return self._tx_end

    def wait(self, timeout_ms):
        self.waits += 1
        if self.waits > self.wait_budget:
            raise RuntimeError("the poller waited too long on a silent line")
        step = timeout_ms * 1000
        if self.head < self.n:
            d = ticks_diff(self._due(), self.t.us)
            if d < step:
                step = d
        if step > 0:
            self.t.advance(step)
        return self._arrived()

    def read_byte(self):
        if self._arrived():
            b = self.ans[self.head]
            self.head += 1
            self.last_us = self.t.us
            return b
        return -1
