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
from ackkey import ACK_KEY_HEX  # noqa: E402

BAD_VALUES = [None, True, -1, 70000, 1.5, "", "x", [], [1], [[1]], {}, {"a": 1}, [{}]]


def full_config() -> dict:
    c = demo_config("/dev/ttyUSB0", 1883, ack_key=ACK_KEY_HEX)
    c["board"] = "esp32"
    c["wifi"] = {"ssid": "plant", "password": "not-a-default-1"}
    c["mqtt"].update({"user": "node7", "password": "s3cret-pw", "keepalive_s": 30,
                      "tls": {"ca_file": "/certs/ca.pem", "cert_file": "/certs/n.pem",
                              "key_file": "/certs/n.key", "server_hostname": "broker.local"}})
    c["points"].append({"id": 7, "name": "setpoint", "slave": 2, "table": "holding",
                        "address": 10, "type": "uint16", "group": "slow"})
    c["commands"] = {"writable": [{"point": 7, "min": 0, "max": 100}],
                     "key": "9c41" * 8}
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
    example = json.loads(block.group(1))
    # the example names where the node's own key goes; no key is printed to be copied
    assert example["mqtt"]["ack_key"].startswith("<"), "a key in the docs would be a default"
    with pytest.raises(ConfigError, match="mqtt.ack_key"):
        config.validate(example)
    example["mqtt"]["ack_key"] = ACK_KEY_HEX
    cfg = config.validate(example)
    assert [p.id for p in cfg["points"]] == [1, 2, 5, 6] and cfg["serial"]["parity"] == "E"


# ---- one topic rule per side, and they agree ------------------------------------------------

TOPIC_CASES = ["otlink", "plant/line-1", "a b", "é/ü", "$SYS", "$share/g", "a$", "plant/#",
               "plant/+", "+", "#", "a//b", "/a", "a/", "/", "", "a\0b", "x" * 200, "ot.link",
               "a/b/c/d/e", " ", "a+b", "a#b"]


@pytest.mark.parametrize("case", TOPIC_CASES, ids=[repr(c) for c in TOPIC_CASES])
def test_firmware_and_host_topic_rules_agree(case):
    from otlink_tools import decode

    assert config.topic_prefix_ok(case) == decode.valid_prefix(case), case
    assert config.topic_level_ok(case) == decode.valid_level(case), case
    if not decode.valid_prefix(case):  # what the host decoder refuses, validate refuses
        c = full_config()
        c["mqtt"]["prefix"] = case
        with pytest.raises(ConfigError) as e:
            config.validate(c)
        assert "mqtt.prefix" in [x.field for x in config.errors_of(e.value)]


# ---- random mutations: every bad value is a ConfigError, never another exception ------------

HUGE = [10 ** 30, -(10 ** 30), 2 ** 31, 2 ** 63, -(2 ** 63) - 1, 2 ** 64, 10 ** 400,
        float("inf"), float("-inf"), float("nan"), -0.0, 1e-320, 1e308, 5e-324, 3.4e39,
        "NaN", "Infinity", "-Infinity", "1e999", "-0", "0x10", "", "x" * 300, None, True,
        False, [], {}, [None], {"": None}, 0, -1, 1, 65535, 65536, 40001, 0.5]


def mutate(c: dict, rnd) -> dict:
    """1-3 random edits: a value replaced (numbers often by huge or odd ones), a key
    removed, an unknown key added, a list element duplicated."""
    c = copy.deepcopy(c)
    for _ in range(rnd.randint(1, 3)):
        paths = list(leaves(c))[1:]
        path = rnd.choice(paths)
        d = c
        for p in path[:-1]:
            d = d[p]
        k = path[-1]
        op = rnd.random()
        if op < 0.6:
            v = d[k]
            if isinstance(v, (int, float)) and not isinstance(v, bool) and rnd.random() < 0.5:
                if isinstance(v, int):  # exact: huge ints stay ints, as JSON carries them
                    d[k] = rnd.choice([v * 10 ** rnd.randint(1, 40), -v, v + 1, rnd.choice(HUGE)])
                else:
                    d[k] = rnd.choice([v * 1e300, -v, v + 0.5, v * 1e30, rnd.choice(HUGE)])
            else:
                # a copy: the shared BAD_VALUES lists must never be edited by a later
                # mutation (one put inside itself made the config self-referential)
                d[k] = copy.deepcopy(rnd.choice(HUGE + BAD_VALUES))
        elif op < 0.75 and isinstance(d, dict):
            del d[k]
        elif op < 0.85 and isinstance(d, dict):
            d[rnd.choice(["extra", "Port", "groups", "id", ""])] = rnd.choice(HUGE)
        elif isinstance(d, list):
            d.append(copy.deepcopy(d[k]))
        else:
            d[k] = rnd.choice(HUGE)
    return c


def check_errors(e: ConfigError) -> None:
    errs = config.errors_of(e)
    assert errs and all(isinstance(x, ConfigError) and x.field and x.problem for x in errs), e
    assert "s3cret-pw" not in str(e) and "not-a-default-1" not in str(e)


