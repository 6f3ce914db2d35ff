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
from pathlib import Path

import pytest
from otlink_tools.mpy import compile_tree, tree

from mp import FIRMWARE, ROOT, run

FW_TESTS = sorted((ROOT / "tests" / "firmware").glob("test_*.py"))
MPY_DIR = ROOT / "build" / "mpy-test"
MPY_TESTS = ROOT / "build" / "mpy-tests"


def heap_of(path: Path) -> str:
    m = re.search(r"^# heapsize: (\w+)", path.read_text(), re.M)
    return m.group(1) if m else "64K"


def compile_firmware() -> Path:
    """Bytecode .mpy of every firmware module, rebuilt when its source is newer."""
    compile_tree(tree(FIRMWARE), MPY_DIR, incremental=True)
    return MPY_DIR


def compile_tests() -> Path:
    compile_tree(tree(ROOT / "tests" / "firmware", "*.py"), MPY_TESTS, incremental=True)
    return MPY_TESTS


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
