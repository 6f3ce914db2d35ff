"""`otlink bridge` against a real mosquitto, read by plain paho-mqtt subscribers as Node-RED,
Telegraf or Home Assistant would: JSON per reading on plain topics (strict JSON, exact
integers, NaN as null plus a flag), Home Assistant discovery configs built from the birth
table (retained, unit and device class, availability from the node's state), consumer acks
that never pass what the broker has taken, and bad input that is reported and skipped."""

from __future__ import annotations

import io
import json
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest

from otlink_tools import cli
from otlink_tools.bridge import Bridge
from otlink_tools.decode import decode_message

N = "otlink/plant/meter-1/"
BIG = (1 << 62) + 3


def birth(points=None) -> bytes:
    pts = points or [[1, "voltage", "V", "float32", 1.0, 0.0, "modbus:1:input:0"],
                     [2, "energy", "Wh", "uint32", 1.0, 0.0, "modbus:1:input:100"],
                     [3, "cabinet_temp", "degC", "uint16", 0.01, -45.0, "sht3x:i2c0:0x44:t"],
                     [4, "serial", "", "string", 1.0, 0.0, "modbus:1:holding:210"],
                     [5, "door/open", "", "bit", 1.0, 0.0, "modbus:1:holding:100.3"],
                     [6, "ticks", "", "int64", 1.0, 0.0, "modbus:1:input:108"]]
    return cbor2.dumps({"v": 1, "node": "meter-1", "fw": "0.3.0", "cfg": "c", "boot": 2,
                        "pts": pts})


def batch(seq: int, readings: list) -> bytes:
    r = []
    for i, (pid, v) in enumerate(readings):
        r += ([-100] if i else []) + [pid, v]
    return cbor2.dumps({"v": 1, "b": 2, "s": seq, "e": seq + len(readings) - 1, "f": 0,
                        "t": 1795000000000 + seq * 1000, "r": r})


class Listener:
    """A plain MQTT client that keeps every message (retained flag too) of its topics."""

    def __init__(self, port: int, *topics: str) -> None:
        self.msgs: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        for t in topics:
            self.c.subscribe(t, qos=1)[1]
        time.sleep(0.3)  # the SUBACKs (a plain client, like a consumer tool)

    def _on(self, c, u, m) -> None:
        with self.lock:
            self.msgs.append((m.topic, m.payload, bool(m.retain)))

    def where(self, prefix: str) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [x for x in self.msgs if x[0].startswith(prefix)]

    def wait(self, cond, seconds: float = 10) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return False

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _strict(b: bytes):
    def refuse(name):
        raise ValueError(name)
    return json.loads(b, parse_constant=refuse)


