# Simulated Bosch BME280 on the Unix port's I2C bus (sim_i2c.SimI2C), built from the
# datasheet (drivers/bme280.py lists the facts used): register map, forced mode, typical
# measurement time, trimming parameters in NVM, raw codes found by inverting the datasheet's
# floating-point compensation. Computes with the heap lock lifted (sim_heap.py).
import math

from otlink.hal.unix.sim_heap import relock, release


# Trimming parameters of the BMP280/BME280 datasheet's worked example (BMP280 DS001
# section 3.12: dig_T1..dig_P9, adc_T 519888 -> 25.08 degC, t_fine 128422) and humidity
# parameters of the size the BME280 ships with.
EXAMPLE_CAL = {"T1": 27504, "T2": 26435, "T3": -1000, "P1": 36477, "P2": -10685, "P3": 3024,
               "P4": 2855, "P5": 140, "P6": -7, "P7": 15500, "P8": -14600, "P9": 6000,
               "H1": 75, "H2": 362, "H3": 0, "H4": 313, "H5": 50, "H6": 30}


def bme280_t(cal, adc_t):
    """(degC, t_fine) by the datasheet's floating-point formula (BME280 DS002 section 8.1)."""
    v1 = (adc_t / 16384.0 - cal["T1"] / 1024.0) * cal["T2"]
    d = adc_t / 131072.0 - cal["T1"] / 8192.0
    tf = v1 + d * d * cal["T3"]
    return tf / 5120.0, tf


def bme280_p(cal, adc_p, tf):
    """Pa by the datasheet's floating-point formula (section 8.1)."""
    v1 = tf / 2.0 - 64000.0
    v2 = v1 * v1 * cal["P6"] / 32768.0 + v1 * cal["P5"] * 2.0
    v2 = v2 / 4.0 + cal["P4"] * 65536.0
    v1 = (cal["P3"] * v1 * v1 / 524288.0 + cal["P2"] * v1) / 524288.0
    v1 = (1.0 + v1 / 32768.0) * cal["P1"]
    p = 1048576.0 - adc_p
    p = (p - v2 / 4096.0) * 6250.0 / v1
    return p + (cal["P9"] * p * p / 2147483648.0 + p * cal["P8"] / 32768.0 + cal["P7"]) / 16.0


def bme280_h(cal, adc_h, tf):
    """%RH by the datasheet's floating-point formula (section 8.1), clamped to 0..100."""
    v = tf - 76800.0
    v = (adc_h - (cal["H4"] * 64.0 + cal["H5"] / 16384.0 * v)) * (
        cal["H2"] / 65536.0 * (1.0 + cal["H6"] / 67108864.0 * v *
                               (1.0 + cal["H3"] / 67108864.0 * v)))
    v = v * (1.0 - cal["H1"] * v / 524288.0)
    return 0.0 if v < 0 else 100.0 if v > 100 else v


def _solve(f, want, lo, hi, rising=True):
    # the raw code whose value is nearest want: f is monotonic over lo..hi
    while hi - lo > 1:
        m = (lo + hi) // 2
        if (f(m) < want) == rising:
            lo = m
        else:
            hi = m
    return lo if abs(f(lo) - want) <= abs(f(hi) - want) else hi


