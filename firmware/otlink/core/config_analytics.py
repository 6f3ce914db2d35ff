# The "analytics" section of the node config (docs/analytics.md, docs/config.md): windows,
# the raw-reading policy, alarms, machine states and counters. Part of the one validator:
# core/config.py validate() calls analytics() with its checker, so errors name their path
# ("analytics.alarms[0].high") and every default is filled in here.
from otlink.core.config import MS_MAX, _REQ, _get, _int, _join, _keys, _num, _obj, _show, \
    _str, _unique
from otlink.core.points import T_STRING, TYPES


_STATS = ("count", "min", "max", "mean", "rms", "std", "first", "last")
_COUNTER_MODES = ("rising", "delta")
_ROLES = ("cycles", "rejects")


def analytics(ck, d, points, sensors, ids, names):
    """Windows, raw-reading policy, alarms, machine states and counters, each on a point of
    the node (Modbus or sensor; alarms also on a window's derived point). Derived and event
    points get their own ids and names, unique with the points'."""
    p = "analytics"
    d = _obj(ck, d, p)
    _keys(ck, d, p, ("windows", "raw", "alarms", "machines", "counters", "persist_s",
                     "vibration"))
    src = {}  # point id -> (name, type index or None for a sensor point, scale)
    for i in range(len(points)):
        src[points.id(i)] = (points.name(i), points.type(i), points.scale(i))
    for s in sensors:
        for q in s["points"]:
            src[q["id"]] = (q["name"], None, q["scale"])
    out = {"windows": [], "raw": {}, "alarms": [], "machines": [], "counters": [],
           "vibration": _vibration(ck, d.get("vibration"), p + ".vibration", ids, names),
           "persist_s": _int(ck, d, "persist_s", p, 60, 1, 86400)}
    derived = {}  # a derived point's id -> its name (alarms may watch it)
    for v in out["vibration"]:  # a vibration feature
        for k in v["points"]:
            if k != "zone":
                derived[v["points"][k]] = "%s.%s" % (v["name"], k)

    def ref(e, w, numeric=True):
        pid = _int(ck, e, "point", w, _REQ, 0, 65535)
        if pid is None:
            return None
        if pid not in src and pid not in derived:
            ck.bad(w + ".point", "%d is not a point of this node" % pid)
            return None
        t = src[pid][1] if pid in src else None
        if numeric and t == T_STRING:
            ck.bad(w + ".point", "point %d is a string point: a number point is needed" % pid)
            return None
        return pid

    def new_id(e, w, name):
        pid = _int(ck, e, "id", w, _REQ, 0, 65535)
        nm = _str(ck, e, "name", w, name)
        if pid is not None:
            _unique(ck, ids, pid, w + ".id", "point id %d" % pid)
        if nm is not None:
            _unique(ck, names, nm, w + ".name", "name %s" % _show(nm))
        return pid, nm

    def positive_scale(pid, w):
        if pid in src and src[pid][2] is not None and src[pid][2] < 0:
            ck.bad(w + ".point", "point %d has a negative scale: thresholds need scale > 0"
                   % pid)

    lst = _get(ck, d, "windows", p, [])
    for w, e in _window_entries(ck, lst if isinstance(lst, list) else (), p + ".windows"):
        _keys(ck, e, w, ("point", "every_ms", "count", "stats"))
        pid = ref(e, w)
        if ("every_ms" in e) == ("count" in e):
            ck.bad(w, "give one of every_ms (a time window) or count (readings per window)")
        every = _int(ck, e, "every_ms", w, 0, 100, MS_MAX) if "every_ms" in e else 0
        count = _int(ck, e, "count", w, 0, 1, 65535) if "count" in e else 0
        st = _obj(ck, _get(ck, e, "stats", w, _REQ), w + ".stats", True)
        sids = {}
        for k in st:
            ws = "%s.stats.%s" % (w, k)
            if k not in _STATS:
                ck.bad(ws, "unknown statistic (allowed: %s)" % ", ".join(_STATS))
                continue
            sid = _int(ck, st, k, w + ".stats", _REQ, 0, 65535)
            if sid is not None:
                _unique(ck, ids, sid, ws, "point id %d" % sid)
                if pid is not None:
                    nm = "%s.%s" % (src[pid][0] if pid in src else pid, k)
                    _unique(ck, names, nm, ws, "name %s" % _show(nm))
                    sids[k] = sid
                    if k != "count":
                        derived[sid] = ws
        if not st and isinstance(_get(ck, e, "stats", w, None), dict):
            ck.bad(w + ".stats", "names no statistic")
        if pid is not None and pid in derived:
            ck.bad(w + ".point", "a window reads a node point, not a derived one")
        out["windows"].append({"point": pid, "every_ms": every or 0, "count": count or 0,
                               "ids": sids})
    if lst is not None and not isinstance(lst, list):
        ck.bad(p + ".windows", "must be a list")
    raw = _obj(ck, d.get("raw"), p + ".raw")
    for k in raw:
        w = _join(p + ".raw", k)
        try:
            pid = int(k)
        except ValueError:
            ck.bad(w, "keys are point ids")
            continue
        v = raw[k]
        if pid not in src:
            ck.bad(w, "%d is not a point of this node" % pid)
        elif v == "keep" or v == "drop":
            out["raw"][pid] = 0 if v == "drop" else 1
        elif isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 65535:
            out["raw"][pid] = v  # keep every v-th reading
        else:
            ck.bad(w, "must be \"keep\", \"drop\" or n in 2..65535 (keep every n-th), got %s"
                   % _show(v))
    lst = _get(ck, d, "alarms", p, [])
    for i, e in enumerate(lst if isinstance(lst, list) else ()):
        w = "%s.alarms[%d]" % (p, i)
        e = _obj(ck, e, w, True)
        _keys(ck, e, w, ("id", "name", "point", "high", "low", "hysteresis", "on_delay_ms",
                         "off_delay_ms"))
        pid = ref(e, w)
        aid, nm = new_id(e, w, "alarm%d" % i)
        positive_scale(pid, w)
        hi = _num(ck, e, "high", w, None) if "high" in e else None
        lo = _num(ck, e, "low", w, None) if "low" in e else None
        if "high" not in e and "low" not in e:
            ck.bad(w, "give high, low or both")
        hy = _num(ck, e, "hysteresis", w, 0.0)
        if hy is not None and hy < 0:
            ck.bad(w + ".hysteresis", "must be >= 0")
        if hi is not None and lo is not None and hy is not None and not lo + hy < hi - hy:
            ck.bad(w + ".low", "low + hysteresis must be below high - hysteresis")
        out["alarms"].append({"id": aid, "name": nm, "point": pid, "high": hi, "low": lo,
                              "hysteresis": hy,
                              "on_delay_ms": _int(ck, e, "on_delay_ms", w, 0, 0, MS_MAX),
                              "off_delay_ms": _int(ck, e, "off_delay_ms", w, 0, 0, MS_MAX)})
    lst = _get(ck, d, "machines", p, [])
    for i, e in enumerate(lst if isinstance(lst, list) else ()):
        w = "%s.machines[%d]" % (p, i)
        e = _obj(ck, e, w, True)
        _keys(ck, e, w, ("id", "name", "point", "running", "idle", "hysteresis",
                         "micro_stop_ms"))
        pid = ref(e, w)
        mid, nm = new_id(e, w, "machine%d" % i)
        positive_scale(pid, w)
        run = _num(ck, e, "running", w, 1.0)
        idle = _num(ck, e, "idle", w, None) if "idle" in e else None
        hy = _num(ck, e, "hysteresis", w, 0.0)
        if hy is not None and hy < 0:
            ck.bad(w + ".hysteresis", "must be >= 0")
        if idle is not None and run is not None and hy is not None and not idle < run - hy:
            ck.bad(w + ".idle", "must be below running - hysteresis")
        out["machines"].append({"id": mid, "name": nm, "point": pid, "running": run,
                                "idle": idle, "hysteresis": hy,
                                "micro_stop_ms": _int(ck, e, "micro_stop_ms", w, 120000, 0,
                                                      MS_MAX)})
    lst = _get(ck, d, "counters", p, [])
    for i, e in enumerate(lst if isinstance(lst, list) else ()):
        w = "%s.counters[%d]" % (p, i)
        e = _obj(ck, e, w, True)
        _keys(ck, e, w, ("id", "name", "point", "mode", "role", "debounce_ms", "max_step",
                         "machine"))
        pid = ref(e, w)
        cid, nm = new_id(e, w, "counter%d" % i)
        mode = _str(ck, e, "mode", w, _REQ, _COUNTER_MODES)
        t = src[pid][1] if pid in src else None
        if mode == "delta" and pid is not None and t is not None and TYPES[t] not in (
                "uint16", "uint32", "int16", "int32"):
            ck.bad(w + ".mode", "delta counts a 16- or 32-bit counter register, point %d is "
                   "%s" % (pid, TYPES[t]))
        out["counters"].append({
            "id": cid, "name": nm, "point": pid, "mode": mode,
            "bits": 16 if t is not None and TYPES[t] in ("uint16", "int16") else 32,
            "role": _str(ck, e, "role", w, "cycles", _ROLES),
            "machine": _int(ck, e, "machine", w, None, 0, 65535) if "machine" in e else None,
            "debounce_ms": _int(ck, e, "debounce_ms", w, 20, 0, 60000),
            "max_step": _int(ck, e, "max_step", w, 10000, 1, 0x1FFFFFFF)})
    for k in ("alarms", "machines", "counters"):
        if not isinstance(d.get(k, []), list):
            ck.bad("%s.%s" % (p, k), "must be a list")
    machines = [m["id"] for m in out["machines"]]
    for i, c in enumerate(out["counters"]):
        if c["machine"] is not None and c["machine"] not in machines:
            ck.bad("%s.counters[%d].machine" % (p, i), "%d is not a machine id of "
                   "analytics.machines" % c["machine"])
    return out


