"""Run every tests/firmware/test_*.py inside both MicroPython Unix ports under a heap cap.

Each test function of each file is one pytest item per build ("64": the wheel's 64-bit port;
"32": the frozen 32-bit build of tools/build_mp32.sh, the boards' object model). A file runs
once per build; its items report the lines `ok  name` / `FAIL name` it printed.

A file states its caps on a line `# heapsize: 64K` (both builds) or `# heapsize: 64K 32:48K`
(a separate cap for the 32-bit build, whose heap holds no bytecode: the agent is frozen).
Default 64K. The firmware and the test files are loaded as .mpy compiled by mpy-cross, as
firmware is on a board (on the 32-bit build the firmware is frozen, test files are .mpy):
compiling from source at import time takes a transient share of the heap that depends on the
file, not on the code under test. OTLINK_TEST_SOURCE=1 runs the 64-bit sources instead (the
caps assume .mpy). Each cap keeps at least 1.25x headroom over the smallest heap the file
passes under; `tools/heap_floor.py` measures it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from otlink_tools.mpy import compile_tree, tree

from mp import BUILDS, FIRMWARE, ROOT, run

FW_TESTS = sorted((ROOT / "tests" / "firmware").glob("test_*.py"))
MPY_DIR = ROOT / "build" / "mpy-test"
MPY_TESTS = ROOT / "build" / "mpy-tests"


def heap_of(path: Path, build: str = "64") -> str:
    m = re.search(r"^# heapsize: (\w+)(?: 32:(\w+))?", path.read_text(), re.M)
    if not m:
        return "64K"
    return m.group(2) if build == "32" and m.group(2) else m.group(1)


def functions_of(path: Path) -> list[str]:
    return re.findall(r"^def (test_\w+)\(", path.read_text(), re.M)


def compile_firmware() -> Path:
    """Bytecode .mpy of every firmware module, rebuilt when its source is newer."""
    compile_tree(tree(FIRMWARE), MPY_DIR, incremental=True)
    return MPY_DIR


def compile_tests() -> Path:
    compile_tree(tree(ROOT / "tests" / "firmware", "*.py"), MPY_TESTS, incremental=True)
    return MPY_TESTS


def run_fw_test(path: Path, scratch: str, heap: str, source: bool = False, build: str = "64",
                only: str | None = None):
    """One firmware test file under a heap cap: from .mpy (default) or from its source."""
    if only:
        os.environ["MPTEST_ONLY"] = only
    try:
        if source and build == "64":
            return run(path, scratch, heap=heap, extra=(ROOT / "tests" / "firmware",))
        extra = (compile_tests(),) if build == "32" else (compile_tests(), compile_firmware())
        return run(path.stem, scratch, heap=heap, module=True, extra=extra, build=build)
    finally:
        os.environ.pop("MPTEST_ONLY", None)


_RESULTS: dict[tuple[str, str], tuple[dict, str]] = {}


def file_result(path: Path, build: str) -> tuple[dict, str]:
    """{function: passed} and the whole output of one run of a file on a build (cached)."""
    key = (path.stem, build)
    if key not in _RESULTS:
        with tempfile.TemporaryDirectory(prefix="otlink-fw-") as scratch:
            res = run_fw_test(path, scratch, heap_of(path, build),
                              source=bool(os.environ.get("OTLINK_TEST_SOURCE")), build=build)
        out = res.stdout + res.stderr
        status = {m.group(2): m.group(1) == "ok"
                  for m in re.finditer(r"^(ok|FAIL)\s+(test_\w+)", res.stdout, re.M)}
        if res.returncode and not any(v is False for v in status.values()):
            # the file died outside a test function (import, MemoryError at load): every
            # function that did not report is failed with the whole output
            status = {k: v for k, v in status.items() if v}
        _RESULTS[key] = (status, out)
    return _RESULTS[key]


CASES = [(p, f, b) for b in BUILDS for p in FW_TESTS for f in functions_of(p)]


@pytest.mark.parametrize("path,func,build", CASES,
                         ids=[f"{b}-{p.stem}::{f}" for p, f, b in CASES])
def test_firmware(path, func, build):
    from mp import interpreter

    interpreter(build)  # skips the 32-bit items, loudly, when the toolchain is absent
    status, out = file_result(path, build)
    assert func in status, f"{func} did not run on the {build}-bit build:\n{out}"
    assert status[func], f"{func} failed on the {build}-bit build:\n{out}"


FILES = [(p, b) for b in BUILDS for p in FW_TESTS]


@pytest.mark.parametrize("path,build", FILES, ids=[f"{b}-{p.stem}" for p, b in FILES])
def test_firmware_file_runs_exactly_its_functions(path, build):
    """A test function the bridge cannot see (imported from a helper module) would run
    uncounted: every function a file reports is one of its own, and it has at least one."""
    from mp import interpreter

    interpreter(build)
    status, out = file_result(path, build)
    mine = functions_of(path)
    assert mine, f"{path.name} defines no test_ function"
    assert set(status) == set(mine), (
        f"reported but not defined in {path.name}: {sorted(set(status) - set(mine))}; "
        f"defined but not reported: {sorted(set(mine) - set(status))}\n{out}")
