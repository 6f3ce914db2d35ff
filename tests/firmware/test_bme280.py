# BME280 driver against its datasheet: the worked example's calibration and raw values, the
# NVM layout of the trimming parameters, measurements through the simulated sensor (raw
# codes from the datasheet's floating-point formulas), error codes, no allocation per sample
# on either build.
# heapsize: 192K 32:64K
import mptest
from mptest import eq, no_alloc, true
from sensor_helpers import Sink, config_errors, sensor_cfg, sim_clock

from otlink.core.errors import ERR_BUS_STUCK, ERR_NOT_READY, ERR_RANGE, ERR_SENSOR
from otlink.drivers import bme280
from otlink.hal.unix.sim_bme280 import EXAMPLE_CAL, BME280Model, bme280_p, bme280_t
from otlink.hal.unix.sim_i2c import SimI2C
from otlink.sensors import SensorTask

CFG = {"driver": "bme280", "bus": "i2c0", "address": 0x76,
       "points": [{"id": 1, "name": "t", "channel": "temperature"},
                  {"id": 2, "name": "p", "channel": "pressure"},
                  {"id": 3, "name": "h", "channel": "humidity"}]}


def setup(env=None, osr=1):
    ticks, clock = sim_clock()
    model = BME280Model(clock)
    model.env = env
    bus = SimI2C({0x76: model})
    d = dict(CFG)
    d["oversampling"] = osr
    cfg = sensor_cfg(d)
    drv = bme280.Driver(bus, cfg, clock)
    sink = Sink()
    return ticks, model, bus, drv, SensorTask(cfg, drv, clock, sink, 1000), sink


def sample(ticks, task, wait=None):
    # as SensorTask.run: a failed start has sent its error records
    if task.begin():
        ticks.step(task.drv.measure_ms if wait is None else wait)
        task.finish()


def test_datasheet_worked_example():
    # BMP280 datasheet 3.12 (the BME280's T and P are the same): adc_T 519888 -> t_fine
    # 128422, 25.08 degC; adc_P 415148 -> 100653.27 Pa by the floating-point formula; the
    # 32-bit integer formula gives 100656 Pa (its resolution, datasheet 8.2)
    model = BME280Model(sim_clock()[1])
    cal = bme280.Calibration(model.reg[0x88:0xA2], model.reg[0xE1:0xE8])
    tf = cal.t_fine(519888)
    eq(tf, 128422, "t_fine")
    eq((tf * 5 + 128) >> 8, 2508, "temperature in 0.01 degC")
    p = cal.pressure(415148, tf)
    eq(p, 100656, "pressure, 32-bit formula")
    pf = bme280_p(EXAMPLE_CAL, 415148, bme280_t(EXAMPLE_CAL, 519888)[1])
    true(abs(pf - 100653.27) < 0.2, "float formula %r" % pf)
    true(abs(p - pf) < 4, "integer vs float")


def test_calibration_layout_from_nvm():
    # dig_H4/dig_H5 share 0xE5 (12-bit signed each), signed 16-bit little-endian words
    cal = dict(EXAMPLE_CAL)
    cal.update({"H4": -300, "H5": -7, "H6": -5, "H2": 400})
    model = BME280Model(sim_clock()[1], cal)
    c = bme280.Calibration(model.reg[0x88:0xA2], model.reg[0xE1:0xE8])
    for k in cal:
        eq(getattr(c, k), cal[k], k)


def test_measurements_match_the_datasheet_float_formulas():
    for env in ((22.5, 101325.0, 45.0), (-35.0, 95000.0, 5.0), (80.0, 105000.0, 95.0),
                (3.3, 31000.0, 60.0)):
        ticks, model, bus, drv, task, sink = setup(env)
        sample(ticks, task)
        t, p, h = [r[4] for r in sink.records()]
        mt, mp, mh = model.last
        true(abs(t * 0.01 - mt) <= 0.011, "T %d vs %r" % (t, mt))
        true(abs(p - mp) <= 5, "P %d vs %r" % (p, mp))
        true(abs(h / 1024 - mh) <= 0.1, "H %d vs %r" % (h, mh))
        true(abs(mt - env[0]) < 0.02 and abs(mp - env[1]) < 3, "the model met its target")


def test_measurement_time_and_reading_too_early():
    eq(bme280.measure_ms(1), 11, "9.3 ms max at x1, + 1")  # datasheet 9.1
    eq(bme280.measure_ms(16), 114, "112.8 ms max at x16, + 1")
    ticks, model, bus, drv, task, sink = setup(osr=16)
    sample(ticks, task, wait=20)  # typical at x16 is 98 ms
    eq([(r[1], r[4]) for r in sink.records()], [(2, ERR_NOT_READY)] * 3, "still measuring")
    sink.clear()
    ticks.step(200)
    sample(ticks, task)
    eq([r[1] for r in sink.records()], [0, 0, 0], "values after the maximum time")


