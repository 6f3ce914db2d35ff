"""Resource budget per board (boards/*.json): what the agent costs on each board it runs on.

Per board:
- bundle: the firmware as deployed to it (.mpy for the board's architecture by mpy-cross, and
  its board file), against deploying the sources; target: at most half the littlefs region
  (room for the config, logs and a second bundle during an update);
- heap after boot and at steady state: the whole agent (reference map of 60 Modbus points
  on 3 slaves, an SHT3x, the flash queue, the QoS 1 uplink to a real mosquitto) on the 32-bit
  frozen build (the boards' object model) with the board's heap_budget as the heap cap
  (-X heapsize), its --trace heap lines read; target (test_agent_heap32's): a 1 KiB block
  free at every point of the steady state (a batch);
- queue days: how long the board's queue region holds readings with the uplink down, at 60
  points once a minute (1 reading/s: an energy meter's full map), from the bytes one reading
  takes in the real queue (board_queue_mp.py: 60 points every 10 s of simulated time, group
  and sector headers included); target: a weekend (2.5 days); the rival is the same region
  holding 20-byte raw records.

Boards with the same heap budget share one agent run. `tools/bench.py -k boards`.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import mp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "host"))
RATE = 1.0  # readings/s: 60 points once a minute
RAW = 20  # bytes of a numeric reading record (core/reading.py SIZE)


def boards() -> list[dict]:
    out = []
    for p in sorted((ROOT / "boards").glob("*.json")):
        if p.stem in ("unix", "board.schema"):
            continue
        out.append(json.loads(p.read_text()))
    return out


def bundle(b: dict, where: Path) -> tuple[int, int]:
    """(bytes of the deployed bundle, bytes of the same modules as source)."""
    from otlink_tools import device

    files = device.compile_firmware(where, device.MPY_ARCH[b["arch"]], b["name"])
    mpy = sum(f.stat().st_size for f in files)
    src = 0
    for f in files:
        rel = f.relative_to(where)
        s = ROOT / "firmware" / rel.with_suffix(".py")
        src += s.stat().st_size if s.exists() else f.stat().st_size
    return mpy, src


def queue_bytes_per_reading(ctx: dict) -> float:
    n = "6000" if ctx.get("quick") else "20000"
    res = mp.run(ROOT / "tests" / "bench" / "board_queue_mp.py", n, heap="2M",
                 extra=(ROOT / "tests" / "firmware",), timeout=600)
    if res.returncode:
        raise RuntimeError(res.stdout + res.stderr)
    k = {m[1]: int(m[2]) for m in re.finditer(r"^K (\w+) (\d+)$", res.stdout, re.M)}
    return k["bytes_used"] / k["depth"]


def heap_run(budget: int, run_s: int) -> dict:
    """Boot and steady-state heap figures of the whole agent under `budget` bytes."""
    import test_agent_heap32 as h

    from otlink_tools.broker import Broker
    from otlink_tools.sim_meter import start_meter

    tmp = Path(tempfile.mkdtemp(prefix="otlink-bench-boards-"))
    broker = Broker(workdir=str(tmp)).start()
    meter = start_meter(slaves=(1, 2, 3), reference_map=True)
    h.RUN_S = run_s
    try:
        (tmp / "agent").mkdir()
        _by, lines, log = h.run_agent("32", f"{budget // 1024}K", broker, meter, tmp / "agent")
    finally:
        meter.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    boot = [x for x in lines if x[0] == "boot"]
    running = [x for x in lines if x[0] == "running"]
    return {"boot_used": boot[-1][1] if boot else None,
            "boot_free": boot[-1][2] if boot else None,
            "run_free_min": min(x[2] for x in running) if running else None,
            "run_largest_min": min(x[3] for x in running) if running else None,
            "failed": "MemoryError" in log}


def run(ctx: dict) -> list[dict]:
    rows = []
    bs = boards()
    # bundle size
    with tempfile.TemporaryDirectory() as d:
        for b in bs:
            mpy_b, src_b = bundle(b, Path(d) / b["name"])
            fs = b["flash"]["regions"]["fs"]["size"]
            rows.append({
                "name": f"{b['name']}: firmware bundle ({b['arch']} .mpy + board file)",
                "value": round(mpy_b / 1024, 1), "unit": "KiB",
                "rival": round(src_b / 1024, 1), "rival_is": "the same modules as source",
                "target": f"<= {fs // 2048} KiB (half of littlefs)",
                "met": mpy_b <= fs // 2,
                "excludes": "umqtt.simple (copied beside it, ~4 KiB .mpy), the config",
                "note": f"littlefs region {fs // 1024} KiB"})
    # queue days
    bpr = queue_bytes_per_reading(ctx)
    for b in bs:
        q = b["flash"]["regions"]["queue"]["size"]
        usable = q - b["flash"]["sector"]  # one sector is always being erased ahead
        days = usable / bpr / RATE / 86400
        rows.append({
            "name": f"{b['name']}: queue holds, uplink down, 60 points / min",
            "value": round(days, 2), "unit": "days",
            "rival": round(usable / RAW / RATE / 86400, 2),
            "rival_is": "the same region holding 20-byte raw records",
            "target": ">= 2.5 days (a weekend)", "met": days >= 2.5,
            "excludes": "text points, error bursts (an error record is larger than a delta)",
            "note": f"queue region {q // 1024} KiB, {bpr:.2f} bytes per reading measured "
                    f"in the real queue (group and sector headers included)"})
    # heap, one agent run per distinct budget
    if mp.mp32() is None:
        return rows
    budgets = sorted({b["heap_budget"] for b in bs})
    if ctx.get("quick"):
        budgets = budgets[:1]
    run_s = 12 if ctx.get("quick") else 22
    for budget in budgets:
        f = heap_run(budget, run_s)
        names = ", ".join(b["name"] for b in bs if b["heap_budget"] == budget)
        ok = (not f["failed"] and f["run_largest_min"] is not None and
              f["run_largest_min"] >= 1024)
        rows.append({
            "name": f"heap after boot, {budget // 1024} KiB cap ({names})",
            "value": f["boot_used"], "unit": "bytes used",
            "rival": None, "rival_is": "- (frozen vs deployed: bench_points)",
            "target": f"boots in {budget // 1024} KiB", "met": f["boot_used"] is not None,
            "excludes": "WiFi/TLS buffers outside the Python heap; the Unix HAL's emulator "
                        "modules (~2 KiB) a board does not load",
            "note": f"free after boot {f['boot_free']} bytes; 32-bit frozen build"})
        rows.append({
            "name": f"heap at steady state, {budget // 1024} KiB cap ({names})",
            "value": f["run_free_min"], "unit": "bytes free (min)",
            "rival": None, "rival_is": "-",
            "target": "largest free block >= 1024", "met": ok,
            "excludes": "WiFi/TLS buffers outside the Python heap",
            "note": f"smallest largest free block {f['run_largest_min']} bytes over "
                    f"{run_s} s of polling 60 points + SHT3x and publishing"})
    return rows
