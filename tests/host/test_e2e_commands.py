"""Writes from the cmd topic reach the meter's register through the agent's poller, only
for points the config lists as writable and inside their range, only when signed with the
node's key and with a fresh counter, and every command gets a signed reply. A retained or
replayed command never runs again: not at an agent restart, not when another client takes
over the node's client id (measured before signing: 3 of 3 starts, 4 times in one run)."""

from __future__ import annotations

import json
import math
import os
import queue
import random
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

import paho.mqtt.client as mqtt

from otlink_tools import node
from otlink_tools.broker import Broker
from otlink_tools.demo import demo_config
from otlink_tools.sim_meter import start_meter
from otlink_tools.write import open_reply, sign

OTLINK = str(Path(sys.executable).parent / "otlink")
KEY_HEX = "5e" + "c0de" * 15 + "42"
KEY = bytes.fromhex(KEY_HEX)
BASE = "otlink/demo-plant/demo-press-01/"


def _otlink_write(tmp_path, port, value, *extra):
    env = dict(os.environ, OTLINK_CMD_KEY=KEY_HEX)
    return subprocess.run([OTLINK, "write", "--site", "demo-plant", "--node",
                           "demo-press-01", "--point", "6", "--port", str(port),
                           "--counter-file", str(tmp_path / "w.ctr"), *extra, str(value)],
                          env=env, capture_output=True, text=True, timeout=60)


