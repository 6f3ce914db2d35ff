# Sensirion SHT3x (SHT30/31/35) temperature and humidity sensor on I2C.
# Datasheet facts used: single-shot, high repeatability, no clock stretching = command
# 0x2400 (datasheet table 9); measurement takes at most 15 ms (table 4); the answer is
# 6 bytes T_msb T_lsb CRC RH_msb RH_lsb CRC; CRC-8 poly 0x31, init 0xFF (section 4.12,
# CRC(0xBEEF) = 0x92); T = -45 + 175 * S_T / 65535 degC, RH = 100 * S_RH / 65535 %RH.
# Reading before the measurement is done is NACKed (OSError from the bus).
#
# The driver returns raw 16-bit signal values: the conversion is a scale and offset that
# the birth message carries (SCALE/OFFSET below), so readings stay small integers.
from micropython import const

_CMD_MEASURE_HIGH = const(0x2400)
_CMD_SOFT_RESET = const(0x30A2)
MEASURE_MS = const(16)  # 15 ms max per datasheet, plus 1 ms margin

SCALE = {"temperature": 175 / 65535, "humidity": 100 / 65535}
OFFSET = {"temperature": -45.0, "humidity": 0.0}


class CRCError(OSError):
    pass


def crc8(buf, start, n):
    c = 0xFF
    for i in range(start, start + n):
        c ^= buf[i]
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


class SHT3x:
    def __init__(self, i2c, addr=0x44):
        self.i2c = i2c
        self.addr = addr
        self._cmd = bytearray(2)
        self._rx = bytearray(6)
        self._raw = [0, 0]  # read()'s answer, reused: no tuple per measurement

    def _send(self, cmd):
        self._cmd[0] = cmd >> 8
        self._cmd[1] = cmd & 0xFF
        self.i2c.writeto(self.addr, self._cmd)

    def reset(self):
        self._send(_CMD_SOFT_RESET)

    def start(self):
        """Start one measurement; read() it MEASURE_MS later. Does not allocate."""
        self._send(_CMD_MEASURE_HIGH)

    def read(self):
        """[raw_temperature, raw_humidity] as 16-bit ints, in one list reused by every call
        (does not allocate). Raises OSError from the bus (not ready, absent) or CRCError
        when a word fails its checksum."""
        rx = self._rx
        self.i2c.readfrom_into(self.addr, rx)
        if crc8(rx, 0, 2) != rx[2] or crc8(rx, 3, 2) != rx[5]:
            raise CRCError(5)  # EIO
        raw = self._raw
        raw[0] = (rx[0] << 8) | rx[1]
        raw[1] = (rx[3] << 8) | rx[4]
        return raw
