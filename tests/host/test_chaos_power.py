"""Found by `make chaos`: power cuts during start-up are not crashes. The boot guard
(bootguard.py) counted every boot that had not yet run healthy (30 s) as a crash, so a node
whose supply dropped out a few times within half a minute of starting - a cabinet browning
out while a machine starts - came up in safe mode (no polling) after 3 and started nothing
at all after 6, until a technician came with a USB cable. After the chaos run's random
SIGKILLs the agent stopped for good ("338 boots in a row failed"). A boot that follows a
power-up (the board's reset cause; on the Unix port a process start without the reset mark
a crash leaves) starts the count again; crashes still count (tests/host/test_safe_mode.py)."""

from __future__ import annotations

import io
import json
import signal
import time

from otlink_tools import node
from otlink_tools.demo import demo_config
from otlink_tools.monitor import Monitor


def test_six_power_cuts_during_start_up_then_a_normal_boot(tmp_path, broker, demo_meter):
    cfg = demo_config(demo_meter.agent_port, broker.port)
    cfg["groups"]["fast"]["interval_ms"] = 200
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    state = str(tmp_path / "state")
    log = open(tmp_path / "agent.log", "ab")
    mpy = node.firmware_mpy()
    count = tmp_path / "state" / "otlink_boots"  # the guard's count (bootguard.py)
    for _ in range(6):  # each cut well before the 30 s a boot needs to count as healthy
        before = count.stat().st_mtime_ns if count.exists() else 0
        a = node.start_agent(str(tmp_path / "node.json"), state, log=log, mpy_dir=mpy)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
                not count.exists() or count.stat().st_mtime_ns == before):
            time.sleep(0.02)  # the cut lands after the boot was counted
        time.sleep(0.2)
        a.send_signal(signal.SIGKILL)
        a.wait()
    out = io.StringIO()
    mon = Monitor(port=broker.port, fmt="jsonl", out=out, err=io.StringIO(), ack=False).start()
    a = node.start_agent(str(tmp_path / "node.json"), state, log=log, mpy_dir=mpy)
    try:
        ok = mon.wait(seconds=20, cond=lambda m: any(
            json.loads(x)["pid"] == 1 for x in out.getvalue().splitlines() if x.strip()))
    finally:
        mon.stop()
        a.send_signal(signal.SIGKILL)
        a.wait()
        log.close()
    text = (tmp_path / "agent.log").read_text(errors="replace")
    assert "safe mode" not in text and "nothing started" not in text, text[-1500:]
    assert ok, "the node did not poll after the power came back:\n" + text[-1500:]