def test_json_and_home_assistant_with_acks(fresh_broker):
    port = fresh_broker.port
    node = Listener(port, "otlink/plant/meter-1/ack", "otlink/json/#", "otlink/status/#",
                    "homeassistant/#")
    # a node that is up already: its birth and state retained on the broker
    node.publish(N + "birth", birth(), retain=True)
    node.publish(N + "state", cbor2.dumps({"v": 1, "online": True, "boot": 2}), retain=True)
    err = io.StringIO()
    br = Bridge(port=port, homeassistant=True, ack_wait=0.5, err=err).start()
    try:
        assert node.wait(lambda: len(node.where("homeassistant/")) == 6)
        assert node.wait(lambda: node.where("otlink/status/"))
        cfgs = {t.split("/")[1] + "/" + json.loads(p)["name"]: json.loads(p)
                for t, p, r in node.where("homeassistant/")}
        late = Listener(port, "homeassistant/#")  # Home Assistant started after: retained
        assert late.wait(lambda: len(late.where("homeassistant/")) == 6)
        assert all(r for _, _, r in late.where("homeassistant/"))
        late.close()
        v = cfgs["sensor/voltage"]
        assert (v["device_class"], v["unit_of_measurement"], v["state_class"]) == \
            ("voltage", "V", "measurement")
        assert v["state_topic"] == "otlink/json/plant/meter-1/voltage"
        assert v["availability_topic"] == "otlink/status/plant/meter-1/availability"
        assert v["unique_id"] == "otlink_plant_meter-1_1"
        assert v["device"]["identifiers"] == ["otlink_plant_meter-1"]
        assert cfgs["sensor/energy"]["state_class"] == "total_increasing"
        t = cfgs["sensor/cabinet_temp"]
        assert (t["device_class"], t["unit_of_measurement"]) == ("temperature", "°C")
        assert "device_class" not in cfgs["sensor/serial"]
        door = cfgs["binary_sensor/door/open"]
        assert door["state_topic"] == "otlink/json/plant/meter-1/door_open"
        assert (door["payload_on"], door["payload_off"]) == ("1", "0")
        assert node.where("otlink/status/")[-1][1] == b"online"

        # readings, with malformed and oversized messages between them
        node.publish(N + "data", batch(1, [(1, 230.5), (2, 1234567), (3, 6745)]))
        node.publish(N + "data", b"\xff\x00 not cbor")
        node.publish(N + "data", b"\x40" + bytes(2 << 20))  # 2 MiB
        node.publish(N + "data", batch(4, [(1, float("nan")), (4, "SN-7"), (5, 1),
                                           (6, BIG), (2, cbor2.CBORSimpleValue(1))]))
        assert node.wait(lambda: len(node.where("otlink/json/")) == 8)
        got = [(t.split("/")[-1], _strict(p)) for t, p, r in node.where("otlink/json/")]
        assert not any(r for _, _, r in node.where("otlink/json/"))
        vals = [(name, d["value"], d["seq"]) for name, d in got]
        assert vals == [("voltage", 230.5, 1), ("energy", 1234567, 2),
                        ("cabinet_temp", 22.45, 3), ("voltage", None, 4),
                        ("serial", "SN-7", 5), ("door_open", 1, 6), ("ticks", BIG, 7),
                        ("energy", None, 8)]
        assert got[3][1]["flag"] == "nan" and got[7][1]["error"] == "timeout"
        assert got[5][1]["point"] == "door/open" and got[2][1]["unit"] == "degC"
        assert type(got[1][1]["value"]) is int and got[6][1]["value"] == BIG
        # the ack covers all 8, after the first-contact wait
        assert node.wait(lambda: any(decode_message(t, p)["seq"] == 8
                                     for t, p, r in node.where(N + "ack")))
        assert br.bad == 2 and br.written == 8
        notes = err.getvalue()
        assert "bad payload on otlink/plant/meter-1/data: payload is not valid CBOR" in notes
        assert "too large" in notes

        # the node goes: availability follows its last will
        node.publish(N + "state", cbor2.dumps({"v": 1, "online": False, "boot": 2}),
                     retain=True)
        assert node.wait(lambda: node.where("otlink/status/")[-1][1] == b"offline")
        # a new birth without the serial point: its config is removed (empty, retained)
        pts = [[1, "voltage", "V", "float32", 1.0, 0.0, "modbus:1:input:0"]]
        node.publish(N + "birth", birth(pts), retain=True)
        assert node.wait(lambda: any(t == "homeassistant/sensor/otlink_plant_meter-1_4/config"
                                     and p == b"" for t, p, r in node.where("homeassistant/")))
    finally:
        br.stop()
        node.close()


def test_no_ack_for_what_the_broker_did_not_take(fresh_broker):
    """The republishing connection swallows every PUBLISH (no PUBACK): nothing is acked,
    the error is reported, and the bridge keeps running."""
    from test_monitor_subscribe import SubscribeRelay

    relay = SubscribeRelay(fresh_broker.port, delay=None, hold=3)  # PUBLISH dropped
    node = Listener(fresh_broker.port, N + "ack")
    err = io.StringIO()
    br = Bridge(port=fresh_broker.port, out_port=relay.port, ack_wait=0, puback_timeout=0.5,
                err=err).start()
    try:
        node.publish(N + "birth", birth())
        node.publish(N + "data", batch(1, [(1, 230.5), (2, 7)]))
        assert node.wait(lambda: "no PUBACK in 0.5 s" in err.getvalue())
        time.sleep(0.5)
        assert node.where(N + "ack") == [] and br.written == 0 and br.bad == 1
        assert br.client.is_connected()  # still subscribed, carrying on
    finally:
        br.stop()
        node.close()
        relay.close()


def test_cli_refuses_nothing_to_do_and_bad_prefixes(capsys, broker):
    assert cli.main(["bridge", "--port", str(broker.port)]) == 1
    assert "nothing to republish: give --json and/or --homeassistant" in capsys.readouterr().err
    assert cli.main(["bridge", "--json", "--port", str(broker.port),
                     "--out-prefix", "a/+/b"]) == 1
    assert "--out-prefix 'a/+/b'" in capsys.readouterr().err


def test_cli_runs_for_seconds_and_reports(capsys, broker):
    assert cli.main(["bridge", "--json", "--no-ack", "--port", str(broker.port),
                     "--seconds", "0.2"]) == 0
    assert "otlink bridge: 0 readings republished" in capsys.readouterr().err


@pytest.mark.parametrize("unit,cls", [("kWh", "energy"), ("%RH", "humidity"), ("bar", "pressure"),
                                      ("rpm", None)])
def test_device_class_from_the_unit(unit, cls):
    from otlink_tools.bridge import discovery

    comp, cfg = discovery({"id": 9, "name": "x", "unit": unit, "type": "float32"}, "s", "n",
                          {"fw": "1"}, "otlink")
    assert comp == "sensor" and cfg.get("device_class") == cls
    assert cfg["unit_of_measurement"] == ("%" if unit == "%RH" else unit)