def test_write_command_reaches_the_register_and_is_answered(tmp_path):
    meter = start_meter(slaves=(1,), frozen=True)
    (tmp_path / "b").mkdir()
    broker = Broker(workdir=str(tmp_path / "b")).start()
    cfg = demo_config(meter.agent_port, broker.port)
    # power_factor: holding 200, int16 x0.001, writable between 0.5 and 1.0
    cfg["commands"] = {"writable": [{"point": 6, "min": 0.5, "max": 1.0}], "key": KEY_HEX}
    cfg["mqtt"]["backoff_ms"] = [200, 1000]
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    replies: queue.Queue = queue.Queue()
    births: queue.Queue = queue.Queue()
    cli = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(c, u, m):
        if m.topic.endswith("/birth"):
            births.put(m.payload)
        else:  # every reply is signed by the node
            replies.put(open_reply(KEY, BASE + "reply", m.payload))

    cli.on_message = on_message
    cli.connect("127.0.0.1", broker.port)
    cli.subscribe([(BASE + "reply", 1), (BASE + "birth", 1)])
    cli.loop_start()
    ctr = [0]

    def signed(body: dict, c: int | None = None) -> bytes:
        if c is None:
            ctr[0] += 1
            c = ctr[0]
        text = json.dumps(dict(body, ctr=c)).encode()
        return sign(KEY, BASE + "cmd", text)

    # a signed, retained command waits on the broker: replayed at every subscribe, never run
    retained = signed({"id": "r0", "op": "write", "point": 6, "value": 0.5})
    cli.publish(BASE + "cmd", retained, qos=1, retain=True).wait_for_publish(5)
    state = str(tmp_path / "state")

    def start():
        return node.start_agent(str(tmp_path / "node.json"), state,
                                log=open(tmp_path / "agent.log", "ab"))

    agent = start()
    try:
        births.get(timeout=20)  # the node is online and subscribed
        r = replies.get(timeout=10)
        assert r["id"] == "r0" and not r["ok"] and "retain" in r["error"], r
        assert meter.registers(1, "holding", 200, 1) != [500]

        def command(raw: bytes) -> dict:
            cli.publish(BASE + "cmd", raw, qos=1)
            return replies.get(timeout=10)

        w1 = signed({"id": "w1", "op": "write", "point": 6, "value": 0.95})
        r = command(w1)
        assert r == {"id": "w1", "ok": True, "ctr": ctr[0]}, r
        assert meter.registers(1, "holding", 200, 1) == [950]
        meter.set(1, "holding", 200, [111])
        # the same bytes again (captured on the broker): refused, the register untouched
        r = command(w1)
        assert not r["ok"] and "replayed" in r["error"] and r["ctr_min"] == ctr[0] + 1, r
        r = command(json.dumps({"id": "u1", "op": "write", "point": 6,
                                "value": 0.9}).encode())
        assert not r["ok"] and "not signed" in r["error"], r
        forged = bytearray(signed({"id": "f1", "op": "write", "point": 6, "value": 0.9}))
        forged[forged.find(b"0.9") + 2] = ord("8")  # 0.8: the tag no longer matches
        r = command(bytes(forged))
        assert not r["ok"] and "does not verify" in r["error"], r
        assert meter.registers(1, "holding", 200, 1) == [111]
        r = command(signed({"id": "w2", "op": "write", "point": 1, "value": 240.0}))
        assert r["id"] == "w2" and not r["ok"] and "not writable" in r["error"], r
        r = command(signed({"id": "w3", "op": "write", "point": 6, "value": 0.4}))
        assert not r["ok"] and "outside" in r["error"] and "commands.writable" in r["error"], r
        r = command(signed({"id": "w4", "op": "write", "point": 6, "value": 40.0}))
        assert not r["ok"] and "outside" in r["error"], r
        cli.publish(BASE + "cmd", sign(KEY, BASE + "cmd", b'{"id": "w5", "op": "write", '
                    b'"point": 6, "value": 1e999, "ctr": %d}' % (ctr[0] + 1)), qos=1)
        ctr[0] += 1
        r = replies.get(timeout=10)
        assert not r["ok"] and "out of range" in r["error"], r  # no crash, an answer
        assert meter.registers(1, "holding", 200, 1) == [111]  # refused writes change nothing

        # another client takes over the node's client id: the node reconnects, resubscribes
        # and is handed the retained command again; and the capture is sent once more
        while not births.empty():
            births.get_nowait()
        thief = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-press-01")
        thief.connect("127.0.0.1", broker.port)
        thief.loop_start()
        time.sleep(0.5)
        thief.loop_stop()
        thief.disconnect()
        births.get(timeout=20)  # back online
        r = replies.get(timeout=10)
        assert r["id"] == "r0" and not r["ok"], r
        r = command(w1)
        assert not r["ok"] and "replayed" in r["error"], r
        assert meter.registers(1, "holding", 200, 1) == [111]

        # 30 back to back: every one answered (written, or refused as busy), none lost
        for k in range(30):
            cli.publish(BASE + "cmd", signed({"id": f"b{k}", "op": "write", "point": 6,
                                              "value": 0.9 + k / 1000}), qos=1)
        got = [replies.get(timeout=20) for _ in range(30)]
        assert sorted(g["id"] for g in got) == sorted(f"b{k}" for k in range(30))
        assert all(g["ok"] or "busy" in g["error"] for g in got), got
        assert any(g["ok"] for g in got)

        # restart: the retained command and the capture are still refused (the counter is on
        # the node's flash); otlink write takes the counter the node names and is answered
        agent.kill()
        agent.wait()
        meter.set(1, "holding", 200, [222])
        while not births.empty():
            births.get_nowait()
        agent = start()
        births.get(timeout=20)
        r = replies.get(timeout=10)
        assert r["id"] == "r0" and not r["ok"], r
        r = command(w1)
        assert not r["ok"] and "replayed" in r["error"], r
        assert meter.registers(1, "holding", 200, 1) == [222]
        (tmp_path / "w.ctr").write_text(f"{ctr[0]}\n")  # the tool continues where we are
        res = _otlink_write(tmp_path, broker.port, "0.75")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "written" in res.stdout
        assert meter.registers(1, "holding", 200, 1) == [750]
        used = int((tmp_path / "w.ctr").read_text())
        assert used > ctr[0] + 1, used  # it took the counter above the node's persisted mark
        res = _otlink_write(tmp_path, broker.port, "0.2")
        assert res.returncode == 1 and "outside" in res.stderr, res.stderr
        for out in (res.stdout, res.stderr, (tmp_path / "agent.log").read_text()):
            assert KEY_HEX not in out and KEY_HEX.upper() not in out
        wrong = dict(os.environ, OTLINK_CMD_KEY="12ab" * 16)
        res = subprocess.run([OTLINK, "write", "--site", "demo-plant", "--node",
                              "demo-press-01", "--point", "6", "--port", str(broker.port),
                              "--counter-file", str(tmp_path / "x.ctr"), "--timeout", "3",
                              "0.8"], env=wrong, capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and "no signed reply" in res.stderr, res.stderr
        assert meter.registers(1, "holding", 200, 1) == [750]
    finally:
        agent.kill()
        agent.wait()
        cli.loop_stop()
        meter.stop()
        broker.stop()


# --- conversion checked against exact arithmetic on the host, on both builds --------------
CONVERT_MP = r'''
import json, sys
from otlink import commands
from otlink.core.config import parse_points

SERIAL = {"port": "/dev/null", "baud": 9600, "groups": {"fast": {"interval_ms": 1000}}}
out = open(sys.argv[2], "w")
for typ, scale, offset, text in json.load(open(sys.argv[1])):
    p = parse_points([{"id": 7, "slave": 1, "table": "holding", "address": 10, "type": typ,
                       "scale": scale, "offset": offset}], SERIAL)[0]
    msg = '{"id": 1, "op": "write", "point": 7, "value": %s}' % text
    try:
        rid, (pp, regs, note) = commands.parse(msg, p.tab, [7])
        out.write(json.dumps(["ok", regs]) + "\n")
    except commands.CommandError as e:
        out.write(json.dumps(["refused", str(e)]) + "\n")
out.close()
print("done")
'''


def _nearest_float(f, fmt: str) -> bytes | None:
    """Big-endian bytes of the float32/float64 nearest to the Fraction f (ties to even);
    None when it overflows."""
    import struct

    code = ">f" if fmt == "float32" else ">d"
    try:
        x = float(f)  # correctly rounded to double
    except OverflowError:
        return None
    if fmt == "float64":
        return None if abs(x) == float("inf") else struct.pack(code, x)
    try:
        b = struct.pack(code, x)
    except OverflowError:
        b = struct.pack(code, math.copysign(3.4028234663852886e38, x))
    # double rounding can miss by one: pick the nearest of the neighbours exactly
    i = int.from_bytes(b, "big")
    best = None
    for j in (i - 1, i, i + 1):
        if j < 0 or (j & 0x7F800000) == 0x7F800000:
            continue
        c = struct.unpack(code, j.to_bytes(4, "big"))[0]
        key = (abs(Fraction(c) - f), j & 1)
        if best is None or key < best[0]:
            best = (key, j)
    j = best[1]
    top = Fraction(struct.unpack(">f", b"\x7f\x7f\xff\xff")[0])
    half_ulp = Fraction(2) ** 103
    if abs(f) >= top + half_ulp:
        return None
    return j.to_bytes(4, "big")


@pytest.mark.parametrize("build", ["64", "32"])
def test_float_and_scaled_writes_are_correctly_rounded(tmp_path, build):
    from mp import run

    rng = random.Random(754)
    cases = []
    for _ in range(1500):
        typ = rng.choice(["float32", "float64", "int32", "int64"])
        scale = rng.choice([1.0, 0.1, 0.001, 2.5, -0.01])
        offset = rng.choice([0.0, -40.0, 273.15])
        m = rng.randint(-10**rng.randint(1, 17), 10**rng.randint(1, 17))
        e = rng.randint(-45, 40) if typ == "float32" else rng.randint(-330, 310)
        if typ.startswith("int"):
            e = rng.randint(-6, 8)
        cases.append([typ, scale, offset, "%de%d" % (m, e)])
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = tmp_path / "conv.py"
    script.write_text(CONVERT_MP)
    res = run(script, str(tmp_path / "cases.json"), str(tmp_path / "out.txt"),
              heap="1M" if build == "64" else "256K", build=build)
    assert res.returncode == 0 and "done" in res.stdout, res.stdout + res.stderr
    got = [json.loads(line) for line in (tmp_path / "out.txt").read_text().splitlines()]
    assert len(got) == len(cases)
    checked = 0
    for (typ, scale, offset, text), (kind, val) in zip(cases, got):
        # scale/offset are the decimals the config wrote (0.001 is 1/1000) on both builds
        raw = (Fraction(text) - Fraction(repr(offset))) / Fraction(repr(scale))
        if typ.startswith("float"):
            want = _nearest_float(raw, typ)
            if want is None:
                assert kind == "refused" and "outside" in val, (typ, text, val)
                continue
            assert kind == "ok", (typ, scale, offset, text, val)
            regs = val
            assert b"".join(r.to_bytes(2, "big") for r in regs) == want, (typ, text)
        else:
            q = abs(raw.numerator) // raw.denominator
            if 2 * (abs(raw.numerator) % raw.denominator) >= raw.denominator:
                q += 1
            q = -q if raw < 0 else q
            bits = 32 if typ == "int32" else 64
            if not -(2 ** (bits - 1)) <= q < 2 ** (bits - 1):
                assert kind == "refused" and "outside" in val, (typ, text, val)
                continue
            if scale == 1.0 and offset == 0.0 and raw.denominator != 1:
                assert kind == "refused" and "whole numbers" in val, (typ, text, val)
                continue
            assert kind == "ok", (typ, scale, offset, text, val)
            n = int.from_bytes(b"".join(r.to_bytes(2, "big") for r in val), "big",
                               signed=True)
            assert n == q, (typ, scale, offset, text)
        checked += 1
    assert checked > 800
