"""Run every tests/firmware/test_*.py inside the MicroPython Unix port under a heap cap.

A file states its cap on a line `# heapsize: 64K` (default 64K, the queue's target).
"""

import re
from pathlib import Path

import pytest

from mp import ROOT, run

FW_TESTS = sorted((ROOT / "tests" / "firmware").glob("test_*.py"))


def heap_of(path: Path) -> str:
    m = re.search(r"^# heapsize: (\w+)", path.read_text(), re.M)
    return m.group(1) if m else "64K"


@pytest.mark.parametrize("path", FW_TESTS, ids=[p.stem for p in FW_TESTS])
def test_firmware(path, tmp_path):
    res = run(path, str(tmp_path), heap=heap_of(path), extra=(ROOT / "tests" / "firmware",))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"firmware: [1-9]\d* passed, 0 failed", res.stdout), out
