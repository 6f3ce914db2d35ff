# 4-20 mA input through a shunt and the ADC: scaling to the engineering range, NAMUR NE 43
# limits (below 3.8 mA error 10, above 20.5 mA error 11), averaging, calibration points, the
# schema's checks, no allocation per sample.
# heapsize: 160K 32:64K
import mptest
from mptest import eq, no_alloc, true
from sensor_helpers import Sink, config_errors, sensor_cfg, sim_clock

from otlink.core.errors import ERR_LOOP_HIGH, ERR_LOOP_LOW
from otlink.drivers import loop420
from otlink.hal.unix.sim_adc import SimADC, Transmitter
from otlink.sensors import SensorTask, driver_scale


def setup(ma=12.0, samples=8, calibration=None, gain=1.0, noise=2000.0):
    ticks, clock = sim_clock()
    tx = Transmitter(clock, ma)
    adc = SimADC(tx, 150.0, noise_uv=noise, gain=gain)
    d = {"driver": "loop420", "bus": "adc0", "range": [0, 10], "unit": "bar",
         "samples": samples,
         "points": [{"id": 40, "name": "level", "channel": "value"},
                    {"id": 41, "name": "loop_ma", "channel": "current"}]}
    if calibration:
        d["calibration"] = calibration
    cfg = sensor_cfg(d)
    sink = Sink()
    task = SensorTask(cfg, loop420.Driver(adc, cfg, clock), clock, sink, 1000)
    return tx, adc, cfg, task, sink


def sample(task):
    task.begin()
    task.finish()


def test_scaling_to_the_engineering_range():
    tx, adc, cfg, task, sink = setup(noise=0.0)
    typ, sc, off = driver_scale(cfg, cfg["points"][0])
    eq(typ, "int32", "raw type")
    for ma, want in ((4.0, 0.0), (12.0, 5.0), (20.0, 10.0), (7.2, 2.0)):
        tx.ma = ma
        sink.clear()
        sample(task)
        (_, k0, _, _, v), (_, k1, _, _, c) = sink.records()
        eq((k0, k1), (0, 0), "values")
        true(abs(v * sc + off - want) < 0.005, "%s mA -> %r bar, want %r" % (ma, v * sc + off,
                                                                          want))
        true(abs(c - ma * 1000) <= 6, "current %d uA (one ADC step is 5.4 uA)" % c)
    typ, sc, off = driver_scale(cfg, cfg["points"][1])
    eq((typ, sc, off), ("int32", 0.001, 0.0), "current in mA")


def test_namur_ne43_limits():
    tx, adc, cfg, task, sink = setup(noise=0.0)
    for ma, err in ((3.7, ERR_LOOP_LOW), (3.85, 0), (20.45, 0), (20.6, ERR_LOOP_HIGH)):
        tx.ma = ma
        sink.clear()
        sample(task)
        r = sink.records()
        eq((r[0][1] == 2 and r[0][4]) or 0, err, "%s mA" % ma)
        eq(r[1][1], 0, "%s mA: the current point keeps its value" % ma)
    # a short's 24 mA saturates the ADC at 3.3 V / 150 ohm = 22 mA: still over range
    for fault, err, ua in (("open", ERR_LOOP_LOW, 0), ("short", ERR_LOOP_HIGH, 21900)):
        tx.fault = fault
        sink.clear()
        sample(task)
        r = sink.records()
        eq((r[0][1], r[0][4]), (2, err), fault)
        true(r[1][4] >= ua, "%s: %d uA" % (fault, r[1][4]))
    eq((task.ok, task.errors), (2, 4), "counted")


def test_averaging_reduces_the_noise():
    errs = {}
    for n in (1, 16):
        tx, adc, cfg, task, sink = setup(samples=n, noise=30000.0)  # +/- 0.2 mA of noise
        worst = 0
        for _ in range(40):
            ua = task.drv.current_ua()
            worst = max(worst, abs(ua - 12000))
        errs[n] = worst
        eq(adc.reads, 40 * n, "reads per sample")
    true(errs[16] * 2 < errs[1], "worst error 1 read %d uA, 16 reads %d uA" % (errs[1],
                                                                             errs[16]))


def test_calibration_points_correct_the_analog_path():
    # the shunt and ADC read 2 % high: a calibrator's 4 and 20 mA read 4.08 and 20.4
    tx, adc, cfg, task, sink = setup(gain=1.02, noise=0.0)
    tx.ma = 12.0
    true(abs(task.drv.current_ua() - 12240) <= 6, "uncalibrated: 2 % high")
    tx, adc, cfg, task, sink = setup(gain=1.02, noise=0.0,
                                     calibration=[[4.08, 4.0], [20.4, 20.0]])
    for ma in (3.0, 4.0, 12.0, 19.0, 21.0):  # 22 mA would saturate the ADC (3.37 V)
        tx.ma = ma
        ua = task.drv.current_ua()
        true(abs(ua - ma * 1000) <= 7, "%s mA calibrated: %d uA" % (ma, ua))
    # three points: piecewise linear
    tx, adc, cfg, task, sink = setup(noise=0.0, calibration=[[4, 4], [12, 12.5], [20, 20]])
    tx.ma = 8.0
    true(abs(task.drv.current_ua() - 8250) <= 6, "first segment")
    tx.ma = 16.0
    true(abs(task.drv.current_ua() - 16250) <= 6, "second segment")


def test_config():
    base = {"driver": "loop420", "bus": "adc0", "range": [0, 10],
            "points": [{"id": 1, "name": "a", "channel": "value"}]}
    eq(config_errors(dict(base)), [], "valid")
    d = dict(base)
    del d["range"]
    eq(config_errors(d)[0][0], "sensors[0].range", "range required")
    d = dict(base, range=[10, 0])
    eq(config_errors(d)[0][0], "sensors[0].range", "min < max")
    d = dict(base, calibration=[[20, 20], [4, 4]])
    eq(config_errors(d)[0][0], "sensors[0].calibration[1]", "measured mA must rise")
    d = dict(base, shunt_ohm=250)
    f, problem = config_errors(d)[0]
    eq(f, "sensors[0].shunt_ohm", "250 ohm: 5.1 V at 20.5 mA")
    true("5.1" in problem and "3.3 V" in problem, problem)
    d = dict(base, samples=0)
    eq(config_errors(d)[0][0], "sensors[0].samples", "samples")


def test_sample_does_not_allocate():
    tx, adc, cfg, task, sink = setup(samples=64, calibration=[[4.08, 4.0], [20.4, 20.0]])
    for ma in (12.0, 0.0, 24.0):
        tx.ma = ma
        eq(no_alloc(task.begin), True, "begin")
        no_alloc(task.finish)
    eq([r[1] for r in sink.records()], [0, 0, 2, 0, 2, 0], "value, low, high")


mptest.main(globals())