class BME280Model:
    """A BME280 in forced mode (datasheet section 3.3.3, register map 5.3): writing ctrl_meas
    with mode 01/10 starts one measurement of the typical duration (9.1); status bit 3 is set
    meanwhile; then the data registers hold the raw codes of the environment and the mode
    returns to sleep. Raw codes are found by inverting the datasheet's floating-point
    compensation (8.1), so a driver's integer result is checked against a separate reading
    of the datasheet. The environment: 22 +/- 3 degC, 1013 +/- 3 hPa, 45 +/- 10 %RH, or
    env = (degC, Pa, %RH) fixed by a test."""

    def __init__(self, clock, cal=None):
        self.clock = clock
        self.cal = dict(EXAMPLE_CAL if cal is None else cal)
        self.env = None
        self.last = None  # (degC, Pa, %RH) of the last measurement, as the model computed
        self.started = None
        self.measurements = 0
        self.reg = bytearray(256)
        self.ptr = 0
        self._reset()

    def _reset(self):
        r = self.reg
        for i in range(256):
            r[i] = 0
        r[0xD0] = 0x60
        c = self.cal
        o = 0x88
        for k in ("T1", "T2", "T3", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"):
            v = c[k] & 0xFFFF
            r[o] = v & 0xFF
            r[o + 1] = v >> 8
            o += 2
        r[0xA1] = c["H1"]
        h2 = c["H2"] & 0xFFFF
        r[0xE1] = h2 & 0xFF
        r[0xE2] = h2 >> 8
        r[0xE3] = c["H3"]
        h4 = c["H4"] & 0xFFF
        h5 = c["H5"] & 0xFFF
        r[0xE4] = h4 >> 4
        r[0xE5] = (h4 & 0x0F) | ((h5 & 0x0F) << 4)
        r[0xE6] = h5 >> 4
        r[0xE7] = c["H6"] & 0xFF
        r[0xF7] = r[0xFA] = 0x80  # reset values of the data registers (5.3): 0x80000 / 0x8000
        r[0xFD] = 0x80

    def environment(self, t_ms):
        if self.env is not None:
            return self.env
        s = t_ms / 1000.0
        return (22.0 + 3.0 * math.sin(s / 60.0), 101325.0 + 300.0 * math.sin(s / 120.0),
                45.0 + 10.0 * math.sin(s / 90.0))

    def _typ_ms(self):
        # typical measurement time (9.1): 1 + 2 * osrs_t + (2 * osrs_p + 0.5) + (2 * osrs_h + 0.5)
        os = [0, 1, 2, 4, 8, 16, 16, 16]
        m = self.reg[0xF4]
        return 2 + 2 * (os[m >> 5] + os[(m >> 2) & 7] + os[self.reg[0xF2] & 7])

    def _finish(self):
        # the measurement is done: data registers from the environment, back to sleep
        self.started = None
        self.measurements += 1
        self.reg[0xF4] &= 0xFC
        cal = self.cal
        t, p, h = self.environment(self.clock.uptime_ms())
        adc_t = _solve(lambda a: bme280_t(cal, a)[0], t, 0, (1 << 20) - 1)
        tf = bme280_t(cal, adc_t)[1]
        adc_p = _solve(lambda a: bme280_p(cal, a, tf), p, 0, (1 << 20) - 1, rising=False)
        adc_h = _solve(lambda a: bme280_h(cal, a, tf), h, 0, 65535)
        self.last = (bme280_t(cal, adc_t)[0], bme280_p(cal, adc_p, tf), bme280_h(cal, adc_h, tf))
        r = self.reg
        m = r[0xF4]
        if (m >> 2) & 7:  # a skipped measurement keeps 0x80000 / 0x8000 (4.2.3)
            r[0xF7], r[0xF8], r[0xF9] = adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4
        if m >> 5:
            r[0xFA], r[0xFB], r[0xFC] = adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4
        if r[0xF2] & 7:
            r[0xFD], r[0xFE] = adc_h >> 8, adc_h & 0xFF

    def _poll(self):
        if self.started is not None and self.clock.ticks_diff(
                self.clock.ticks_ms(), self.started) >= self._typ_ms():
            self._finish()
        self.reg[0xF3] = 0x08 if self.started is not None else 0

    def write(self, buf):
        n = release()
        try:
            self._poll()
            self.ptr = buf[0]
            for k in range(1, len(buf)):
                a = self.ptr
                v = buf[k]
                if a == 0xE0:
                    if v == 0xB6:
                        self._reset()
                elif a == 0xF4:
                    self.reg[a] = v
                    if v & 3 and self.started is None:  # forced mode: one measurement
                        self.started = self.clock.ticks_ms()
                elif a == 0xF2 or a == 0xF5:
                    self.reg[a] = v
                self.ptr = (a + 1) & 0xFF
        finally:
            relock(n)

    def read(self, buf):
        n = release()
        try:
            self._poll()
            for k in range(len(buf)):
                buf[k] = self.reg[self.ptr]
                self.ptr = (self.ptr + 1) & 0xFF
        finally:
            relock(n)
