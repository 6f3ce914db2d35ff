# Condition monitoring on the node (docs/analytics.md): every reading a source hands to
# App.sink passes Analytics.feed first, which
#   - feeds the point's tumbling windows (analytics/window.py), whose derived readings
#     (min, max, mean, RMS, std, count, first, last) go into the flash queue like readings;
#   - feeds alarms, machine states and production counters (analytics/events.py), whose
#     events and totals go into the queue the same way;
#   - says whether the raw reading itself is stored: kept, thinned (every n-th) or dropped.
# Derived and event points have their own ids in the birth table (derived_rows). Counter
# totals are kept in a small file on the board's littlefs, rewritten at most every
# persist_s when they changed (save).
#
# feed() allocates nothing for a reading that closes no window and changes no state
# (tests/firmware/test_analytics.py, both builds, under heap_lock).
import struct

from otlink.core import reading

_FLOAT_TYPES = ("float32", "float64")


def _sources(cfg, want):
    """{point id: (name, unit, type, scale, offset)} of the node points in want."""
    out = {}
    pts = cfg["points"]
    from otlink.core.points import TYPES

    for pid in want:
        i = pts.find(pid)
        if i >= 0:
            out[pid] = (pts.name(i), pts.unit(i) or "", TYPES[pts.type(i)], pts.scale(i),
                        pts.offset(i))
    rest = [p for p in want if p not in out]
    if rest:
        from otlink.sensors import driver_scale

        for s in cfg["sensors"]:
            for p in s["points"]:
                if p["id"] in rest:
                    typ, sc, off = driver_scale(s, p)
                    out[p["id"]] = (p["name"], p["unit"], typ, sc, off)
    return out


def _wanted(a):
    return [e["point"] for k in ("windows", "alarms", "machines", "counters") for e in a[k]]


def _every(w):
    return "%dms" % w["every_ms"] if w["every_ms"] else "%dn" % w["count"]


def derived_rows(cfg):
    """Birth rows (id, name, unit, type, scale, offset, source) of the derived and event
    points, in config order. Values are in engineering units: scale 1, offset 0."""
    a = cfg["analytics"]
    src = _sources(cfg, _wanted(a))
    dv = {}
    for w in a["windows"]:
        name, unit = src[w["point"]][0], src[w["point"]][1]
        for k in ("count", "min", "max", "mean", "rms", "std", "first", "last"):
            if k in w["ids"]:
                sid = w["ids"][k]
                dv[sid] = ("%s.%s" % (name, k), unit)
                yield (sid, "%s.%s" % (name, k), "" if k == "count" else unit,
                       "uint32" if k == "count" else "float64", 1, 0,
                       "window:%d:%s:%s" % (w["point"], k, _every(w)))
    for e in a["alarms"]:
        unit = src[e["point"]][1] if e["point"] in src else dv[e["point"]][1]
        yield (e["id"], e["name"], unit, "event", 1, 0, "alarm:%d" % e["point"])
    for e in a["machines"]:
        yield (e["id"], e["name"], "", "event", 1, 0, "machine:%d" % e["point"])
    for e in a["counters"]:
        m = ":%d" % e["machine"] if e["machine"] is not None else ""
        yield (e["id"], e["name"], "", "int64", 1, 0,
               "counter:%d:%s%s" % (e["point"], e["role"], m))
    for v in a["vibration"]:
        for k in v["points"]:
            unit = "mm/s" if k == "velocity" else "" if k[:5] in ("crest", "kurto", "zone") \
                else "g"
            yield (v["points"][k], "%s.%s" % (v["name"], k), unit,
                   "string" if k == "zone" else "float64", 1, 0,
                   "%s:%s:0x%02x:%s" % (v["driver"], v["bus"], v["address"], k))


def derived_count(cfg):
    a = cfg.get("analytics")
    if not a:
        return 0
    return sum([len(w["ids"]) for w in a["windows"]]) + len(a["alarms"]) + \
        len(a["machines"]) + len(a["counters"]) + \
        sum([len(v["points"]) for v in a["vibration"]])


def configured(cfg):
    a = cfg.get("analytics")
    return bool(a and (a["windows"] or a["alarms"] or a["machines"] or a["counters"]
                       or a["raw"] or a["vibration"]))


