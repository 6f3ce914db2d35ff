"""tools/soak.py's verdict (the soak itself is `make soak`, 10 minutes per build, quoted in
docs/reliability.md): the fitted heap trend catches a slow leak that min/max alone would
call noise, and loss, a shrinking largest block or a stopped agent fail the run."""

from __future__ import annotations

import sys

from mp import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import soak  # noqa: E402


def result(heap, **kw):
    steady = [h for h in heap if h[0] >= 60] or heap
    r = {"lost": 0, "duplicates_stored": 0, "heap_samples": len(heap), "memory_errors": 0,
         "task_failures": 0, "agent_alive": True, "readings": 1000,
         "largest_min": min(h[3] for h in heap),
         "used_slope_b_per_min": soak.fit([h[0] / 60 for h in steady],
                                          [float(h[1]) for h in steady])}
    r.update(kw)
    return r


def series(leak_per_min, noise=300):
    # 10 minutes of samples every 10 s; a GC-like sawtooth of +-noise bytes on top
    return [(10.0 * i, 50000 + int(leak_per_min * i / 6) + (noise if i % 3 else -noise),
             14000, 12000) for i in range(1, 61)]


def test_flat_heap_with_noise_passes():
    r = result(series(0))
    assert abs(r["used_slope_b_per_min"]) < 10
    assert soak.problems(r) == []


def test_a_slow_leak_is_caught_by_the_trend():
    r = result(series(100))  # 100 B/min: 1 KB in ten minutes, inside the sawtooth's range
    assert 90 < r["used_slope_b_per_min"] < 110
    assert any("heap trend" in p for p in soak.problems(r))


def test_loss_fragmentation_and_a_dead_agent_fail():
    heap = series(0)
    assert soak.problems(result(heap, lost=3)) == ["3 readings lost"]
    frag = [(t, u, f, 900 if t > 300 else b) for t, u, f, b in heap]
    assert any("largest free block" in p for p in soak.problems(result(frag)))
    assert any("stopped" in p for p in soak.problems(result(heap, agent_alive=False)))
