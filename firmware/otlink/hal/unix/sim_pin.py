# Simulated input pins for the Unix port: machine.Pin's value() and irq(handler, trigger),
# with the esp32 port's IRQ_RISING = 1 / IRQ_FALLING = 2 (a driver takes the constants from
# the pin object, as rp2's differ). drive(level) sets the line; a matching edge calls the
# handler at once with the pin, as a hard IRQ does (the handler must not allocate: a test can
# drive the line with the heap locked).
# Signal sources for the agent on the Unix port (demo_pin): once a handler is attached, an
# asyncio task drives the line in real time:
#  - "s0*": an S0 pulse output (IEC 62053-31 / DIN 43864: opto transistor to ground with the
#    pin's pull-up, pulses 30 ms low at least), an energy meter of 1000 imp/kWh drawing
#    1.8 kW: one pulse every 2 s;
#  - any other name: a run/stop contact, closed (low) 5 s of every 12 s, each change with
#    4 bounces 1 ms apart (a mechanical contact bounces for a few ms).


class SimPin:
    IN = 1
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, level=1):
        self.level = level
        self.handler = None
        self.trigger = 0
        self.edges = 0  # every change of level, bounces included

    def value(self, v=None):
        if v is None:
            return self.level
        self.drive(v)

    def irq(self, handler=None, trigger=3, hard=False):
        self.handler = handler
        self.trigger = trigger
        if handler is not None:
            self.attached()

    def attached(self):
        pass  # a signal source starts driving the line here

    def drive(self, level):
        """Set the line; call the handler on a matching edge. Does not allocate."""
        if level == self.level:
            return
        self.level = level
        self.edges += 1
        h = self.handler
        if h is not None and self.trigger & (self.IRQ_RISING if level else self.IRQ_FALLING):
            h(self)


class _Source(SimPin):
    def __init__(self, period_ms, low_ms, bounces, level=1):
        SimPin.__init__(self, level)
        self.period_ms = period_ms
        self.low_ms = low_ms
        self.bounces = bounces
        self._task = None

    def attached(self):
        if self._task is None:
            import asyncio

            self._task = asyncio.create_task(self._run())

    async def _change(self, level):
        import asyncio

        for _ in range(self.bounces):
            self.drive(level)
            await asyncio.sleep_ms(1)
            self.drive(1 - level)
            await asyncio.sleep_ms(1)
        self.drive(level)

    async def _run(self):
        import asyncio

        while True:
            await asyncio.sleep_ms(self.period_ms - self.low_ms)
            await self._change(0)
            await asyncio.sleep_ms(self.low_ms)
            await self._change(1)


def demo_pin(name, pull, clock=None):
    if name.startswith("s0"):
        return _Source(2000, 30, 0)
    return _Source(12000, 5000, 4)
