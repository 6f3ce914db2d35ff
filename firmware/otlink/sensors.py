# Local sensor polling: one asyncio task per configured sensor. Each sample becomes one
# reading record per point (raw value, or an error code when the bus or CRC failed).
import asyncio
import struct

from otlink.core import reading
from otlink.core.compat import const

from otlink.core.errors import ERR_SENSOR, ERR_SENSOR_CRC

_DRIVERS = ("sht3x",)
_MEASURE_MS = const(16)  # start() to read(): the SHT3x's 15 ms at most, plus 1 ms


def make_driver(sensor_cfg, i2c):
    if sensor_cfg["driver"] == "sht3x":
        from otlink.drivers.sht3x import SHT3x

        return SHT3x(i2c, sensor_cfg["address"])
    raise ValueError("unknown sensor driver %r" % sensor_cfg["driver"])


def driver_scale(sensor_cfg, point):
    """(scale, offset) from raw value to the point's unit, for the birth point table."""
    if sensor_cfg["driver"] == "sht3x":
        from otlink.drivers.sht3x import SCALE, OFFSET

        s, o = SCALE[point["channel"]], OFFSET[point["channel"]]
        return s * point["scale"], o * point["scale"] + point["offset"]
    return point["scale"], point["offset"]


class SensorTask:
    """One sensor's samples. A sample is begin() (stamp the time, start the measurement),
    the driver's measurement time, then finish() (read, one record per point). Neither
    allocates when the bus answers (32-bit included: the time goes into the record as the
    clock's split fields, never as an int >= 2**30; tests/firmware/test_sensors.py)."""

    def __init__(self, sensor_cfg, driver, clock, sink, interval_ms):
        self.cfg = sensor_cfg
        self.drv = driver
        self.clock = clock
        self.sink = sink
        self.interval_ms = interval_ms
        self.rec = bytearray(reading.SIZE)
        self._flags = 0  # of the sample begun: FLAG_UNTIMED while the wall clock is unset
        self.ok = 0
        self.errors = 0
        pts = sensor_cfg["points"]
        self._ids = [p["id"] for p in pts]
        # index of each point's channel in the driver's read() values
        self._idx = [("temperature", "humidity").index(p["channel"]) for p in pts]

    def _failed(self, e):
        # the bus raised (absent, NACK, CRC): one error record per point, same timestamp
        self.errors += 1
        code = ERR_SENSOR_CRC if type(e).__name__ == "CRCError" else ERR_SENSOR
        rec = self.rec
        for pid in self._ids:
            struct.pack_into("<HBB", rec, 0, pid, reading.KIND_ERR, self._flags)
            struct.pack_into("<q", rec, reading.HEADER, code)
            self.sink(rec, reading.SIZE)

    def begin(self):
        """Stamp the sample's time into the record and start a measurement. False when the
        bus failed (error records went to the sink)."""
        self._flags = self.clock.stamp_into(self.rec, reading.OFF_T)
        try:
            self.drv.start()
        except OSError as e:
            self._failed(e)
            return False
        return True

    def finish(self):
        """Read the measurement begun and send one record per point to the sink."""
        try:
            vals = self.drv.read()
        except OSError as e:
            self._failed(e)
            return
        self.ok += 1
        rec = self.rec
        ids = self._ids
        idx = self._idx
        flags = self._flags
        for i in range(len(ids)):
            struct.pack_into("<HBB", rec, 0, ids[i], reading.KIND_INT, flags)
            struct.pack_into("<q", rec, reading.HEADER, vals[idx[i]])
            self.sink(rec, reading.SIZE)

    async def run(self):
        clock = self.clock
        nxt = clock.ticks_ms()
        while True:
            if self.begin():
                await asyncio.sleep_ms(_MEASURE_MS)
                self.finish()
            # re-armed every turn: nxt is never more than interval_ms (<= 1 day) stale
            nxt = clock.ticks_add(nxt, self.interval_ms)
            wait = clock.ticks_diff(nxt, clock.ticks_ms())
            if wait < 0:  # fell behind (e.g. a long flash erase): skip, do not burst
                nxt = clock.ticks_ms()
                wait = 0
            await asyncio.sleep_ms(wait)
