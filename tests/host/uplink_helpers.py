"""Shared pieces of the uplink end-to-end tests: run the agent pipeline under MicroPython."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from mp import MICROPYTHON, ROOT, env

AGENT = ROOT / "tests" / "bench" / "uplink_agent.py"


def options_file(opts: dict) -> str:
    """Write the agent options to a temp file and return its path. Never pass them on the
    command line: the MicroPython 1.29 Unix port dies with "FATAL: uncaught NLR" before
    running any code when an argument is 256 bytes or longer (tls paths make it so)."""
    fd, path = tempfile.mkstemp(prefix="otlink-agent-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(opts, f)
    return path


def start_agent(opts: dict, heap: str = "1M", mpy: Path | None = None) -> subprocess.Popen:
    """The uplink agent under MicroPython: from source, or (mpy given) from that .mpy tree,
    which must hold the firmware, umqtt and uplink_agent.mpy."""
    path = options_file(opts)
    if mpy is None:
        cmd, e = [str(AGENT), path], env(ROOT / "tests" / "firmware")
    else:
        cmd, e = ["-m", "uplink_agent", path], dict(os.environ, MICROPYPATH=f"{mpy}:.frozen")
    proc = subprocess.Popen([MICROPYTHON, "-X", f"heapsize={heap}", *cmd],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=e, cwd=str(ROOT))
    proc.opts_file = path  # type: ignore[attr-defined]
    return proc


def result(proc: subprocess.Popen, timeout: float = 60, strict: bool = True) -> dict:
    """The agent's RESULT line as a dict; without one, fail (strict) or {"error": tail}."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        path = getattr(proc, "opts_file", None)
        if path and os.path.exists(path):
            os.unlink(path)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    if not strict:
        return {"error": out.strip()[-300:]}
    raise AssertionError(f"agent gave no result (rc {proc.returncode}):\n{out}")


def expected_raw(seq: int, first: int = 1):
    """Value the synthetic source writes for reading number seq (see uplink_agent.make)."""
    i = seq - first
    pid = 1 + i % 10
    return pid, (1000 + i if pid % 2 else i * 0.5)
