# Local sensors, generic over drivers: one asyncio task per configured sensor. Each sample
# becomes one reading record per point (raw value, or the point's error code). What a driver
# is (its bus, channels, conversion, measurement time, options) the driver module declares
# (otlink/drivers/__init__.py, docs/sensors.md); this module knows no driver by name.
import asyncio
import struct

from otlink.core import reading
from otlink.core.compat import const
from otlink.core.errors import ERR_BUS_STUCK, ERR_SENSOR

_ETIMEDOUT = const(110)  # MicroPython's errno for a bus that times out (I2C held low)
_EBUSY = const(16)


def code_of(e):
    """The reading error code of an OSError a bus raised: a timeout or busy bus is stuck,
    anything else (NACK: ENODEV/EIO) is a sensor that does not answer."""
    n = e.args[0] if e.args else 0
    if n == _ETIMEDOUT or n == _EBUSY:
        return ERR_BUS_STUCK
    return ERR_SENSOR


def make_driver(sensor_cfg, board, clock):
    """The sensor's driver (otlink/drivers/<driver>.py), given its bus from the board (by
    the driver's BUS kind and the config's "bus" name), and a Keep on the board's filesystem
    when the driver keeps state across reboots (KEEP = True: pulse totals; drivers/_keep.py)."""
    from otlink.drivers import load

    mod = load(sensor_cfg["driver"])
    kind = mod.BUS
    name = sensor_cfg["bus"]
    if kind == "i2c":
        bus = board.i2c(name)
    elif kind == "onewire":
        bus = board.onewire(name)
    elif kind == "adc":
        bus = board.adc(name)
    else:
        bus = board.pin_in(name, sensor_cfg["pull"])
    keep = None
    if getattr(mod, "KEEP", False):
        from otlink.drivers._keep import Keep

        keep = Keep("%s/sensor_%d.keep" % (getattr(board, "mount_point", ""),
                                            sensor_cfg["points"][0]["id"]))
    return mod.Driver(bus, sensor_cfg, clock, keep)


def driver_scale(sensor_cfg, point):
    """(type, scale, offset) from raw value to the point's unit, for the birth point table:
    the driver's conversion, then the point's own scale and offset on top."""
    from otlink.drivers import load

    unit, typ, s, o = load(sensor_cfg["driver"]).channel(sensor_cfg, point["channel"])
    return typ, s * point["scale"], o * point["scale"] + point["offset"]


def source(sensor_cfg, point):
    """The birth table's source of a sensor point: <driver>:<bus>[:0x<address>]:<channel>."""
    a = sensor_cfg.get("address")
    if a is None:
        return "%s:%s:%s" % (sensor_cfg["driver"], sensor_cfg["bus"], point["channel"])
    return "%s:%s:0x%02x:%s" % (sensor_cfg["driver"], sensor_cfg["bus"], a, point["channel"])


class Sample:
    """What a driver's read() fills, one slot per point, allocated once: v[i] the raw value
    (a small int: |v| < 2**30 on 32-bit boards), hi[i] its high part for wider values
    (value = hi[i] * 2**30 + v[i], counters), err[i] an error code instead (0: none)."""

    def __init__(self, n):
        self.n = n
        self.v = [0] * n
        self.hi = [0] * n
        self.err = [0] * n

    def clear(self):
        for i in range(self.n):
            self.v[i] = 0
            self.hi[i] = 0
            self.err[i] = 0

    def fail(self, code):
        for i in range(self.n):
            self.err[i] = code


def _pack_wide(rec, off, hi, lo):
    # hi * 2**30 + lo (0 <= lo < 2**30, hi >= 0) as a little-endian int64, byte by byte: the
    # whole value would be a heap int on 32-bit boards
    rec[off] = lo & 0xFF
    rec[off + 1] = (lo >> 8) & 0xFF
    rec[off + 2] = (lo >> 16) & 0xFF
    rec[off + 3] = ((lo >> 24) & 0x3F) | ((hi & 3) << 6)
    hi >>= 2
    for k in range(4, 8):
        rec[off + k] = hi & 0xFF
        hi >>= 8


