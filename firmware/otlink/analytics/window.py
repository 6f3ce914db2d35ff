# Tumbling windows of one point's readings: count, min, max, mean, RMS, standard deviation,
# first and last, emitted when the window closes as readings of derived points
# (docs/analytics.md "Windows").
#
# Per reading (add) nothing is allocated on any build: the value is accumulated as exact
# integer sums (analytics/kern.py: n, S = sum of v * 2**fb, Q = sum of (v * 2**fb)**2, in
# 15-bit limbs), min and max are compared as 8-byte order keys, first/last/time are byte
# copies. Exact sums make the variance n*Q - S*S exact, which is what Welford's update buys
# in floating point (no cancellation) without a float per reading. Closing a window (close)
# turns the sums into floats and packs the derived records: it allocates, once per window.
import array
import math
import struct

from otlink.analytics import kern
from otlink.core import reading
from otlink.core.compat import const

STATS = ("count", "min", "max", "mean", "rms", "std", "first", "last")
FB_FLOAT = const(32)  # fraction bits kept of a float64 value (2**-32 ~ 2.3e-10)
_ST_WORDS = const(40)  # kern.mag/acc's state: n, V[5], sign, S+[9], S-[9], Q[13]
# byte block: 0 key scratch, 8 min key, 16 max key, 24 min raw, 32 max raw, 40 first raw,
# 48 last raw, 56 last t, 64 window end t (time windows), 72 last flags
_MINK = const(8)
_MAXK = const(16)
_MINV = const(24)
_MAXV = const(32)
_FIRST = const(40)
_LAST = const(48)
_T = const(56)
_END = const(64)
_FLAGS = const(72)
_BLOCK = const(73)


def _limbs(st, o, n):
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 15) | st[o + i]
    return v


def _ratio(num, den):
    """num / den as a float for ints of any size (the boards' floats are single precision:
    float(int) of 2**128 or more would overflow)."""
    e = 0
    while num >= (1 << 60) or num <= -(1 << 60):
        num >>= 8
        e += 8
    while den >= (1 << 60):
        den >>= 8
        e -= 8
    return math.ldexp(num / den, e) if num else 0.0


class Window:
    """One point's tumbling window. cfg: the validated window entry (core/config.py
    _analytics): point, kind (reading.KIND_INT / KIND_FLOAT), scale, offset, every_ms or
    count, ids {stat: derived point id}."""

    def __init__(self, cfg, emit):
        self.kind = cfg["kind"]
        self.fb = FB_FLOAT if self.kind == reading.KIND_FLOAT else 0
        self.scale = cfg["scale"]
        self.offset = cfg["offset"]
        self.every_ms = cfg["every_ms"]  # 0: a count window
        self.count = cfg["count"]
        ids = cfg["ids"]
        self.out = [(STATS.index(s), ids[s]) for s in STATS if s in ids]
        self.emit = emit  # emit(rec, n): where a derived reading goes
        self.st = array.array("i", bytes(4 * _ST_WORDS))
        self.b = bytearray(_BLOCK)
        self.sb = bytearray(8)
        self.rec = bytearray(reading.SIZE)
        self.skipped = 0  # NaN, infinity or too large: not in any window
        self.windows = 0

    def reset(self):
        st = self.st
        for i in range(_ST_WORDS):
            st[i] = 0

    def add(self, rec):
        """One reading of the point (KIND_INT or KIND_FLOAT, as configured). Allocates only
        when it closes a window (and when it opens the next time window)."""
        st = self.st
        b = self.b
        if self.every_ms and st[0]:
            if rec[reading.OFF_FLAGS] != b[_FLAGS] or kern.tge(rec, b, _END):
                self.close()
        if not kern.mag(rec, self.kind, self.fb, self.sb, st):
            self.skipped += 1
            return
        kern.okey(rec, self.kind, b)
        first = st[0] == 0
        if first:
            for i in range(8):
                b[_MINK + i] = b[i]
                b[_MAXK + i] = b[i]
                b[_MINV + i] = rec[12 + i]
                b[_MAXV + i] = rec[12 + i]
                b[_FIRST + i] = rec[12 + i]
            b[_FLAGS] = rec[reading.OFF_FLAGS]
            if self.every_ms:
                self._open(rec)
        else:
            if kern.kcmp(b, 0, b, _MINK) < 0:
                for i in range(8):
                    b[_MINK + i] = b[i]
                    b[_MINV + i] = rec[12 + i]
            if kern.kcmp(b, 0, b, _MAXK) > 0:
                for i in range(8):
                    b[_MAXK + i] = b[i]
                    b[_MAXV + i] = rec[12 + i]
        for i in range(8):
            b[_LAST + i] = rec[12 + i]
            b[_T + i] = rec[4 + i]
        kern.acc(st)
        if not self.every_ms and st[0] >= self.count:
            self.close()

    def _open(self, rec):
        # tumbling windows aligned on the clock: [k * every, (k + 1) * every)
        t = struct.unpack_from("<q", rec, reading.OFF_T)[0]
        struct.pack_into("<q", self.b, _END, (t // self.every_ms + 1) * self.every_ms)

    def _raw(self, off):
        fmt = "<d" if self.kind == reading.KIND_FLOAT else "<q"
        return struct.unpack_from(fmt, self.b, off)[0]

    def values(self):
        """{stat: value in engineering units} of the open window (None when empty)."""
        st = self.st
        n = st[0]
        if not n:
            return None
        s = _limbs(st, 8, 9) - _limbs(st, 17, 9)
        q = _limbs(st, 26, 13)
        one = 1 << self.fb
        a = self.scale
        c = self.offset
        mean = _ratio(s, n * one)
        ms = _ratio(q, n * one * one)  # mean of squares
        var = _ratio(n * q - s * s, n * n * one * one)
        lo = self._raw(_MINV) * a + c
        hi = self._raw(_MAXV) * a + c
        if a < 0:
            lo, hi = hi, lo
        # RMS of a*x + c: sqrt(a^2 E[x^2] + 2ac E[x] + c^2)
        r2 = a * a * ms + 2 * a * c * mean + c * c
        return {"count": n, "min": lo, "max": hi, "mean": mean * a + c,
                "rms": math.sqrt(r2) if r2 > 0 else 0.0,
                "std": abs(a) * math.sqrt(var) if var > 0 else 0.0,
                "first": self._raw(_FIRST) * a + c, "last": self._raw(_LAST) * a + c}

    def close(self):
        """Emit the window's derived readings (time: its last reading's) and start the next."""
        vals = self.values()
        if vals is None:
            return
        rec = self.rec
        b = self.b
        flags = b[_FLAGS]
        for i in range(8):
            rec[reading.OFF_T + i] = b[_T + i]
        for k, pid in self.out:
            v = vals[STATS[k]]
            if k == 0:
                struct.pack_into("<HBB", rec, 0, pid, reading.KIND_INT, flags)
                struct.pack_into("<q", rec, reading.HEADER, v)
            else:
                struct.pack_into("<HBB", rec, 0, pid, reading.KIND_FLOAT, flags)
                struct.pack_into("<d", rec, reading.HEADER, v)
            self.emit(rec, reading.SIZE)
        self.windows += 1
        self.reset()
