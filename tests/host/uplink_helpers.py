"""Shared pieces of the uplink end-to-end tests: run the agent pipeline under MicroPython."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

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


def start_agent(opts: dict, heap: str = "1M") -> subprocess.Popen:
    path = options_file(opts)
    proc = subprocess.Popen([MICROPYTHON, "-X", f"heapsize={heap}", str(AGENT), path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env(), cwd=str(ROOT))
    proc.opts_file = path  # type: ignore[attr-defined]
    return proc


def result(proc: subprocess.Popen, timeout: float = 60) -> dict:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        path = getattr(proc, "opts_file", None)
        if path and os.path.exists(path):
            os.unlink(path)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(f"agent gave no result (rc {proc.returncode}):\n{out}")


def expected_raw(seq: int, first: int = 1):
    """Value the synthetic source writes for reading number seq (see uplink_agent.make)."""
    i = seq - first
    pid = 1 + i % 10
    return pid, (1000 + i if pid % 2 else i * 0.5)
