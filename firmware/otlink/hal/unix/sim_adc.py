# Simulated ADC input for the Unix port, with the 4-20 mA transmitter whose loop current it
# measures across a shunt. read_uv() as the esp32 port's calibrated ADC.read_uv(): the input
# voltage in uV, quantized to a 12-bit converter over 0..3.3 V (806 uV steps), with noise
# and an optional gain error of the analog path, saturating at the ends of the span.
# Models compute with the heap lock lifted (sim_heap.py).
import math

from otlink.hal.unix.sim_heap import relock, release

_STEP_UV = 3300000.0 / 4096  # one code of a 12-bit converter over 3.3 V


class Transmitter:
    """A 4-20 mA level transmitter: the loop current (mA) follows a tank filling and
    emptying (4 + 16 * (0.5 + 0.4 sin)), or ma fixed by a test; fault "open" (a broken wire:
    0 mA) or "short" (the loop shorted past the transmitter: 24 mA)."""

    def __init__(self, clock, ma=None):
        self.clock = clock
        self.ma = ma
        self.fault = None

    def current_ma(self):
        if self.fault == "open":
            return 0.0
        if self.fault == "short":
            return 24.0
        if self.ma is not None:
            return self.ma
        s = self.clock.uptime_ms() / 1000.0
        return 4.0 + 16.0 * (0.5 + 0.4 * math.sin(s / 30.0))


class SimADC:
    def __init__(self, transmitter, shunt_ohm=150.0, noise_uv=2000.0, gain=1.0):
        self.tx = transmitter
        self.shunt = shunt_ohm
        self.noise = noise_uv  # peak, uniform
        self.gain = gain  # analog path error: 1.02 reads 2 % high
        self.reads = 0
        self._seed = 12345

    def _rand(self):
        # a small LCG in [-1, 1): repeatable noise
        self._seed = (self._seed * 1103515245 + 12345) & 0x7FFFFFFF
        return self._seed / 1073741824.0 - 1.0

    def read_uv(self):
        n = release()
        try:
            self.reads += 1
            uv = self.tx.current_ma() * 1e-3 * self.shunt * 1e6 * self.gain
            uv += self.noise * self._rand()
            code = int(uv / _STEP_UV + 0.5)
            code = 0 if code < 0 else 4095 if code > 4095 else code
            return int(code * _STEP_UV + 0.5)
        finally:
            relock(n)
