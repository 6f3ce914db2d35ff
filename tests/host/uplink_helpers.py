"""Shared pieces of the uplink end-to-end tests: run the agent pipeline under MicroPython."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mp import MICROPYTHON, ROOT, env

AGENT = ROOT / "tests" / "bench" / "uplink_agent.py"


def start_agent(opts: dict, heap: str = "1M") -> subprocess.Popen:
    return subprocess.Popen([MICROPYTHON, "-X", f"heapsize={heap}", str(AGENT), json.dumps(opts)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env(), cwd=str(ROOT))


def result(proc: subprocess.Popen, timeout: float = 60) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(f"agent gave no result (rc {proc.returncode}):\n{out}")


def expected_raw(seq: int, first: int = 1):
    """Value the synthetic source writes for reading number seq (see uplink_agent.make)."""
    i = seq - first
    pid = 1 + i % 10
    return pid, (1000 + i if pid % 2 else i * 0.5)
