# Simulated I2C bus for the Unix port, with an SHT3x model built from its datasheet
# (see drivers/sht3x.py for the facts used). Same methods as machine.I2C that drivers use:
# writeto(addr, buf), readfrom_into(addr, buf), scan(). A missing address or a read
# before the measurement is done raises OSError(ENODEV) like a NACK on the real bus.
import math

from otlink.drivers.sht3x import crc8  # the firmware's one CRC-8 (datasheet section 4.12)

_ENODEV = 19


def _crc8(b0, b1):
    return crc8((b0, b1), 0, 2)


class SHT3xModel:
    """Ambient that drifts slowly: 22 +/- 3 degC, 45 +/- 10 %RH."""

    def __init__(self, clock):
        self.clock = clock
        self.started = None
        self.corrupt_next = False  # tests: flip a bit of the next answer
        self.last = None  # (temperature degC, humidity %RH) of the last answer

    def values(self, t_ms):
        s = t_ms / 1000.0
        return 22.0 + 3.0 * math.sin(s / 60.0), 45.0 + 10.0 * math.sin(s / 90.0)

    def write(self, buf):
        if len(buf) == 2 and buf[0] == 0x24 and buf[1] == 0x00:
            self.started = self.clock.ticks_ms()
        elif len(buf) == 2 and buf[0] == 0x30 and buf[1] == 0xA2:
            self.started = None
        else:
            raise OSError(_ENODEV)  # unknown command: the sensor NACKs it

    def read(self, buf):
        if self.started is None or self.clock.ticks_diff(self.clock.ticks_ms(), self.started) < 15:
            raise OSError(_ENODEV)
        self.started = None
        t, rh = self.values(self.clock.uptime_ms())
        st = int((t + 45.0) * 65535 / 175.0 + 0.5)
        srh = int(rh * 65535 / 100.0 + 0.5)
        self.last = (-45.0 + 175.0 * st / 65535, 100.0 * srh / 65535)
        out = (st >> 8, st & 0xFF, _crc8(st >> 8, st & 0xFF),
               srh >> 8, srh & 0xFF, _crc8(srh >> 8, srh & 0xFF))
        for i in range(min(len(buf), 6)):
            buf[i] = out[i]
        if self.corrupt_next:
            self.corrupt_next = False
            buf[1] ^= 0x04


class SimI2C:
    def __init__(self, devices):
        self.devices = devices  # addr -> model with write(buf)/read(buf)

    def scan(self):
        return sorted(self.devices)

    def _dev(self, addr):
        d = self.devices.get(addr)
        if d is None:
            raise OSError(_ENODEV)
        return d

    def writeto(self, addr, buf, stop=True):
        self._dev(addr).write(buf)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._dev(addr).read(buf)
