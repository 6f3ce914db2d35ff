# heapsize: 144K 32:72K
# ADXL345 driver (otlink.drivers.adxl345) on the simulated part (hal/unix/sim_adxl345.py,
# from the datasheet's register map), and the vibration pipeline's burst: FIFO reads,
# moments, FFT and band sums run under heap_lock on both builds (the per-burst finish is the
# one place that makes floats).
import math

from modbus_sim import sim_clock
from mptest import eq, no_alloc, raises, true

from otlink.drivers.adxl345 import ADXL345
from otlink.hal.unix.sim_adxl345 import SimADXL345

FS = 3200


def sig(k):
    t = k / FS
    return (0.25, -0.5, 1.0 + 0.5 * math.sin(2 * math.pi * 156.25 * t))


def part():
    ticks, clock = sim_clock()
    sim = SimADXL345(clock, sig)
    return ticks, clock, sim, ADXL345(sim)


def test_configure_writes_the_datasheet_registers():
    ticks, clock, sim, drv = part()
    drv.configure(3200, 16)
    eq(sim.regs[0x2C], 0x0F, "BW_RATE 3200 Hz")
    eq(sim.regs[0x31], 0x0B, "DATA_FORMAT full resolution, +-16 g")
    eq(sim.regs[0x38], 0x80, "FIFO_CTL stream")
    eq(sim.regs[0x2D], 0x08, "POWER_CTL measure")
    sim.regs[0x00] = 0xE6  # another part at the address
    raises(OSError, drv.configure, 3200, 16)
    other = ADXL345(sim, 0x1D)
    raises(OSError, other.configure, 3200, 16)  # nothing answers at 0x1D


def test_fifo_fills_at_the_rate_and_keeps_the_newest_32():
    ticks, clock, sim, drv = part()
    drv.configure(3200, 16)
    ticks.advance(5000)  # 5 ms at 3200 Hz: 16 samples
    eq(drv.entries(), 16, "16 after 5 ms")
    ticks.advance(20000)
    eq(drv.entries(), 32, "full")
    eq(sim.overruns, 80 - 32, "stream mode: the oldest were lost")
    xs, ys, zs = [0] * 32, [0] * 32, [0] * 32
    drv.read_fifo(xs, ys, zs, 0, 32)
    eq(drv.entries(), 0, "each 6-byte read popped one entry")
    eq((xs[0], ys[0]), (64, -128), "0.25 g and -0.5 g at 256 LSB/g")
    want = int(round((1.0 + 0.5 * math.sin(2 * math.pi * 156.25 * 48 / FS)) * 256))
    eq(zs[0], want, "the first entry kept is sample 48")
    drv.flush()
    eq(drv.entries(), 0, "flush empties the FIFO")


def test_ten_bit_mode_scales_by_range():
    ticks, clock, sim, drv = part()
    drv.configure(100, 16)
    sim.regs[0x31] = 0x03  # FULL_RES off, +-16 g: 32 LSB/g
    ticks.advance(20000)
    xs, ys, zs = [0], [0], [0]
    drv.read_fifo(xs, ys, zs, 0, 1)
    eq((xs[0], ys[0]), (8, -16), "10-bit, 16 g: 32 LSB/g")


def test_burst_allocates_nothing_but_its_finish():
    from otlink.analytics.vibration import Vibration

    ticks, clock, sim, drv = part()
    drv.configure(FS, 16)
    cfg = {"samples": 1024, "rate_hz": FS, "lsb_per_g": 256, "axis": 2,
           "bands": [(100.0, 200.0)], "group": "group2_rigid",
           "ids": {"rms_z": 1, "velocity": 2, "zone": 3}, "band_ids": [4]}
    out = []
    v = Vibration(cfg, drv, lambda r, n: out.append(bytes(r[:n])))

    def burst():
        v.start()
        while not v.poll():
            ticks.advance(5000)
        v.compute()
    burst()  # warm-up
    for _ in range(2):
        no_alloc(burst)
    f = v.finish(clock)
    eq(len(out), 4, "rms_z, velocity, zone, band0 emitted")
    true(abs(f["rms_z"] - 0.5 / math.sqrt(2)) < 2e-3, "rms_z %r" % f["rms_z"])
    true(abs(f["band0"] - f["rms_z"]) < 1e-4, "all of it in 100-200 Hz")
    eq(f["zone"], "C", "3.5 mm/s in group 2 rigid")
    eq(f["rms_x"], 0.0, "a constant axis has no AC part")
    eq(sim.overruns, 0, "polled before the FIFO filled")


import mptest  # noqa: E402

mptest.main(globals())
