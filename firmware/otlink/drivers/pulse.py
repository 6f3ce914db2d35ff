# S0 / pulse counter on an input pin: an old meter's pulse output (IEC 62053-31 S0: an opto
# transistor pulling the line low for at least 30 ms per pulse, at least 30 ms between), read
# by a pin interrupt. The handler does not allocate (small ints only; on rp2 it may run as a
# hard IRQ): it counts an edge unless it comes within debounce_ms of the last one counted,
# which swallows contact bounce and the release edge of a pulse.
# The task turns the count into "total" (pulses since the counter was installed: persisted)
# and "rate" (pulses per hour over the last interval); pulses_per_unit scales both in the
# birth table (1000 imp/kWh: total in kWh, rate in kW).
# The total survives reboots in a Keep (drivers/_keep.py: a 16-byte littlefs file rewritten
# whole): saved when persist_pulses pulses or persist_s seconds have gone by since the last
# save, so a power cut loses at most that much; docs/sensors.md gives the writes per day.
from otlink.core.compat import const

_MASK = const(0x3FFFFFFF)  # counters wrap inside the small-int range of 32-bit ports
_HOUR_MS = const(3600000)
_TOTAL = const(0)
_RATE = const(1)

BUS = "pin"
KEEP = True
OPTIONS = (("edge", "choice", "falling", ("falling", "rising")),  # the pulse's leading edge
           ("pull", "choice", "up", ("up", "down", "none")),
           # dead time after a counted edge: above a pulse's width plus its bounce, below its
           # period (S0 at its fastest: 30 ms on, 30 ms off; a reed contact: 100 ms or more)
           ("debounce_ms", "int", 50, 0, 10000),
           ("pulses_per_unit", "num", 1000.0, 1e-6, 1e9),  # e.g. 1000 imp/kWh
           ("unit", "text", "kWh", None),
           ("persist_s", "int", 600, 10, 86400),
           ("persist_pulses", "int", 1000, 1, 1000000))
CHANNELS = "total, rate"


def channel(cfg, name):
    k = 1.0 / cfg["pulses_per_unit"]
    if name == "total":
        return (cfg["unit"], "uint64", k, 0.0)
    if name == "rate":
        u = cfg["unit"]
        return (u[:-1] if u[-1:] == "h" and len(u) > 1 else u + "/h", "int32", k, 0.0)
    return None


class Driver:
    def __init__(self, pin, cfg, clock, keep=None):
        self.pin = pin
        self.clock = clock
        self.keep = keep
        self.measure_ms = 0
        self.deb = cfg["debounce_ms"]
        self.persist_ms = cfg["persist_s"] * 1000
        self.persist_pulses = cfg["persist_pulses"]
        self._what = bytes([_TOTAL if p["channel"] == "total" else _RATE
                            for p in cfg["points"]])
        self.hi, self.lo = keep.load() if keep is not None else (0, 0)  # total = hi*2**30 + lo
        self.since_save = 0
        self.rate = 0
        now = clock.ticks_ms()
        self._t_save = now
        self._t_prev = now
        self.edges = 0  # written by the handler only
        self._seen = 0  # written by the task only
        self._last = clock.ticks_add(now, -self.deb - 1)
        self._cb = self._edge  # bound once: the handler itself must not allocate
        pin.irq(self._cb, pin.IRQ_FALLING if cfg["edge"] == "falling" else pin.IRQ_RISING)

    def _edge(self, pin):
        # the IRQ handler: small ints, no allocation
        c = self.clock
        now = c.ticks_ms()
        if c.ticks_diff(now, self._last) <= self.deb:
            return
        self._last = now
        self.edges = (self.edges + 1) & _MASK

    def start(self):
        pass

    def read(self, s):
        c = self.clock
        now = c.ticks_ms()
        e = self.edges
        d = (e - self._seen) & _MASK  # new pulses; the handler may run meanwhile: next time
        self._seen = e
        if d > _MASK - self.lo:  # lo + d would pass 2**30: carry without a heap int
            self.lo = self.lo - (_MASK - d) - 1
            self.hi += 1
        else:
            self.lo += d
        dt = c.ticks_diff(now, self._t_prev)
        self._t_prev = now
        if dt > 0:  # pulses per hour: d * 3600000 / dt in two parts, each below 2**30
            self.rate = d * (_HOUR_MS // dt) + (d * (_HOUR_MS % dt)) // dt
        self.since_save += d
        if self.keep is not None and self.since_save and (
                self.since_save >= self.persist_pulses or
                c.ticks_diff(now, self._t_save) >= self.persist_ms):
            self.save(now)
        w = self._what
        for i in range(len(w)):
            if w[i] == _TOTAL:
                s.v[i] = self.lo
                s.hi[i] = self.hi
            else:
                s.v[i] = self.rate

    def close(self):
        """The agent stops: save the total if pulses came since the last save."""
        if self.keep is not None and self.since_save:
            self.save()

    def save(self, now=None):
        """Persist the total (allocates: a file is written)."""
        self.keep.save(self.hi, self.lo)
        self.since_save = 0
        self._t_save = self.clock.ticks_ms() if now is None else now
