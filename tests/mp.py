"""Helpers to run code inside the MicroPython Unix port from pytest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
MICROPYTHON = str(VENV_BIN / "micropython")
FIRMWARE = ROOT / "firmware"
BUILD_LIB = ROOT / "build" / "lib"


def micropypath(*extra: Path) -> str:
    """MICROPYPATH for firmware code: our tree, fetched umqtt, frozen modules (ssl, asyncio)."""
    parts = [str(p) for p in extra] + [str(FIRMWARE), str(BUILD_LIB), ".frozen"]
    return ":".join(parts)


def env(*extra: Path) -> dict:
    e = dict(os.environ)
    e["MICROPYPATH"] = micropypath(*extra)
    return e


def run(script: Path | str, *args: str, heap: str = "64K", timeout: float = 300,
        extra: tuple = (), module: bool = False) -> subprocess.CompletedProcess:
    """Run a script (or, with module=True, `-m script`: found on MICROPYPATH, .mpy or .py)."""
    for a in args:
        # The 1.29 Unix port dies with "FATAL: uncaught NLR" on any argument of 256 bytes or
        # more: say so instead of crashing (pass long options in a file).
        if len(a.encode()) >= 256:
            raise ValueError(f"micropython argument over 255 bytes: {a[:40]}...")
    target = ["-m", str(script)] if module else [str(script)]
    cmd = [MICROPYTHON, "-X", f"heapsize={heap}", *target, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env(*extra), cwd=str(ROOT))
