# S0 / pulse counter: an IRQ handler that does not allocate, debounce, total and rate, the
# total kept across reboots in a littlefs file, and the flash writes that costs per day.
# heapsize: 176K 32:64K
import sys

import mptest
from mptest import eq, no_alloc, true
from sensor_helpers import Sink, config_errors, sensor_cfg, sim_clock

from otlink.drivers import pulse
from otlink.hal.unix.sim_pin import SimPin
from otlink.drivers._keep import Keep
from otlink.sensors import SensorTask, driver_scale

SCRATCH = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
P = 1 << 30


def setup(keep=None, **opts):
    ticks, clock = sim_clock()
    pin = SimPin(1)
    d = {"driver": "pulse", "bus": "s0",
         "points": [{"id": 60, "name": "energy", "channel": "total"},
                    {"id": 61, "name": "power", "channel": "rate"}]}
    d.update(opts)
    cfg = sensor_cfg(d)
    sink = Sink()
    task = SensorTask(cfg, pulse.Driver(pin, cfg, clock, keep), clock, sink, 1000)
    return ticks, pin, cfg, task, sink


def pulses(ticks, pin, n, period=100, width=30, bounce=0):
    # n S0 pulses: low for width ms (with bounce extra edges 1 ms apart), high the rest
    for _ in range(n):
        for _b in range(bounce):
            pin.drive(0)
            ticks.step(1)
            pin.drive(1)
            ticks.step(1)
        pin.drive(0)
        ticks.step(width)
        for _b in range(bounce):
            pin.drive(1)
            ticks.step(1)
            pin.drive(0)
            ticks.step(1)
        pin.drive(1)
        ticks.step(period - width - 4 * bounce)


def sample(task):
    task.begin()
    task.finish()
    r = task.sink.records()[-2:]
    return r[0][4], r[1][4]


def test_irq_handler_does_not_allocate():
    ticks, pin, cfg, task, sink = setup()

    def burst():
        pulses(ticks, pin, 20, 100, 30, 2)

    no_alloc(burst)
    eq(task.drv.edges, 20, "20 pulses, bounces swallowed")
    eq(pin.edges, 20 * 10, "the line changed 10 times per pulse")


def test_debounce():
    ticks, pin, cfg, task, sink = setup()  # 50 ms: past the 30 ms pulse and its 6 ms bounce
    pulses(ticks, pin, 5, 100, 30, 3)
    eq(task.drv.edges, 5, "one count per pulse")
    ticks, pin, cfg, task, sink = setup(debounce_ms=20)
    pulses(ticks, pin, 5, 100, 30, 3)
    eq(task.drv.edges, 10, "20 ms: shorter than the 30 ms pulse, its release bounce counts")
    ticks, pin, cfg, task, sink = setup(debounce_ms=0)
    pulses(ticks, pin, 5, 100, 30, 3)
    eq(task.drv.edges, 35, "no debounce: all 7 falling edges of each pulse count")


def test_total_and_rate():
    ticks, pin, cfg, task, sink = setup()
    ticks.step(1000)
    sample(task)
    pulses(ticks, pin, 50, 200)  # 50 pulses in 10 s: 18000 per hour
    total, rate = sample(task)
    eq((total, rate), (50, 18000), "total and pulses per hour")
    eq(driver_scale(cfg, cfg["points"][0]), ("uint64", 0.001, 0.0), "kWh at 1000 imp/kWh")
    eq(driver_scale(cfg, cfg["points"][1]), ("int32", 0.001, 0.0), "kW")
    eq(cfg["points"][1]["unit"], "kW", "rate unit: kWh per hour")
    ticks.step(5000)
    eq(sample(task), (50, 0), "no pulses: rate 0")


