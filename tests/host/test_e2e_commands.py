"""Writes from the cmd topic reach the meter's register through the agent's poller, only
for points the config lists as writable, and every command gets a reply."""

from __future__ import annotations

import json
import math
import queue
import random
import time
from fractions import Fraction

import pytest

import paho.mqtt.client as mqtt

from otlink_tools import node
from otlink_tools.broker import Broker
from otlink_tools.demo import demo_config
from otlink_tools.sim_meter import start_meter


def test_write_command_reaches_the_register_and_is_answered(tmp_path):
    meter = start_meter(slaves=(1,), frozen=True)
    (tmp_path / "b").mkdir()
    broker = Broker(workdir=str(tmp_path / "b")).start()
    cfg = demo_config(meter.agent_port, broker.port)
    cfg["commands"] = {"writable": [6]}  # power_factor: holding 200, int16 x0.001
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    replies: queue.Queue = queue.Queue()
    births: queue.Queue = queue.Queue()
    cli = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(c, u, m):
        (births if m.topic.endswith("/birth") else replies).put(m.payload)

    cli.on_message = on_message
    cli.connect("127.0.0.1", broker.port)
    base = "otlink/demo-plant/demo-press-01/"
    cli.subscribe([(base + "reply", 1), (base + "birth", 1)])
    cli.loop_start()
    # a retained command waits on the broker: replayed at every subscribe, it must not run
    cli.publish(base + "cmd", json.dumps({"id": "r0", "op": "write", "point": 6,
                                          "value": 0.5}), qos=1, retain=True).wait_for_publish(5)
    agent = node.start_agent(str(tmp_path / "node.json"), str(tmp_path / "state"),
                             log=open(tmp_path / "agent.log", "wb"))
    try:
        births.get(timeout=20)  # the node is online and subscribed
        r = json.loads(replies.get(timeout=10))
        assert r["id"] == "r0" and not r["ok"] and "retain" in r["error"], r
        cli.publish(base + "cmd", b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        time.sleep(0.5)

        def command(body: dict) -> dict:
            cli.publish(base + "cmd", json.dumps(body), qos=1)
            return json.loads(replies.get(timeout=10))

        r = command({"id": "w1", "op": "write", "point": 6, "value": 0.95})
        assert r == {"id": "w1", "ok": True}, r
        assert meter.registers(1, "holding", 200, 1) == [950]
        r = command({"id": "w2", "op": "write", "point": 1, "value": 240.0})
        assert r["id"] == "w2" and not r["ok"] and "not writable" in r["error"], r
        r = command({"id": "w3", "op": "write", "point": 6, "value": 40.0})
        assert not r["ok"] and "outside int16" in r["error"], r
        assert meter.registers(1, "holding", 200, 1) == [950]  # refused writes change nothing
        cli.publish(base + "cmd", '{"id": "w4", "op": "write", "point": 6, "value": 1e999}',
                    qos=1)
        r = json.loads(replies.get(timeout=10))
        assert not r["ok"] and "out of range" in r["error"], r  # no crash, an answer
        # 30 back to back: every one answered (written, or refused as busy), none lost
        for k in range(30):
            cli.publish(base + "cmd", json.dumps({"id": f"b{k}", "op": "write", "point": 6,
                                                  "value": 0.9 + k / 1000}), qos=1)
        got = [json.loads(replies.get(timeout=20)) for _ in range(30)]
        assert sorted(g["id"] for g in got) == sorted(f"b{k}" for k in range(30))
        assert all(g["ok"] or "busy" in g["error"] for g in got), got
        assert any(g["ok"] for g in got)
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