def test_20000_mutated_configs_raise_only_config_errors():
    import random

    rnd = random.Random(20000)
    base = full_config()
    refused = 0
    for _ in range(20000):
        c = mutate(base, rnd)
        try:
            config.validate(c)
        except ConfigError as e:
            check_errors(e)
            refused += 1
    assert refused > 15000  # the mutations mostly break something; all of it was named


FUZZ_MP = """
import sys
from otlink.core import config
from otlink.core.errors import ConfigError
ok = bad = other = 0
with open(sys.argv[1]) as f:
    for line in f:
        try:
            config.loads(line)
            ok += 1
        except ConfigError as e:
            bad += 1
        except Exception as e:
            other += 1
            print("OTHER", repr(e), line[:300])
print("RESULT", ok, bad, other)
"""


def test_mutated_configs_on_the_32_bit_build(tmp_path):
    """A share of the fuzz where the boards' object model runs: 31-bit small ints, single
    floats (1e39 is inf there), a MicroPython json parser."""
    import random
    import sys

    sys.path.insert(0, str(paths.ROOT / "tests"))
    from mp import run

    rnd = random.Random(32)
    base = full_config()
    lines = [json.dumps(mutate(base, rnd)) for _ in range(1500)]
    (tmp_path / "cases.jsonl").write_text("\n".join(lines) + "\n")
    script = tmp_path / "fuzz_mp.py"
    script.write_text(FUZZ_MP)
    res = run(script, str(tmp_path / "cases.jsonl"), heap="256K", build="32", timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "RESULT" in out, out[-2000:]
    ok, bad, other = (int(x) for x in out.split("RESULT")[1].split()[:3])
    assert other == 0, out[-3000:]
    assert ok + bad == len(lines) and bad > 1000


# ---- docs/config.md is true to the schema: every documented default and range --------------

def doc_rows(section: str) -> list[tuple[str, str, str]]:
    """(field, default, meaning) of the table under "## `section`" in docs/config.md."""
    import re

    text = (paths.ROOT / "docs" / "config.md").read_text()
    part = text.split(f"## `{section}`\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in part.splitlines():
        m = re.match(r"\| `(\w+)` \| ([^|]*) \| (.*) \|$", line)
        if m:
            rows.append((m.group(1), m.group(2).strip(), m.group(3)))
    return rows


def doc_base() -> dict:
    c = full_config()
    c["mqtt"]["ack"] = "consumer"  # qos 0 is then allowed: the qos range is tested alone
    del c["mqtt"]["tls"]  # the documented port default is the plain one
    # and over plain TCP no password (docs/security.md: refused unless insecure_plaintext_auth)
    c["mqtt"].pop("user", None)
    c["mqtt"].pop("password", None)
    return c


SECTIONS = ["mqtt", "queue", "serial"]
DOC_CASES = [(s, f, d, m) for s in SECTIONS for f, d, m in doc_rows(s)]


@pytest.mark.parametrize("section, field, default, meaning", DOC_CASES,
                         ids=[f"{s}.{f}" for s, f, _, _ in DOC_CASES])
def test_docs_match_the_schema(section, field, default, meaning):
    import re

    # the default: what validate fills in when the field is left out
    c = doc_base()
    if default != "required":
        c[section].pop(field, None)
    got = config.validate(c)[section][field]
    d = default.split(",")[0].strip("` ") if not default.startswith("`[") else default
    if re.fullmatch(r"-?\d+", d):
        assert got == int(d), (field, got, default)
    elif d.startswith("`["):
        assert list(got) == json.loads(d.strip("`")), (field, got, default)
    elif d in ("false", "true"):
        assert got is (d == "true"), (field, got, default)
        return  # a flag: no range
    elif d == "none":
        assert got is None, (field, got, default)
    elif re.fullmatch(r"[A-Za-z_]+", d) and d not in ("required", "the"):
        assert got == d, (field, got, default)
    # the range: both ends accepted, one beyond each refused by name
    m = re.search(r"(-?\d+)\.\.(-?\d+)", meaning + " " + default)
    if not m:
        return
    lo, hi = int(m.group(1)), int(m.group(2))
    for v, ok in ((lo, True), (hi, True), (lo - 1, False), (hi + 1, False)):
        c = doc_base()
        c[section][field] = v
        if ok:
            assert config.validate(c)[section][field] == v, (field, v)
        else:
            with pytest.raises(ConfigError) as e:
                config.validate(c)
            assert f"{section}.{field}" in [x.field for x in config.errors_of(e.value)], v


def test_docs_error_example_is_what_validate_says(tmp_path):
    """The multi-error example at the top of docs/config.md is the validator's own output."""
    import re

    text = (paths.ROOT / "docs" / "config.md").read_text()
    shown = re.search(r"```\n(otlink: node.json: 3 config errors:.*?)```", text, re.S).group(1)
    c = json.loads(re.search(r"## Example\n.*?```json\n(.*?)```", text, re.S).group(1))
    c["mqtt"]["ack_key"] = ACK_KEY_HEX  # the example's placeholder, filled in
    c["mqtt"]["prefix"] = "plant/#"
    c["points"][3]["address"] = 40001
    c["points"][1]["type"] = "flaot32"
    with pytest.raises(ConfigError) as e:
        config.validate(c)
    lines = [f"  {x.field}: {x.problem}" for x in config.errors_of(e.value)]
    assert shown.strip().splitlines()[1:] == lines
