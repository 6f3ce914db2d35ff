"""Analytics benchmarks (docs/analytics.md, "Budgets"): per reading through a tumbling window
and per 1024-sample accelerometer burst, time and heap bytes, on both MicroPython builds,
each beside a plain-Python implementation of the same features in the same process
(tests/bench/analytics_mp.py); and the longest time the pipeline holds the event loop, seen
as the lateness of a 20 ms poll task running beside back-to-back bursts.

Times are medians of N processes (3; --quick: 1) on the x86 Unix ports; a board runs the
same code 10-50x slower (docs/boards.md).
"""

from __future__ import annotations

import json

import benchlib as bl
import mp
from mp import ROOT

HEAP = "8M"  # the rival's floats, with the collector held off while each is measured
HOLD_HEAP = "256K"  # the lateness run: a board-sized heap (its collections are as short)
EXCL = ("the MCU: x86 Unix ports (a 240 MHz ESP32 runs the same code 10-50x slower), the "
        "I2C transfers (the part's FIFO is read from memory here)")


def measure(build: str, quick: bool, hold: bool = False) -> dict:
    args = ("quick" if quick else "full",) + (("hold",) if hold else ())
    res = mp.run(ROOT / "tests" / "bench" / "analytics_mp.py", *args,
                 heap=HOLD_HEAP if hold else HEAP, build=build, timeout=900)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"analytics bench ({build}-bit) failed:\n{res.stdout}{res.stderr}")


def _med(ms: list[dict], *path) -> float:
    vals = []
    for m in ms:
        v = m
        for k in path:
            v = v[k]
        vals.append(v)
    return bl.median(vals)


def run(ctx: dict) -> list[dict]:
    quick = bool(ctx.get("quick"))
    n = 1 if quick else 3
    rows = []
    for build in mp.BUILDS:
        if build == "32" and mp.mp32() is None:  # no 32-bit toolchain: its rows are skipped
            continue
        ms = [measure(build, quick) for _ in range(n)]
        hs = [measure(build, quick, True) for _ in range(n)]
        tag = f"{build}-bit"
        for kind in ("int", "float"):
            w = f"window_{kind}"
            us, rus = _med(ms, w, "us"), _med(ms, w, "rival_us")
            b, rb = _med(ms, w, "bytes"), _med(ms, w, "rival_bytes")
            rows.append({
                "name": f"analytics window time/reading ({kind}, {tag})", "value": us,
                "unit": "us", "rival": rus,
                "rival_is": "Welford in Python floats, same statistics",
                "target": "<= 10", "met": us <= 10, "excludes": EXCL,
                "note": f"exact integer sums in viper; closing a window costs "
                        f"{_med(ms, w, 'close_us'):.0f} us and {_med(ms, w, 'close_bytes'):.0f} "
                        f"B once per window"})
            rows.append({
                "name": f"analytics window heap/reading ({kind}, {tag})", "value": b,
                "unit": "B", "rival": rb, "rival_is": "Welford in Python floats",
                "target": "0 (after warm-up)", "met": b < 1, "excludes": EXCL,
                "note": "bytes allocated over 20,000 readings / 20,000 (the fraction is one "
                        "small object of the measurement itself)"})
        def v(*p, ms=ms):
            return _med(ms, "vib", *p)
        burst = v("us", "read") + v("us", "moments") + v("us", "spectrum")
        rows.append({
            "name": f"vibration burst time, 1024 samples x 3 axes ({tag})",
            "value": burst + v("us", "finish"), "unit": "us", "rival": v("us", "py"),
            "rival_is": "same features in plain Python floats (radix-2 FFT over lists)",
            "target": "<= 2000", "met": burst + v("us", "finish") <= 2000, "excludes": EXCL,
            "note": f"FIFO read {v('us', 'read'):.0f} + moments {v('us', 'moments'):.0f} + "
                    f"FFT and bands {v('us', 'spectrum'):.0f} + finish (floats, records) "
                    f"{v('us', 'finish'):.0f} us; velocity agrees with the rival to "
                    f"{v('velocity_rel_diff'):.1e}"})
        rows.append({
            "name": f"vibration time/sample ({tag})", "value": burst / 1024, "unit": "us",
            "rival": v("us", "py") / 1024, "rival_is": "plain Python floats",
            "target": "<= 1", "met": burst / 1024 <= 1, "excludes": EXCL,
            "note": "read + moments + FFT + bands per sample (the per-burst finish excluded)"})
        heap = v("bytes", "read") + v("bytes", "moments") + v("bytes", "spectrum")
        rows.append({
            "name": f"vibration heap/sample ({tag})", "value": heap / 1024, "unit": "B",
            "rival": v("bytes", "py") / 1024, "rival_is": "plain Python floats",
            "target": "0", "met": heap == 0, "excludes": EXCL,
            "note": f"the per-burst finish allocates {v('bytes', 'finish'):.0f} B (its floats "
                    f"and the derived records), once per burst"})
        held = _med(hs, "hold", "p99_slice_us") / 1000
        rows.append({
            "name": f"longest slice the vibration pipeline holds the loop ({tag})",
            "value": held, "unit": "ms", "rival": burst / 1000,
            "rival_is": "the burst's work in one slice",
            "target": "<= 1 (x86; x50 on a board = 50 ms, a quarter of the 200 ms Modbus "
                      "response timeout)", "met": held <= 1.0, "excludes": EXCL,
            "note": f"99th percentile of the timed slices between the task's yields (FIFO "
                    f"read, moments of 3 axes, FFT + bands, finish; largest "
                    f"{_med(hs, 'hold', 'max_slice_us') / 1000:.2f} ms, a host preemption "
                    f"when far above): the longest a Modbus poll can be kept waiting by the "
                    f"analytics"})
        late = _med(hs, "hold", "max_late_us") / 1000
        rows.append({
            "name": f"poll task lateness beside vibration bursts ({tag})", "value": late,
            "unit": "ms", "rival": _med(hs, "idle", "max_late_us") / 1000,
            "rival_is": "the same poll task, no bursts",
            "target": "<= idle lateness + 1 ms", "met": late <= 1 + _med(hs, "idle",
                                                                         "max_late_us") / 1000,
            "excludes": EXCL,
            "note": f"worst lateness of a 20 ms periodic task over "
                    f"{int(_med(hs, 'hold', 'polls'))} polls while bursts run back to back "
                    f"(heap {HOLD_HEAP}): "
                    "the pipeline yields between FIFO reads, moments, FFT and finish, so a "
                    "Modbus poll waits at most one slice; includes the host's scheduling "
                    "noise and collections"})
    return rows
