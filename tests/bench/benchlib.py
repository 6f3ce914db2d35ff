"""Shared pieces of the uplink and skeleton benchmarks: MicroPython processes with their CPU
time, .mpy trees for both builds, and what a Sink received, decoded after the run.

Statistics: every figure is the median of N runs; latency percentiles are taken over all
readings of one run, and the run reported is the median one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from otlink_tools.decode import PayloadError, decode_message
from otlink_tools.mpy import compile_tree, tree

import mp

ROOT = mp.ROOT
BENCH = ROOT / "tests" / "bench"


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if not n:
        return 0.0
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def pct(xs: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def median_run(runs: list[dict], key: str = "rate") -> dict:
    """The run whose `key` is the median (upper median for even N), with every run's value."""
    s = sorted(runs, key=lambda r: r.get(key) or 0.0)
    pick = dict(s[len(s) // 2])
    pick["runs"] = [round(r.get(key) or 0.0, 1) for r in runs]
    pick[key] = median([r.get(key) or 0.0 for r in runs])
    return pick


# -- processes ----------------------------------------------------------------------------


class Proc:
    """A MicroPython process whose CPU time (user + sys, from wait4) is known at the end."""

    def __init__(self, cmd: list[str], env: dict, timeout: float):
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  env=env, cwd=str(ROOT))
        self.cpu_s = 0.0
        self.out = ""
        self._timer = threading.Timer(timeout, self.kill)
        self._timer.start()

    def finish(self) -> str:
        try:
            data = self.p.stdout.read()
            _, status, ru = os.wait4(self.p.pid, 0)
            self.p.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_s = ru.ru_utime + ru.ru_stime
        finally:
            self._timer.cancel()
            self.p.stdout.close()
        self.out = data.decode(errors="replace")
        return self.out

    def kill(self) -> None:
        # never poll() here: it would reap the process and lose its CPU time to wait4
        if self.p.returncode is None:
            try:
                os.kill(self.p.pid, 9)
            except ProcessLookupError:
                pass

    def result(self) -> dict:
        """The RESULT line as a dict (finish() first); without one {"error": tail}."""
        for line in self.out.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        return {"error": self.out.strip()[-300:] or f"exit {self.p.returncode}"}


def options_file(opts: dict) -> str:
    # never on the command line: the Unix port dies on an argument of 256 bytes or more
    fd, path = tempfile.mkstemp(prefix="otlink-bench-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(opts, f)
    return path


def start_agent(opts: dict, heap: str, build: str, mpy: Path, timeout: float = 180) -> Proc:
    """tests/bench/uplink_agent.py from the .mpy tree `mpy`. 64: the tree holds the firmware
    and umqtt too. 32: the agent is frozen in the interpreter; the tree holds only the
    runner (so its source is not compiled into the heap)."""
    path = options_file(opts)
    env = dict(os.environ, MICROPYPATH=f"{mpy}:.frozen")
    proc = Proc([mp.interpreter(build), "-X", f"heapsize={heap}", "-m", "uplink_agent", path],
                env, timeout)
    proc.opts_file = path  # type: ignore[attr-defined]
    return proc


def finish_agent(proc: Proc) -> dict:
    try:
        proc.finish()
    finally:
        os.unlink(proc.opts_file)  # type: ignore[attr-defined]
    res = proc.result()
    res["cpu_s"] = proc.cpu_s
    return res


def rival(build: str, port: int, mode: str, n: int, rate: int, topic: str,
          heap: str = "256K", timeout: float = 300) -> Proc:
    env = dict(os.environ, MICROPYPATH=mp.micropypath(build=build))
    return Proc([mp.interpreter(build), "-X", f"heapsize={heap}", str(BENCH / "rival_mp.py"),
                 str(port), mode, str(n), str(rate), topic], env, timeout)


# -- .mpy trees ---------------------------------------------------------------------------


def runner_sources() -> list[tuple[Path, Path]]:
    return [(BENCH / "uplink_agent.py", Path("uplink_agent.py")),
            (ROOT / "tests" / "firmware" / "ramqueue.py", Path("ramqueue.py"))]


def mpy_tree(build_dir: Path, name: str, with_agent: bool, with_runner: bool) -> Path:
    """A fresh .mpy tree under build/: the firmware and umqtt (with_agent) and the bench
    runner (with_runner). Bytecode only, so one tree loads on both builds."""
    out = build_dir / name
    if out.exists():
        shutil.rmtree(out)
    srcs: list[tuple[Path, Path]] = []
    if with_agent:
        srcs += tree(ROOT / "firmware") + tree(ROOT / "build" / "lib")
    if with_runner:
        srcs += runner_sources()
    compile_tree(srcs, out)
    return out


# -- what the sink received ---------------------------------------------------------------


def agent_readings(msgs: list, t_from: float | None = None) -> dict:
    """Decode the agent's data batches: unique readings (node, boot, seq), duplicates,
    arrival rate, delivery latency (arrival wall clock - reading time) and the historical
    (backlog) share. t_from: ignore messages that arrived before this monotonic time."""
    seen: set = set()
    dup = bad = 0
    first_t = last_t = None
    first_n = 0
    lat_live: list[float] = []
    lat_all: list[float] = []
    hist_n = 0
    hist_last = None
    nbytes = 0
    span_of: dict = {}  # (node, boot) -> [lowest seq, highest seq, count]
    live_n = 0
    first_any = None
    for mono, wall, topic, body in msgs:
        if t_from is not None and mono < t_from:
            continue
        if first_any is None:
            first_any = mono
        if not topic.endswith("/data"):
            continue
        try:
            m = decode_message(topic, body)
        except PayloadError:
            bad += 1
            continue
        nbytes += len(body)
        new = 0
        for r in m["readings"]:
            key = (m["node"], m["boot"], r["seq"])
            if key in seen:
                dup += 1
                continue
            seen.add(key)
            new += 1
            sp = span_of.setdefault(key[:2], [r["seq"], r["seq"], 0])
            sp[0], sp[1], sp[2] = min(sp[0], r["seq"]), max(sp[1], r["seq"]), sp[2] + 1
            if r["t_ms"] is not None:
                lat = wall * 1000 - r["t_ms"]
                lat_all.append(lat)
                if not m["historical"]:
                    lat_live.append(lat)
        if m["historical"]:
            hist_n += new
            hist_last = mono
        else:
            live_n += new
        if new:
            if first_t is None:
                first_t, first_n = mono, new
            last_t = mono
    n = len(seen)
    span = (last_t - first_t) if first_t is not None else 0.0
    gaps = sum(hi - lo + 1 - c for lo, hi, c in span_of.values())
    return {"readings": n, "dup": dup, "bad": bad, "span_s": span, "gaps": gaps,
            "first_seq": min((v[0] for v in span_of.values()), default=None),
            "bytes_per_reading": nbytes / n if n else 0.0,
            "rate": (n - first_n) / span if span > 0 else 0.0,
            "p50_ms": pct(lat_all, 50), "p99_ms": pct(lat_all, 99),
            "live_p50_ms": pct(lat_live, 50), "live_p99_ms": pct(lat_live, 99),
            "live_max_ms": max(lat_live) if lat_live else None, "live_n": live_n,
            "hist_n": hist_n, "hist_last": hist_last, "first_any": first_any}


def rival_readings(msgs: list) -> dict:
    """Count the JSON rivals' readings (1 per message, or every ENERGY value of a grouped
    message), their arrival rate and delivery latency from each message's "t"."""
    n = 0
    first_t = last_t = None
    first_n = 0
    lat: list[float] = []
    for mono, wall, _topic, body in msgs:
        m = json.loads(body)
        k = len(m["ENERGY"]) if "ENERGY" in m else 1
        n += k
        lat += [wall * 1000 - m["t"]] * k
        if first_t is None:
            first_t, first_n = mono, k
        last_t = mono
    span = (last_t - first_t) if first_t is not None else 0.0
    return {"readings": n, "span_s": span, "rate": (n - first_n) / span if span > 0 else 0.0,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "bytes_per_reading": (sum(len(b) for *_, b in msgs) / n) if n else 0.0}


def free_port() -> int:
    from otlink_tools.broker import free_port as fp

    return fp()


def sleep_until(pred, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}" if v < 10 else f"{v:,.0f}"
