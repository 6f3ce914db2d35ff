"""The node's analytics end to end, as the demo runs them (demo.demo_analytics): agent with
the demo meter and sensors -> mosquitto -> monitor. Derived points (a 10 s window of the
active power), the press's machine state from its run/stop contact, its cycle counter and the
vibration features of the simulated ADXL345 arrive as readings and events named in the
birth; the window's mean agrees with the raw readings it summarises; and the Modbus poll
keeps its schedule beside the accelerometer's bursts."""

from __future__ import annotations

import io
import json
import re

from otlink_tools import node
from otlink_tools.demo import demo_analytics, demo_config
from otlink_tools.monitor import Monitor
from ackkey import ACK_KEY, ACK_KEY_HEX


def test_derived_points_and_machine_state_arrive(fresh_broker, demo_meter, tmp_path):
    cfg = demo_config(demo_meter.agent_port, fresh_broker.port, every_sensor=True,
                      ack_key=ACK_KEY_HEX)
    cfg["analytics"] = demo_analytics()
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    out = io.StringIO()
    mon = Monitor(port=fresh_broker.port, fmt="jsonl", out=out, err=io.StringIO(),
                  ack_key=ACK_KEY).start()
    log = open(tmp_path / "agent.log", "wb")
    agent = node.start_agent(str(tmp_path / "node.json"), str(tmp_path / "state"), heap="448K",
                             log=log)

    def rows():
        return [json.loads(x) for x in out.getvalue().splitlines() if x.strip()]

    def have(_m=None):
        st = [r for r in rows() if r["pid"] == 300]
        return ({100, 101, 102, 400, 500, 501, 502} <= {r["pid"] for r in rows()}
                and len(st) >= 3 and len([r for r in rows() if r["pid"] == 3]) >= 12)
    try:
        ok = mon.wait(cond=have, seconds=45)
    finally:
        mon.stop()
        agent.kill()
        agent.wait()
        log.close()
    assert ok, (tmp_path / "agent.log").read_text()[-3000:]
    by = {}
    for r in rows():
        by.setdefault(r["pid"], []).append(r)
    assert by[100][0]["point"] == "active_power.mean" and by[100][0]["unit"] == "W"
    # the window [k*10 s, (k+1)*10 s) of the raw power readings: the node's mean is theirs
    w = by[100][-1]
    raw = [r["value"] for r in by[3] if w["t_ms"] - 10000 < r["t_ms"] <= w["t_ms"]
           and r["t_ms"] // 10000 == w["t_ms"] // 10000]
    if raw:  # the raw readings of that window all arrived before the derived one
        assert abs(sum(raw) / len(raw) - w["value"]) < 1e-3 * abs(w["value"]), (raw, w)
    states = [r["value"] for r in by[300]]
    assert all(re.match(r"^(running|stopped|idle) after (unknown|running|stopped|idle|"
                        r"micro_stop) \d+$", s) for s in states), states
    assert {s.split()[0] for s in states} >= {"running", "stopped"}, states
    assert by[501][-1]["value"] in ("A", "B", "C", "D")
    assert by[500][-1]["unit"] == "mm/s" and by[500][-1]["value"] > 0
    assert by[502][-1]["unit"] == "g"
    assert by[503][-1]["value"] > 4, "the bearing fault's impulses: kurtosis above Gaussian"
    # Modbus polling kept its deadlines beside the accelerometer bursts (3200 Hz, the
    # simulated part computing every sample): no timeouts, and the 1 s group polled on time
    for pid in range(1, 7):
        assert all(r["err"] is None for r in by.get(pid, [])), by.get(pid)
    # (the median gap: a single late poll on a loaded host is the host's, not the node's)
    t = [r["t_ms"] for r in by[3]]
    gaps = sorted(b - a for a, b in zip(t, t[1:]))
    assert len(t) >= 12 and 850 <= gaps[len(gaps) // 2] <= 1150, gaps
    assert (t[-1] - t[0]) / (len(t) - 1) < 1100, "no poll skipped"
