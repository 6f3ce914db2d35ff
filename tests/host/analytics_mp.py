# Run by tests/host/test_analytics_numpy.py inside a MicroPython Unix port (both builds):
# synthetic signals of known content through the simulated ADXL345 (hal/unix/sim_adxl345.py),
# the driver's FIFO bursts and the vibration features; and random readings through a window.
# Prints one JSON line per case: the integer samples the part delivered and what the node
# computed, so the host recomputes every feature with numpy from the same samples.
import json
import math
import struct
import sys

from modbus_sim import sim_clock

from otlink.analytics.vibration import Vibration
from otlink.analytics.window import Window
from otlink.core import reading
from otlink.drivers.adxl345 import ADXL345
from otlink.hal.unix.sim_adxl345 import SimADXL345, machine_signal

FS = 3200
N = 1024


def lcg(seed):
    s = [seed]

    def u():
        s[0] = (s[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return s[0] / 0x7FFFFFFF
    return u


def gauss(u):
    return sum([u() for _ in range(12)]) - 6.0  # Irwin-Hall: mean 0, variance 1


def signals():
    two_pi = 2 * math.pi

    def sines(k):  # known amplitudes, on FFT bins and off them
        t = k / FS
        return (0.2 * math.sin(two_pi * 50.0 * t),
                0.3 * math.sin(two_pi * 250.0 * t) + 0.1 * math.sin(two_pi * 612.5 * t),
                1.0 + 0.5 * math.sin(two_pi * 156.25 * t) + 0.05 * math.sin(two_pi * 900 * t))
    u = lcg(7)

    def noise(k):
        return (0.1 * gauss(u), 0.2 * gauss(u), 1.0 + 0.3 * gauss(u))

    return [("sines", sines), ("bearing", machine_signal(FS)), ("noise", noise)]


def vib_case(name, sig):
    ticks, clock = sim_clock()
    sim = SimADXL345(clock, sig)
    drv = ADXL345(sim)
    drv.configure(FS, 16)
    cfg = {"samples": N, "rate_hz": FS, "lsb_per_g": 256, "axis": 2,
           "bands": [(10.0, 100.0), (100.0, 200.0), (200.0, 1000.0), (1000.0, 1600.0)],
           "group": "group2_rigid", "ids": {}, "band_ids": []}
    v = Vibration(cfg, drv, None)
    v.start()
    while not v.poll():
        ticks.advance(5000)  # 16 samples per poll, well inside the 32-entry FIFO
    v.compute()
    f = v.features()
    print(json.dumps({"case": name, "x": list(v.x), "y": list(v.y), "z": list(v.z),
                      "features": f, "fs": FS, "bands": cfg["bands"],
                      "overruns": sim.overruns}))


def _pv(r):
    return r[0], r[4]


def window_case(kind, seed):
    u = lcg(seed)
    out = []
    cfg = {"kind": kind, "scale": 0.1 if kind == reading.KIND_INT else 1.0,
           "offset": -40.0 if kind == reading.KIND_INT else 0.0, "every_ms": 0, "count": 500,
           "ids": {"count": 1, "min": 2, "max": 3, "mean": 4, "rms": 5, "std": 6,
                   "first": 7, "last": 8}}
    w = Window(cfg, lambda r, n: out.append(_pv(reading.unpack(bytes(r[:n]), n))))
    rec = bytearray(reading.SIZE)
    vals = []
    for _ in range(500):
        if kind == reading.KIND_INT:
            v = int(u() * 4000) + 100000
            struct.pack_into("<HBBqq", rec, 0, 9, kind, 0, 0, v)
        else:
            v = 1e3 + gauss(u) * 0.5  # a large mean and a small spread: cancellation bait
            struct.pack_into("<HBBqd", rec, 0, 9, kind, 0, 0, v)
            v = struct.unpack_from("<d", rec, 12)[0]
        vals.append(v)
        w.add(rec)
    print(json.dumps({"case": "window", "kind": kind, "scale": cfg["scale"],
                      "offset": cfg["offset"], "values": vals,
                      "stats": {str(p): v for p, v in out}}))


for name, sig in signals():
    vib_case(name, sig)
window_case(reading.KIND_INT, 3)
window_case(reading.KIND_FLOAT, 5)
sys.exit(0)
