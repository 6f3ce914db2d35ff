# Node configuration: one JSON file, validated at boot before anything touches the bus or
# the network. Every error names the field ("mqtt.port", "points[3].type") and what is
# wrong with it. The same module runs on CPython for `otlink node validate`.
# Schema reference: docs/config.md.
import json

from otlink.core.errors import ConfigError

SCHEMA_VERSION = 1

BOARDS = ("unix", "esp32", "pico_w")
POLICIES = ("drop_oldest", "drop_newest")
ACK_MODES = ("broker", "consumer")
SENSOR_DRIVERS = {
    # driver: (channels it measures, unit of each, default I2C address)
    "sht3x": ({"temperature": "degC", "humidity": "%RH"}, 0x44),
}

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."


def _keys(d, path, allowed, required=()):
    if not isinstance(d, dict):
        raise ConfigError(path or "(top level)", "must be an object")
    for k in d:
        if k not in allowed:
            raise ConfigError(_join(path, k),
                              "unknown field (allowed: %s)" % ", ".join(sorted(allowed)))
    for k in required:
        if k not in d:
            raise ConfigError(_join(path, k), "is required")


def _join(path, k):
    return "%s.%s" % (path, k) if path else k


def _int(d, key, path, default=None, lo=None, hi=None):
    v = d.get(key, default)
    p = _join(path, key)
    if v is None:
        if key in d:  # an explicit null is a mistake, not "use the default"
            raise ConfigError(p, "must be an integer, got null")
        return v
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(p, "must be an integer, got %r" % (v,))
    if lo is not None and v < lo:
        raise ConfigError(p, "must be >= %d, got %d" % (lo, v))
    if hi is not None and v > hi:
        raise ConfigError(p, "must be <= %d, got %d" % (hi, v))
    return v


def _str(d, key, path, default=None, required=False, choices=None, ident=False):
    v = d.get(key, default)
    p = _join(path, key)
    if v is None:
        if required:
            raise ConfigError(p, "is required")
        return None
    if not isinstance(v, str) or not v:
        raise ConfigError(p, "must be a non-empty string")
    if choices and v not in choices:
        raise ConfigError(p, "must be one of %s, got %r" % (", ".join(choices), v))
    if ident:
        if len(v) > 32:
            raise ConfigError(p, "at most 32 characters")
        for c in v:
            if c not in _ID_CHARS:
                raise ConfigError(p, "may only hold letters, digits, '_', '-', '.' (got %r)" % c)
    return v


def _bool(d, key, path, default):
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(_join(path, key), "must be true or false")
    return v


def _node(d):
    _keys(d, "node", ("id", "site", "description"), ("id", "site"))
    return {
        "id": _str(d, "id", "node", required=True, ident=True),
        "site": _str(d, "site", "node", required=True, ident=True),
        "description": _str(d, "description", "node") or "",
    }


def _tls(d, path):
    if d is None:
        return None
    _keys(d, path, ("ca_file", "cert_file", "key_file", "server_hostname"), ("ca_file",))
    t = {k: _str(d, k, path) for k in ("ca_file", "cert_file", "key_file", "server_hostname")}
    if (t["cert_file"] is None) != (t["key_file"] is None):
        raise ConfigError(path + ".key_file", "cert_file and key_file go together")
    return t


def _mqtt(d, node_id):
    p = "mqtt"
    _keys(d, p, ("host", "port", "client_id", "user", "password", "keepalive_s", "qos",
                 "prefix", "ack", "batch_max", "batch_bytes", "linger_ms", "replay_rate",
                 "state_interval_s", "tls", "backoff_ms"), ("host",))
    tls = _tls(d.get("tls"), "mqtt.tls")
    m = {
        "host": _str(d, "host", p, required=True),
        "port": _int(d, "port", p, 8883 if tls else 1883, 1, 65535),
        "client_id": _str(d, "client_id", p) or node_id,
        "user": _str(d, "user", p),
        "password": d.get("password"),
        "keepalive_s": _int(d, "keepalive_s", p, 30, 0, 65535),
        "qos": _int(d, "qos", p, 1, 0, 1),
        "prefix": _str(d, "prefix", p, "otlink"),
        "ack": _str(d, "ack", p, "broker", choices=ACK_MODES),
        "batch_max": _int(d, "batch_max", p, 50, 1, 500),
        "batch_bytes": _int(d, "batch_bytes", p, 1024, 64, 16384),
        "linger_ms": _int(d, "linger_ms", p, 200, 0, 60000),
        "replay_rate": _int(d, "replay_rate", p, 20, 1, 10000),
        "state_interval_s": _int(d, "state_interval_s", p, 60, 1, 86400),
        "tls": tls,
        "backoff_ms": _backoff(d.get("backoff_ms", [500, 60000]), "mqtt.backoff_ms"),
    }
    if m["password"] is not None and not isinstance(m["password"], str):
        raise ConfigError("mqtt.password", "must be a string")
    if (m["user"] is None) != (m["password"] is None):
        raise ConfigError("mqtt.password", "user and password go together")
    if m["qos"] == 0 and m["ack"] == "broker":
        # QoS0 has no PUBACK: nothing would ever confirm delivery to the queue.
        raise ConfigError("mqtt.qos", "qos 0 cannot confirm delivery; use qos 1 or ack 'consumer'")
    return m