def _window_entries(ck, lst, p):
    """(path, entry) per window: an entry for one point as written, or a group - "points":
    [ids], "stats": [names], "ids_from": n - expanded to one entry per point, whose
    statistics get the ids n, n + 1, ... in order (point by point, statistic by statistic)."""
    for i, e in enumerate(lst):
        w = "%s[%d]" % (p, i)
        e = _obj(ck, e, w, True)
        if "points" not in e:
            yield w, e
            continue
        _keys(ck, e, w, ("points", "every_ms", "count", "stats", "ids_from"))
        if "point" in e:
            ck.bad(w + ".point", "give point or points, not both")
        pts = e["points"]
        st = _get(ck, e, "stats", w, _REQ)
        base = _int(ck, e, "ids_from", w, _REQ, 0, 65535)
        if not isinstance(pts, list) or not pts:
            ck.bad(w + ".points", "must be a non-empty list of point ids, got %s" % _show(pts))
            continue
        if not isinstance(st, list) or not st or [k for k in st if k not in _STATS]:
            ck.bad(w + ".stats", "a group's stats are a list of %s, got %s"
                   % (", ".join(_STATS), _show(st)))
            continue
        if base is None:
            continue
        for j, pid in enumerate(pts):
            one = {"point": pid,
                   "stats": {k: base + j * len(st) + n for n, k in enumerate(st)}}
            for k in ("every_ms", "count"):
                if k in e:
                    one[k] = e[k]
            yield "%s.points[%d]" % (w, j), one


