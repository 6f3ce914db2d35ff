# Digital input (run/stop contact, door switch, alarm relay) with debounce and edge events.
# A pin interrupt on both edges notes the time of the first and the last edge of a burst and
# sets a ThreadSafeFlag (neither allocates). The events task wakes on it, waits until the line
# has been quiet for debounce_ms, and when the settled level differs from the last state emits
# one event: a record per point stamped at the first edge of the burst. The poll group's
# samples report the debounced state too (a heartbeat, and the value after a reboot).
# Channels: "state" 1 when the input is at its active level (a contact to ground with the
# pull-up: active "low", closed = 1), "changes" debounced changes since boot.
import asyncio

from otlink.core.compat import const

_STATE = const(0)
_CHANGES = const(1)

BUS = "pin"
OPTIONS = (("active", "choice", "low", ("low", "high")),
           ("pull", "choice", "up", ("up", "down", "none")),
           ("debounce_ms", "int", 20, 1, 10000))
CHANNELS = "state, changes"


def channel(cfg, name):
    if name == "state":
        return ("", "bool", 1.0, 0.0)
    if name == "changes":
        return ("", "uint32", 1.0, 0.0)
    return None


class Driver:
    def __init__(self, pin, cfg, clock, keep=None):
        self.pin = pin
        self.clock = clock
        self.measure_ms = 0
        self.deb = cfg["debounce_ms"]
        self.active = 1 if cfg["active"] == "high" else 0
        self._what = bytes([_STATE if p["channel"] == "state" else _CHANGES
                            for p in cfg["points"]])
        self.state = 1 if pin.value() == self.active else 0
        self.changes = 0
        self.events = 0
        self.pending = False
        self.age = -1
        self.first = self.last = clock.ticks_ms()
        self.flag = asyncio.ThreadSafeFlag()
        self._cb = self._edge  # bound once: the handler itself must not allocate
        pin.irq(self._cb, pin.IRQ_RISING | pin.IRQ_FALLING)

    def _edge(self, pin):
        now = self.clock.ticks_ms()
        if not self.pending:
            self.first = now
            self.pending = True
        self.last = now
        self.flag.set()

    def start(self):
        pass

    def read(self, s):
        w = self._what
        for i in range(len(w)):
            s.v[i] = self.state if w[i] == _STATE else self.changes

    def settle(self):
        """ms the line must still stay quiet before its level counts, or 0 once settled; then
        self.age is the age in ms of the burst's first edge when the state changed, else -1.
        Does not allocate."""
        c = self.clock
        now = c.ticks_ms()
        quiet = c.ticks_diff(now, self.last)
        if quiet < self.deb:
            return self.deb - quiet
        self.pending = False  # an edge from here on starts a new burst
        self.age = -1
        st = 1 if self.pin.value() == self.active else 0
        if st != self.state:  # else it bounced back: no change
            self.state = st
            self.changes += 1
            self.events += 1
            self.age = c.ticks_diff(now, self.first)
        return 0

    async def watch(self, emit):
        while True:
            await self.flag.wait()
            while True:
                wait = self.settle()
                if wait <= 0:
                    break
                await asyncio.sleep_ms(wait)
            if self.age >= 0:
                emit(self.age)
