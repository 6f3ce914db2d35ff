"""End to end, every layer real: pymodbus meter on a pty -> agent (Unix port, emulated NOR
flash, littlefs, queue, CBOR, umqtt.simple QoS1) -> mosquitto -> monitor (cbor2 decode)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from otlink_tools import node
from otlink_tools.demo import demo_config
from otlink_tools.monitor import Monitor
from ackkey import ACK_KEY, ACK_KEY_HEX


@pytest.fixture
def stack(fresh_broker, demo_meter, tmp_path):
    """(broker, meter, agents to kill at the end, folder): fixtures from tests/conftest.py."""
    procs = []
    yield fresh_broker, demo_meter, procs, tmp_path
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def rows_of(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_meter_and_sensor_values_arrive_decoded(stack):
    broker, meter, procs, tmp = stack
    cfg = demo_config(meter.agent_port, broker.port, ack_key=ACK_KEY_HEX)
    (tmp / "node.json").write_text(json.dumps(cfg))
    out = io.StringIO()
    mon = Monitor(port=broker.port, fmt="jsonl", out=out, err=io.StringIO(),
                  ack_key=ACK_KEY).start()
    log = open(tmp / "agent.log", "wb")
    procs.append(node.start_agent(str(tmp / "node.json"), str(tmp / "state"), log=log))
    try:
        ok = mon.wait(cond=lambda m: {r["pid"] for r in rows_of(out)} >= {1, 2, 3, 4, 5, 6, 20, 21},
                      seconds=40)
    finally:
        mon.stop()
    assert ok, (tmp / "agent.log").read_text()[-3000:]
    rows = rows_of(out)
    by_pid = {}
    for r in rows:
        by_pid.setdefault(r["pid"], []).append(r)
    points = {p["id"]: p for p in cfg["points"]}
    for pid in (1, 2, 3, 4, 5, 6):
        p = points[pid]
        want = meter.expected(1, p["table"], p["address"], p["type"], p["order"])
        for r in by_pid[pid]:
            assert r["err"] is None, r
            assert r["raw"] == want, (p["name"], r["raw"], want)
            assert r["value"] == pytest.approx(want * p.get("scale", 1.0)), p["name"]
            assert r["point"] == p["name"] and r["unit"] == p["unit"]
    # The SHT3x model drifts around 22 degC / 45 %RH; birth carries the datasheet conversion.
    for r in by_pid[20]:
        assert 18.9 < r["value"] < 25.1 and r["unit"] == "degC", r
    for r in by_pid[21]:
        assert 34.9 < r["value"] < 55.1 and r["unit"] == "%RH", r
    # Dedupe key: one boot, strictly increasing contiguous sequence numbers.
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert {r["boot"] for r in rows} == {1}
    assert all(not r["historical"] and not r["untimed"] for r in rows)
    now_ms = time.time() * 1000
    assert all(now_ms - 60000 < r["t_ms"] <= now_ms + 1000 for r in rows)


def test_agent_rejects_bad_config_naming_the_field(tmp_path):
    cfg = demo_config("/dev/null", 1883)
    cfg["points"][2]["type"] = "flaot32"
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    cmd, env = node.agent_command(str(tmp_path / "bad.json"), str(tmp_path / "state"))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "points[2].type" in res.stdout and "flaot32" in res.stdout, res.stdout
    assert not (tmp_path / "state" / "flash.img").exists()  # nothing touched before validation


def _port_free(port: int) -> bool:
    """Nothing listens there and a new server could take it (as mosquitto would, with
    SO_REUSEADDR; closed connections may linger in TIME_WAIT, which is not 'in use')."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        pass
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            return True
        except OSError:
            return False


def test_demo_shows_readings_and_ctrl_c_stops_everything(tmp_path):
    otlink = os.path.join(os.path.dirname(sys.executable), "otlink")
    proc = subprocess.Popen([otlink, "demo", "--format", "jsonl", "--workdir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    deadline = time.monotonic() + 40
    port = None
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "broker 127.0.0.1:" in line:
                port = int(line.split("broker 127.0.0.1:")[1].split(",")[0])
            if line.startswith("{") and '"pid"' in line:
                break
        assert any(x.startswith("{") for x in lines), "".join(lines)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        rest, _ = proc.communicate(timeout=20)
    assert "stopped broker, meter and agent" in rest
    assert port and _port_free(port)
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"processes left behind: {left.stdout}"


def test_slave_errors_reach_the_consumer_as_named_codes(stack):
    """A slave exception and a dead slave become per-point error codes that survive the
    queue, the CBOR batch and the decoder, while the other points keep their values."""
    broker, meter, procs, tmp = stack
    cfg = demo_config(meter.agent_port, broker.port, ack_key=ACK_KEY_HEX)
    cfg["serial"]["timeout_ms"] = 50
    cfg["mqtt"]["state_interval_s"] = 1
    cfg["points"].append({"id": 9, "name": "ghost", "slave": 7, "table": "input",
                          "address": 0, "type": "uint16", "group": "fast"})
    meter.fail(1, 200, 2)  # power factor register: illegal data address
    (tmp / "node.json").write_text(json.dumps(cfg))
    out = io.StringIO()
    mon = Monitor(port=broker.port, fmt="jsonl", out=out, err=io.StringIO(),
                  ack_key=ACK_KEY).start()
    procs.append(node.start_agent(str(tmp / "node.json"), str(tmp / "state"),
                                  log=open(tmp / "agent.log", "wb")))

    def errs(m):
        got = {r["pid"]: r["err"] for r in rows_of(out) if r["err"] is not None}
        se = [s.get("slave_errors", {}) for s in mon.states.values()]
        return got.get(6) and got.get(9) and se and se[0].get(1) and se[0].get(7)

    try:
        ok = mon.wait(cond=errs, seconds=40)
    finally:
        mon.stop()
    assert ok, (tmp / "agent.log").read_text()[-2000:]
    rows = rows_of(out)
    assert {r["err"] for r in rows if r["pid"] == 6} == {0x82}
    assert {r["err"] for r in rows if r["pid"] == 9} <= {1, 32}  # timeout, then offline
    assert any(r["pid"] == 9 and r["err"] == 1 for r in rows)
    assert all(r["err"] is None for r in rows if r["pid"] in (1, 2, 3, 4, 5))
    # the state message counts the failed transactions per slave: the exception (slave 1)
    # and the timeouts (slave 7)
    (st,) = mon.states.values()
    assert st["slave_errors"][1] >= 1 and st["slave_errors"][7] >= 1, st
    assert st["task_errors"] == 0 and st["queue_corrupt"] == 0, st
