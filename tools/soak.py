"""`make soak`: the node at a high reading rate for a configured time, on the 64-bit build and
the 32-bit frozen build (docs/reliability.md).

The real agent (`--trace heap`: after a collection, every 10 s, the heap's used and free
bytes and its largest free block) polls the simulated meter (pymodbus on a pty, 10 points
on two slaves, back-to-back groups at --interval-ms) and publishes to a real mosquitto in
consumer-ack mode; an acknowledging consumer stores every reading. Recorded over time:
used/free heap and largest free block (agent log), queue depth and free heap (the node's
state message, every 5 s), delivery latency (arrival - reading time) per reading.

Verdict per build: nothing lost (no hole in the stored seqs), the heap flat (least-squares
slope of the used heap over the steady part, i.e. after the first minute, below
--slope-max bytes/min; and the largest free block never below 1 KiB), no MemoryError and no
task failure in the log. A table is printed, and build/soak.json and build/soak.png (the
series, one column per build) are written.

    .venv/bin/python tools/soak.py [--minutes 10] [--builds 64,32] [--interval-ms 20]
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tools"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from otlink_tools import node, paths  # noqa: E402
from otlink_tools.broker import Broker  # noqa: E402

from chaos import Checker  # noqa: E402

_LINE = re.compile(r"otlink: heap running: used (\d+) free (\d+) largest (\d+)")
HEAP = {"64": "256K", "32": "64K"}
SLOPE_MAX = 64.0  # bytes per minute of the used heap's trend (~0.6 KiB over 10 minutes)


def config(meter_port: str, broker_port: int, interval_ms: int, ack_key: str) -> dict:
    def pt(pid, slave, addr, typ, table="input"):
        return {"id": pid, "name": f"p{pid}", "slave": slave, "table": table, "address": addr,
                "type": typ, "order": "ABCD", "group": "fast"}

    pts = [pt(1, 1, 0, "float32"), pt(2, 1, 2, "float32"), pt(3, 1, 4, "float32"),
           pt(4, 1, 6, "float32"), pt(5, 1, 100, "uint32"), pt(6, 1, 200, "int16", "holding"),
           pt(7, 2, 0, "float32"), pt(8, 2, 2, "float32"), pt(9, 2, 100, "uint32"),
           pt(10, 2, 200, "int16", "holding")]
    return {
        "version": 1, "node": {"id": "soak-01", "site": "lab"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "linger_ms": 100,
                 "state_interval_s": 5, "ack_key": ack_key},
        "serial": {"port": meter_port, "baud": 115200, "parity": "N", "stop_bits": 2,
                   "timeout_ms": 200},
        "groups": {"fast": {"interval_ms": interval_ms}},
        "points": pts,
        "queue": {"commit_ms": 500},
    }


def fit(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def run_build(build: str, minutes: float, interval_ms: int, work: Path) -> dict:
    from otlink_tools.sim_meter import start_meter

    work.mkdir(parents=True)
    (work / "broker").mkdir()
    broker = Broker(workdir=str(work / "broker")).start()
    meter = start_meter(slaves=(1, 2))
    ack_key = secrets.token_hex(32)  # the node takes signed acks only (the default)
    cfg = config(meter.agent_port, broker.port, interval_ms, ack_key)
    (work / "node.json").write_text(json.dumps(cfg))
    args = ["--config", str(work / "node.json"), "--state", str(work / "state"),
            "--board", "unix", "--boards", str(paths.BOARDS), "--trace", "heap"]
    if build == "32":
        import mp

        shutil.copy(paths.FIRMWARE / "main.py", work / "main.py")  # agent frozen, as a board
        cmd = [mp.interpreter("32"), "-X", f"heapsize={HEAP['32']}", str(work / "main.py"),
               *args]
        env = mp.env(build="32")
    else:
        cmd, env = node.agent_command(str(work / "node.json"), str(work / "state"), HEAP["64"],
                                      mpy_dir=node.firmware_mpy())
        cmd += ["--trace", "heap"]
    (work / "state").mkdir()
    checker = Checker(broker.port, ack_key).start()
    states: list[tuple[float, int, int]] = []  # t, queue_depth, free_heap
    stop = threading.Event()

    def sample_states():
        last = None
        while not stop.wait(1.0):
            s = checker.last_state
            if s and s is not last and "queue_depth" in s:
                last = s
                states.append((time.time(), s["queue_depth"], s.get("free_heap", 0)))

    th = threading.Thread(target=sample_states, daemon=True)
    th.start()
    logf = open(work / "agent.log", "wb")
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
    try:
        time.sleep(minutes * 60)
        alive = proc.poll() is None
        top_end = max((s for _, s, _, _ in checker.snapshot()), default=0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the last readings arrive
            got = {s for _, s, _, _ in checker.snapshot()}
            if got and max(got) >= top_end and max(got) - len(got) == 0:
                break
            time.sleep(0.5)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()
        checker.stop()
        broker.stop()
        meter.stop()
    log = (work / "agent.log").read_text(errors="replace")
    heap = []
    # the heap lines carry no time: they come every 10 s from the start of the network loop
    for i, m in enumerate(_LINE.finditer(log)):
        heap.append((10.0 * (i + 1), int(m[1]), int(m[2]), int(m[3])))
    stored = checker.snapshot()
    seqs = {s for _, s, _, _ in stored}
    top = max(seqs, default=0)
    lat = sorted(arr - t / 1000.0 for _, _, t, arr in stored if t is not None)
    steady = [h for h in heap if h[0] >= 60.0] or heap
    slope = fit([h[0] / 60.0 for h in steady], [float(h[1]) for h in steady])
    res = {
        "build": build, "heap": HEAP[build], "minutes": minutes, "interval_ms": interval_ms,
        "points": len(cfg["points"]), "readings": len(stored),
        "readings_per_s": round(len(stored) / max(1.0, minutes * 60), 1),
        "lost": top - len(seqs), "duplicates_stored": len(stored) - len(seqs),
        "heap_samples": len(heap),
        "used_first": steady[0][1] if steady else None,
        "used_last": steady[-1][1] if steady else None,
        "used_min": min((h[1] for h in heap), default=None),
        "used_max": max((h[1] for h in heap), default=None),
        "used_slope_b_per_min": round(slope, 2),
        "largest_min": min((h[3] for h in heap), default=None),
        "free_min": min((h[2] for h in heap), default=None),
        "queue_depth_max": max((d for _, d, _ in states), default=None),
        "queue_depth_last": states[-1][1] if states else None,
        "state_samples": len(states),
        "latency_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
        "latency_p99_s": round(lat[int(len(lat) * 0.99)], 3) if lat else None,
        "latency_max_s": round(lat[-1], 3) if lat else None,
        "memory_errors": log.count("MemoryError"),
        "task_failures": len(re.findall(r"task \S+ failed", log)),
        "agent_alive": alive,
        "series": {"heap": heap, "states": [(round(t - t0, 1), d, f) for t, d, f in states],
                   "latency": _latency_series(stored, t0)},
    }
    res["pass"] = not problems(res)
    return res


def _latency_series(stored, t0: float) -> list:
    """Max latency per 10 s window of arrival."""
    win: dict[int, float] = {}
    for _, _, t, arr in stored:
        if t is None:
            continue
        k = int((arr - t0) // 10)
        win[k] = max(win.get(k, 0.0), arr - t / 1000.0)
    return [(k * 10 + 10, round(v, 3)) for k, v in sorted(win.items())]


def problems(r: dict, slope_max: float = SLOPE_MAX) -> list[str]:
    p = []
    if r["lost"]:
        p.append(f"{r['lost']} readings lost")
    if r["duplicates_stored"]:
        p.append(f"{r['duplicates_stored']} duplicates stored")
    if r["heap_samples"] < 2:
        p.append("fewer than 2 heap samples")
    if abs(r["used_slope_b_per_min"]) > slope_max:
        p.append(f"heap trend {r['used_slope_b_per_min']} B/min (bound {slope_max})")
    if r["largest_min"] is not None and r["largest_min"] < 1024:
        p.append(f"largest free block fell to {r['largest_min']} B")
    if r["memory_errors"] or r["task_failures"]:
        p.append("MemoryError or task failure in the log")
    if not r["agent_alive"]:
        p.append("the agent stopped")
    if not r["readings"]:
        p.append("no readings")
    return p


def table(results: list[dict]) -> str:
    rows = [("build (heap cap)", lambda r: f"{r['build']}-bit ({r['heap']})"),
            ("minutes", lambda r: r["minutes"]),
            ("points x interval", lambda r: f"{r['points']} x {r['interval_ms']} ms"),
            ("readings stored (/s)", lambda r: f"{r['readings']} ({r['readings_per_s']})"),
            ("lost / duplicates stored", lambda r: f"{r['lost']} / {r['duplicates_stored']}"),
            ("heap samples", lambda r: r["heap_samples"]),
            ("used heap min..max, B", lambda r: f"{r['used_min']}..{r['used_max']}"),
            ("used heap trend, B/min", lambda r: r["used_slope_b_per_min"]),
            ("free heap min, B", lambda r: r["free_min"]),
            ("largest free block min, B", lambda r: r["largest_min"]),
            ("queue depth max / last", lambda r: f"{r['queue_depth_max']} / "
                                                 f"{r['queue_depth_last']}"),
            ("latency p50 / p99 / max, s", lambda r: f"{r['latency_p50_s']} / "
                                                     f"{r['latency_p99_s']} / "
                                                     f"{r['latency_max_s']}"),
            ("MemoryErrors / task failures", lambda r: f"{r['memory_errors']} / "
                                                       f"{r['task_failures']}"),
            ("verdict", lambda r: "PASS" if r["pass"] else "FAIL: " + "; ".join(problems(r)))]
    w = 30
    out = ["otlink soak", "-" * (w + 26 * len(results))]
    for label, f in rows:
        out.append(f"{label:<{w}}" + "".join(f"{str(f(r)):>26}" for r in results))
    return "\n".join(out)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(results), figsize=(6 * len(results), 9), squeeze=False)
    for c, r in enumerate(results):
        s = r["series"]
        ax = axes[0][c]
        h = s["heap"]
        ax.plot([x[0] for x in h], [x[1] for x in h], label="used")
        ax.plot([x[0] for x in h], [x[2] for x in h], label="free")
        ax.plot([x[0] for x in h], [x[3] for x in h], label="largest free block")
        ax.set_title(f"{r['build']}-bit, heap {r['heap']}: trend {r['used_slope_b_per_min']} B/min")
        ax.set_ylabel("bytes")
        ax.legend(fontsize=8)
        ax = axes[1][c]
        st = s["states"]
        ax.plot([x[0] for x in st], [x[1] for x in st], color="tab:purple")
        ax.set_ylabel("queue depth (readings)")
        ax = axes[2][c]
        la = s["latency"]
        ax.plot([x[0] for x in la], [x[1] for x in la], color="tab:red")
        ax.set_ylabel("max delivery latency per 10 s, s")
        ax.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--builds", default="64,32")
    ap.add_argument("--interval-ms", type=int, default=20)
    ap.add_argument("--slope-max", type=float, default=SLOPE_MAX,
                    help="bound on the used heap's trend, bytes/min")
    ap.add_argument("--json", default=str(ROOT / "build" / "soak.json"))
    ap.add_argument("--png", default=str(ROOT / "build" / "soak.png"))
    args = ap.parse_args(argv)
    builds = [b.strip() for b in args.builds.split(",")]
    if "32" in builds:
        import mp

        if mp.mp32() is None:
            print("32-bit build absent (no toolchain tarball): soaking the 64-bit build only")
            builds.remove("32")
    work = Path(tempfile.mkdtemp(prefix="otlink-soak-"))
    results = []
    try:
        for b in builds:
            results.append(run_build(b, args.minutes, args.interval_ms, work / b))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        r["pass"] = not problems(r, args.slope_max)
    print(table(results))
    out = {"command": "tools/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "slope_max_b_per_min": args.slope_max, "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.png:
        plot(results, Path(args.png))
        print(f"plot: {args.png}")
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
