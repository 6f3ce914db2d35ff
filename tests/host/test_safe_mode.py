"""A node must always come back reachable (app.boot, bootguard.py, hal/unix/wdt.py).

- An exception at boot (here: the configured serial port does not exist) ends the process
  with status 70 where a board would reset; after three such boots in a row the fourth comes
  up in safe mode - console and network, no polling - and says so in its state message.
- A task that keeps failing stops the watchdog's feeding: the simulated watchdog (fed by the
  main loop only while every task is alive) resets the process, and the next boot reports
  reset_cause "watchdog".
- A config that does not load returns to the REPL on a board instead of soft-rebooting into
  the same error (main.py): here the status 2, with the error named, and nothing started.
Each boot is one run of firmware/main.py on the Unix port: a process exit is a board reset.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

from otlink_tools import node, paths
from otlink_tools.monitor import Monitor
from ackkey import ACK_KEY_HEX

ROOT = Path(__file__).resolve().parents[2]


def config(broker_port: int, serial_port: str | None = None) -> dict:
    cfg = {"version": 1, "board": "unix", "node": {"id": "guard", "site": "lab"},
           "mqtt": {"host": "127.0.0.1", "port": broker_port, "state_interval_s": 1,
                    "ack_key": ACK_KEY_HEX},
           "groups": {"fast": {"interval_ms": 1000}},
           "sensors": [{"name": "cabinet", "driver": "sht3x", "bus": "i2c0", "address": 0x44,
                        "group": "fast",
                        "points": [{"id": 70, "name": "cabinet_temp",
                                    "channel": "temperature"}]}]}
    if serial_port:
        cfg["serial"] = {"port": serial_port}
        cfg["points"] = [{"id": 1, "name": "v", "slave": 1, "table": "holding",
                          "address": 0, "type": "uint16", "group": "fast"}]
    return cfg


def boot(tmp: Path, cfg: dict, boards: Path | None = None, timeout: float = 20,
         until=None, broker_port: int | None = None) -> tuple[int, str, dict | None]:
    """One boot: run the agent; with `until`, watch its state messages and stop it (the
    stop file) once until(state) holds. (exit status, output, last state)."""
    (tmp / "node.json").write_text(json.dumps(cfg))
    cmd, env = node.agent_command(str(tmp / "node.json"), str(tmp / "state"),
                                  mpy_dir=node.firmware_mpy())
    if boards is not None:
        cmd[cmd.index("--boards") + 1] = str(boards)
    (tmp / "state").mkdir(exist_ok=True)
    mon = None
    if until is not None:
        mon = Monitor(port=broker_port, fmt="jsonl", out=io.StringIO(),
                      err=io.StringIO()).start()
    proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    state = None
    try:
        if mon is not None:
            mon.wait(cond=lambda m: any(until(s) for s in m.states.values()),
                     seconds=timeout)
            state = next((s for s in mon.states.values() if until(s)), None)
            (tmp / "state" / "stop").write_text("")
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if mon is not None:
            mon.stop()
    return proc.returncode, out, state


def test_three_crash_boots_then_safe_mode(fresh_broker, tmp_path):
    cfg = config(fresh_broker.port, serial_port=str(tmp_path / "no-such-tty"))
    for n in (1, 2, 3):
        rc, out, _ = boot(tmp_path, cfg)
        assert rc == 70 and "crashed" in out and "no-such-tty" in out, (n, rc, out)
    assert (tmp_path / "state" / "otlink_boots").read_text().strip() == "3"
    rc, out, st = boot(tmp_path, cfg, until=lambda s: s.get("safe_mode"),
                       broker_port=fresh_broker.port)
    assert "safe mode: 3 crash-reboots in a row" in out, out
    assert st is not None and st["safe_mode"] == "3 crash-reboots in a row", (st, out)
    # no poller (and no sensor) ran
    assert "slave_errors" not in st and "sensor_errors" not in st and st["task_errors"] == 0
    assert rc == 0, out


def test_a_task_that_keeps_failing_starves_the_watchdog(fresh_broker, tmp_path):
    boards = tmp_path / "boards"
    boards.mkdir()
    unix = json.loads((paths.BOARDS / "unix.json").read_text())
    faulty = dict(unix, watchdog_ms=2500, faults={"network": "raise"})
    (boards / "unix.json").write_text(json.dumps(faulty))
    cfg = config(fresh_broker.port)
    t0 = time.monotonic()
    rc, out, _ = boot(tmp_path, cfg, boards=boards)
    took = time.monotonic() - t0
    assert rc == -9, (rc, out)  # killed by the watchdog: no clean exit, as a reset gives none
    assert "task network keeps failing" in out and "watchdog: not fed" in out, out
    assert took < 15, took
    # the next boot (the fault gone) says why the last one ended
    rc, out, st = boot(tmp_path, cfg, until=lambda s: s.get("reset_cause") == "watchdog",
                       broker_port=fresh_broker.port)
    assert st is not None and st["reset_cause"] == "watchdog", out
    assert rc == 0
    assert not os.path.exists(str(tmp_path / "state" / "flash.img.reset_cause"))


def test_a_bad_config_names_its_error_and_starts_nothing(tmp_path):
    cfg = config(1883)
    cfg["mqtt"]["port"] = 0
    rc, out, _ = boot(tmp_path, cfg)
    assert rc == 2 and "mqtt.port" in out, out
    assert not (tmp_path / "state" / "flash.img").exists()