def test_total_past_2_30_and_across_reboots():
    k = Keep(SCRATCH + "/pulse.keep")
    k.save(3, P - 10)  # 3 * 2**30 + 2**30 - 10 pulses counted before
    ticks, pin, cfg, task, sink = setup(keep=k, persist_pulses=15)
    pulses(ticks, pin, 12)
    total, rate = sample(task)
    eq(total, 4 * P + 2, "carried into the high part")
    eq(k.saves, 1, "not saved yet (12 < 15 pulses)")
    pulses(ticks, pin, 3)
    sample(task)
    eq(k.saves, 2, "saved at 15 pulses")
    pulses(ticks, pin, 4)
    sample(task)
    # a reboot: the 4 pulses since the save are lost, no more
    ticks, pin, cfg, task, sink = setup(keep=Keep(SCRATCH + "/pulse.keep"), persist_pulses=15)
    eq(sample(task)[0], 4 * P + 5, "total restored")
    # a clean stop (App.close) saves what came since
    pulses(ticks, pin, 2)
    sample(task)
    task.drv.close()
    ticks, pin, cfg, task, sink = setup(keep=Keep(SCRATCH + "/pulse.keep"), persist_pulses=15)
    eq(sample(task)[0], 4 * P + 7, "total saved at the stop")
    # saved by time too: persist_s
    ticks, pin, cfg, task, sink = setup(keep=k, persist_s=60)
    n = k.saves
    pulses(ticks, pin, 1)
    sample(task)
    ticks.step(61000)
    sample(task)
    eq(k.saves, n + 1, "saved after 60 s")


def test_keep_survives_a_torn_file():
    k = Keep(SCRATCH + "/torn.keep")
    with open(SCRATCH + "/torn.keep", "wb") as f:
        f.write(b"OTK1\x01\x00")
    eq(k.load(), (0, 0), "short file: no record")
    k.save(1, 2)
    b = bytearray(open(SCRATCH + "/torn.keep", "rb").read())
    b[9] ^= 1
    open(SCRATCH + "/torn.keep", "wb").write(b)
    eq(k.load(), (0, 0), "check word catches a flipped bit")


def test_flash_writes_per_day():
    # littlefs on the emulated NOR part, as a board's filesystem: what one save costs
    import vfs

    from otlink.hal.unix.norflash import NorFlash

    nor = NorFlash(SCRATCH + "/fs.img", 256 * 1024, 4096, cache=False)
    dev = nor.region(0, 256 * 1024)
    vfs.VfsLfs2.mkfs(dev)
    fs = vfs.VfsLfs2(dev)
    vfs.mount(fs, "/kp")
    try:
        k = Keep("/kp/sensor_60.keep")
        k.save(0, 0)
        nor.reset_counters()
        n = 300
        for i in range(n):
            k.save(0, i)
        eq(k.load(), (0, n - 1), "last record")
    finally:
        vfs.umount("/kp")
    erases = sum(nor.erases)
    programs = sum(nor.programs)
    # defaults: every 600 s while pulses come (144 a day) plus one per 1000 pulses (a meter
    # at 1000 imp/kWh drawing 10 kW: 240 a day)
    per_day = 144 + 240
    worst_block = max(nor.erases)
    print("pulse keep: %d saves -> %d sector erases, %d programs; %d saves a day -> %.1f "
          "erases a day, spread over %d of 64 blocks (most erased: %d)"
          % (n, erases, programs, per_day, erases * per_day / n,
             len([e for e in nor.erases if e]), worst_block))
    true(erases * per_day / n < 50, "under 50 erases a day")
    # NOR endurance 100,000 cycles per sector: years = 100000 / (erases a day of the worst)
    true(worst_block * per_day / n * 365 * 10 < 100000, "ten years on the most erased block")


def test_read_does_not_allocate():
    ticks, pin, cfg, task, sink = setup(keep=None)
    pulses(ticks, pin, 3)
    no_alloc(task.begin)
    no_alloc(task.finish)
    eq([r[4] for r in sink.records()], [3, 36000], "3 pulses in 300 ms")


def test_config():
    base = {"driver": "pulse", "bus": "s0",
            "points": [{"id": 1, "name": "a", "channel": "total"}]}
    eq(config_errors(dict(base)), [], "valid")
    eq(config_errors(dict(base, pulses_per_unit=0))[0][0], "sensors[0].pulses_per_unit",
       "pulses per unit > 0")
    eq(config_errors(dict(base, edge="both"))[0][0], "sensors[0].edge", "edge")
    eq(config_errors(dict(base, bus="in9"))[0][0], "sensors[0].bus", "pin name")


mptest.main(globals())
