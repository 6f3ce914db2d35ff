# Node config validation inside the Unix port: good configs normalise, bad ones name the field.
# heapsize: 140K 32:44K
import json
import mptest
from otlink.core import config
from otlink.core.errors import ConfigError


def base():
    return {
        "node": {"id": "press-01", "site": "plant1"},
        "mqtt": {"host": "127.0.0.1", "port": 1883, "ack_key": mptest.ACK_KEY},
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
    c["mqtt"]["ack"] = "broker"  # the default is "consumer"
    del c["mqtt"]["ack_key"]  # consumer acks only
    mptest.eq(err(c)[0], "mqtt.qos", "qos0 with broker ack")
    c = base()
    c["board"] = "esp32"
    mptest.eq(err(c)[0], "wifi", "wifi needed on a board")


def test_commands_are_off_by_default_and_checked():
    mptest.eq(config.validate(base())["commands"], {"writable": [], "limits": {}, "key": None},
              "off by default")
    c = base()
    c["commands"] = {"writable": [20]}
    f, p = err(c)
    mptest.eq(f, "commands.writable[0]", "sensor point is not writable")
    c["commands"] = {"writable": 20}
    mptest.eq(err(c)[0], "commands.writable", "must be a list")
    # signed commands (docs/security.md): a key is required, each number point needs a range
    key = "3f" * 8 + "a1" * 8
    pid = 1
    c = modbus()
    c["commands"] = {"writable": [{"point": pid, "min": 0, "max": 10}]}
    mptest.eq(err(c), ("commands.key", err(c)[1]), "key required")
    c["commands"]["key"] = key
    got = config.validate(c)["commands"]
    mptest.eq((got["writable"], got["limits"], got["key"]), ([pid], {pid: (0, 10)}, key),
              "normalized")
    c = modbus()
    c["commands"] = {"writable": [pid], "key": key}
    mptest.eq(err(c)[0], "commands.writable[0]", "a number point needs a range")
    c["commands"] = {"writable": [{"point": pid, "min": 5, "max": 1}], "key": key}
    mptest.eq(err(c)[0], "commands.writable[0].max", "max below min")
    c["commands"] = {"writable": [{"point": pid, "min": 0, "max": 1}], "key": "ab" * 4}
    f, why = err(c)
    mptest.true(f == "commands.key" and "abab" not in why, why)


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


def modbus():
    c = base()
    c["serial"] = {"port": "/dev/ttyUSB0"}
    c["points"] = [{"id": 1, "name": "v", "slave": 1, "table": "holding", "address": 0,
                    "type": "uint32", "group": "slow"}]
    return c


def with_points(*pts):
    c = modbus()
    c["points"] = []
    for i, p in enumerate(pts):
        d = {"id": i + 1, "name": "p%d" % i, "slave": 1, "table": "holding", "address": 0,
             "type": "uint16", "group": "slow"}
        d.update(p)
        c["points"].append(d)
    return c


def test_prefix_is_topic_levels_without_wildcards():
    for bad in ("plant/#", "plant/+/x", "#", "a//b", "/a", "a/", "$SYS/x", "a\0b", "", 5):
        c = base()
        c["mqtt"]["prefix"] = bad
        mptest.eq(err(c)[0], "mqtt.prefix", repr(bad))
    for good in ("plant", "plant/line-1", "a b/\u00e9"):
        c = base()
        c["mqtt"]["prefix"] = good
        mptest.eq(config.validate(c)["mqtt"]["prefix"], good, good)
    # the node subscribes to <prefix>/<site>/<node>/ack: at most config.TOPIC_MAX (256) bytes
    c = base()
    c["mqtt"]["prefix"] = "p" * (256 - len("/plant1/press-01/ack"))
    config.validate(c)
    c["mqtt"]["prefix"] += "p"
    f, p = err(c)
    mptest.eq(f, "mqtt.prefix", "too long")
    mptest.true("257 bytes" in p, p)


def test_host_is_a_name_not_a_url():
    for bad, word in (("mqtt://broker:1883", "URL"), ("broker:1883", "port"),
                      ("broker plant", "not allowed"), ("broker/x", "not allowed")):
        c = base()
        c["mqtt"]["host"] = bad
        f, p = err(c)
        mptest.eq(f, "mqtt.host", bad)
        mptest.true(word in p, p)
    for good in ("broker.plant", "10.0.0.5", "::1", "fe80::1", "my_broker-2"):
        c = base()
        c["mqtt"]["host"] = good
        config.validate(c)


def test_serial_port_is_required_on_the_unix_port():
    c = modbus()
    del c["serial"]["port"]
    f, p = err(c)
    mptest.eq(f, "serial.port", "missing port")
    mptest.true("unix" in p, p)
    c["board"] = "esp32"  # a board's UART comes from its board file
    c["wifi"] = {"ssid": "plant", "password": "long-enough"}
    mptest.eq(config.validate(c)["serial"]["port"], None, "no port on a board")


def test_register_numbers_are_not_addresses():
    for table, typ, number, address in (("holding", "uint16", 40001, 0),
                                        ("input", "float32", 30010, 9),
                                        ("discrete", "bool", 10001, 0),
                                        ("holding", "uint16", 400101, 100)):
        c = with_points({"table": table, "type": typ, "address": number})
        f, p = err(c)
        mptest.eq(f, "points[0].address", "%s %d" % (table, number))
        mptest.true("0-based" in p and ("is address %d" % address) in p, p)
    c = with_points({"address": 40002}, {"address": 40003})  # SunSpec: base 40000
    c["serial"]["high_addresses"] = True
    mptest.eq(config.validate(c)["points"][1].address, 40003, "opt-in")
    c = with_points({"table": "input", "address": 40001})  # not the input prefix: accepted
    config.validate(c)


def test_point_names_are_unique():
    c = with_points({"name": "v"}, {"name": "v", "address": 5})
    mptest.eq(err(c)[0], "points[1].name", "modbus twice")
    c = with_points({"name": "ambient_t"})
    mptest.eq(err(c)[0], "sensors[0].points[0].name", "modbus and sensor")


def test_overlapping_registers_are_refused():
    c = with_points({"type": "uint32", "address": 0}, {"address": 1})
    f, p = err(c)
    mptest.eq(f, "points[1].address", "uint16 inside a uint32")
    mptest.true("points[0]" in p, p)
    c = with_points({"type": "float64", "address": 10}, {"type": "int32", "address": 9})
    mptest.eq(err(c)[0], "points[0].address", "reported on the later address")
    c = with_points({"type": "bit", "bit": 3}, {"type": "bit", "bit": 3, "address": 0})
    mptest.eq(err(c)[0], "points[1].bit", "the same bit twice")
    config.validate(with_points(
        {"type": "uint32"}, {"address": 0, "slave": 2}, {"address": 0, "table": "input"},
        {"address": 2, "type": "bit", "bit": 0}, {"address": 0, "type": "bit", "bit": 1},
        {"address": 2}, {"table": "coil", "type": "bool", "address": 0}))


def test_batch_bytes_range_is_what_the_agent_can_hold():
    for v, ok in ((64, False), (config.BATCH_BYTES_MIN, True), (config.BATCH_BYTES_MAX, True),
                  (16384, False)):
        c = base()
        c["mqtt"]["batch_bytes"] = v
        if ok:
            config.validate(c)
        else:
            mptest.eq(err(c)[0], "mqtt.batch_bytes", str(v))


def test_numbers_beyond_range_are_config_errors():
    text = json.dumps(with_points({"scale": 2.0}))
    for bad, field in (('"scale": 1e999', "scale"), ('"scale": -1e999', "scale"),
                       ('"scale": 1%s' % ("0" * 400), "scale"), ('"scale": -0.0', "scale"),
                       ('"scale": 1e-300', "scale"), ('"scale": "NaN"', "scale")):
        e = mptest.raises(ConfigError, config.loads, text.replace('"scale": 2.0', bad))
        mptest.eq(e.field, "points[0]." + field, bad)
    c = with_points({"scale": 1e-9, "deadband": 1e300})
    mptest.eq(err(c)[0], "points[0].deadband", "huge deadband")
    c = base()
    c["mqtt"]["port"] = 10 ** 30
    mptest.eq(err(c)[0], "mqtt.port", "huge int")
    c = base()
    c["queue"] = {"capacity": 100}  # the queue needs two sectors
    mptest.eq(err(c)[0], "queue.capacity", "tiny queue")


def test_every_error_is_reported_with_its_path():
    c = with_points({"address": 40001}, {"type": "flaot32", "address": 3})
    c["mqtt"]["prefix"] = "plant/#"
    c["mqtt"]["port"] = 0
    e = mptest.raises(ConfigError, config.validate, c)
    fields = [x.field for x in getattr(e, "errors", [e])]
    mptest.eq(fields, ["mqtt.port", "mqtt.prefix", "points[0].address", "points[1].type"],
              "all four, in file order")
    mptest.eq(str(e).count("\n"), 3, "one line each")


def test_sensor_bus_is_checked_against_the_board_when_known():
    c = base()
    c["sensors"][0]["bus"] = "i2c9"
    config.validate(c)  # the bus names are not known: accepted
    e = mptest.raises(ConfigError, config.validate, c, ("i2c0",))
    mptest.eq(e.field, "sensors[0].bus", "unknown bus on this board")
    c["sensors"][0]["bus"] = "i2c0"
    config.validate(c, ("i2c0",))


def test_range_is_checked_and_kept_as_raw_bounds():
    pts = config.validate(with_points({"type": "float32", "range": [0, 500]},
                                      {"address": 2, "scale": 0.1, "range": [0, 50]},
                                      {"address": 3}))["points"]
    mptest.true(pts.bounds(0) is not None, "a float32 range")
    mptest.eq(pts.bounds(1), (0, 500), "engineering 0..50 at scale 0.1: raw 0..500")
    mptest.eq(pts.bounds(2), None, "no range: every value is plausible")
    text = json.dumps(with_points({"type": "float32", "range": [0, 500]}))
    for bad, field, why in (('[500, 0]', "range", "below max"),
                            ('[0, 1e999]', "range.max", "finite"),
                            ('[0]', "range", "[min, max]"),
                            ('null', "range", "must not be null")):
        e = mptest.raises(ConfigError, config.loads, text.replace("[0, 500]", bad))
        mptest.eq(e.field, "points[0]." + field, bad)
        mptest.true(why in e.problem, e.problem)
    f, p = err(with_points({"type": "string", "length": 8, "range": [0, 1]}))
    mptest.eq(f, "points[0].range", "not for strings")
    mptest.true("number types" in p, p)
    f, p = err(with_points({"range": [70000, 80000]}))
    mptest.eq(f, "points[0].range", "no uint16 inside")
    mptest.true("holds no uint16 value" in p, p)


def test_string_length_is_characters():
    # 11 characters: 6 registers, 10..15; a point at 16 is next to it, one at 15 overlaps
    c = with_points({"type": "string", "length": 11, "address": 10}, {"address": 16})
    mptest.eq(config.validate(c)["points"].words(0), 6, "registers of 11 characters")
    f, p = err(with_points({"type": "string", "length": 11, "address": 10}, {"address": 15}))
    mptest.eq(f, "points[1].address", "the 6th register is the string's")
    f, p = err(with_points({"type": "string", "length": 65}))
    mptest.eq(f, "points[0].length", "at most 64 characters")


def test_hash_is_stable_and_short():
    h = config.config_hash('{"a": 1}')
    mptest.eq(len(h), 16, "hash length")
    mptest.eq(h, config.config_hash(b'{"a": 1}'), "str and bytes")
    mptest.true(h != config.config_hash('{"a": 2}'), "changes with content")


mptest.main(globals())
