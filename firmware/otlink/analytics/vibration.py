# Vibration features from a MEMS accelerometer's FIFO (docs/analytics.md "Vibration").
#
# A burst is n samples (a power of two, 256..4096) of the three axes, read from the part's
# FIFO into preallocated int16 arrays as they arrive. Per burst:
#   per axis   RMS of the AC part (mean removed), peak (largest distance from the mean),
#              crest factor (peak / RMS), kurtosis (m4 / m2^2, 3 for Gaussian noise);
#   one axis   (the configured measuring direction) an FFT: RMS in each configured band and
#              the velocity RMS over 10-1000 Hz (ISO 10816), with its zone A..D for the
#              configured machine group.
# The sample-proportional work (FIFO reads, moments, FFT, band sums) runs in viper over the
# preallocated arrays and allocates nothing (tests/firmware/test_adxl345.py, both builds,
# under heap_lock); turning the exact integer sums into floats and packing the derived
# readings happens once per burst (finish) and allocates a bounded number of objects.
import array
import math
import struct
import sys

from otlink.core import reading

G = 9.80665  # m/s^2 per g
# ISO 10816-3 zone boundaries A/B, B/C, C/D, velocity RMS in mm/s (10-1000 Hz), by machine
# group and foundation (docs/analytics.md)
ZONES = {"group1_rigid": (2.3, 4.5, 7.1), "group1_flexible": (3.5, 7.1, 11.0),
         "group2_rigid": (1.4, 2.8, 4.5), "group2_flexible": (2.3, 4.5, 7.1)}
FEATURES = ("rms_x", "rms_y", "rms_z", "peak_x", "peak_y", "peak_z", "crest_x", "crest_y",
            "crest_z", "kurtosis_x", "kurtosis_y", "kurtosis_z", "velocity", "zone")
_ST = 40  # words of one axis's moment state (vib_src.mom)


def _kernels():
    name = "otlink.analytics.vib_src"
    try:
        from otlink.analytics import vib_src

        ns = {}
        exec(vib_src.SRC, ns)
        exec(vib_src.SRC2, ns)
        return ns["mom"], ns["load"], ns["fft"], ns["pw"]
    finally:
        sys.modules.pop(name, None)
        pkg = sys.modules.get("otlink.analytics")
        if pkg is not None and hasattr(pkg, "vib_src"):
            delattr(pkg, "vib_src")


_mom, _load, _fft, _pw = _kernels()
del _kernels


def _limbs(a, o, n):
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 15) | a[o + i]
    return v


def zone(v_mm_s, group):
    ab, bc, cd = ZONES[group]
    return "A" if v_mm_s < ab else "B" if v_mm_s < bc else "C" if v_mm_s < cd else "D"


