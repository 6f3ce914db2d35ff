# Bosch BME280 temperature, pressure and humidity sensor on I2C, in forced mode: each sample
# writes ctrl_hum then ctrl_meas (mode 01, one measurement, then sleep), waits the datasheet's
# maximum measurement time and reads status and the data registers in one burst.
# Datasheet (BST-BME280-DS002) facts used:
#   registers (section 5.3): id 0xD0 = 0x60; ctrl_hum 0xF2 (osrs_h, 2:0), status 0xF3
#   (bit 3 measuring), ctrl_meas 0xF4 (osrs_t 7:5, osrs_p 4:2, mode 1:0), press 0xF7..F9,
#   temp 0xFA..FC (20 bits, msb lsb xlsb[7:4]), hum 0xFD..FE; ctrl_hum takes effect only
#   when ctrl_meas is written after it (5.4.3);
#   calibration (4.2.2): dig_T1..dig_P9 little-endian at 0x88..0x9F, dig_H1 0xA1, dig_H2
#   0xE1/E2, dig_H3 0xE3, dig_H4 = 0xE4 << 4 | 0xE5[3:0], dig_H5 = 0xE6 << 4 | 0xE5[7:4]
#   (both signed 12 bits), dig_H6 0xE7 (signed);
#   compensation (4.2.3, 8.2): the integer formulas, temperature and humidity in 32 bits,
#   pressure in the 32-bit variant (Pa); a skipped measurement reads 0x80000 (0x8000 hum);
#   measurement time (9.1, maximum): 1.25 + 2.3*osrs_t + (2.3*osrs_p + 0.575)
#   + (2.3*osrs_h + 0.575) ms; operating range -40..85 degC, 300..1100 hPa.
#
# Readings: temperature in 0.01 degC (int32), pressure in Pa (uint32), humidity in 1/1024
# %RH (uint32, the formula's Q22.10). No allocation per sample, 32-bit ports included (small
# ints of 31 bits): the two steps of the pressure formula that pass 2**30 are computed in
# parts with the same result (tests/firmware/test_bme280.py checks both).
from otlink.core.compat import const
from otlink.core.errors import ERR_NOT_READY, ERR_RANGE, ERR_SENSOR

_REG_ID = const(0xD0)
_CHIP_ID = const(0x60)
_REG_CAL1 = const(0x88)  # 26 bytes: 0x88..0xA1
_REG_CAL2 = const(0xE1)  # 7 bytes: 0xE1..0xE7
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)  # the burst: status .. hum_lsb, 12 bytes
_REG_CTRL_MEAS = const(0xF4)
_MEASURING = const(0x08)
_FORCED = const(0x01)
_SKIPPED = const(0x80000)
_T = const(0)
_P = const(1)
_H = const(2)

BUS = "i2c"
OPTIONS = (("address", "choice", 0x76, (0x76, 0x77)),  # SDO to GND / to VDDIO (6.2)
           ("oversampling", "choice", 1, (1, 2, 4, 8, 16)))  # of T, P and H alike
CHANNELS = "temperature, pressure, humidity"
_OSRS = {1: 1, 2: 2, 4: 3, 8: 4, 16: 5}  # oversampling -> register code (5.4.3, 5.4.5)


def channel(opts, name):
    if name == "temperature":
        return ("degC", "int32", 0.01, 0.0)
    if name == "pressure":
        return ("Pa", "uint32", 1.0, 0.0)
    if name == "humidity":
        return ("%RH", "uint32", 0.0009765625, 0.0)  # 1/1024
    return None


def measure_ms(oversampling):
    """Maximum measurement time of T, P and H at this oversampling (datasheet 9.1), whole ms
    rounded up, plus 1 ms margin."""
    us = 1250 + 2300 * oversampling + 2 * (2300 * oversampling + 575)
    return (us + 999) // 1000 + 1


def _s16(lo, hi):
    v = lo | (hi << 8)
    return v - 65536 if v & 0x8000 else v


