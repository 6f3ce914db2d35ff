# Simulated I2C bus for the Unix port, with sensor models built from their datasheets
# (SHT3x here, drivers/sht3x.py lists the facts; BME280 in sim_bme280.py). Same methods as the
# machine.I2C that drivers use: writeto, readfrom_into, readfrom_mem_into, writeto_mem, scan.
# A missing address or a NACKed transfer raises OSError(ENODEV) as the ports do; a bus whose
# SDA is held low (stuck = True) raises OSError(ETIMEDOUT). Models compute with the heap lock
# lifted (sim_heap.py): they stand for silicon in the drivers' heap-locked tests.
import math

from otlink.drivers.sht3x import crc8  # the firmware's one CRC-8 (datasheet section 4.12)
from otlink.hal.unix.sim_heap import relock, release

_ENODEV = 19
_ETIMEDOUT = 110


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
        n = release()
        try:
            self._answer(buf)
        finally:
            relock(n)

    def _answer(self, buf):
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
    def __init__(self, devices, later=None, clock=None):
        self.devices = devices  # addr -> model with write(buf)/read(buf)
        # addr -> (module, class) of a model made at the first transfer to it, with the bus's
        # clock: its module is loaded only when a driver talks to it (the agent's heap on the
        # Unix port)
        self.later = later or {}
        self.clock = clock
        self.stuck = False  # tests: SDA held low, every transfer times out
        self._reg = bytearray(1)

    def scan(self):
        return sorted(self.devices)

    def _dev(self, addr):
        if self.stuck:
            raise OSError(_ETIMEDOUT)
        d = self.devices.get(addr)
        if d is None:
            where = self.later.pop(addr, None)
            if where is None:
                raise OSError(_ENODEV)
            __import__(where[0])
            import sys

            d = self.devices[addr] = getattr(sys.modules[where[0]], where[1])(self.clock)
        return d

    def writeto(self, addr, buf, stop=True):
        self._dev(addr).write(buf)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._dev(addr).read(buf)

    def readfrom_mem_into(self, addr, memaddr, buf):
        d = self._dev(addr)
        self._reg[0] = memaddr
        d.write(self._reg)
        d.read(buf)

    def writeto_mem(self, addr, memaddr, buf):
        d = self._dev(addr)
        n = release()
        try:
            b = bytearray(1 + len(buf))
            b[0] = memaddr
            b[1:] = buf
        finally:
            relock(n)
        d.write(b)
