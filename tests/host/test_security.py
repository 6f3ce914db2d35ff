"""Security controls of the node, end to end with the real agent, mosquitto and the demo meter
(docs/security.md): each test fails when its control is removed.

- A broker that takes no anonymous client and a node without credentials: the agent stops
  at once with a clear error instead of knocking forever.
- Planted secrets (MQTT password, command key, ack key, Wi-Fi passphrase) appear in no output
  channel: agent stdout, birth and state payloads, `otlink monitor` output, `otlink node
  validate` errors (also when the secret itself is the wrong field), `otlink write` output.
- The birth carries the security posture, the state the insecure options in force.
- A forged consumer ack discards no reading; the monitor's signed acks are taken.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest

import paho.mqtt.client as mqtt

from otlink_tools import node
from otlink_tools.decode import decode_message, encode_ack
from otlink_tools.demo import demo_config
from otlink_tools.fwhash import tree_hash
from otlink_tools.sim_meter import start_meter

OTLINK = str(Path(sys.executable).parent / "otlink")
USER = "node7"
PASSWORD = "Pl4nted-S3cret-9f2c"
WIFI_PW = "wifi-Pl4nted-77aa"
CMD_KEY = "c3" + "9a7e51d0f2b46c88" * 3 + "1d2e3f405162"
ACK_KEY = "5a" + "e1d2c3b4a5968778" * 3 + "01f2e3d4c5b6"
SECRETS = (PASSWORD, WIFI_PW, CMD_KEY, ACK_KEY)
AUTH_BROKER_USER = (USER, PASSWORD)  # the one account of conftest's auth_broker here
BASE = "otlink/demo-plant/demo-press-01/"


def _leaks(text: str | bytes) -> list[str]:
    """The planted secrets found in text, as they are or in any case or in hex."""
    if isinstance(text, bytes):
        forms = [text.decode("latin-1"), text.hex()]
    else:
        forms = [text]
    found = []
    for s in SECRETS:
        for f in forms:
            if s.lower() in f.lower() or s.encode().hex() in f.lower():
                found.append(s)
    return found


def _sensor_config(port: int) -> dict:
    return {"node": {"id": "lonely-01", "site": "lab"},
            "mqtt": {"host": "127.0.0.1", "port": port, "backoff_ms": [200, 1000],
                     "ack_key": ACK_KEY},
            "groups": {"slow": {"interval_ms": 1000}},
            "sensors": [{"driver": "sht3x", "bus": "i2c0", "group": "slow",
                         "points": [{"id": 20, "name": "t", "channel": "temperature"}]}]}


def test_agent_refuses_to_start_without_credentials(auth_broker, tmp_path):
    (tmp_path / "node.json").write_text(json.dumps(_sensor_config(auth_broker.port)))
    t0 = time.monotonic()
    agent = node.start_agent(str(tmp_path / "node.json"), str(tmp_path / "state"))
    try:
        out, _ = agent.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        agent.kill()
        out, _ = agent.communicate()
        pytest.fail("the agent kept retrying without credentials:\n" + out.decode()[-2000:])
    text = out.decode()
    assert agent.returncode == 4, text
    assert "requires credentials" in text and "mqtt.user" in text, text
    assert time.monotonic() - t0 < 20


def _validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([OTLINK, "node", "validate", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_config_errors_never_repeat_secrets(tmp_path):
    cfg = demo_config("/dev/null", 1883)
    cfg["wifi"] = {"ssid": "plant", "password": WIFI_PW}
    cfg["mqtt"].update({"user": USER, "password": PASSWORD})  # plain TCP without the flag
    cfg["commands"] = {"writable": [6], "key": CMD_KEY}  # a number point without its range
    cfg["mqtt"]["ack_key"] = ACK_KEY
    cfg["mqtt"]["port"] = 0
    (tmp_path / "a.json").write_text(json.dumps(cfg))
    r = _validate(tmp_path / "a.json")
    assert r.returncode == 1
    assert "mqtt.password" in r.stderr and "plain TCP" in r.stderr, r.stderr
    assert "commands.writable[0]" in r.stderr and "mqtt.port" in r.stderr, r.stderr
    assert not _leaks(r.stdout + r.stderr), r.stderr
    # the secret itself is what is wrong: named by its path, never shown
    bad = [("wifi", "password", WIFI_PW + "x" * 60), ("mqtt", "password", "password"),
           ("mqtt", "password", USER), ("commands", "key", CMD_KEY + "zz"),
           ("commands", "key", "zz" + CMD_KEY[2:]), ("mqtt", "ack_key", ACK_KEY[:-1]),
           ("mqtt", "password", 12345678)]
    for sec, key, value in bad:
        c = json.loads(json.dumps(cfg))
        c["mqtt"]["port"] = 1883
        c["mqtt"]["insecure_plaintext_auth"] = True
        c["commands"]["writable"] = [{"point": 6, "min": 0.5, "max": 1.0}]
        c[sec][key] = value
        (tmp_path / "b.json").write_text(json.dumps(c))
        r = _validate(tmp_path / "b.json")
        assert r.returncode == 1 and f"{sec}.{key}" in r.stderr, (sec, key, r.stderr)
        assert not _leaks(r.stdout + r.stderr), r.stderr
        if isinstance(value, str) and value != "password":  # (the field's own name)
            assert value not in r.stderr, r.stderr


def test_secrets_posture_and_forged_acks_end_to_end(auth_broker, tmp_path):
    meter = start_meter(slaves=(1,), frozen=True)
    cfg = demo_config(meter.agent_port, auth_broker.port)
    cfg["wifi"] = {"ssid": "plant", "password": WIFI_PW}
    cfg["mqtt"].update({"user": USER, "password": PASSWORD, "insecure_plaintext_auth": True,
                        "ack_key": ACK_KEY, "state_interval_s": 1})
    cfg["commands"] = {"writable": [{"point": 6, "min": 0.5, "max": 1.0}], "key": CMD_KEY}
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    r = _validate(tmp_path / "node.json")
    assert r.returncode == 0, r.stderr
    assert not _leaks(r.stdout + r.stderr)
    got: queue.Queue = queue.Queue()
    cli = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    cli.username_pw_set(USER, PASSWORD)
    cli.on_message = lambda c, u, m: got.put((m.topic, m.payload))
    cli.connect("127.0.0.1", auth_broker.port)
    cli.subscribe([(BASE + "birth", 1), (BASE + "state", 1), (BASE + "reply", 1)])
    cli.loop_start()
    log = tmp_path / "agent.log"
    # a roomy heap: this test is about outputs, the heap budget is test_boot_heap's
    agent = node.start_agent(str(tmp_path / "node.json"), str(tmp_path / "state"),
                             heap="512K", log=open(log, "wb"))
    raw: list[bytes] = []
    try:
        birth = None
        deadline = time.monotonic() + 30
        while birth is None and time.monotonic() < deadline:
            t, p = got.get(timeout=30)
            raw.append(p)
            if t.endswith("/birth"):
                birth = decode_message(t, p)
        assert birth is not None
        sec = birth["sec"]
        assert (sec["plaintext_auth"], sec["auth"], sec["cmd"], sec["ack"], sec["tls"]) == \
            (True, "password", "signed", "signed", False), sec
        assert sec["cfg"] == birth["config_hash"], sec
        # the agent runs from build/mpy-node: its hash is that tree's, as the host computes it
        assert sec["fw"] == tree_hash(Path(node.firmware_mpy()) / "otlink"), sec
        time.sleep(3)  # readings queue up, unacknowledged
        # a forged ack (any client on the broker can publish one): it must discard nothing
        cli.publish(BASE + "ack", encode_ack(birth["boot"], 10**6), qos=1,
                    retain=True).wait_for_publish(5)
        cli.publish(BASE + "ack", encode_ack(birth["boot"], 3), qos=1,
                    retain=True).wait_for_publish(5)

        def state_where(cond, timeout=15.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                try:
                    t, p = got.get(timeout=1)
                except queue.Empty:
                    continue
                raw.append(p)
                if t.endswith("/state"):
                    st = decode_message(t, p)
                    if cond(st):
                        return st
            pytest.fail("no state message as expected")

        st = state_where(lambda s: s.get("acks_forged", 0) >= 2)
        assert st["insecure"] == "plaintext_auth", st
        assert st["queue_depth"] >= 3, st  # the readings the forged acks named are kept
        depth_before = st["queue_depth"]
        # the trusted consumer: otlink monitor signing its acks
        (tmp_path / "ack.key").write_text(ACK_KEY + "\n")
        env = dict(os.environ, OTLINK_MQTT_PASSWORD=PASSWORD)
        mon = subprocess.run([OTLINK, "monitor", "--port", str(auth_broker.port), "--user",
                              USER, "--site", "demo-plant", "--node", "demo-press-01",
                              "--format", "jsonl", "--ack-key-file", str(tmp_path / "ack.key"),
                              "--ack-wait", "0", "--seconds", "12"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert mon.returncode == 0, mon.stderr
        assert mon.stdout.count("\n") >= 3, mon.stdout[-500:]
        # signed acks taken: the queue shrinks below what it held before the monitor ran
        st = state_where(lambda s: s["queue_depth"] < depth_before)
        assert st["acks_forged"] == 2, st  # the monitor's acks were not refused
        # otlink write: a refusal shows the node's signed answer, never the key
        w = subprocess.run([OTLINK, "write", "--site", "demo-plant", "--node", "demo-press-01",
                            "--point", "6", "--port", str(auth_broker.port), "--user", USER,
                            "--insecure-plaintext-auth", "--counter-file",
                            str(tmp_path / "w.ctr"), "0.1"],
                           env=dict(env, OTLINK_CMD_KEY=CMD_KEY), capture_output=True,
                           text=True, timeout=60)
        assert w.returncode == 1 and "outside" in w.stderr, w.stderr
        for channel in (mon.stdout, mon.stderr, w.stdout, w.stderr):
            assert not _leaks(channel), channel[-2000:]
    finally:
        agent.kill()
        agent.wait()
        cli.loop_stop()
        meter.stop()
    for p in raw:
        assert not _leaks(p), p
    out = log.read_text()
    assert "insecure options in force: plaintext_auth" in out, out
    assert not _leaks(out), out


def test_store_and_monitor_sign_their_acks(tmp_path):
    """The consumers sign acks the way the node checks them (tests/firmware/test_hmac_acks.py
    builds the format from the node's own HMAC): tag over topic, LF and the plain ack."""
    import hmac
    from hashlib import sha256

    from otlink_tools.monitor import Monitor
    from otlink_tools.store import Store

    key = bytes.fromhex(ACK_KEY)
    sent = []

    class Client:
        def publish(self, topic, payload, qos=0, retain=False):
            sent.append((topic, payload))

    st = Store(f"sqlite:///{tmp_path / 'x.db'}", ack=True)
    st.client = Client()
    st.ack_key = key
    st._publish_acks({("plant", "n1", 3): 42})
    mon = Monitor("127.0.0.1", 1883, ack=True, out=open(tmp_path / "m.txt", "w"))
    mon.client = Client()
    mon.ack_key = key
    from otlink_tools.acktrack import Track

    mon.tracks[("plant", "n1", 3)] = Track(floor=41)
    mon.tracks[("plant", "n1", 3)].add(42, 42)
    mon._send_ack(("plant", "n1", 3))
    assert len(sent) == 2
    for topic, payload in sent:
        assert topic == "otlink/plant/n1/ack"
        plain = encode_ack(3, 42)
        tag = hmac.new(key, topic.encode() + b"\n" + plain, sha256).digest()
        assert payload == b"\xa4" + plain[1:] + b"\x61m\x58\x20" + tag


def test_console_and_config_pull_mask_every_secret():
    """What the service console shows (`get`, `diff`, `otlink config pull`) goes through
    console.masked: every planted secret of a full config is replaced."""
    from otlink_tools import paths

    paths.firmware_import_path()
    from otlink import console

    cfg = demo_config("/dev/null", 1883)
    cfg["wifi"] = {"ssid": "plant", "password": WIFI_PW}
    cfg["mqtt"].update({"user": USER, "password": PASSWORD, "ack_key": ACK_KEY})
    cfg["commands"] = {"writable": [{"point": 6, "min": 0.5, "max": 1.0}], "key": CMD_KEY}
    shown = json.dumps(console.masked(cfg))
    assert not _leaks(shown), shown
    assert USER in shown  # not a secret: still shown


def test_decoder_reads_signed_commands_and_replies():
    from otlink_tools.write import sign

    key = bytes.fromhex(CMD_KEY)
    body = b'{"id": "r1", "op": "write", "point": 6, "value": 0.9, "ctr": 7}'
    m = decode_message(BASE + "cmd", sign(key, BASE + "cmd", body))
    assert m["body"]["ctr"] == 7 and len(m["tag"]) == 64
    assert not _leaks(json.dumps(m))  # the tag is not the key
    m = decode_message(BASE + "reply", b'{"id": "r1", "ok": true}')
    assert m["body"]["ok"] is True and "tag" not in m


def test_key_files_shared_with_other_users_are_flagged(tmp_path, capsys):
    from otlink_tools.acktrack import ack_key
    from otlink_tools.write import load_key

    f = tmp_path / "cmd.key"
    f.write_text(CMD_KEY + "\n")
    f.chmod(0o644)
    assert load_key(str(f), env={}) == bytes.fromhex(CMD_KEY)
    err = capsys.readouterr().err
    assert "accessible to other users" in err and "chmod 600" in err and not _leaks(err)
    f.chmod(0o600)
    load_key(str(f), env={})
    assert capsys.readouterr().err == ""
    g = tmp_path / "ack.key"
    g.write_text(ACK_KEY)
    g.chmod(0o640)
    assert ack_key(str(g), env={}) == bytes.fromhex(ACK_KEY)
    assert "accessible to other users" in capsys.readouterr().err