def _sq_shr(v, s):
    """(v * v) >> s for |v| < 2**17 and 5 <= s <= 16, every step below 2**30: with
    u = h * 2**8 + l, u * u = h * h * 2**16 + h * l * 2**9 + l * l."""
    u = -v if v < 0 else v
    h = u >> 8
    lo = u & 0xFF
    return ((h * h) << (16 - s)) + ((((h * lo) << 9) + lo * lo) >> s)


def _s12(v):
    return v - 4096 if v & 0x800 else v


class Calibration:
    """The trimming parameters, read once from the sensor's NVM (datasheet 4.2.2)."""

    def __init__(self, c1, c2):
        # c1: 26 bytes from 0x88, c2: 7 bytes from 0xE1
        self.T1 = c1[0] | (c1[1] << 8)
        self.T2 = _s16(c1[2], c1[3])
        self.T3 = _s16(c1[4], c1[5])
        self.P1 = c1[6] | (c1[7] << 8)
        self.P2 = _s16(c1[8], c1[9])
        self.P3 = _s16(c1[10], c1[11])
        self.P4 = _s16(c1[12], c1[13])
        self.P5 = _s16(c1[14], c1[15])
        self.P6 = _s16(c1[16], c1[17])
        self.P7 = _s16(c1[18], c1[19])
        self.P8 = _s16(c1[20], c1[21])
        self.P9 = _s16(c1[22], c1[23])
        self.H1 = c1[25]
        self.H2 = _s16(c2[0], c2[1])
        self.H3 = c2[2]
        self.H4 = _s12((c2[3] << 4) | (c2[4] & 0x0F))
        self.H5 = _s12((c2[5] << 4) | (c2[4] >> 4))
        self.H6 = c2[6] - 256 if c2[6] & 0x80 else c2[6]

    def t_fine(self, adc_t):
        """Datasheet 4.2.3, BME280_compensate_T_int32: t_fine; temperature in 0.01 degC is
        (t_fine * 5 + 128) >> 8."""
        T1 = self.T1
        var1 = (((adc_t >> 3) - (T1 << 1)) * self.T2) >> 11
        d = (adc_t >> 4) - T1
        var2 = (((d * d) >> 12) * self.T3) >> 14
        return var1 + var2

    def pressure(self, adc_p, t_fine):
        """Datasheet 8.2, BME280_compensate_P_int32: pressure in Pa, 0 when the calibration
        would divide by zero. Steps that pass 2**30 (a heap int on 32-bit ports) are computed
        in parts with the same result: var1 squared, dig_P2 * var1 (cold end),
        (32768 + var1) * dig_P1 >> 15, and the division of x * 3125 (an unsigned 32-bit value
        in C) by var1."""
        var1 = (t_fine >> 1) - 64000
        q = var1 >> 2
        var2 = (_sq_shr(q, 11) * self.P6) + ((var1 * self.P5) << 1)
        var2 = (var2 >> 2) + (self.P4 << 16)
        # (P2 * var1) >> 1 as (var1 >> 1) * P2 + ((var1 & 1) * P2 >> 1): the cold end passes 2**30
        var1 = (((self.P3 * _sq_shr(q, 13)) >> 3) +
                ((var1 >> 1) * self.P2 + (((var1 & 1) * self.P2) >> 1))) >> 18
        # a * P1 >> 15 = ((a >> 14) * P1 + ((a & 0x3FFF) * P1 >> 14)) >> 1: each product
        # below 2**30 (P1 < 2**16)
        a = 32768 + var1
        var1 = ((a >> 14) * self.P1 + (((a & 0x3FFF) * self.P1) >> 14)) >> 1
        if var1 <= 0:
            return 0
        x = (1048576 - adc_p) - (var2 >> 12)
        if x < 0:
            return 0  # C would wrap to a huge unsigned value: far outside 300..1100 hPa
        # C: p = x * 3125 (unsigned); p < 2**31 ? (p << 1) / var1 : (p / var1) * 2
        # x * k / var1 in parts: (x // var1) * k + (x % var1) * k // var1 (x % var1 < 2**16)
        if x < 687195:  # x * 3125 < 2**31
            p = (x // var1) * 6250 + ((x % var1) * 6250) // var1
        else:
            p = ((x // var1) * 3125 + ((x % var1) * 3125) // var1) * 2
        q = p >> 3
        var1 = (self.P9 * ((q * q) >> 13)) >> 12
        var2 = ((p >> 2) * self.P8) >> 13
        return p + ((var1 + var2 + self.P7) >> 4)

    def humidity(self, adc_h, t_fine):
        """Datasheet 4.2.3, bme280_compensate_H_int32: humidity in 1/1024 %RH, 0..102400."""
        v = t_fine - 76800
        # ((adc_h << 14) - (H4 << 20) - H5 * v + 16384) >> 15, without forming adc_h << 14
        # (2**30 and more): a = adc_h - (H4 << 6), a << 14 = (a >> 1) << 15 + (a & 1) << 14
        a = adc_h - (self.H4 << 6)
        x = (a >> 1) + ((((a & 1) << 14) - self.H5 * v + 16384) >> 15)
        y = (((((v * self.H6) >> 10) * (((v * self.H3) >> 11) + 32768)) >> 10) + 2097152)
        v = x * ((y * self.H2 + 8192) >> 14)
        q = v >> 15
        v = v - ((((q * q) >> 7) * self.H1) >> 4)
        if v < 0:
            v = 0
        if v > 419430400:
            v = 419430400
        return v >> 12


class Driver:
    def __init__(self, i2c, cfg, clock=None, keep=None):
        self.i2c = i2c
        self.addr = cfg["address"]
        os = _OSRS[cfg["oversampling"]]
        self.measure_ms = measure_ms(cfg["oversampling"])
        self._hum = bytearray((os,))
        self._meas = bytearray(((os << 5) | (os << 2) | _FORCED,))
        self._rx = bytearray(12)
        self.cal = None  # read at the first start(): a sensor plugged in later still works
        self._what = bytes([("temperature", "pressure", "humidity").index(p["channel"])
                            for p in cfg["points"]])

    def _calibrate(self):
        b = bytearray(26)
        self.i2c.readfrom_mem_into(self.addr, _REG_ID, memoryview(b)[:1])
        if b[0] != _CHIP_ID:
            raise OSError(19)  # another device at the address: not this sensor
        self.i2c.readfrom_mem_into(self.addr, _REG_CAL1, b)
        c2 = bytearray(7)
        self.i2c.readfrom_mem_into(self.addr, _REG_CAL2, c2)
        self.cal = Calibration(b, c2)

    def start(self):
        """Trigger one forced-mode measurement. Does not allocate once calibrated."""
        if self.cal is None:
            self._calibrate()
        self.i2c.writeto_mem(self.addr, _REG_CTRL_HUM, self._hum)
        self.i2c.writeto_mem(self.addr, _REG_CTRL_MEAS, self._meas)

    def read(self, s):
        """Each point's compensated value into s.v; ERR_NOT_READY while still measuring or
        for a skipped channel, ERR_RANGE outside the operating range (datasheet 1)."""
        b = self._rx
        self.i2c.readfrom_mem_into(self.addr, _REG_STATUS, b)
        w = self._what
        if b[0] & _MEASURING:
            s.fail(ERR_NOT_READY)
            return
        cal = self.cal
        if cal is None:
            s.fail(ERR_SENSOR)
            return
        adc_p = (b[4] << 12) | (b[5] << 4) | (b[6] >> 4)
        adc_t = (b[7] << 12) | (b[8] << 4) | (b[9] >> 4)
        adc_h = (b[10] << 8) | b[11]
        if adc_t == _SKIPPED:
            s.fail(ERR_NOT_READY)
            return
        tf = cal.t_fine(adc_t)
        for i in range(len(w)):
            k = w[i]
            if k == _T:
                v = (tf * 5 + 128) >> 8
                bad = v < -4000 or v > 8500
            elif k == _P:
                if adc_p == _SKIPPED:
                    s.err[i] = ERR_NOT_READY
                    continue
                v = cal.pressure(adc_p, tf)
                bad = v < 30000 or v > 110000
            else:
                if adc_h == 0x8000:
                    s.err[i] = ERR_NOT_READY
                    continue
                v = cal.humidity(adc_h, tf)
                bad = False
            if bad:
                s.err[i] = ERR_RANGE
            else:
                s.v[i] = v
