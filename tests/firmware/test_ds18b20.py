# DS18B20 driver against its datasheet-built 1-Wire model: CRC-8/MAXIM, ROM search over
# several sensors on one pin, conversion time per resolution, the 85 degC power-on value,
# per-point error codes (absent ROM, CRC, line held low), no allocation per sample.
# heapsize: 192K 32:64K
import mptest
from mptest import eq, no_alloc, raises, true
from sensor_helpers import Sink, config_errors, sensor_cfg, sim_clock

from otlink.core.errors import (ERR_BUS_STUCK, ERR_NOT_READY, ERR_RANGE, ERR_SENSOR,
                                ERR_SENSOR_CRC)
from otlink.drivers import ds18b20
from otlink.hal.unix.sim_onewire import DS18B20Model, SimOneWire, make_rom
from otlink.sensors import SensorTask

ROMS = [make_rom(0xA1B2C3D4), make_rom(0xA1B2C3D5), make_rom(0xBEEF)]


def setup(temps=(21.5, -10.125, 55.0), res=12, roms=ROMS):
    ticks, clock = sim_clock()
    models = [DS18B20Model(clock, r, t) for r, t in zip(roms, temps)]
    bus = SimOneWire(models, clock)
    cfg = sensor_cfg({"driver": "ds18b20", "bus": "ow0", "resolution": res,
                      "points": [{"id": 10 + i, "name": "m%d" % i,
                                  "channel": ds18b20.rom_text(r)}
                                 for i, r in enumerate(roms)]})
    sink = Sink()
    task = SensorTask(cfg, ds18b20.Driver(bus, cfg, clock), clock, sink, 1000)
    return ticks, models, bus, task, sink


def sample(ticks, task, wait=None):
    if task.begin():
        ticks.step(task.drv.measure_ms if wait is None else wait)
        task.finish()


def vals(sink):
    return [(r[1], r[4]) for r in sink.records()]


def test_crc8_maxim():
    eq(ds18b20.crc8(b"123456789", 0, 9), 0xA1, "CRC-8/MAXIM check value")
    # Maxim application note 27's example ROM: 02 1C B8 01 00 00 00, CRC A2
    eq(ds18b20.crc8(bytes((0x02, 0x1C, 0xB8, 0x01, 0, 0, 0)), 0, 7), 0xA2, "AN27 ROM")
    eq(ds18b20.crc8(make_rom(0x1234), 0, 8), 0, "a ROM with its CRC leaves 0")
    eq(no_alloc(ds18b20.crc8, b"123456789", 0, 9), 0xA1, "no allocation")


def test_rom_search_finds_every_sensor():
    ticks, clock = sim_clock()
    # ROMs that part at the first bit, at a middle bit and at the last serial bit
    roms = [make_rom(s) for s in (0x000000000001, 0x000000000000, 0x800000000000,
                                  0x000000010000, 0x000000010001)]
    bus = SimOneWire([DS18B20Model(clock, r) for r in roms], clock)
    found = ds18b20.search(bus)
    eq(sorted(found), sorted(roms), "all five, each once")
    eq(ds18b20.search(SimOneWire([DS18B20Model(clock, roms[2])], clock)), [roms[2]], "one")
    raises(OSError, ds18b20.search, SimOneWire([], clock))
    bus.stuck = True
    eq(ds18b20.search(bus), [bytes(8)], "a line held low reads one all-zero ROM")


def test_values_for_several_sensors_on_one_pin():
    ticks, models, bus, task, sink = setup()
    sample(ticks, task)
    eq(vals(sink), [(0, 344), (0, -162), (0, 880)], "1/16 degC: 21.5, -10.125, 55")
    eq(sorted(task.drv.found), sorted(ROMS), "the boot search")
    eq([m.conversions for m in models], [1, 1, 1], "one Convert T for all (Skip ROM)")


def test_conversion_time_per_resolution():
    for res, ms, lsb in ((9, 94, 8), (10, 188, 4), (11, 375, 2), (12, 750, 1)):
        ticks, models, bus, task, sink = setup(temps=(23.3, 23.3, 23.3), res=res)
        eq(task.drv.measure_ms, ms, "wait at %d bits" % res)
        sample(ticks, task, wait=ms - 2)  # read before the conversion ended
        eq(vals(sink), [(2, ERR_NOT_READY)] * 3, "%d bits: power-on 85 degC" % res)
        eq(models[0].resolution(), res, "resolution written")
        sink.clear()
        sample(ticks, task)
        v = sink.records()[0][4]
        eq(v % lsb, 0, "%d bits: undefined bits cleared (%d)" % (res, v))
        true(abs(v / 16 - 23.3) <= lsb / 16, "%d bits: %d" % (res, v))


def test_errors_per_point():
    ticks, models, bus, task, sink = setup(temps=(21.5, 130.0, 55.0))
    sample(ticks, task)
    eq(vals(sink)[1], (2, ERR_RANGE), "130 degC: outside -55..125")
    sink.clear()
    models[2].present = False
    models[0].corrupt_next = True
    sample(ticks, task)
    eq(vals(sink), [(2, ERR_SENSOR_CRC), (2, ERR_RANGE), (2, ERR_SENSOR)], "CRC, range, absent")
    sink.clear()
    models[2].present = True
    models[2].power_on()  # a power dip: back to 85 degC until it converts again
    task.finish()
    eq(vals(sink)[2], (2, ERR_NOT_READY), "85 degC after a reset")
    sink.clear()
    bus.stuck = True
    sample(ticks, task)
    eq(vals(sink), [(2, ERR_BUS_STUCK)] * 3, "line held low")
    sink.clear()
    bus.stuck = False
    bus.devices = []
    sample(ticks, task)
    eq(vals(sink), [(2, ERR_SENSOR)] * 3, "no presence pulse")


def test_sample_does_not_allocate():
    ticks, models, bus, task, sink = setup()
    sample(ticks, task)  # warm-up: search, resolution
    for _ in range(3):
        eq(no_alloc(task.begin), True, "begin")
        ticks.step(task.drv.measure_ms)
        no_alloc(task.finish)
    eq([r[1] for r in sink.records()][-3:], [0, 0, 0], "values")


def test_config():
    good = ds18b20.rom_text(ROMS[0])
    eq(config_errors({"driver": "ds18b20", "bus": "ow0",
                      "points": [{"id": 1, "name": "a", "channel": good}]}), [], "valid")
    bad = good[:14] + ("00" if good[14:] != "00" else "01")  # wrong CRC byte
    errs = config_errors({"driver": "ds18b20", "bus": "ow0", "resolution": 8,
                          "points": [{"id": 1, "name": "a", "channel": bad}]})
    eq([f for f, _ in errs], ["sensors[0].resolution", "sensors[0].points[0].channel"],
       "resolution and a ROM whose CRC fails")
    errs = config_errors({"driver": "ds18b20", "bus": "i2c0",
                          "points": [{"id": 1, "name": "a", "channel": good}]})
    eq(errs[0][0], "sensors[0].bus", "a 1-Wire pin, not an I2C bus")
    true("1-Wire pin" in errs[0][1], errs[0][1])


mptest.main(globals())
