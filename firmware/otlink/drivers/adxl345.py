# Analog Devices ADXL345 3-axis MEMS accelerometer on I2C, read through its hardware FIFO.
# Why this part (docs/analytics.md "Vibration"): at 13-bit full resolution it samples up to
# 3200 Hz (output bandwidth 1600 Hz), so the ISO 10816 band 10-1000 Hz lies below Nyquist;
# the LIS3DH's 12-bit high-resolution mode stops at 1344 Hz (672 Hz bandwidth).
#
# Datasheet facts used (ADXL345 Rev. G): register map (table 19): DEVID 0x00 = 0xE5,
# BW_RATE 0x2C (rate code in bits 3:0, 0xF = 3200 Hz, 0xE = 1600, 0xD = 800, 0xC = 400,
# 0xB = 200, 0xA = 100 Hz), POWER_CTL 0x2D (bit 3 Measure), DATA_FORMAT 0x31 (bit 3 FULL_RES,
# bits 1:0 range +-2/4/8/16 g), DATAX0..DATAZ1 0x32..0x37 (x, y, z as int16 little endian),
# FIFO_CTL 0x38 (bits 7:6 mode, 10 = stream), FIFO_STATUS 0x39 (bits 5:0 entries). In full
# resolution the scale is 3.9 mg/LSB (256 LSB/g) at every range. One FIFO entry is popped by
# each read of the six data registers in one multi-byte read ("Retrieving Data from FIFO"),
# so a burst is one 6-byte transfer per entry into one preallocated buffer, never a byte at a
# time. At 3200 Hz the FIFO's 32 entries fill in 10 ms: the reader must come back sooner (SPI
# is the datasheet's advice above 800 Hz on a 400 kHz I2C bus; docs/analytics.md).
from micropython import const

ADDRESS = const(0x53)  # ALT ADDRESS pin low (0x1D when high)
DEVID = const(0xE5)
LSB_PER_G = const(256)  # full resolution
_REG_DEVID = const(0x00)
_REG_BW_RATE = const(0x2C)
_REG_POWER_CTL = const(0x2D)
_REG_DATA_FORMAT = const(0x31)
_REG_DATAX0 = const(0x32)
_REG_FIFO_CTL = const(0x38)
_REG_FIFO_STATUS = const(0x39)
_FULL_RES = const(0x08)
_MEASURE = const(0x08)
_STREAM = const(0x80)
FIFO_DEPTH = const(32)
RATES = {3200: 0x0F, 1600: 0x0E, 800: 0x0D, 400: 0x0C, 200: 0x0B, 100: 0x0A}
RANGES = {2: 0, 4: 1, 8: 2, 16: 3}


class ADXL345:
    def __init__(self, i2c, addr=ADDRESS):
        self.i2c = i2c
        self.addr = addr
        self._b1 = bytearray(1)
        self._six = bytearray(6)
        self.rate_hz = 0

    def _w(self, reg, v):
        self._b1[0] = v
        self.i2c.writeto_mem(self.addr, reg, self._b1)

    def _r(self, reg):
        self.i2c.readfrom_mem_into(self.addr, reg, self._b1)
        return self._b1[0]

    def configure(self, rate_hz=3200, range_g=16):
        """Check the part, set full resolution, range and rate, FIFO in stream mode, and
        start measuring. Raises OSError when the part is absent or is not an ADXL345."""
        if self._r(_REG_DEVID) != DEVID:
            raise OSError(19)  # ENODEV: something else answers at this address
        self._w(_REG_POWER_CTL, 0)  # standby while configuring
        self._w(_REG_DATA_FORMAT, _FULL_RES | RANGES[range_g])
        self._w(_REG_BW_RATE, RATES[rate_hz])
        self._w(_REG_FIFO_CTL, 0)  # bypass clears the FIFO
        self._w(_REG_FIFO_CTL, _STREAM)
        self._w(_REG_POWER_CTL, _MEASURE)
        self.rate_hz = rate_hz

    def entries(self):
        """Samples waiting in the FIFO (0..32). Does not allocate."""
        return self._r(_REG_FIFO_STATUS) & 0x3F

    def read_fifo(self, xs, ys, zs, at, n):
        """Pop n FIFO entries into the int16 arrays xs, ys, zs from index at. Does not
        allocate (one 6-byte transfer per entry into the driver's buffer)."""
        six = self._six
        i2c = self.i2c
        addr = self.addr
        for i in range(at, at + n):
            i2c.readfrom_mem_into(addr, _REG_DATAX0, six)
            v = six[0] | (six[1] << 8)
            xs[i] = v - 0x10000 if v & 0x8000 else v
            v = six[2] | (six[3] << 8)
            ys[i] = v - 0x10000 if v & 0x8000 else v
            v = six[4] | (six[5] << 8)
            zs[i] = v - 0x10000 if v & 0x8000 else v

    def flush(self):
        """Drop what the FIFO holds (a burst starts with fresh samples)."""
        self._w(_REG_FIFO_CTL, 0)
        self._w(_REG_FIFO_CTL, _STREAM)
