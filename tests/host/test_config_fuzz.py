"""Every wrong-typed or out-of-range field of a node config gets a ConfigError naming a field.

The validator (firmware/otlink/core/config.py, run here on CPython as `otlink node validate`
runs it) is fed a complete config (Modbus points, sensors, TLS, commands, wifi) with each
field in turn replaced by values of every JSON type. Whatever it says, it must say it as a
ConfigError whose field is the one replaced or one inside/above it: never a TypeError or
ValueError from deep inside, which the technician would see as a traceback.
"""

from __future__ import annotations

import copy
import json

import pytest

from otlink_tools import paths
from otlink_tools.demo import demo_config

paths.firmware_import_path()
from otlink.core import config  # noqa: E402
from otlink.core.errors import ConfigError  # noqa: E402

BAD_VALUES = [None, True, -1, 70000, 1.5, "", "x", [], [1], [[1]], {}, {"a": 1}, [{}]]


def full_config() -> dict:
    c = demo_config("/dev/ttyUSB0", 1883)
    c["board"] = "esp32"
    c["wifi"] = {"ssid": "plant", "password": "not-a-default-1"}
    c["mqtt"].update({"user": "node7", "password": "s3cret-pw", "keepalive_s": 30,
                      "tls": {"ca_file": "/certs/ca.pem", "cert_file": "/certs/n.pem",
                              "key_file": "/certs/n.key", "server_hostname": "broker.local"}})
    c["points"].append({"id": 7, "name": "setpoint", "slave": 2, "table": "holding",
                        "address": 10, "type": "uint16", "group": "slow"})
    c["commands"] = {"writable": [7]}
    return c


def leaves(d, path=()):
    """Every (path) to a value in the config, containers included."""
    yield path
    if isinstance(d, dict):
        for k, v in d.items():
            yield from leaves(v, path + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from leaves(v, path + (i,))


def dotted(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def test_full_config_is_valid():
    config.validate(full_config())


CASES = [(p, v) for p in list(leaves(full_config()))[1:] for v in BAD_VALUES]


@pytest.mark.parametrize("path, bad", CASES, ids=[f"{dotted(p)}={json.dumps(v)}" for p, v in CASES])
def test_bad_value_is_a_named_config_error(path, bad):
    c = copy.deepcopy(full_config())
    d = c
    for p in path[:-1]:
        d = d[p]
    d[path[-1]] = bad
    try:
        config.validate(c)
    except ConfigError as e:
        assert e.field and e.problem, e
        assert "s3cret-pw" not in str(e) and "not-a-default-1" not in str(e)
    # accepted is fine too (e.g. a unit or a name that may be any text)


# Wrong values that once passed validation silently (a typed field accepting anything).
MUST_REFUSE = [
    (("serial", "port"), 5, "serial.port"),
    (("serial", "port"), "", "serial.port"),
    (("wifi", "password"), 12345678, "wifi.password"),
    (("wifi", "password"), "short", "wifi.password"),
    (("wifi", "password"), "x" * 64, "wifi.password"),
    (("queue",), "", "queue"),
    (("queue",), [], "queue"),
    (("commands",), [], "commands"),
    (("flash",), "img", "flash"),
    (("points", 0, "name"), "", "points[0].name"),
    (("version",), None, "version"),
    (("mqtt", "port"), None, "mqtt.port"),
]


@pytest.mark.parametrize("path, bad, field", MUST_REFUSE,
                         ids=[f"{dotted(p)}={json.dumps(v)}" for p, v, _ in MUST_REFUSE])
def test_wrong_type_is_refused_by_name(path, bad, field):
    c = copy.deepcopy(full_config())
    d = c
    for p in path[:-1]:
        d = d[p]
    d[path[-1]] = bad
    with pytest.raises(ConfigError) as e:
        config.validate(c)
    assert e.value.field == field, e.value


def test_binary_file_is_named_not_a_traceback(tmp_path):
    f = tmp_path / "node.json"
    f.write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(ConfigError) as e:
        config.load(str(f))
    assert e.value.field == "(file)" and "UTF-8" in e.value.problem


def test_docs_config_example_validates():
    """The complete example in docs/config.md is a config the validator accepts."""
    import re

    text = (paths.ROOT / "docs" / "config.md").read_text()
    block = re.search(r"## Example\n.*?```json\n(.*?)```", text, re.S)
    assert block, "docs/config.md has no ## Example json block"
    cfg = config.validate(json.loads(block.group(1)))
    assert [p.id for p in cfg["points"]] == [1, 2, 5, 6] and cfg["serial"]["parity"] == "E"
