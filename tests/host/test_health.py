"""`otlink health` against a real mosquitto holding retained births and states: the health
view, --json, and the documented exit codes (0 healthy, 3 unhealthy, 4 offline or stopped,
5 no node, 1 broker unreachable), each within its bounded wait."""

from __future__ import annotations

import json
import re
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest

from otlink_tools import cli
from otlink_tools.broker import free_port


def birth(node: str) -> bytes:
    return cbor2.dumps({"v": 1, "node": node, "fw": "0.3.0", "cfg": "c0ffee", "boot": 7,
                        "pts": [[1, "voltage", "V", "float32", 1.0, 0.0, "modbus:1:input:0"],
                                [2, "energy", "Wh", "uint32", 1.0, 0.0, "modbus:2:input:100"]]})


def state(**kw) -> bytes:
    base = {"v": 1, "online": True, "boot": 7, "uptime_s": 3600, "queue_depth": 3,
            "oldest_unsent_s": 1, "free_heap": 50000, "reset_cause": "power-on",
            "t": int(time.time() * 1000), "clock_set": True, "drops": 0,
            "slave_errors": {1: 0}, "point_errors": {}}
    base.update(kw)
    return cbor2.dumps({k: v for k, v in base.items() if v is not None})


def nodes() -> dict:
    """The fleet's retained states, stamped now (when the fixture publishes them)."""
    return {
        ("a", "good"): state(),
        ("a", "sick"): state(point_errors={2: 1}, slave_errors={1: 0, 2: 120}),
        ("b", "gone"): cbor2.dumps({"v": 1, "online": False, "boot": 7}),  # the last will
        ("b", "halted"): state(online=False, stopped=True),
    }


NODES = set(nodes())


@pytest.fixture(scope="module")
def fleet(broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    for (site, node), st in nodes().items():
        c.publish(f"otlink/{site}/{node}/birth", birth(node), qos=1, retain=True
                  ).wait_for_publish(5)
        c.publish(f"otlink/{site}/{node}/state", st, qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    return broker


def health(capsys, port: int, *args: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    code = cli.main(["health", "--port", str(port), *args])
    took = time.monotonic() - t0
    out = capsys.readouterr()
    return code, out.out + out.err, took


def test_one_healthy_node(capsys, fleet):
    code, text, took = health(capsys, fleet.port, "--site", "a", "--node", "good")
    assert code == 0, text
    assert took < 1.5  # both retained messages in: no need to wait --wait out
    first = text.splitlines()[0]
    assert first.startswith("good (a)  online  queue 3  oldest unsent 1s  up 1h00m  boot 7  "
                            "reset power-on  heap free 50000 B  fw 0.3.0  healthy")
    assert any(ln.split()[:3] == ["2", "energy", "Wh"] and ln.endswith("ok")
               for ln in text.splitlines())


def test_unhealthy_node_names_its_point_and_slave(capsys, fleet):
    code, text, _ = health(capsys, fleet.port, "--site", "a", "--node", "sick")
    assert code == 3, text
    assert "problem: 1 point in error: energy (timeout)" in text
    assert "warning: slave 2: 120 failed transactions (120/h)" in text
    assert any(ln.split()[:2] == ["2", "energy"] and ln.endswith("error 1: timeout")
               for ln in text.splitlines())


def test_offline_and_stopped_are_told_apart(capsys, fleet):
    code, text, _ = health(capsys, fleet.port, "--site", "b", "--json")
    assert code == 4
    doc = json.loads(text)
    by = {n["node"]: n for n in doc["nodes"]}
    assert by["gone"]["condition"] == "offline" and "last will" in by["gone"]["problems"][0]
    assert by["halted"]["condition"] == "stopped"
    assert by["halted"]["state"]["queue_depth"] == 3  # the figures it stopped with
    assert doc["exit"] == 4


def test_fleet_json_worst_code_wins(capsys, fleet):
    code, text, _ = health(capsys, fleet.port, "--json")
    doc = json.loads(text)
    assert code == 4 and {(n["site"], n["node"]) for n in doc["nodes"]} == NODES
    sick = next(n for n in doc["nodes"] if n["node"] == "sick")
    assert sick["point_errors"] == [{"id": 2, "name": "energy", "err": 1, "error": "timeout"}]
    assert sick["state"]["slave_errors"] == {"1": 0, "2": 120}
    assert [p["name"] for p in sick["points"]] == ["voltage", "energy"]


def test_no_node_found_is_its_own_code_within_the_wait(capsys, fleet):
    code, text, took = health(capsys, fleet.port, "--site", "nowhere", "--wait", "5")
    assert code == 5 and "no node found under otlink/nowhere/+" in text
    assert took < 2.5  # quiet after the SUBACK: the 5 s are not waited out


def test_stale_state_is_unhealthy(capsys, broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    old = state(t=int(time.time() * 1000) - 600_000)
    c.publish("otlink/c/quiet/state", old, qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    code, text, _ = health(capsys, broker.port, "--site", "c")
    assert code == 3 and re.search(r"state not updated for 60[0-2] s", text)
    assert "no birth message" not in text  # fleet view: no point list
    code, text, _ = health(capsys, broker.port, "--site", "c", "--node", "quiet",
                           "--wait", "1")
    assert "(no birth message: the point table is unknown)" in text


def test_broker_unreachable_is_exit_1(capsys):
    code, text, _ = health(capsys, free_port(), "--wait", "1")
    assert code == 1 and text.startswith("otlink: cannot connect to 127.0.0.1:")


def test_bad_values_refused_by_name(capsys, fleet):
    code, text, _ = health(capsys, fleet.port, "--wait", "-1")
    assert code == 1 and "--wait -1: a number of seconds >= 0 wanted" in text
    code, text, _ = health(capsys, fleet.port, "--node", "a/b")
    assert code == 1 and "--node 'a/b'" in text


def test_security_and_config_fields_are_warnings():
    from otlink_tools.health import assess

    st = {"online": True, "uptime_s": 7200, "cmd_forged": 4, "acks_forged": 1,
          "insecure": "plaintext_auth", "config": "rolled_back"}
    h = assess(None, st)
    assert h["healthy"] and h["problems"] == []
    assert h["warnings"] == ["4 commands refused (unsigned or forged) (2/h)",
                             "1 consumer acks refused (unsigned or forged) (0.5/h)",
                             "insecure options in force: plaintext_auth",
                             "config rolled_back (docs/config.md)"]
