"""The analytics section of a node config (core/config_analytics.py, through config.validate
on CPython as `otlink node validate` runs it): defaults filled in, every wrong field named by
its path, and each wrong-typed field of a full section a ConfigError, never a traceback."""

from __future__ import annotations

import copy
import json

import pytest

from otlink_tools import paths

paths.firmware_import_path()
from otlink.core import config  # noqa: E402
from otlink.core.errors import ConfigError  # noqa: E402
from ackkey import ACK_KEY_HEX  # noqa: E402

BASE = {
    "node": {"id": "press-01", "site": "plant1"},
    "mqtt": {"host": "127.0.0.1", "ack_key": ACK_KEY_HEX},
    "serial": {"port": "/dev/null"},
    "points": [
        {"id": 1, "name": "current", "slave": 1, "table": "input", "address": 0,
         "type": "float32", "unit": "A"},
        {"id": 2, "name": "label", "slave": 1, "table": "input", "address": 4,
         "type": "string", "length": 8},
        {"id": 3, "name": "cycle_in", "slave": 1, "table": "discrete", "address": 0},
        {"id": 4, "name": "parts", "slave": 1, "table": "input", "address": 10,
         "type": "uint32"},
        {"id": 5, "name": "neg", "slave": 1, "table": "input", "address": 12,
         "type": "int16", "scale": -1},
    ],
    "analytics": {
        "windows": [{"point": 1, "every_ms": 60000, "stats": {"mean": 100, "max": 101}}],
        "raw": {"1": 10},
        "alarms": [{"id": 200, "name": "i_high", "point": 100, "high": 9.5,
                    "hysteresis": 0.5}],
        "machines": [{"id": 300, "name": "press.state", "point": 1, "running": 5.0,
                      "idle": 1.0}],
        "counters": [{"id": 400, "name": "press.cycles", "point": 3, "mode": "rising",
                      "machine": 300},
                     {"id": 401, "name": "press.parts", "point": 4, "mode": "delta",
                      "role": "rejects"}],
        "vibration": [{"name": "pump", "bus": "i2c0", "bands": [[10, 500]],
                       "points": {"velocity": 500, "zone": 501, "band0": 502}}],
    },
}


def errors(cfg) -> dict:
    with pytest.raises(ConfigError) as e:
        config.validate(cfg)
    return {x.field: x.problem for x in config.errors_of(e.value)}


def test_defaults_filled():
    a = config.validate(copy.deepcopy(BASE))["analytics"]
    assert a["persist_s"] == 60
    assert a["windows"][0] == {"point": 1, "every_ms": 60000, "count": 0,
                               "ids": {"mean": 100, "max": 101}}
    assert a["raw"] == {1: 10}
    assert a["alarms"][0]["on_delay_ms"] == 0 and a["alarms"][0]["low"] is None
    assert a["machines"][0]["micro_stop_ms"] == 120000
    assert a["counters"][0]["debounce_ms"] == 20 and a["counters"][0]["role"] == "cycles"
    assert a["counters"][1]["bits"] == 32
    v = a["vibration"][0]
    assert (v["rate_hz"], v["samples"], v["axis"], v["group"], v["address"]) == \
        (3200, 1024, 2, "group2_rigid", 0x53)
    assert config.validate(copy.deepcopy({k: v for k, v in BASE.items()
                                          if k != "analytics"}))["analytics"] is None


@pytest.mark.parametrize("path,value,field", [
    (("windows", 0, "point"), 99, "analytics.windows[0].point"),
    (("windows", 0, "point"), 2, "analytics.windows[0].point"),  # a string point
    (("windows", 0, "stats"), {"median": 102}, "analytics.windows[0].stats.median"),
    (("windows", 0, "stats"), {"mean": 1}, "analytics.windows[0].stats.mean"),  # id taken
    (("windows", 0, "every_ms"), 5, "analytics.windows[0].every_ms"),
    (("raw",), {"1": "sometimes"}, "analytics.raw.1"),
    (("raw",), {"77": "drop"}, "analytics.raw.77"),
    (("alarms", 0, "hysteresis"), -1, "analytics.alarms[0].hysteresis"),
    (("alarms", 0, "point"), 5, "analytics.alarms[0].point"),  # negative scale
    (("alarms", 0, "id"), 1, "analytics.alarms[0].id"),
    (("machines", 0, "idle"), 6.0, "analytics.machines[0].idle"),
    (("counters", 0, "mode"), "falling", "analytics.counters[0].mode"),
    (("counters", 0, "machine"), 999, "analytics.counters[0].machine"),
    (("counters", 1, "point"), 1, "analytics.counters[1].mode"),  # delta on a float point
    (("vibration", 0, "samples"), 1000, "analytics.vibration[0].samples"),
    (("vibration", 0, "rate_hz"), 3000, "analytics.vibration[0].rate_hz"),
    (("vibration", 0, "bands"), [[500, 100]], "analytics.vibration[0].bands[0]"),
    (("vibration", 0, "bands"), [[10, 2000]], "analytics.vibration[0].bands[0]"),
    (("vibration", 0, "points"), {"band3": 510}, "analytics.vibration[0].points.band3"),
    (("vibration", 0, "group"), "class9", "analytics.vibration[0].group"),
])
def test_each_error_names_its_path(path, value, field):
    cfg = copy.deepcopy(BASE)
    d = cfg["analytics"]
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    errs = errors(cfg)
    assert field in errs, errs


def test_every_field_of_the_section_survives_any_json_value():
    bad = [None, True, -1, 70000, 1.5, "", "x", [], [1], {}, {"a": 1}, [{}]]
    leaves = []

    def walk(d, path):
        items = d.items() if isinstance(d, dict) else enumerate(d)
        for k, v in items:
            leaves.append(path + (k,))
            if isinstance(v, (dict, list)):
                walk(v, path + (k,))
    walk(BASE["analytics"], ())
    for path in leaves:
        for v in bad:
            cfg = copy.deepcopy(BASE)
            d = cfg["analytics"]
            for k in path[:-1]:
                d = d[k]
            d[path[-1]] = copy.deepcopy(v)
            try:
                config.validate(json.loads(json.dumps(cfg)))
            except ConfigError as e:
                for x in config.errors_of(e):
                    assert x.field.startswith("analytics") or x.field == "points", \
                        (path, v, x.field)


def test_a_group_of_points_shares_one_window_entry():
    cfg = copy.deepcopy(BASE)
    cfg["analytics"]["windows"].append({"points": [3, 4], "count": 10,
                                        "stats": ["mean", "max"], "ids_from": 1000})
    w = config.validate(cfg)["analytics"]["windows"]
    assert w[1:] == [{"point": 3, "every_ms": 0, "count": 10,
                      "ids": {"mean": 1000, "max": 1001}},
                     {"point": 4, "every_ms": 0, "count": 10,
                      "ids": {"mean": 1002, "max": 1003}}]
    cfg["analytics"]["windows"][1]["ids_from"] = 99  # 99..102: 100 and 101 are taken
    errs = errors(cfg)
    assert "analytics.windows[1].points[0].stats.max" in errs, errs  # id 100
    cfg["analytics"]["windows"][1].update({"ids_from": 1000, "stats": ["median"]})
    assert "analytics.windows[1].stats" in errors(cfg)
    cfg["analytics"]["windows"][1].update({"stats": ["mean"], "points": [3, 77]})
    assert "analytics.windows[1].points[1].point" in errors(cfg)
