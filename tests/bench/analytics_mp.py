# The analytics bench inside a MicroPython Unix port (run by tests/bench/bench_analytics.py on
# both builds): per reading, a tumbling window (ours: exact integer sums in viper; rival: the
# same statistics with Welford's update in Python floats) and per 1024-sample burst the
# vibration features (ours: viper integers, fixed-point FFT; rival: the same features in
# plain Python floats with an iterative radix-2 FFT over preallocated lists), each with the
# heap bytes it allocates; and the longest time the pipeline holds the event loop while a
# poll task runs beside it. Prints RESULT <json>.
import array
import asyncio
import gc
import math
import struct
import sys
import time

from otlink.analytics.vibration import Vibration
from otlink.analytics.window import Window
from otlink.core import reading

N = 1024
FS = 3200
_BUCKETS = 2000  # slice histogram: 10 us each, 20 ms in all


def us():
    return time.ticks_us()


def alloc_of(fn, *a):
    """(us, bytes allocated) of one call, the collector held off."""
    gc.collect()
    gc.disable()
    m0 = gc.mem_alloc()
    t0 = us()
    fn(*a)
    dt = time.ticks_diff(us(), t0)
    m1 = gc.mem_alloc()
    gc.enable()
    return dt, m1 - m0


# --- windows -------------------------------------------------------------------------------

class Welford:
    """The rival: count, min, max, mean, M2 (Welford), sum of squares, first, last in floats."""

    def __init__(self, kind):
        self.kind = kind
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.sq = 0.0
        self.lo = self.hi = self.first = self.last = None

    def add(self, rec):
        v = struct.unpack_from("<d" if self.kind else "<q", rec, 12)[0]
        self.n += 1
        d = v - self.mean
        self.mean += d / self.n
        self.m2 += d * (v - self.mean)
        self.sq += v * v
        if self.first is None:
            self.first = self.lo = self.hi = v
        self.lo = v if v < self.lo else self.lo
        self.hi = v if v > self.hi else self.hi
        self.last = v


def window_bench(kind, count):
    cfg = {"kind": kind, "scale": 1.0, "offset": 0.0, "every_ms": 0, "count": 1 << 30,
           "ids": {"mean": 1, "std": 2, "rms": 3, "min": 4, "max": 5}}
    ours = Window(cfg, lambda r, n: None)
    rival = Welford(kind)
    recs = []
    for i in range(64):
        r = bytearray(reading.SIZE)
        if kind:
            struct.pack_into("<HBBqd", r, 0, 9, kind, 0, 1700000000000 + i, 230.0 + i * 0.01)
        else:
            struct.pack_into("<HBBqq", r, 0, 9, kind, 0, 1700000000000 + i, 23000 + i)
        recs.append(r)

    def run(obj):
        add = obj.add
        for i in range(count):
            add(recs[i & 63])
    run(ours)
    run(rival)
    t_o, b_o = alloc_of(run, ours)
    t_r, b_r = alloc_of(run, rival)
    t_close, b_close = alloc_of(ours.close)
    return {"us": t_o / count, "bytes": b_o / count, "rival_us": t_r / count,
            "rival_bytes": b_r / count, "close_us": t_close, "close_bytes": b_close}


# --- vibration -----------------------------------------------------------------------------

class FastPart:
    """An ADXL345 driver's interface over samples already in memory (the bench times the
    pipeline, not a simulated bus): entries(), read_fifo(), flush()."""

    def __init__(self):
        self.src = [array.array("h", bytes(2 * N)) for _ in range(3)]
        for k in range(N):
            t = k / FS
            self.src[0][k] = int(20 * math.sin(2 * math.pi * 50 * t))
            self.src[1][k] = int(60 * math.sin(2 * math.pi * 250 * t))
            self.src[2][k] = int(256 + 128 * math.sin(2 * math.pi * 156.25 * t)
                                 + 40 * math.sin(2 * math.pi * 900 * t))
        self.k = 0

    def flush(self):
        self.k = 0

    def entries(self):
        return 32

    def read_fifo(self, xs, ys, zs, at, n):
        s0, s1, s2 = self.src
        k = self.k
        for i in range(at, at + n):
            xs[i] = s0[k]
            ys[i] = s1[k]
            zs[i] = s2[k]
            k += 1
        self.k = k