class Analytics:
    def __init__(self, cfg, clock, store, path=None, board=None):
        """cfg: the validated config; store(rec, n): the queue's append; path: the file the
        counter totals are kept in (None: not kept); board: gives the accelerometers' I2C
        buses (vibration). self.tasks: (name, coroutine function) for the app to run."""
        from otlink.analytics.events import Alarm, Counter, Machine
        from otlink.analytics.window import Window

        a = cfg["analytics"]
        self.store = store
        self.clock = clock
        self.path = path
        self.persist_ms = a["persist_s"] * 1000
        src = _sources(cfg, _wanted(a))
        self._by = {}  # point id -> [handler, ...]: objects with .kind and .add(rec)
        self.windows = []
        for w in a["windows"]:
            name, unit, typ, sc, off = src[w["point"]]
            e = dict(w)
            e["kind"] = reading.KIND_FLOAT if typ in _FLOAT_TYPES else reading.KIND_INT
            e["scale"] = sc
            e["offset"] = off
            win = Window(e, self._derived)
            self.windows.append(win)
            self._on(w["point"], win)
        saved = self._load()
        self.alarms = []
        self.machines = []
        self.counters = []
        for k, cls, lst in (("alarms", Alarm, self.alarms), ("machines", Machine,
                                                             self.machines),
                            ("counters", Counter, self.counters)):
            for c in a[k]:
                e = dict(c)
                if c["point"] in src:
                    typ, e["scale"], e["offset"] = src[c["point"]][2:]
                    e["kind"] = reading.KIND_FLOAT if typ in _FLOAT_TYPES else \
                        reading.KIND_INT
                else:  # a window's derived point: a float in engineering units
                    e["kind"], e["scale"], e["offset"] = reading.KIND_FLOAT, 1.0, 0.0
                if cls is Counter:
                    h = Counter(e, store, clock, saved.get(c["id"], 0))
                else:
                    h = cls(e, store, clock)
                lst.append(h)
                self._on(c["point"], h)
        self.tasks = []
        self.vibration = []
        for v in a["vibration"]:
            vib = make_vibration(v, board, clock, self._derived)
            self.vibration.append(vib)
            self.tasks.append(("vibration:" + v["name"], _burst_task(vib, clock, v["every_ms"])))
        self._raw = a["raw"]  # point id -> 0 drop, 1 keep, n keep every n-th
        self._seen = {}
        for pid in self._raw:
            self._seen[pid] = 0
        self.dropped = 0

    def _on(self, pid, h):
        lst = self._by.get(pid)
        if lst is None:
            lst = self._by[pid] = []
        lst.append(h)

    def _derived(self, rec, n):
        """A window's derived reading: into the queue, then to what watches it."""
        self.store(rec, n)
        self._dispatch(rec)

    def _dispatch(self, rec):
        hs = self._by.get(rec[0] | (rec[1] << 8))
        if hs is None:
            return
        k = rec[reading.OFF_KIND]
        for h in hs:
            if h.kind == k:
                h.add(rec)

    def feed(self, rec, n):
        """One reading from a source. Returns True when the raw reading is to be stored."""
        self._dispatch(rec)
        pid = rec[0] | (rec[1] << 8)
        mode = self._raw.get(pid)
        if mode is None or mode == 1:
            return True
        if mode == 0:
            self.dropped += 1
            return False
        c = self._seen[pid] + 1
        if c >= mode:
            self._seen[pid] = 0
            return True
        self._seen[pid] = c
        self.dropped += 1
        return False

    # --- counter totals across reboots ----------------------------------------------
    def _load(self):
        if self.path is None:
            return {}
        out = {}
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return out
        # records of 10 bytes: id u16, total i64 (LE); a torn file keeps its whole records
        for i in range(0, len(data) - 9, 10):
            pid, tot = struct.unpack_from("<Hq", data, i)
            out[pid] = tot
        return out

    def save(self, force=False):
        """Write the counter totals when one changed (force: anyway). Written to a new file
        then renamed over the old one: littlefs renames atomically, so a power cut leaves
        the old totals or the new ones. Returns True when it wrote."""
        cs = self.counters
        if self.path is None or not cs or not (force or any([c.dirty for c in cs])):
            return False
        import os

        buf = bytearray(10 * len(cs))
        for i, c in enumerate(cs):
            struct.pack_into("<Hq", buf, 10 * i, c.id, c.total)
            c.dirty = False
        tmp = self.path + ".new"
        with open(tmp, "wb") as f:
            f.write(buf)
        os.rename(tmp, self.path)
        self.saves = getattr(self, "saves", 0) + 1
        return True

    async def run(self):
        import asyncio

        while True:
            await asyncio.sleep_ms(self.persist_ms)
            self.save()

    def stats(self):
        return {"windows": sum([w.windows for w in self.windows]),
                "events": sum([h.events for h in self.alarms + self.machines]),
                "raw_dropped": self.dropped}


def _burst_task(vib, clock, every_ms):
    def run():
        return vib.run(clock, every_ms)
    return run


def make_vibration(v, board, clock, store):
    """The accelerometer on its bus, configured, and its feature pipeline. On the Unix port
    a simulated part (hal/unix/sim_adxl345.py) answers at the address when nothing else
    does, running a machine-like signal (docs/analytics.md)."""
    from otlink.analytics.vibration import Vibration
    from otlink.drivers.adxl345 import ADXL345, LSB_PER_G

    bus = board.i2c(v["bus"])
    devs = getattr(bus, "devices", None)
    if getattr(board, "name", "") == "unix" and devs is not None and v["address"] not in devs:
        from otlink.hal.unix.sim_adxl345 import SimADXL345, machine_signal

        devs[v["address"]] = SimADXL345(clock, machine_signal(v["rate_hz"]), v["address"])
    drv = ADXL345(bus, v["address"])
    drv.configure(v["rate_hz"], v["range_g"])
    e = dict(v)
    e["lsb_per_g"] = LSB_PER_G
    e["ids"] = {k: v["points"][k] for k in v["points"] if k[:4] != "band"}
    e["band_ids"] = [v["points"].get("band%d" % i) for i in range(len(v["bands"]))]
    return Vibration(e, drv, store)