_FEATURES = ("rms_x", "rms_y", "rms_z", "peak_x", "peak_y", "peak_z", "crest_x", "crest_y",
             "crest_z", "kurtosis_x", "kurtosis_y", "kurtosis_z", "velocity", "zone")
_GROUPS = ("group1_rigid", "group1_flexible", "group2_rigid", "group2_flexible")
_RATES = (100, 200, 400, 800, 1600, 3200)


def _vibration(ck, lst, p, ids, names):
    """Accelerometers (ADXL345 on I2C) whose bursts give vibration features (docs/analytics.md)."""
    out = []
    if lst is None:
        return out
    if not isinstance(lst, list):
        ck.bad(p, "must be a list")
        return out
    for i, e in enumerate(lst):
        w = "%s[%d]" % (p, i)
        e = _obj(ck, e, w, True)
        _keys(ck, e, w, ("name", "driver", "bus", "address", "rate_hz", "range_g", "samples",
                         "axis", "every_ms", "bands", "group", "points"))
        name = _str(ck, e, "name", w, "vib%d" % i)
        _str(ck, e, "driver", w, "adxl345", ("adxl345",))
        samples = _int(ck, e, "samples", w, 1024, 256, 4096)
        if samples is not None and samples & (samples - 1):
            ck.bad(w + ".samples", "must be a power of two (the FFT is radix-2), got %d"
                   % samples)
        rate = _int(ck, e, "rate_hz", w, 3200, 100, 3200)
        if rate is not None and rate not in _RATES:
            ck.bad(w + ".rate_hz", "must be one of %s" % ", ".join([str(r) for r in _RATES]))
        rng = _int(ck, e, "range_g", w, 16, 2, 16)
        if rng is not None and rng not in (2, 4, 8, 16):
            ck.bad(w + ".range_g", "must be 2, 4, 8 or 16")
        bands = []
        bl = _get(ck, e, "bands", w, [])
        if not isinstance(bl, list) or len(bl) > 8:
            ck.bad(w + ".bands", "must be a list of at most 8 [lo_hz, hi_hz]")
            bl = []
        for j, b in enumerate(bl):
            pb = "%s.bands[%d]" % (w, j)
            if not isinstance(b, list) or len(b) != 2:
                ck.bad(pb, "must be [lo_hz, hi_hz], got %s" % _show(b))
                continue
            lo = _num(ck, {"lo": b[0]}, "lo", pb, _REQ)
            hi = _num(ck, {"hi": b[1]}, "hi", pb, _REQ)
            if lo is None or hi is None:
                continue
            if not 0 < lo < hi or (rate and hi > rate / 2):
                ck.bad(pb, "must be 0 < lo < hi <= rate_hz / 2 (%s), got %s"
                       % (rate and rate / 2, _show(b)))
                continue
            if rate and samples and hi - lo < rate / samples:
                ck.bad(pb, "narrower than one FFT bin (%s Hz)" % (rate / samples))
                continue
            bands.append((lo, hi))
        pts = _obj(ck, _get(ck, e, "points", w, _REQ), w + ".points", True)
        got = {}
        for k in pts:
            pk = "%s.points.%s" % (w, k)
            ok = k in _FEATURES or (k[:4] == "band" and k[4:].isdigit() and
                                    int(k[4:]) < len(bands))
            if not ok:
                ck.bad(pk, "unknown feature (allowed: %s, band0..band%d for the bands)"
                       % (", ".join(_FEATURES), len(bands) - 1))
                continue
            pid = _int(ck, pts, k, w + ".points", _REQ, 0, 65535)
            if pid is not None:
                _unique(ck, ids, pid, pk, "point id %d" % pid)
                if name is not None:
                    _unique(ck, names, name + "." + k, pk, "name %s" % _show(name + "." + k))
                got[k] = pid
        if not pts and isinstance(e.get("points"), dict):
            ck.bad(w + ".points", "names no feature")
        out.append({"name": name, "driver": "adxl345", "bus": _str(ck, e, "bus", w, _REQ),
                    "address": _int(ck, e, "address", w, 0x53, 0x08, 0x77),
                    "rate_hz": rate, "range_g": rng, "samples": samples,
                    "axis": "xyz".index(_str(ck, e, "axis", w, "z", ("x", "y", "z")) or "z"),
                    "every_ms": _int(ck, e, "every_ms", w, 60000, 1000, MS_MAX),
                    "bands": bands, "group": _str(ck, e, "group", w, "group2_rigid", _GROUPS),
                    "points": got})
    return out
