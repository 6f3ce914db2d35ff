"""Helpers to run code inside the MicroPython Unix ports from pytest.

Two builds, one harness (docs/boards.md, "The two test builds"):
- "64": the 64-bit Unix port of the pinned wheel, with TLS; firmware loaded as .mpy from
  build/mpy-test (or its source), umqtt from build/lib.
- "32": build/mp32/micropython, built from the v1.28.0 release source by tools/build_mp32.sh:
  the boards' object model (31-bit small ints, single-precision boxed floats), with the
  agent and umqtt frozen in as a board firmware holds them. No TLS.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
FIRMWARE = ROOT / "firmware"
BUILD_LIB = ROOT / "build" / "lib"
MP64 = VENV_BIN / "micropython"
MP32 = ROOT / "build" / "mp32" / "micropython"
MICROPYTHON = str(MP64)
BUILDS = ("64", "32")


@functools.cache
def mp32() -> str | None:
    """Path of the frozen 32-bit build, (re)built once per test session so the frozen
    firmware is the working tree's; None when the toolchain tarball is absent."""
    res = subprocess.run(["bash", str(ROOT / "tools" / "build_mp32.sh")], capture_output=True,
                         text=True, cwd=str(ROOT))
    if res.returncode:
        raise RuntimeError("tools/build_mp32.sh failed:\n" + res.stdout + res.stderr)
    return str(MP32) if MP32.exists() and "SKIPPED" not in res.stdout else None


def interpreter(build: str) -> str:
    if build == "64":
        return MICROPYTHON
    exe = mp32()
    if exe is None:
        import pytest

        pytest.skip("32-bit build absent (no micropython-1.28.0.tar.gz in ../shared/toolchain)")
    return exe


def micropypath(*extra: Path, build: str = "64") -> str:
    """MICROPYPATH for firmware code. 64: our tree (or extra's .mpy first), fetched umqtt,
    frozen modules (ssl, asyncio). 32: extra, then the frozen agent."""
    if build == "32":
        return ":".join([str(p) for p in extra] + [".frozen"])
    parts = [str(p) for p in extra] + [str(FIRMWARE), str(BUILD_LIB), ".frozen"]
    return ":".join(parts)


def env(*extra: Path, build: str = "64") -> dict:
    e = dict(os.environ)
    e["MICROPYPATH"] = micropypath(*extra, build=build)
    return e


def run(script: Path | str, *args: str, heap: str = "64K", timeout: float = 300,
        extra: tuple = (), module: bool = False, build: str = "64"
        ) -> subprocess.CompletedProcess:
    """Run a script (or, with module=True, `-m script`: found on MICROPYPATH, .mpy or .py)."""
    for a in args:
        # The Unix port dies with "FATAL: uncaught NLR" on any argument of 256 bytes or
        # more: say so instead of crashing (pass long options in a file).
        if len(a.encode()) >= 256:
            raise ValueError(f"micropython argument over 255 bytes: {a[:40]}...")
    target = ["-m", str(script)] if module else [str(script)]
    cmd = [interpreter(build), "-X", f"heapsize={heap}", *target, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env(*extra, build=build), cwd=str(ROOT))
