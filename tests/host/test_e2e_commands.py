"""Writes from the cmd topic reach the meter's register through the agent's poller, only
for points the config lists as writable, and every command gets a reply."""

from __future__ import annotations

import json
import queue
import time

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
    agent = node.start_agent(str(tmp_path / "node.json"), str(tmp_path / "state"),
                             log=open(tmp_path / "agent.log", "wb"))
    try:
        births.get(timeout=20)  # the node is online and subscribed
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
    finally:
        agent.kill()
        agent.wait()
        cli.loop_stop()
        meter.stop()
        broker.stop()
