# Node config validation inside the Unix port: good configs normalise, bad ones name the field.
# heapsize: 96K 32:32K
import json
import mptest
from otlink.core import config
from otlink.core.errors import ConfigError


def base():
    return {
        "node": {"id": "press-01", "site": "plant1"},
        "mqtt": {"host": "127.0.0.1", "port": 1883},
        "groups": {"slow": {"interval_ms": 2000}},
        "sensors": [{"driver": "sht3x", "bus": "i2c0", "group": "slow",
                     "points": [{"id": 20, "name": "ambient_t", "channel": "temperature"},
                                {"id": 21, "name": "ambient_rh", "channel": "humidity"}]}],
    }


def err(cfg):
    e = mptest.raises(ConfigError, config.validate, cfg)
    return e.field, e.problem


def test_defaults_filled():
    c = config.validate(base())
    mptest.eq(c["mqtt"]["qos"], 1, "qos")
    mptest.eq(c["mqtt"]["client_id"], "press-01", "client id defaults to node id")
    mptest.eq(c["queue"]["commit_ms"], 1000, "commit window")
    mptest.eq(c["queue"]["policy"], "drop_oldest", "policy")
    mptest.eq(c["sensors"][0]["address"], 0x44, "sht3x default address")
    mptest.eq(c["sensors"][0]["points"][1]["unit"], "%RH", "unit from driver")
    mptest.eq(c["mqtt"]["tls"], None, "tls off unless configured")


def test_missing_and_unknown_fields_are_named():
    c = base()
    del c["mqtt"]["host"]
    mptest.eq(err(c)[0], "mqtt.host", "missing host")
    c = base()
    c["mqtt"]["hots"] = "x"
    f, p = err(c)
    mptest.eq(f, "mqtt.hots", "typo field")
    mptest.true("unknown field" in p, p)


def test_bad_values_are_named():
    c = base()
    c["mqtt"]["port"] = 70000
    mptest.eq(err(c)[0], "mqtt.port", "port range")
    c = base()
    c["mqtt"]["port"] = "1883"
    mptest.eq(err(c)[0], "mqtt.port", "port type")
    c = base()
    c["node"]["id"] = "press 01"
    mptest.eq(err(c)[0], "node.id", "id charset")
    c = base()
    c["sensors"][0]["points"][1]["id"] = 20
    mptest.eq(err(c)[0], "sensors[0].points[1].id", "duplicate id")
    c = base()
    c["sensors"][0]["group"] = "fast"
    f, p = err(c)
    mptest.eq(f, "sensors[0].group", "unknown group")
    mptest.true("slow" in p, "lists defined groups: " + p)
    c = base()
    c["sensors"][0]["points"][0]["channel"] = "pressure"
    mptest.eq(err(c)[0], "sensors[0].points[0].channel", "channel")


def test_security_rules():
    c = base()
    c["mqtt"]["user"] = "node"
    mptest.eq(err(c)[0], "mqtt.password", "user without password")
    c = base()
    c["mqtt"]["tls"] = {"cert_file": "c.pem"}
    mptest.eq(err(c)[0], "mqtt.tls.ca_file", "TLS needs a CA")
    c = base()
    c["mqtt"]["tls"] = {"ca_file": "ca.pem"}
    del c["mqtt"]["port"]
    mptest.eq(config.validate(c)["mqtt"]["port"], 8883, "TLS default port")
    c = base()
    c["mqtt"]["qos"] = 0
    mptest.eq(err(c)[0], "mqtt.qos", "qos0 with broker ack")
    c = base()
    c["board"] = "esp32"
    mptest.eq(err(c)[0], "wifi", "wifi needed on a board")


def test_commands_are_off_by_default_and_checked():
    mptest.eq(config.validate(base())["commands"], {"writable": []}, "off by default")
    c = base()
    c["commands"] = {"writable": [20]}
    f, p = err(c)
    mptest.eq(f, "commands.writable[0]", "sensor point is not writable")
    c["commands"] = {"writable": 20}
    mptest.eq(err(c)[0], "commands.writable", "must be a list")


def test_nothing_to_do_and_bad_json():
    c = base()
    del c["sensors"]
    mptest.eq(err(c)[0], "points", "no points")
    e = mptest.raises(ConfigError, config.loads, '{"node": ')
    mptest.eq(e.field, "(file)", "json syntax")
    e = mptest.raises(ConfigError, config.loads, json.dumps(dict(base(), version=2)))
    mptest.eq(e.field, "version", "future version")


def test_serial_section_and_poll_groups():
    pt = {"id": 1, "name": "v", "slave": 1, "table": "holding", "address": 0, "type": "uint16"}
    c = base()
    del c["sensors"], c["groups"]
    c["serial"] = {"port": "/dev/ttyUSB0", "baud": 9600}
    c["points"] = [pt]
    v = config.validate(c)  # no groups: one "default" group, every second
    mptest.eq(v["groups"], {"default": {"interval_ms": 1000}}, "default group")
    mptest.eq(v["points"][0].group, "default", "point joins it")
    c["serial"]["buad"] = 19200  # a typo must not silently keep 9600
    f, p = err(c)
    mptest.eq(f, "serial.buad", "unknown serial field named")
    mptest.true("baud" in p, "allowed fields listed: " + p)
    del c["serial"]["buad"]
    c["serial"]["groups"] = {"fast": {"interval_ms": 100}}  # groups belong at the top level
    mptest.eq(err(c)[0], "serial.groups", "groups inside serial")
    del c["serial"]["groups"]
    c["groups"] = {}
    mptest.eq(err(c)[0], "groups", "empty groups with Modbus points")
    c["groups"] = {"fast": {"interval_ms": 100}}
    c["serial"] = "ttyUSB0"
    f, p = err(c)
    mptest.eq(f, "serial", "serial not an object")
    mptest.true(p.startswith("must be an object"), p)


def test_hash_is_stable_and_short():
    h = config.config_hash('{"a": 1}')
    mptest.eq(len(h), 16, "hash length")
    mptest.eq(h, config.config_hash(b'{"a": 1}'), "str and bytes")
    mptest.true(h != config.config_hash('{"a": 2}'), "changes with content")


mptest.main(globals())
