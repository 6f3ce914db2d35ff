"""Smallest heap each firmware test passes under, beside the cap its file declares.

    .venv/bin/python tools/heap_floor.py [name-substring ...]

A cap with too little headroom fails on a machine whose paths are longer (MICROPYPATH and
module file names live in the heap) or whose allocation pattern differs slightly; this
prints the floor found by bisection (1 KiB steps) and the headroom of each declared cap.
"""

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_firmware import FW_TESTS, heap_of, run_fw_test  # noqa: E402


def kib(s: str) -> int:
    m = re.fullmatch(r"(\d+)([KM]?)", s)
    n = int(m.group(1))
    return n * 1024 if m.group(2) == "M" else n if m.group(2) == "K" else n // 1024


def passes(path: Path, heap_k: int) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        res = run_fw_test(path, tmp, f"{heap_k}K")
    return res.returncode == 0 and re.search(r"firmware: [1-9]\d* passed, 0 failed",
                                              res.stdout) is not None


def main(argv):
    print(f"{'test':28} {'cap KiB':>8} {'floor KiB':>10} {'headroom':>9}")
    for path in FW_TESTS:
        if argv and not any(a in path.stem for a in argv):
            continue
        cap = kib(heap_of(path))
        if not passes(path, cap):
            print(f"{path.stem:28} {cap:>8} {'FAILS AT CAP':>10}")
            continue
        lo, hi = 8, cap  # lo fails (assumed), hi passes
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(path, mid):
                hi = mid
            else:
                lo = mid
        print(f"{path.stem:28} {cap:>8} {hi:>10} {cap / hi:>8.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