class Vibration:
    """cfg: the validated analytics.vibration entry: samples, rate_hz, lsb_per_g, axis
    (0..2), bands [(lo_hz, hi_hz)], group, ids {feature: point id}, band_ids [id per band]."""

    def __init__(self, cfg, drv, store):
        n = cfg["samples"]
        self.n = n
        self.cfg = cfg
        self.drv = drv
        self.store = store
        self.fs = cfg["rate_hz"]
        self.per_g = cfg["lsb_per_g"]
        self.axis = cfg["axis"]
        self.x = array.array("h", bytes(2 * n))
        self.y = array.array("h", bytes(2 * n))
        self.z = array.array("h", bytes(2 * n))
        self.re = array.array("i", bytes(4 * n))
        self.im = array.array("i", bytes(4 * n))
        self.sts = (array.array("i", bytes(4 * _ST)), array.array("i", bytes(4 * _ST)),
                    array.array("i", bytes(4 * _ST)))
        self.axes = (self.x, self.y, self.z)
        self.acc = array.array("i", bytes(4 * 6))
        h = n // 2
        self.cs = array.array("i", bytes(4 * h))
        self.sn = array.array("i", bytes(4 * h))
        for k in range(h):  # boot only: floats
            a = 2 * math.pi * k / n
            self.cs[k] = int(round(math.cos(a) * (1 << 29)))
            self.sn[k] = -int(round(math.sin(a) * (1 << 29)))
        bits = 0
        while (1 << bits) < n:
            bits += 1
        self.rev = array.array("H", bytes(2 * n))
        for i in range(n):
            r = 0
            for b in range(bits):
                if i >> b & 1:
                    r |= 1 << (bits - 1 - b)
            self.rev[i] = r
        # velocity band 10..1000 Hz: bins k0..k1-1, weights q[k] = k0 / k (Q30)
        df = self.fs / n
        self.vk0 = max(1, int(math.ceil(10.0 / df)))
        self.vk1 = min(h, int(math.floor(1000.0 / df)) + 1)
        self.q = array.array("i", bytes(4 * h))
        for k in range(self.vk0, self.vk1):
            self.q[k] = int(self.vk0 * (1 << 30) // k)
        self.bands = [(max(1, int(math.ceil(lo / df))), min(h, int(math.floor(hi / df)) + 1))
                      for lo, hi in cfg["bands"]]
        self.got = 0  # samples of the burst read so far
        self.rec = bytearray(reading.MAX_SIZE)
        self.sh = 0
        self.bursts = 0
        self.last = None  # the last burst's features {name: value} (tests, demo)

    # --- per sample: no allocation ------------------------------------------------------
    def start(self):
        self.got = 0
        self.drv.flush()

    def poll(self):
        """Read what the FIFO holds into the burst; True when the burst is complete."""
        k = self.drv.entries()
        room = self.n - self.got
        if k > room:
            k = room
        if k:
            self.drv.read_fifo(self.x, self.y, self.z, self.got, k)
            self.got += k
        return self.got >= self.n

    def compute(self):
        """Moments of the three axes and the spectrum of the measuring axis (integers)."""
        self.moments()
        self.spectrum()

    def moments(self):
        n = self.n
        axes = self.axes
        for a in range(3):
            st = self.sts[a]
            st[0] = axes[a][0]  # the expansion point: any sample is close enough to the mean
            _mom(axes[a], n, st)

    def spectrum(self):
        n = self.n
        axes = self.axes
        st = self.sts[self.axis]
        lo = st[1]
        hi = st[2]
        m0 = st[0]
        span = hi - m0 if hi - m0 > m0 - lo else m0 - lo
        # block scaling: the largest shift with n * span * 2**sh below 2**30, the FFT's
        # bound on every intermediate value (a sum of at most n inputs)
        lim = 0x3FFFFFFF // n
        sh = 0
        while span and (span << (sh + 1)) <= lim:
            sh += 1
        self.sh = sh
        _load(axes[self.axis], n, m0, sh, self.rev, self.re, self.im)
        _fft(self.re, self.im, n, self.cs, self.sn)

    # --- per burst: floats -------------------------------------------------------------
    def _band(self, k0, k1, weighted):
        acc = self.acc
        for i in range(6):
            acc[i] = 0
        _pw(self.re, self.im, k0, k1, self.q, 1 if weighted else 0, acc)
        return _limbs(acc, 0, 6)

    def features(self):
        n = self.n
        g = 1.0 / self.per_g
        out = {}
        names = "xyz"
        for a in range(3):
            st = self.sts[a]
            o = 0
            m0 = st[o]
            s1 = _limbs(st, o + 4, 4) - _limbs(st, o + 8, 4)
            s2 = _limbs(st, o + 12, 6)
            s3 = _limbs(st, o + 18, 6) - _limbs(st, o + 24, 6)
            s4 = _limbs(st, o + 30, 8)
            # central moments about the mean m0 + delta, from the sums about m0
            d = s1 / n
            m2 = s2 / n - d * d
            m4 = s4 / n - 4 * d * s3 / n + 6 * d * d * s2 / n - 3 * d ** 4
            mean = m0 + d
            rms = math.sqrt(m2) if m2 > 0 else 0.0
            pk = max(st[o + 2] - mean, mean - st[o + 1])
            c = names[a]
            out["rms_" + c] = rms * g
            out["peak_" + c] = pk * g
            out["crest_" + c] = pk / rms if rms else 0.0
            out["kurtosis_" + c] = m4 / (m2 * m2) if m2 > 0 else 0.0
        # one-sided spectrum: the RMS of bins k0..k1 is sqrt(2 * sum |X_k|^2) / n
        scale = g / (n * (1 << self.sh))
        for i, (k0, k1) in enumerate(self.bands):
            out["band%d" % i] = math.sqrt(2.0 * self._band(k0, k1, False)) * scale
        # velocity: |V_k| = |A_k| / (2 pi f_k), f_k = k fs / n; the weights hold k0 / k
        e = self._band(self.vk0, self.vk1, True)
        f0 = self.vk0 * self.fs / n
        v = math.sqrt(2.0 * e) * scale * G / (2 * math.pi * f0) * 1000.0  # mm/s
        out["velocity"] = v
        out["zone"] = zone(v, self.cfg["group"])
        return out

    def finish(self, clock):
        """Features of the completed burst, emitted as derived readings at the time now."""
        vals = self.features()
        self.last = vals
        rec = self.rec
        flags = clock.stamp_into(rec, reading.OFF_T)
        ids = self.cfg["ids"]
        bids = self.cfg["band_ids"]
        for name in ids:
            v = vals[name]
            if name == "zone":
                t = struct.unpack_from("<q", rec, reading.OFF_T)[0]
                n = reading.pack_text(rec, ids[name], t, v.encode(), flags)
            else:
                struct.pack_into("<HBB", rec, 0, ids[name], reading.KIND_FLOAT, flags)
                struct.pack_into("<d", rec, reading.HEADER, v)
                n = reading.SIZE
            self.store(rec, n)
        for i, pid in enumerate(bids):
            if pid is None:
                continue
            struct.pack_into("<HBB", rec, 0, pid, reading.KIND_FLOAT, flags)
            struct.pack_into("<d", rec, reading.HEADER, vals["band%d" % i])
            self.store(rec, reading.SIZE)
        self.bursts += 1
        return vals

    async def run(self, clock, every_ms):
        """One burst every every_ms: flush the FIFO, read it more often than it fills (32
        entries), compute, emit."""
        import asyncio

        poll_ms = max(1, 24000 // self.fs)  # 3/4 of the FIFO's fill time
        while True:
            t0 = clock.ticks_ms()
            self.start()
            while not self.poll():
                await asyncio.sleep_ms(poll_ms)
            # three slices, the event loop turning between them: the longest time the
            # pipeline holds the CPU is one slice (tests/bench/bench_analytics.py)
            self.moments()
            await asyncio.sleep_ms(0)
            self.spectrum()
            await asyncio.sleep_ms(0)
            self.finish(clock)
            wait = every_ms - clock.ticks_diff(clock.ticks_ms(), t0)
            await asyncio.sleep_ms(wait if wait > 0 else 0)