def _backdate(rec, off, ms):
    # subtract ms (0 <= ms < 2**24) from the little-endian int64 at rec[off:off+8] in place
    borrow = ms
    k = off
    while borrow and k < off + 8:
        b = rec[k] - (borrow & 0xFF)
        borrow >>= 8
        if b < 0:
            b += 256
            borrow += 1
        rec[k] = b
        k += 1


class SensorTask:
    """One sensor's samples. A sample is begin() (stamp the time, start the measurement),
    the driver's measure_ms, then finish() (read, one record per point). Neither allocates
    once the driver is warm and the bus answers (32-bit included: the time goes into the
    record as the clock's split fields; tests/firmware/test_sensors.py and each driver's test).
    A driver with events (a watch() coroutine: digital inputs) also gets one record per point
    at the time of each event, from watch_task()."""

    def __init__(self, sensor_cfg, driver, clock, sink, interval_ms):
        self.cfg = sensor_cfg
        self.drv = driver
        self.clock = clock
        self.sink = sink
        self.interval_ms = interval_ms
        self.rec = bytearray(reading.SIZE)
        self._flags = 0  # of the sample begun: FLAG_UNTIMED while the wall clock is unset
        self.ok = 0  # samples without an error
        self.errors = 0  # samples with an error on any point
        pts = sensor_cfg["points"]
        self._ids = [p["id"] for p in pts]
        self.s = Sample(len(pts))
        self.watches = hasattr(driver, "watch")
        # bound once: a driver's watch() calls it for each event
        self._emit = self.event if self.watches else None

    def _send(self):
        s = self.s
        rec = self.rec
        ids = self._ids
        flags = self._flags
        bad = False
        for i in range(s.n):
            e = s.err[i]
            if e:
                bad = True
                struct.pack_into("<HBB", rec, 0, ids[i], reading.KIND_ERR, flags)
                struct.pack_into("<q", rec, reading.HEADER, e)
            else:
                struct.pack_into("<HBB", rec, 0, ids[i], reading.KIND_INT, flags)
                if s.hi[i]:
                    _pack_wide(rec, reading.HEADER, s.hi[i], s.v[i])
                else:
                    struct.pack_into("<q", rec, reading.HEADER, s.v[i])
            self.sink(rec, reading.SIZE)
        if bad:
            self.errors += 1
        else:
            self.ok += 1

    def begin(self):
        """Stamp the sample's time into the record and start a measurement. False when the
        bus failed (error records went to the sink)."""
        self._flags = self.clock.stamp_into(self.rec, reading.OFF_T)
        try:
            self.drv.start()
        except OSError as e:
            self.s.fail(code_of(e))
            self._send()
            return False
        return True

    def finish(self):
        """Read the measurement begun and send one record per point to the sink."""
        s = self.s
        s.clear()
        try:
            self.drv.read(s)
        except OSError as e:
            s.fail(code_of(e))
        self._send()

    def event(self, age_ms):
        """A driver's event, age_ms ago: one record per point stamped at its time."""
        self._flags = self.clock.stamp_into(self.rec, reading.OFF_T)
        if age_ms > 0:
            _backdate(self.rec, reading.OFF_T, age_ms)
        self.finish()

    async def watch_task(self):
        await self.drv.watch(self._emit)

    async def run(self):
        clock = self.clock
        nxt = clock.ticks_ms()
        while True:
            if self.begin():
                await asyncio.sleep_ms(self.drv.measure_ms)
                self.finish()
            # re-armed every turn: nxt is never more than interval_ms (<= 1 day) stale
            nxt = clock.ticks_add(nxt, self.interval_ms)
            wait = clock.ticks_diff(nxt, clock.ticks_ms())
            if wait < 0:  # fell behind (e.g. a long flash erase): skip, do not burst
                nxt = clock.ticks_ms()
                wait = 0
            await asyncio.sleep_ms(wait)