def _backoff(v, path):
    if (not isinstance(v, list) or len(v) != 2 or isinstance(v[0], bool)
            or not isinstance(v[0], int) or not isinstance(v[1], int)):
        raise ConfigError(path, "must be [first_ms, max_ms]")
    if v[0] < 1 or v[1] < v[0]:
        raise ConfigError(path, "needs 1 <= first_ms <= max_ms")
    return v


def _groups(d):
    if d is None:  # absent: one group, "default", polled every second
        return {"default": {"interval_ms": 1000}}
    if not isinstance(d, dict):
        raise ConfigError("groups", "must be an object of name -> {interval_ms}")
    out = {}
    for name in d:
        p = "groups." + name
        g = d[name]
        _keys(g, p, ("interval_ms",), ("interval_ms",))
        out[name] = {"interval_ms": _int(g, "interval_ms", p, None, 10, 86400000)}
    return out


def _obj(d, path):
    """An optional object: absent or null is {}; anything else but an object is an error."""
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(path, "must be an object")
    return d


def _queue(d):
    p = "queue"
    d = _obj(d, p)
    _keys(d, p, ("commit_ms", "commit_count", "policy", "capacity"))
    return {
        "commit_ms": _int(d, "commit_ms", p, 1000, 0, 60000),
        "commit_count": _int(d, "commit_count", p, 64, 1, 255),
        "policy": _str(d, "policy", p, "drop_oldest", choices=POLICIES),
        "capacity": _int(d, "capacity", p, 0, 0),  # 0: the whole flash region
    }


def _sensors(lst, groups, ids):
    if lst is None:
        return []
    if not isinstance(lst, list):
        raise ConfigError("sensors", "must be a list")
    out = []
    for i, s in enumerate(lst):
        p = "sensors[%d]" % i
        _keys(s, p, ("name", "driver", "bus", "address", "group", "points"),
              ("driver", "bus", "points"))
        drv = _str(s, "driver", p, required=True, choices=tuple(SENSOR_DRIVERS))
        channels, addr = SENSOR_DRIVERS[drv]
        group = _str(s, "group", p, required=True)
        if group not in groups:
            raise ConfigError(p + ".group", "unknown poll group %r (defined: %s)"
                              % (group, ", ".join(sorted(groups)) or "none"))
        pts = s["points"]
        if not isinstance(pts, list) or not pts:
            raise ConfigError(p + ".points", "must be a non-empty list")
        plist = []
        for j, pt in enumerate(pts):
            pp = "%s.points[%d]" % (p, j)
            _keys(pt, pp, ("id", "name", "channel", "scale", "offset"), ("id", "name", "channel"))
            pid = _int(pt, "id", pp, None, 0, 65535)
            if pid in ids:
                raise ConfigError(pp + ".id", "point id %d is used twice" % pid)
            ids[pid] = pp
            ch = _str(pt, "channel", pp, required=True, choices=tuple(channels))
            plist.append({"id": pid, "name": _str(pt, "name", pp, required=True),
                          "channel": ch, "unit": channels[ch],
                          "scale": _num(pt, "scale", pp, 1.0),
                          "offset": _num(pt, "offset", pp, 0.0)})
        out.append({"name": _str(s, "name", p) or drv, "driver": drv,
                    "bus": _str(s, "bus", p, required=True),
                    "address": _int(s, "address", p, addr, 0x08, 0x77),
                    "group": group, "points": plist})
    return out


def _num(d, key, path, default):
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(_join(path, key), "must be a number")
    return float(v)


