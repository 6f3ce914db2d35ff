"""Flash queue survives SIGKILL at random moments (issue 4 item 6).

A MicroPython worker appends and acknowledges readings on a file-backed emulated NOR flash;
it is killed with SIGKILL at a random moment, 50 times in a row. Each restart prints what the
queue recovered, which must be: every committed, unacknowledged reading, in order, intact,
with stable (seq, boot), and nothing acknowledged.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from mp import MICROPYTHON, ROOT, env
from otlink_tools.decode import seq_diff

WORKER = ROOT / "tests" / "host" / "queue_worker_mp.py"


def run_worker(img: Path, start: int, out: Path, kill_after: float | None) -> list[list[str]]:
    with open(out, "w") as f:
        p = subprocess.Popen([MICROPYTHON, "-X", "heapsize=1M", str(WORKER), str(img), str(start)],
                             stdout=f, stderr=subprocess.STDOUT,
                             env=env(ROOT / "tests" / "firmware"), cwd=str(ROOT))
        # the kill lands after recovery finished (line "S"), while appending and acknowledging
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "\nS " not in "\n" + out.read_text():
            time.sleep(0.005)
        time.sleep(kill_after or 0)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    text = out.read_text()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the kill may cut the last line short
    return [ln.split() for ln in text.splitlines() if ln.strip()]


def test_sigkill_50_times(tmp_path: Path) -> None:
    rng = random.Random(4)
    img = tmp_path / "flash.img"
    out = tmp_path / "out.txt"
    committed: set[int] = set()  # values known committed and not known acknowledged
    acked = -1  # every value <= acked was acknowledged (ack returned)
    inflight = -1  # ack of values <= inflight was being written when killed
    extra_from = 0  # values >= this may have been committed just before the kill
    seq_of: dict[int, tuple[int, int]] = {}
    start = 0
    kills = 0
    for run in range(51):
        last = run == 50
        lines = run_worker(img, start, out, None if last else rng.uniform(0.02, 0.25))
        assert lines and not any(ln[0] == "GARBLED" for ln in lines), lines[:5]
        rec = [(int(ln[1]), int(ln[2]), int(ln[3])) for ln in lines if ln[0] == "R"]
        assert any(ln[0] == "S" for ln in lines), f"run {run}: the queue did not open: {lines[:3]}"
        got = [v for _, _, v in rec]
        assert got == sorted(set(got)), f"run {run}: order or duplicates: {got[:20]}"
        for a, b in zip(rec, rec[1:]):  # committed seqs are dense across boots
            assert seq_diff(b[0], a[0]) == 1, f"run {run}: seq jump {a} -> {b}"
        gotset = set(got)
        for v in got:
            assert v > acked, f"run {run}: acknowledged reading {v} came back (acked {acked})"
            assert v in committed or v >= extra_from, f"run {run}: unknown reading {v}"
        for v in committed:
            if v > acked and v not in gotset:
                assert v <= inflight, f"run {run}: committed reading {v} is missing"
        for s, b, v in rec:  # the dedupe key never changes once committed
            if v in seq_of:
                assert seq_of[v] == (s, b), f"run {run}: reading {v} changed key"
            seq_of[v] = (s, b)
        if last:
            break
        # fold this run's output into the model
        committed = gotset
        if inflight >= 0 and not any(v <= inflight for v in got):
            acked = max(acked, inflight)
        inflight = -1
        s_line = next(ln for ln in lines if ln[0] == "S")
        run_start = int(s_line[1])
        assert s_line[3:] == ["0", "0"], f"run {run}: drops, corrupt = {s_line[3:]}"
        last_c = run_start - 1
        for ln in lines:
            if ln[0] == "C":
                last_c = int(ln[1])
            elif ln[0] == "a":
                inflight = int(ln[1])
            elif ln[0] == "A":
                acked = max(acked, int(ln[1]))
                inflight = -1
        committed |= set(range(run_start, last_c + 1))
        committed = {v for v in committed if v > acked}
        extra_from = last_c + 1
        start = last_c + 1
        kills += 1
    assert kills == 50
    assert len(seq_of) > 500, "the workload made progress"