class PyFeatures:
    """The rival: the same burst features in plain Python floats (preallocated lists)."""

    def __init__(self, n, fs):
        self.n = n
        self.fs = fs
        self.re = [0.0] * n
        self.im = [0.0] * n
        self.cs = [math.cos(2 * math.pi * k / n) for k in range(n // 2)]
        self.sn = [-math.sin(2 * math.pi * k / n) for k in range(n // 2)]
        bits = 0
        while (1 << bits) < n:
            bits += 1
        self.rev = [0] * n
        for i in range(n):
            r = 0
            for b in range(bits):
                if i >> b & 1:
                    r |= 1 << (bits - 1 - b)
            self.rev[i] = r

    def features(self, axes, axis):
        n = self.n
        out = {}
        for a in range(3):
            xs = axes[a]
            s = 0.0
            for v in xs:
                s += v
            mu = s / n
            m2 = m4 = 0.0
            pk = 0.0
            for v in xs:
                d = v - mu
                d2 = d * d
                m2 += d2
                m4 += d2 * d2
                if abs(d) > pk:
                    pk = abs(d)
            m2 /= n
            m4 /= n
            rms = math.sqrt(m2)
            out[a] = (rms / 256, pk / 256, pk / rms if rms else 0.0,
                      m4 / (m2 * m2) if m2 else 0.0)
        re, im, rev, xs = self.re, self.im, self.rev, axes[axis]
        for i in range(n):
            re[rev[i]] = float(xs[i])
            im[rev[i]] = 0.0
        half = 1
        step = n >> 1
        while half < n:
            for k in range(half):
                w = self.cs[k * step]
                s = self.sn[k * step]
                i = k
                while i < n:
                    j = i + half
                    tr = re[j] * w - im[j] * s
                    ti = re[j] * s + im[j] * w
                    re[j] = re[i] - tr
                    im[j] = im[i] - ti
                    re[i] += tr
                    im[i] += ti
                    i += half << 1
            half <<= 1
            step >>= 1
        df = self.fs / n
        k0 = max(1, int(math.ceil(10 / df)))
        k1 = min(n // 2, int(1000 / df) + 1)
        e = 0.0
        for k in range(k0, k1):
            f = k * df
            e += (re[k] * re[k] + im[k] * im[k]) / (2 * math.pi * f) ** 2
        out["velocity"] = math.sqrt(2 * e) / n / 256 * 9.80665 * 1000
        return out


def vib_bench(reps):
    part = FastPart()
    cfg = {"samples": N, "rate_hz": FS, "lsb_per_g": 256, "axis": 2,
           "bands": [(10.0, 100.0), (100.0, 1000.0)], "group": "group2_rigid",
           "ids": {"rms_x": 1, "rms_y": 2, "rms_z": 3, "crest_z": 4, "kurtosis_z": 5,
                   "velocity": 6, "zone": 7}, "band_ids": [8, 9]}
    v = Vibration(cfg, part, lambda r, n: None)

    class C:  # the clock finish() stamps with
        def stamp_into(self, rec, off):
            struct.pack_into("<q", rec, off, 1700000000000)
            return 0
    clock = C()

    def read():
        v.start()
        while not v.poll():
            pass
    py = PyFeatures(N, FS)
    read()
    v.compute()
    v.finish(clock)
    py.features(v.axes, 2)
    t = {"read": [], "moments": [], "spectrum": [], "finish": [], "py": []}
    b = {"read": 0, "moments": 0, "spectrum": 0, "finish": 0, "py": 0}
    for _ in range(reps):
        for name, fn in (("read", read), ("moments", v.moments), ("spectrum", v.spectrum)):
            dt, db = alloc_of(fn)
            t[name].append(dt)
            b[name] = max(b[name], db)
        dt, db = alloc_of(v.finish, clock)
        t["finish"].append(dt)
        b["finish"] = max(b["finish"], db)
        dt, db = alloc_of(py.features, v.axes, 2)
        t["py"].append(dt)
        b["py"] = max(b["py"], db)
    med = {k: sorted(x)[len(x) // 2] for k, x in t.items()}
    ours = py.features(v.axes, 2)
    f = v.features()
    agree = abs(f["velocity"] - ours["velocity"]) / ours["velocity"]
    return {"us": med, "bytes": b, "velocity_rel_diff": agree}


def hold_bench(bursts, vib=True):
    """A 20 ms periodic 'poll' task beside the vibration task (bursts back to back): its
    worst lateness is the longest slice the pipeline holds the loop."""
    part = FastPart()
    cfg = {"samples": N, "rate_hz": FS, "lsb_per_g": 256, "axis": 2, "bands": [],
           "group": "group2_rigid", "ids": {"velocity": 1}, "band_ids": []}
    v = Vibration(cfg, part, lambda r, n: None)
    late = [0, 0]
    held = [0]
    # slice lengths as a histogram of 10 us buckets up to 20 ms (the last: longer), allocated
    # here: a list of every slice grew to 64 KB in the full run and ran out of the heap
    hist = array.array("I", bytes(4 * _BUCKETS))
    nslices = [0]

    def slice_(t):
        d = time.ticks_diff(time.ticks_us(), t)
        b = d // 10
        hist[b if b < _BUCKETS - 1 else _BUCKETS - 1] += 1
        nslices[0] += 1
        if d > held[0]:
            held[0] = d

    class Clock:
        def ticks_ms(self):
            return time.ticks_ms()

        def ticks_diff(self, a, b):
            return time.ticks_diff(a, b)

        def stamp_into(self, rec, off):
            struct.pack_into("<q", rec, off, 1700000000000)
            return 0

    async def poll():
        nxt = time.ticks_add(time.ticks_us(), 20000)
        while True:
            d = time.ticks_diff(nxt, time.ticks_us())
            await asyncio.sleep_ms(d // 1000 if d > 0 else 0)
            lt = time.ticks_diff(time.ticks_us(), nxt)
            late[0] = max(late[0], lt)
            late[1] += 1
            nxt = time.ticks_add(nxt, 20000)

    async def main():
        p = asyncio.create_task(poll())
        clock = Clock()
        for _ in range(bursts):
            if vib:  # else: the same loop without the work (the baseline)
                t = time.ticks_us()
                v.start()
                while not v.poll():
                    slice_(t)
                    await asyncio.sleep_ms(0)
                    t = time.ticks_us()
                slice_(t)
                await asyncio.sleep_ms(0)
                t = time.ticks_us()
                v.moments()
                slice_(t)
                await asyncio.sleep_ms(0)
                t = time.ticks_us()
                v.spectrum()
                slice_(t)
                await asyncio.sleep_ms(0)
                t = time.ticks_us()
                v.finish(clock)
                slice_(t)
            await asyncio.sleep_ms(5)
        p.cancel()

    asyncio.run(main())
    p99 = 0
    want = nslices[0] * 99 // 100 + 1  # the rank of the 99th percentile
    seen = 0
    for b in range(_BUCKETS):
        seen += hist[b]
        if seen >= want:
            p99 = (b + 1) * 10  # the bucket's upper edge, us
            break
    return {"max_late_us": late[0], "polls": late[1], "max_slice_us": held[0],
            "p99_slice_us": p99 if nslices[0] else 0, "slices": nslices[0]}


def main():
    quick = len(sys.argv) > 1 and sys.argv[1] == "quick"
    if len(sys.argv) > 2 and sys.argv[2] == "hold":  # a small heap, as on a board
        nb = 60 if quick else 300
        print("RESULT " + __import__("json").dumps({"hold": hold_bench(nb),
                                                    "idle": hold_bench(nb, False)}))
        return
    count = 2000 if quick else 20000
    res = {"build": "32" if sys.maxsize < (1 << 32) else "64",
           "window_int": window_bench(0, count), "window_float": window_bench(1, count),
           "vib": vib_bench(3 if quick else 11)}
    print("RESULT " + __import__("json").dumps(res))


main()