def test_errors_per_point():
    ticks, model, bus, drv, task, sink = setup((90.0, 101325.0, 50.0))
    sample(ticks, task)
    eq([(r[1], r[4]) for r in sink.records()][0], (2, ERR_RANGE), "90 degC: outside -40..85")
    eq([r[1] for r in sink.records()][1:], [0, 0], "pressure and humidity still read")
    sink.clear()
    bus.stuck = True
    sample(ticks, task)
    eq([(r[1], r[4]) for r in sink.records()], [(2, ERR_BUS_STUCK)] * 3, "SDA held low")
    sink.clear()
    bus.stuck = False
    del bus.devices[0x76]
    sample(ticks, task)
    eq([(r[1], r[4]) for r in sink.records()], [(2, ERR_SENSOR)] * 3, "absent")
    eq((task.ok, task.errors), (0, 3), "counted")


def test_absent_at_boot_then_plugged_in():
    ticks, clock = sim_clock()
    bus = SimI2C({})
    cfg = sensor_cfg(dict(CFG))
    sink = Sink()
    task = SensorTask(cfg, bme280.Driver(bus, cfg, clock), clock, sink, 1000)
    sample(ticks, task)
    eq(sink.records()[0][4], ERR_SENSOR, "absent")
    bus.devices[0x76] = BME280Model(clock)
    sink.clear()
    sample(ticks, task)
    eq([r[1] for r in sink.records()], [0, 0, 0], "read once it answers")


def test_config():
    eq(config_errors(dict(CFG)), [], "valid")
    d = dict(CFG)
    d["address"] = 0x44
    eq(config_errors(d)[0][0], "sensors[0].address", "not a BME280 address")
    d = dict(CFG)
    d["oversampling"] = 3
    eq(config_errors(d)[0][0], "sensors[0].oversampling", "oversampling")
    d = dict(CFG)
    d["points"] = [{"id": 1, "name": "x", "channel": "co2"}]
    f, problem = config_errors(d)[0]
    eq(f, "sensors[0].points[0].channel", "unknown channel")
    true("temperature, pressure, humidity" in problem, problem)
    # an unknown driver: one error naming it (its own keys are not reported as well)
    d = dict(CFG)
    d["driver"] = "bme28"
    errs = config_errors(d)
    eq([f for f, _ in errs], ["sensors[0].driver"], "one error")
    true("bme28" in errs[0][1] and "docs/sensors.md" in errs[0][1], errs[0][1])
    d["driver"] = "_keep"  # a module of the package that is not a driver
    eq(config_errors(d)[0][0], "sensors[0].driver", "not a driver name")


def test_sample_does_not_allocate():
    # 32-bit ports included: the compensation keeps every intermediate below 2**30 (the
    # pressure's two wide steps in parts); the model computes with the lock lifted
    ticks, model, bus, drv, task, sink = setup((24.0, 100000.0, 50.0))
    sample(ticks, task)  # warm-up: calibration read
    for env in ((24.0, 100000.0, 50.0), (-39.9, 109900.0, 99.0), (84.9, 30100.0, 1.0),
                (-39.9, 30100.0, 0.5), (84.9, 109900.0, 100.0), (0.0, 70000.0, 100.0)):
        model.env = env
        sink.clear()
        eq(no_alloc(task.begin), True, "begin")
        ticks.step(drv.measure_ms)
        no_alloc(task.finish)
        eq([r[1] for r in sink.records()], [0, 0, 0], "values at %r" % (env,))


def test_pressure_in_parts_matches_the_32_bit_formula():
    # C's steps (32768 + var1) * dig_P1 and x * 3125 pass 2**30; the driver computes them in
    # parts. Against the formula as written (heap ints allowed here), over the whole range
    cal = bme280.Calibration(BME280Model(sim_clock()[1]).reg[0x88:0xA2],
                             BME280Model(sim_clock()[1]).reg[0xE1:0xE8])

    def as_written(adc_p, tf):
        var1 = (tf >> 1) - 64000
        q = var1 >> 2
        var2 = (((q * q) >> 11) * cal.P6) + ((var1 * cal.P5) << 1)
        var2 = (var2 >> 2) + (cal.P4 << 16)
        var1 = (((cal.P3 * ((q * q) >> 13)) >> 3) + ((cal.P2 * var1) >> 1)) >> 18
        var1 = ((32768 + var1) * cal.P1) >> 15
        p = (((1048576 - adc_p) - (var2 >> 12)) * 3125) & 0xFFFFFFFF
        p = (p << 1) // var1 if p < 0x80000000 else (p // var1) * 2
        q = p >> 3
        return p + ((((cal.P9 * ((q * q) >> 13)) >> 12) + (((p >> 2) * cal.P8) >> 13)
                     + cal.P7) >> 4)

    n = 0
    for tf in range(-205000, 436000, 32003):  # -40..85 degC
        for adc_p in range(150000, 700000, 9973):
            want = as_written(adc_p, tf)
            if 30000 <= want <= 110000:
                n += 1
                eq(cal.pressure(adc_p, tf), want, "adc_p %d t_fine %d" % (adc_p, tf))
    true(n > 200, "cases in the operating range: %d" % n)


mptest.main(globals())
