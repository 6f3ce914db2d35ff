"""The CLI cleans up after itself: `otlink node run` stops its MicroPython agent on SIGTERM and
SIGHUP (not only Ctrl-C), and commands that need a scratch folder remove it unless the user
named one (demo --workdir, deploy --out)."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from otlink_tools.broker import Broker, free_port
from otlink_tools.demo import demo_config

OTLINK = str(Path(sys.executable).parent / "otlink")


def scratch(tmp_path: Path) -> tuple[Path, dict]:
    """A fresh temp dir for a subprocess (TMPDIR), so its leftovers can be listed exactly."""
    t = tmp_path / "tmp"
    t.mkdir()
    return t, dict(os.environ, TMPDIR=str(t))


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("otlink-"))


def otlink(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([OTLINK, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


# --- node run: every stop signal reaches the agent ----------------------------------------------

def agent_pids(marker: str) -> list[int]:
    """Pids of MicroPython agents (firmware/main.py) whose command line holds marker."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if marker in words and any(w.endswith("main.py") for w in words):
            pids.append(int(d.name))
    return pids


def alive(pid: int) -> bool:
    """True while pid runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_node_run_stops_the_agent_on(tmp_path, sig):
    master, slave = os.openpty()  # a serial port that exists; no meter answers on it
    state = str(tmp_path / "state")
    cfg = demo_config(os.ttyname(slave), free_port())  # nothing listens: the agent retries
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    proc = subprocess.Popen([OTLINK, "node", "run", "--config", str(tmp_path / "node.json"),
                             "--state", state], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
                agent_pids(state) and any("demo-press-01" in x for x in lines)):
            time.sleep(0.05)
        pids = agent_pids(state)
        assert pids, f"the agent did not start: {lines}"
        proc.send_signal(sig)
        rc = proc.wait(15)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
        assert not any(alive(p) for p in pids), f"agent {pids} still runs after otlink exited"
        reader.join(5)
        out = "".join(lines)
        assert "stopping" in out, out  # it stopped cleanly (KeyboardInterrupt), not killed
        assert rc == 0, out            # and otlink exits with the agent's status
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in agent_pids(state):  # an orphan left by a broken otlink
            os.kill(p, signal.SIGKILL)
        os.close(master)
        os.close(slave)


# --- scratch folders ----------------------------------------------------------------------------

def test_demo_without_workdir_removes_its_folder(tmp_path):
    tmp, env = scratch(tmp_path)
    res = otlink("demo", "--format", "jsonl", "--seconds", "1", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "temporary" in res.stdout and "--workdir" in res.stdout, res.stdout
    assert leftovers(tmp) == []


def test_demo_keeps_a_named_workdir(tmp_path):
    tmp, env = scratch(tmp_path)
    res = otlink("demo", "--format", "jsonl", "--seconds", "1", "--workdir",
                 str(tmp_path / "w"), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "w" / "agent.log").exists() and (tmp_path / "w" / "node.json").exists()
    assert leftovers(tmp) == []


def test_deploy_dry_run_without_out_removes_its_folder(tmp_path):
    tmp, env = scratch(tmp_path)
    res = otlink("deploy", "--board", "esp32", "--dry-run", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "temporary folder" in res.stdout and "--out" in res.stdout, res.stdout
    assert leftovers(tmp) == []


def test_deploy_dry_run_keeps_out(tmp_path):
    tmp, env = scratch(tmp_path)
    res = otlink("deploy", "--board", "esp32", "--dry-run", "--out", str(tmp_path / "o"),
                 env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert str(tmp_path / "o") in res.stdout
    assert (tmp_path / "o" / "main.py").exists()
    assert leftovers(tmp) == []


def test_flash_dry_run_removes_its_merged_image(tmp_path):
    from test_flash import esp32_image  # a realistically sized ESP32_GENERIC image

    tmp, env = scratch(tmp_path)
    fw = esp32_image(tmp_path / "fw.bin")
    res = otlink("flash", "--board", "esp32", "--port", "/dev/ttyUSB0", str(fw), "--dry-run",
                 env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "esptool" in res.stdout and "fw-otlink.bin" in res.stdout, res.stdout
    assert leftovers(tmp) == []


def test_broker_removes_the_folder_it_made(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    b = Broker()
    d = b.dir
    assert d.parent == tmp_path and d.name.startswith("otlink-broker-")
    b.start()
    b.stop()
    b.start()  # a stopped broker starts again in the same folder
    b.stop()
    assert d.exists()
    del b
    gc.collect()
    assert not d.exists()


def test_broker_keeps_a_named_workdir(tmp_path):
    b = Broker(workdir=str(tmp_path)).start()
    b.stop()
    del b
    gc.collect()
    assert (tmp_path / "mosquitto.conf").exists()


# --- modbus probe: the serial defaults are in --help --------------------------------------------

def test_modbus_probe_help_shows_serial_defaults():
    res = subprocess.run([OTLINK, "modbus", "probe", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    out = " ".join(res.stdout.split())  # argparse wraps lines
    for text in ("default 9600", "default N", "default 1;", "default 200", "8E1", "8N2",
                 "11-bit"):
        assert text in out, text
