# Simulated ADXL345 for the Unix port, built from the datasheet's register map (the facts are
# listed in drivers/adxl345.py): DEVID, BW_RATE, POWER_CTL, DATA_FORMAT (FULL_RES, range,
# 10-bit scaling when not full resolution), the six data registers popping one FIFO entry per
# multi-byte read, FIFO_CTL bypass/stream and FIFO_STATUS. Samples accrue at the configured
# rate on the clock it is given (ticks_us): sample k is signal(k), an (x, y, z) in g, so a
# test knows exactly what the part measured. Stream mode keeps the newest 32 entries; older
# ones are lost and counted (overruns), as on the part.
#
# It is the bus as well as the part (readfrom_mem_into / writeto_mem of machine.I2C at its
# address), or a model for hal/unix/sim_i2c.py's bus (write / read). Computing a sample
# allocates (floats): the model lifts a heap lock around it, standing for silicon in the
# driver's heap-locked tests.
from otlink.hal.unix.sim_heap import relock, release

_ENODEV = 19
_RATES = {0x0F: 3200, 0x0E: 1600, 0x0D: 800, 0x0C: 400, 0x0B: 200, 0x0A: 100}


class SimADXL345:
    def __init__(self, clock, signal, addr=0x53):
        self.clock = clock
        self.signal = signal  # k -> (x, y, z) in g
        self.addr = addr
        self.regs = bytearray(64)
        self.regs[0x00] = 0xE5
        self.regs[0x2C] = 0x0A  # reset value: 100 Hz
        self.fifo = [[0, 0, 0] for _ in range(32)]  # ring of entries (LSB)
        self.head = 0
        self.count = 0
        self.k = 0  # index of the next sample to produce
        self.t0 = None  # ticks_us when measurement started
        self.overruns = 0
        self.ptr = 0  # register pointer (write / read model interface)

    # --- the part's clock -------------------------------------------------------------
    def _lsb(self, g):
        fmt = self.regs[0x31]
        rng = fmt & 3
        if fmt & 0x08:  # full resolution: 256 LSB/g, 10..13 bits by range
            per_g = 256
            lim = 1 << (9 + rng)
        else:  # 10 bits at every range
            per_g = 256 >> rng
            lim = 512
        v = int(g * per_g + (0.5 if g >= 0 else -0.5))
        return -lim if v < -lim else lim - 1 if v > lim - 1 else v

    def _catch_up(self):
        if self.t0 is None:
            return
        rate = _RATES.get(self.regs[0x2C] & 0x0F, 100)
        el = self.clock.ticks_diff(self.clock.ticks_us(), self.t0)
        due = el * rate // 1000000  # samples the part has taken since it started
        if due - self.k >= 32:  # the FIFO will hold only new samples: skip the rest
            self.overruns += self.count + (due - self.k) - 32
            self.count = 0
            self.k = due - 32
        while self.k < due:
            x, y, z = self.signal(self.k)
            e = self.fifo[(self.head + self.count) % 32]
            e[0] = self._lsb(x)
            e[1] = self._lsb(y)
            e[2] = self._lsb(z)
            if self.count == 32:
                self.head = (self.head + 1) % 32
                self.overruns += 1
            else:
                self.count += 1
            self.k += 1

    def _wreg(self, reg, v):
        self.regs[reg] = v
        if reg == 0x2D:
            if v & 0x08 and self.t0 is None:
                self.t0 = self.clock.ticks_us()
                self.k = 0
            elif not v & 0x08:
                self.t0 = None
        elif reg == 0x38 and (v >> 6) == 0:
            self.count = 0  # bypass mode clears the FIFO

    def _rreg(self, reg, buf):
        self._catch_up()
        if reg == 0x39:
            buf[0] = self.count
            return
        if reg == 0x32 and len(buf) == 6:
            if self.count:
                e = self.fifo[self.head]
                self.head = (self.head + 1) % 32
                self.count -= 1
            else:
                e = (0, 0, 0)
            for i in range(3):
                v = e[i] & 0xFFFF
                buf[2 * i] = v & 0xFF
                buf[2 * i + 1] = v >> 8
            return
        for i in range(len(buf)):
            buf[i] = self.regs[(reg + i) & 63]

    # --- machine.I2C at one address ---------------------------------------------------
    def readfrom_mem_into(self, addr, reg, buf):
        if addr != self.addr:
            raise OSError(_ENODEV)
        n = release()
        try:
            self._rreg(reg, buf)
        finally:
            relock(n)

    def writeto_mem(self, addr, reg, buf):
        if addr != self.addr:
            raise OSError(_ENODEV)
        n = release()
        try:
            for i in range(len(buf)):
                self._wreg(reg + i, buf[i])
        finally:
            relock(n)

    # --- a model on hal/unix/sim_i2c.py's bus -----------------------------------------
    def write(self, buf):
        self.ptr = buf[0]
        for i in range(1, len(buf)):
            self._wreg(self.ptr + i - 1, buf[i])

    def read(self, buf):
        n = release()
        try:
            self._rreg(self.ptr, buf)
        finally:
            relock(n)


def machine_signal(rate_hz, rpm=1480, bpfo_hz=89.0, seed=12345):
    """A pump-like signal in g, sample k -> (x, y, z): gravity on z, 1x running speed on all
    axes, a bearing outer-race fault (a 3 kHz-ish resonance struck bpfo_hz times a second,
    decaying) on z, and a little deterministic noise. The demo and the Unix port's default."""
    import math

    f1 = rpm / 60.0
    state = [seed]

    def noise():
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] / 0x7FFFFFFF - 0.5) * 0.02

    def sig(k):
        t = k / rate_hz
        run = 0.05 * math.sin(2 * math.pi * f1 * t)
        ph = (t * bpfo_hz) % 1.0  # time since the last impact, in periods
        ring = 0.4 * math.exp(-ph * 40.0) * math.sin(2 * math.pi * (rate_hz * 0.3) * t)
        return (run + noise(), 0.7 * run + noise(), 1.0 + 0.5 * run + ring + noise())
    return sig
