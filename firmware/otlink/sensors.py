# Local sensor polling: one asyncio task per configured sensor. Each sample becomes one
# reading record per point (raw value, or an error code when the bus or CRC failed).
import asyncio

from otlink.core import reading

from otlink.core.errors import ERR_SENSOR, ERR_SENSOR_CRC

_DRIVERS = ("sht3x",)


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
    def __init__(self, sensor_cfg, driver, clock, sink, interval_ms):
        self.cfg = sensor_cfg
        self.drv = driver
        self.clock = clock
        self.sink = sink
        self.interval_ms = interval_ms
        self.rec = bytearray(reading.SIZE)
        self.ok = 0
        self.errors = 0
        chans = [p["channel"] for p in sensor_cfg["points"]]
        # index of each point's channel in the driver's read() tuple
        self._idx = [("temperature", "humidity").index(c) for c in chans]

    def _emit_err(self, t, flags, code):
        for p in self.cfg["points"]:
            self.sink(self.rec, reading.pack_err(self.rec, p["id"], t, code, flags))

    async def run(self):
        clock = self.clock
        nxt = clock.ticks_ms()
        while True:
            t = clock.now_ms()
            flags = 0 if clock.is_set() else reading.FLAG_UNTIMED
            try:
                self.drv.start()
                await asyncio.sleep_ms(16)
                vals = self.drv.read()
            except OSError as e:
                self.errors += 1
                crc = type(e).__name__ == "CRCError"
                self._emit_err(t, flags, ERR_SENSOR_CRC if crc else ERR_SENSOR)
            else:
                self.ok += 1
                pts = self.cfg["points"]
                for i in range(len(pts)):
                    n = reading.pack_int(self.rec, pts[i]["id"], t, vals[self._idx[i]], flags)
                    self.sink(self.rec, n)
            nxt = clock.ticks_add(nxt, self.interval_ms)
            wait = clock.ticks_diff(nxt, clock.ticks_ms())
            if wait < 0:  # fell behind (e.g. a long flash erase): skip, do not burst
                nxt = clock.ticks_ms()
                wait = 0
            await asyncio.sleep_ms(wait)
