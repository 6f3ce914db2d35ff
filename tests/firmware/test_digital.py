# Digital input: debounce, edge events stamped at the first edge of a burst, the IRQ handler
# and the sample allocation-free, events through the real event loop (asyncio, real time).
# heapsize: 160K 32:64K
import asyncio

import mptest
from mptest import eq, no_alloc, true
from sensor_helpers import T0, Sink, config_errors, sensor_cfg, sim_clock

from otlink.drivers import digital
from otlink.hal.unix.sim_pin import SimPin
from otlink.sensors import SensorTask


def setup(clock=None, ticks=None, **opts):
    if clock is None:
        ticks, clock = sim_clock()
    pin = SimPin(1)  # open contact, pulled up
    d = {"driver": "digital", "bus": "in0",
         "points": [{"id": 70, "name": "running", "channel": "state"},
                    {"id": 71, "name": "starts", "channel": "changes"}]}
    d.update(opts)
    cfg = sensor_cfg(d)
    sink = Sink()
    task = SensorTask(cfg, digital.Driver(pin, cfg, clock), clock, sink, 1000)
    return ticks, pin, task, sink


def bounce(ticks, pin, level, n=4):
    for _ in range(n):
        pin.drive(level)
        ticks.step(1)
        pin.drive(1 - level)
        ticks.step(1)
    pin.drive(level)


def test_debounce_and_the_time_of_the_change():
    ticks, pin, task, sink = setup()
    drv = task.drv
    eq(drv.state, 0, "open contact: not active")
    bounce(ticks, pin, 0)  # the contact closes, bouncing for 8 ms
    eq(drv.settle(), 20, "quiet for 0 ms of 20")
    ticks.step(25)
    eq(drv.settle(), 0, "settled")
    eq((drv.state, drv.changes, drv.age), (1, 1, 33), "closed; the burst began 33 ms ago")
    # a glitch: low for 2 ms, back high within the debounce time -> no change
    ticks.step(100)
    pin.drive(1)
    ticks.step(2)
    pin.drive(0)
    ticks.step(30)
    eq(drv.settle(), 0, "settled")
    eq((drv.state, drv.changes, drv.age), (1, 1, -1), "a glitch is not a change")


def test_irq_handler_and_sample_do_not_allocate():
    ticks, pin, task, sink = setup()

    def burst():
        bounce(ticks, pin, 0)

    no_alloc(burst)
    ticks.step(30)
    no_alloc(task.drv.settle)
    no_alloc(task.event, task.drv.age)
    no_alloc(task.begin)
    no_alloc(task.finish)
    r = sink.records()
    eq([(x[0], x[4]) for x in r], [(70, 1), (71, 1), (70, 1), (71, 1)], "event, then sample")
    eq(r[0][3], T0, "event stamped at the first edge (uptime 0), not 38 ms later")
    eq(r[2][3], T0 + 38, "the sample at its own time")


def test_events_through_the_event_loop():
    from otlink.hal.clock import Clock

    clock = Clock()
    ticks, pin, task, sink = setup(clock, debounce_ms=15)

    firsts = []

    async def contact():
        await asyncio.sleep_ms(50)
        for level in (0, 1, 0):
            firsts.append(clock.now_ms())
            for _ in range(3):  # bounce
                pin.drive(level)
                await asyncio.sleep_ms(1)
                pin.drive(1 - level)
                await asyncio.sleep_ms(1)
            pin.drive(level)
            await asyncio.sleep_ms(60)

    async def main():
        w = asyncio.create_task(task.watch_task())
        await contact()
        w.cancel()

    asyncio.run(main())
    r = sink.records()
    eq([x[4] for x in r], [1, 1, 0, 2, 1, 3], "three changes: closed, open, closed")
    for k in range(3):
        dt = r[2 * k][3] - firsts[k]
        true(-1 <= dt <= 2, "change %d stamped %d ms from its burst's first edge" % (k, dt))


def test_config():
    base = {"driver": "digital", "bus": "in0",
            "points": [{"id": 1, "name": "a", "channel": "state"}]}
    eq(config_errors(dict(base)), [], "valid")
    eq(config_errors(dict(base, active="on"))[0][0], "sensors[0].active", "active")
    eq(config_errors(dict(base, debounce_ms=0))[0][0], "sensors[0].debounce_ms", "debounce")
    eq(sensor_cfg(dict(base))["points"][0]["unit"], "", "no unit")


mptest.main(globals())
