"""The promise, end to end with the real meter: readings taken while the broker is down
survive the agent being killed (SIGKILL, like a power cut) and are delivered after the
restart, oldest first, flagged historical, with no gap and no duplicate."""

from __future__ import annotations

import io
import json
import signal
import time

from otlink_tools import node
from otlink_tools.broker import Broker, free_port
from otlink_tools.demo import demo_config
from otlink_tools.monitor import Monitor
from ackkey import ACK_KEY, ACK_KEY_HEX


def test_outage_then_power_cut_loses_nothing_committed(tmp_path, demo_meter):
    meter = demo_meter
    port = free_port()  # the broker starts later, on this port: not a fixture
    cfg = demo_config(meter.agent_port, port, ack_key=ACK_KEY_HEX)
    cfg["groups"]["fast"]["interval_ms"] = 100
    cfg["queue"] = {"commit_ms": 200}
    cfg["mqtt"]["backoff_ms"] = [200, 1000]
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    state = str(tmp_path / "state")
    log = open(tmp_path / "agent.log", "wb")
    broker = None
    agent = node.start_agent(str(tmp_path / "node.json"), state, log=log)
    try:
        time.sleep(4.0)  # broker down: readings pile up in flash
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        (tmp_path / "b").mkdir()
        broker = Broker(port=port, workdir=str(tmp_path / "b")).start()
        out = io.StringIO()
        mon = Monitor(port=port, fmt="jsonl", out=out, err=io.StringIO(), ack_key=ACK_KEY).start()
        agent = node.start_agent(str(tmp_path / "node.json"), state, log=log)

        def rows():
            return [json.loads(x) for x in out.getvalue().splitlines() if x.strip()]

        ok = mon.wait(seconds=40, cond=lambda m: any(r["boot"] == 2 and not r["historical"]
                                                     for r in rows()))
        time.sleep(1.0)
        mon.stop()
        got = rows()
        summary = sorted({(r["boot"], r["historical"]) for r in got})
        assert ok, (summary, len(got), (tmp_path / "agent.log").read_text()[-3000:])
        boot1 = [r for r in got if r["boot"] == 1]
        # ~4 s at 100 ms x 6 points, minus at most the last commit window lost at the kill
        assert len(boot1) >= 100, len(boot1)
        seqs = [r["seq"] for r in boot1]
        assert seqs == list(range(1, len(seqs) + 1)), "gap or reorder in the replayed backlog"
        assert all(r["historical"] for r in boot1)
        assert mon.duplicates == 0 and mon.gaps == []
        # values replayed from flash are the meter's values, exactly
        points = {p["id"]: p for p in cfg["points"]}
        for r in boot1:
            if r["pid"] in points:
                p = points[r["pid"]]
                assert r["raw"] == meter.expected(1, p["table"], p["address"], p["type"],
                                                  p["order"])
        # the sequence is persisted: the new boot continues right after the last reading
        # committed before the cut (uncommitted ones never got a number)
        boot2 = sorted(r["seq"] for r in got if r["boot"] == 2)
        assert boot2 and boot2[0] == seqs[-1] + 1
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        if broker:
            broker.stop()
