# Sensirion SHT3x (SHT30/31/35) temperature and humidity sensor on I2C.
# Datasheet facts used: single-shot, high repeatability, no clock stretching = command
# 0x2400 (datasheet table 9); measurement takes at most 15 ms (table 4); the answer is
# 6 bytes T_msb T_lsb CRC RH_msb RH_lsb CRC; CRC-8 poly 0x31, init 0xFF (section 4.12,
# CRC(0xBEEF) = 0x92); T = -45 + 175 * S_T / 65535 degC, RH = 100 * S_RH / 65535 %RH.
# Reading before the measurement is done is NACKed (OSError from the bus).
#
# Readings are the raw 16-bit signal values: the conversion is the scale and offset the
# birth message carries (channel()), so they stay small integers.
from otlink.core.compat import const
from otlink.core.errors import ERR_SENSOR_CRC

_CMD_MEASURE_HIGH = const(0x2400)
_CMD_SOFT_RESET = const(0x30A2)
MEASURE_MS = const(16)  # 15 ms max per datasheet, plus 1 ms margin
_T = const(0)
_RH = const(1)

BUS = "i2c"
OPTIONS = (("address", "choice", 0x44, (0x44, 0x45)),)  # ADDR pin low / high (table 7)
CHANNELS = "temperature, humidity"


def channel(opts, name):
    # literal tuples: constants of the frozen module, no heap (175/65535, 100/65535)
    if name == "temperature":
        return ("degC", "uint16", 0.002670328831921874, -45.0)
    if name == "humidity":
        return ("%RH", "uint16", 0.0015259021896696422, 0.0)
    return None


def crc8(buf, start, n):
    c = 0xFF
    for i in range(start, start + n):
        c ^= buf[i]
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


class Driver:
    def __init__(self, i2c, cfg, clock=None, keep=None):
        self.i2c = i2c
        self.addr = cfg["address"]
        self.measure_ms = MEASURE_MS
        self._cmd = bytearray(2)
        self._rx = bytearray(6)
        # which word each point reads: 0 temperature, 1 humidity
        self._word = bytes([_T if p["channel"] == "temperature" else _RH
                            for p in cfg["points"]])

    def _send(self, cmd):
        self._cmd[0] = cmd >> 8
        self._cmd[1] = cmd & 0xFF
        self.i2c.writeto(self.addr, self._cmd)

    def reset(self):
        self._send(_CMD_SOFT_RESET)

    def start(self):
        """Start one measurement; read() it MEASURE_MS later. Does not allocate."""
        self._send(_CMD_MEASURE_HIGH)

    def read(self, s):
        """Each point's raw 16-bit word into s.v, or ERR_SENSOR_CRC on a point whose word
        fails its checksum. Raises OSError from the bus (not ready, absent). Does not
        allocate."""
        rx = self._rx
        self.i2c.readfrom_into(self.addr, rx)
        w = self._word
        for i in range(len(w)):
            o = 3 * w[i]
            if crc8(rx, o, 2) != rx[o + 2]:
                s.err[i] = ERR_SENSOR_CRC
            else:
                s.v[i] = (rx[o] << 8) | rx[o + 1]