def _commands(d, points):
    # Writes from the cmd topic are off unless points are listed here (docs/config.md).
    d = _obj(d, "commands")
    _keys(d, "commands", ("writable",))
    w = d.get("writable", [])
    if not isinstance(w, list):
        raise ConfigError("commands.writable", "must be a list of point ids")
    tables = {}
    for p in points:
        tables[p.id] = p.table
    for i, pid in enumerate(w):
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ConfigError("commands.writable[%d]" % i, "must be a point id, got %r" % (pid,))
        t = tables.get(pid)
        if t is None:
            raise ConfigError("commands.writable[%d]" % i, "%r is not a Modbus point id" % (pid,))
        if t != "holding" and t != "coil":
            raise ConfigError("commands.writable[%d]" % i,
                              "point %d is a read-only %s point" % (pid, t))
    return {"writable": w}


def validate(cfg):
    """Check a decoded config dict; return it normalised with every default filled in.

    Raises ConfigError naming the first wrong field."""
    _keys(cfg, "", ("version", "node", "board", "wifi", "mqtt", "serial", "groups", "points",
                    "sensors", "queue", "flash", "commands"), ("node", "mqtt"))
    ver = _int(cfg, "version", "", SCHEMA_VERSION, 1)
    if ver != SCHEMA_VERSION:
        raise ConfigError("version", "this firmware reads config version %d, got %d"
                          % (SCHEMA_VERSION, ver))
    node = _node(cfg["node"])
    out = {
        "version": ver,
        "node": node,
        "board": _str(cfg, "board", "", "unix", choices=BOARDS),
        "mqtt": _mqtt(cfg["mqtt"], node["id"]),
        "groups": _groups(cfg.get("groups")),
        "queue": _queue(cfg.get("queue")),
    }
    w = cfg.get("wifi")
    if w is not None:
        _keys(w, "wifi", ("ssid", "password", "country"), ("ssid",))
        pw = w.get("password")
        # WPA2-PSK: a passphrase of 8..63 characters; absent or "" for an open network
        if pw is not None and (not isinstance(pw, str) or 0 < len(pw) < 8 or len(pw) > 63):
            raise ConfigError("wifi.password", "must be a string of 8..63 characters (WPA2), "
                              "or absent for an open network")
        out["wifi"] = {"ssid": _str(w, "ssid", "wifi", required=True), "password": pw,
                       "country": _str(w, "country", "wifi")}
    elif out["board"] != "unix":
        raise ConfigError("wifi", "is required on board %r" % out["board"])
    f = _obj(cfg.get("flash"), "flash")
    _keys(f, "flash", ("image",))
    out["flash"] = {"image": _str(f, "image", "flash")}
    ids = {}
    points = cfg.get("points") or []
    if points:
        if "serial" not in cfg:
            raise ConfigError("serial", "is required when Modbus points are configured")
        from otlink.core.points import parse_points  # the Modbus point model validates its own

        if not isinstance(cfg["serial"], dict):
            raise ConfigError("serial", "must be an object")
        serial = dict(cfg["serial"])
        if "groups" in serial:
            raise ConfigError("serial.groups", "poll groups are the top-level \"groups\" "
                              "object, not part of serial")
        if not out["groups"]:
            raise ConfigError("groups", "is empty: Modbus points need at least one poll group")
        serial["groups"] = out["groups"]
        out["points"] = parse_points(points, serial)
        out["serial"] = serial
        for i, p in enumerate(out["points"]):
            pid = p.id
            if pid in ids:
                raise ConfigError("points[%d].id" % i, "point id %d is used twice" % pid)
            ids[pid] = "points[%d]" % i
    else:
        out["points"] = []
        out["serial"] = cfg.get("serial")
    out["sensors"] = _sensors(cfg.get("sensors"), out["groups"], ids)
    out["commands"] = _commands(cfg.get("commands"), out["points"])
    if not ids:
        raise ConfigError("points", "no points configured: add Modbus points or sensors")
    return out


def loads(text):
    """Parse and validate config text; JSON syntax errors become ConfigError too."""
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise ConfigError("(file)", "not valid JSON: %s" % (e,))
    return validate(cfg)


def load(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("(file)", "cannot read %s: %s" % (path, e))
    except ValueError:  # UnicodeDecodeError: not a text file
        raise ConfigError("(file)", "%s is not UTF-8 text (a JSON file is expected)" % path)
    return loads(text)


def config_hash(text):
    """Short hash of the config file bytes, reported in the birth message."""
    import hashlib
    import binascii

    if isinstance(text, str):
        text = text.encode()
    return binascii.hexlify(hashlib.sha256(text).digest()[:8]).decode()
