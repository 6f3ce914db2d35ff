"""`make chaos`: a bounded fault-injection run of the whole node (docs/reliability.md).

The real agent (MicroPython Unix port, emulated NOR flash, `otlink node run`'s command line)
polls two simulated Modbus slaves (pymodbus on a pty) and publishes through a TCP proxy to a
real mosquitto, in consumer-ack mode (the default). An independent consumer (the monitor's
acknowledging consumer, with every delivery recorded before it is deduplicated) stores the
readings. While the node streams, four fault sources run at once:

- agent: SIGKILL at a random moment (a power cut of the whole node), restarted at once;
- broker: SIGKILL, down for a random time, restarted empty (no persistence);
- proxy: between agent and broker, stalls (bytes held), drops (bytes discarded), resets
  (RST) and half-closes (FIN to the agent only) the connections for a random time;
- Modbus: one slave disappears (silent) and returns.

Then all faults stop, the node drains, and every reading is checked by its (boot, seq) key:
seqs are numbered by the node's queue across boots when a reading is committed, so a hole
in 1..newest is a committed reading lost for good (readings the power cut took before their
commit never got a seq: the queue's commit window, docs/queue.md). Also counted: duplicate
deliveries (the node resends what was not acknowledged; the consumer drops them), duplicates
and out-of-order rows in what the consumer stored, end-to-end latency, and latency after
recovery (from the later of the reading's time and the end of the last disturbance).

A second part cuts the flash queue's power at every k-th program/erase operation of a
workload that appends, acknowledges and wraps (sector erases reclaim the log), through the
queue's power-cut machinery (tests/firmware/test_queue_sweep.py), counting cuts by the
operation they tore and whether an acknowledgement was being written.

Usage: .venv/bin/python tools/chaos.py [--agent-kills N] [--broker-kills N] [--proxy-faults N]
       [--slave-outages N] [--flash-cuts N] [--seed S] [--json build/chaos.json]
The defaults are the full run (~25 min on 2 cores); tests/host/test_chaos.py runs a small one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tools"))

from otlink_tools import node  # noqa: E402
from otlink_tools.broker import Broker, free_port  # noqa: E402
from otlink_tools.decode import PayloadError, decode_message  # noqa: E402
from otlink_tools.monitor import Monitor  # noqa: E402

MPY = ROOT / ".venv" / "bin" / "micropython"
PROXY_MODES = ("stall", "drop", "reset", "halfclose")


# --- TCP proxy between agent and broker ------------------------------------------------------

class Proxy:
    """Forwards 127.0.0.1:port to the broker; fault modes apply to every connection at once:
    stall (nothing forwarded, bytes wait in the kernel), drop (bytes read and discarded, both
    ways), reset (every connection closed with RST, once), halfclose (FIN sent to the agent,
    its bytes still read and discarded)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.lock = threading.Lock()
        self.conns: list[tuple[socket.socket, socket.socket]] = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.accepted = 0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="proxy")
        self.thread.start()

    def set(self, mode: str) -> None:
        with self.lock:
            self.mode = mode
            if mode == "reset":
                for a, b in self.conns:
                    for s in (a, b):
                        _rst(s)
                self.conns.clear()
                self.mode = "pass"
            elif mode == "halfclose":
                for a, _b in self.conns:
                    try:
                        a.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass

    def _loop(self) -> None:
        while not self.stop_ev.is_set():
            with self.lock:
                socks = [self.ls] + [s for pair in self.conns for s in pair]
                mode = self.mode
            try:
                r, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                self._prune()
                continue
            for s in r:
                if s is self.ls:
                    self._accept()
                elif mode != "stall":
                    self._pump(s, mode)
            if mode == "stall":
                time.sleep(0.02)

    def _accept(self) -> None:
        try:
            a, _ = self.ls.accept()
        except OSError:
            return
        self.accepted += 1
        try:
            b = socket.create_connection(("127.0.0.1", self.upstream), timeout=1.0)
            b.settimeout(None)
        except OSError:
            _rst(a)  # broker down: the agent sees the connection refused at once
            return
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            if self.mode == "halfclose":
                a.shutdown(socket.SHUT_WR)
            self.conns.append((a, b))

    def _pump(self, s: socket.socket, mode: str) -> None:
        with self.lock:
            pair = next((p for p in self.conns if s in p), None)
        if pair is None:
            return
        peer = pair[1] if s is pair[0] else pair[0]
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(pair)
            return
        if mode in ("drop",) or (mode == "halfclose" and s is pair[0]):
            return
        if mode == "halfclose":
            return  # broker -> agent: the agent's side is shut
        try:
            peer.sendall(data)
        except OSError:
            self._close(pair)

    def _close(self, pair) -> None:
        with self.lock:
            if pair in self.conns:
                self.conns.remove(pair)
        for s in pair:
            try:
                s.close()
            except OSError:
                pass

    def _prune(self) -> None:
        with self.lock:
            self.conns = [p for p in self.conns if p[0].fileno() >= 0 and p[1].fileno() >= 0]

    def close(self) -> None:
        self.stop_ev.set()
        self.thread.join(2)
        with self.lock:
            for pair in self.conns:
                for s in pair:
                    s.close()
            self.conns.clear()
        self.ls.close()


def _rst(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass


# --- the independent consumer ----------------------------------------------------------------

class Checker(Monitor):
    """The acknowledging consumer of record (the monitor's rule), recording every delivery
    before its deduplication and every row it stored, with arrival times."""

    def __init__(self, port: int, ack_key: str) -> None:
        super().__init__(port=port, fmt="jsonl", out=_Null(), err=_Null(), live=False)
        self.ack_key = bytes.fromhex(ack_key)  # the node takes signed acks only (the default)
        self.client.reconnect_delay_set(0.1, 1.0)
        self.delivered: dict[tuple[int, int], int] = {}  # (boot, seq) -> deliveries
        self.stored: list[tuple[int, int, int | None, float]] = []  # boot, seq, t_ms, arrival
        self.last_state: dict = {}
        self.decode_errors = 0

    def handle(self, topic: str, payload: bytes, retain: bool = False) -> None:
        if topic.endswith("/data") or topic.endswith("/state"):
            try:
                m = decode_message(topic, payload)
            except PayloadError:
                self.decode_errors += 1
                m = None
            if m and m["kind"] == "data":
                with self.cond:
                    for r in m["readings"]:
                        k = (m["boot"], r["seq"])
                        self.delivered[k] = self.delivered.get(k, 0) + 1
            elif m and m["kind"] == "state" and m.get("online", True):
                self.last_state = m
        super().handle(topic, payload, retain)

    def _write(self, key, m, readings) -> None:
        now = time.time()
        for r in readings:
            self.stored.append((m["boot"], r["seq"], None if r["untimed"] else r["t_ms"], now))
        super()._write(key, m, readings)

    def snapshot(self) -> list:
        with self.cond:
            return list(self.stored)


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


# --- the node ------------------------------------------------------------------------------

def node_config(meter_port: str, broker_port: int, interval_ms: int, ack_key: str) -> dict:
    def pt(pid, name, slave, addr, typ, table="input"):
        return {"id": pid, "name": name, "slave": slave, "table": table, "address": addr,
                "type": typ, "order": "ABCD", "group": "fast", "deadband": 0}

    return {
        "version": 1, "node": {"id": "chaos-01", "site": "lab"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "linger_ms": 100,
                 "keepalive_s": 4, "backoff_ms": [100, 1000], "ack_key": ack_key},
        "serial": {"port": meter_port, "baud": 115200, "parity": "N", "stop_bits": 2,
                   "timeout_ms": 100, "offline_after": 2, "backoff_ms": [200, 1000]},
        "groups": {"fast": {"interval_ms": interval_ms}},
        "points": [pt(1, "voltage_l1", 1, 0, "float32"), pt(2, "energy_total", 1, 100, "uint32"),
                   pt(3, "power_factor", 1, 200, "int16", table="holding"),
                   pt(4, "voltage_l1_b", 2, 0, "float32"), pt(5, "energy_b", 2, 100, "uint32")],
        "queue": {"commit_ms": 200},
    }


class Rig:
    def __init__(self, work: Path, rng: random.Random, interval_ms: int) -> None:
        from otlink_tools.sim_meter import start_meter

        self.dir = work
        self.rng = rng
        (work / "broker").mkdir(parents=True, exist_ok=True)
        self.bport = free_port()
        self.broker = Broker(port=self.bport, workdir=str(work / "broker")).start()
        self.proxy = Proxy(self.bport)
        self.meter = start_meter(slaves=(1, 2))
        self.config = work / "node.json"
        ack_key = secrets.token_hex(32)
        self.config.write_text(json.dumps(node_config(self.meter.agent_port, self.proxy.port,
                                                      interval_ms, ack_key)))
        self.state = str(work / "state")
        self.log = open(work / "agent.log", "ab")
        self.mpy = snapshot_firmware(work / "firmware")
        self.agent: subprocess.Popen | None = None
        self.checker = Checker(self.bport, ack_key).start()
        self.lock = threading.Lock()  # agent start/kill
        self.broker_lock = threading.Lock()
        self.disturbed_until = 0.0  # wall time the last disturbance ended
        self.disturbances: list[tuple[float, float]] = []
        self.counts = {"agent_kills": 0, "agent_exits": 0, "broker_kills": 0, "slave_outages": 0,
                       **{f"proxy_{m}": 0 for m in PROXY_MODES}}

    def start_agent(self) -> None:
        self.agent = node.start_agent(str(self.config), self.state, log=self.log,
                                      mpy_dir=self.mpy)

    def kill_agent(self) -> None:
        with self.lock:
            if self.agent and self.agent.poll() is None:
                os.kill(self.agent.pid, signal.SIGKILL)
                self.agent.wait()
                self.counts["agent_kills"] += 1
            elif self.agent:
                self.counts["agent_exits"] += 1  # it stopped by itself: a crash
            self.start_agent()

    def kill_broker(self, down_s: float) -> None:
        with self.broker_lock:
            t0 = time.time()
            self.broker.kill()
            self.counts["broker_kills"] += 1
            time.sleep(down_s)
            self.broker.start()
            self.disturbances.append((t0, time.time()))

    def proxy_fault(self, mode: str, hold_s: float) -> None:
        t0 = time.time()
        self.proxy.set(mode)
        if mode != "reset":
            time.sleep(hold_s)
            self.proxy.set("pass")
            if mode == "halfclose":
                self.proxy.set("reset")  # what is left of the half-closed sessions goes
        self.counts[f"proxy_{mode}"] += 1
        self.disturbances.append((t0, time.time()))

    def slave_outage(self, hold_s: float) -> None:
        t0 = time.time()
        self.meter.slaves = (1,)  # slave 2 stays silent, as a dead device on the bus
        time.sleep(hold_s)
        self.meter.slaves = (1, 2)
        self.counts["slave_outages"] += 1
        self.disturbances.append((t0, time.time()))

    def stop(self) -> None:
        if self.agent and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()
        try:
            self.checker.stop()
        except Exception:  # noqa: BLE001 (best effort at teardown)
            pass
        self.proxy.close()
        self.broker.stop()
        self.meter.stop()
        self.log.close()


def snapshot_firmware(out: Path) -> str:
    """The firmware under test, compiled to .mpy in the run's own folder once: every one of
    the thousand boots loads the same code, whatever happens to the checkout (and to the
    shared build/mpy-node) while the run lasts."""
    import shutil

    from otlink_tools import mpy, paths

    mpy.compile_tree(mpy.tree(paths.FIRMWARE, "otlink/**/*.py"), out, incremental=False)
    shutil.copyfile(paths.FIRMWARE / "main.py", out / "main.py")
    return str(out)


def firmware_version() -> dict:
    """The commit the firmware comes from, and its files changed since (for the record)."""
    def git(*a):
        r = subprocess.run(["git", *a], capture_output=True, text=True, cwd=str(ROOT))
        return r.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "changed": git("status", "--porcelain", "--", "firmware").splitlines()}


def run_node_chaos(args, work: Path) -> dict:
    rng = random.Random(args.seed)
    rig = Rig(work, rng, args.interval_ms)
    t_start = time.time()
    stop = threading.Event()
    errors: list[str] = []

    def loop(n, fn, name):
        # spread n events over the agent-kill schedule's length
        try:
            r = random.Random(rng.random())
            for _ in range(n):
                if stop.is_set():
                    break
                fn(r)
        except Exception as e:  # noqa: BLE001 (reported, fails the run)
            errors.append(f"{name}: {type(e).__name__}: {e}")

    span = args.agent_kills * (args.kill_min + args.kill_max) / 2 + 5

    def agent_ev(r):
        time.sleep(r.uniform(args.kill_min, args.kill_max))
        t = time.time()
        rig.kill_agent()
        rig.disturbances.append((t, time.time()))

    def gap(r, n):  # mean wait between events of a source with n events over the span
        return r.uniform(0, 2 * max(0.0, span / max(n, 1) - 1.5))

    def broker_ev(r):
        time.sleep(gap(r, args.broker_kills))
        rig.kill_broker(r.uniform(0.1, 2.0))

    def proxy_ev(r):
        time.sleep(gap(r, args.proxy_faults))
        rig.proxy_fault(r.choice(PROXY_MODES), r.uniform(0.5, 6.0))

    def slave_ev(r):
        time.sleep(gap(r, args.slave_outages))
        rig.slave_outage(r.uniform(0.5, 4.0))

    try:
        rig.start_agent()
        deadline = time.monotonic() + 60
        while not rig.checker.snapshot() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not rig.checker.snapshot():
            raise RuntimeError("no reading arrived before the faults started:\n"
                               + (work / "agent.log").read_text(errors="replace")[-3000:])
        threads = [threading.Thread(target=loop, args=a, daemon=True) for a in (
            (args.agent_kills, agent_ev, "agent"), (args.broker_kills, broker_ev, "broker"),
            (args.proxy_faults, proxy_ev, "proxy"), (args.slave_outages, slave_ev, "slave"))]
        for t in threads:
            t.start()
        threads[0].join()
        for t in threads[1:]:  # the other sources finish what they owe
            t.join()
        t_faults_end = time.time()
        # drain: everything committed reaches the consumer (the ack timeout is 10 s)
        top_end = max((s for _, s, _, _ in rig.checker.snapshot()), default=0)
        drain_s = None
        deadline = time.monotonic() + args.drain_s
        while time.monotonic() < deadline:
            got = {s for _, s, _, _ in rig.checker.snapshot()}
            top = max(got, default=0)
            if top - len(got) == 0 and top > top_end + 50:
                drain_s = time.time() - t_faults_end
                break
            time.sleep(0.25)
        time.sleep(1.0)
        stored = rig.checker.snapshot()
        agent_alive = rig.agent is not None and rig.agent.poll() is None
    finally:
        stop.set()
        rig.stop()
    log = (work / "agent.log").read_text(errors="replace")
    seqs = [s for _, s, _, _ in stored]
    got = set(seqs)
    top = max(got, default=0)
    lost = sorted(set(range(1, top + 1)) - got)
    by_boot: dict[int, int] = {}
    ooo = 0
    for b, s, _, _ in stored:
        if s < by_boot.get(b, 0):
            ooo += 1
        by_boot[b] = max(by_boot.get(b, 0), s)
    # latency: end to end, and after recovery (from the later of the reading's time and
    # the end of the last disturbance that ended before its arrival)
    ends = sorted(e for _, e in rig.disturbances)
    lat = []
    lat_rec = []
    import bisect
    for _, _, t_ms, arr in stored:
        if t_ms is None:
            continue
        t = t_ms / 1000.0
        lat.append(arr - t)
        i = bisect.bisect_right(ends, arr) - 1
        base = max(t, ends[i]) if i >= 0 else t
        lat_rec.append(arr - base)
    lat.sort()
    dup_deliveries = sum(n - 1 for n in rig.checker.delivered.values())
    res = {
        "duration_s": round(time.time() - t_start, 1),
        **rig.counts,
        "proxy_connections": rig.proxy.accepted,
        "boots": len(by_boot),
        "readings_stored": len(stored),
        "seq_top": top,
        "lost": len(lost),
        "lost_first": lost[:10],
        "duplicate_deliveries": dup_deliveries,
        "duplicates_stored": len(seqs) - len(got),
        "out_of_order_stored": ooo,
        "latency_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
        "latency_p99_s": round(lat[int(len(lat) * 0.99)], 3) if lat else None,
        "latency_max_s": round(lat[-1], 3) if lat else None,
        "latency_after_recovery_max_s": round(max(lat_rec), 3) if lat_rec else None,
        "drain_s": round(drain_s, 1) if drain_s is not None else None,
        "agent_alive_at_end": agent_alive,
        "agent_tracebacks": log.count("Traceback"),
        "agent_memory_errors": log.count("MemoryError"),
        "consumer_bad_messages": rig.checker.bad,
        "errors": errors,
    }
    return res


# --- flash power cuts --------------------------------------------------------------------

FLASH_MP = r"""
import sys
import mptest
mptest.main = lambda g: None  # the sweep module is used as a library here
import test_queue_sweep as S
from otlink.hal.unix.norflash import NorFlash
from otlink.core.queue import Queue

KIND = {"erase": 0, "ack": 0, "group_with_ack": 0, "group": 0, "header": 0}
CTX = [None]  # what the queue is writing: None, "ack", "group", "group_with_ack"
OP = [None]  # the kind of the last flash operation begun


class Nor(NorFlash):
    def program(self, addr, data):
        OP[0] = CTX[0] or "header"
        return NorFlash.program(self, addr, data)

    def erase(self, sector):
        OP[0] = "erase"
        return NorFlash.erase(self, sector)


def within(name, fn, kind):
    def f(self, *a):
        old = CTX[0]
        CTX[0] = kind(self) if callable(kind) else kind
        try:
            return fn(self, *a)
        finally:
            CTX[0] = old
    setattr(Queue, name, f)


within("_put_ack", Queue._put_ack, "ack")
within("commit", Queue.commit, lambda q: "group_with_ack" if q._ack_due else "group")
within("_write_header", Queue._write_header, "header")
_run = S.run


def run(nor, total, model, cut_at, *a, **k):
    OP[0] = None
    r = _run(nor, total, model, cut_at, *a, **k)
    if r and cut_at is not None and OP[0]:
        KIND[OP[0]] += 1
    return r


S.run = run
S.new_nor = lambda seed=1: Nor(None, S.SIZE, page=S.PAGE[0], seed=seed)
want, seed = int(sys.argv[1]), int(sys.argv[2])
S.PAGE[0] = int(sys.argv[3])
double = sys.argv[4] == "1"
total = 3000 if want <= 300 else 10000
nor = S.new_nor()
S.run(nor, total, S.Model(total), None)
step = max(1, nor.ops // want)
cuts, ops, lost = S.sweep(total, step, tail=100, double=double, seed=seed)
print("FLASH", cuts, ops, lost, step, total, " ".join("%s=%d" % kv for kv in KIND.items()))
if S.LOST[1]:
    print("FIRST", S.LOST[1])
"""


def run_flash_cuts(cuts: int, seed: int, work: Path) -> dict:
    """Power cuts at every k-th flash operation of the sweep workload (k chosen so that about
    `cuts` cuts land): byte-programmed (ESP32) and page-programmed (rp2) flash, single and
    double faults (a second cut among the first writes after the reboot)."""
    script = work / "chaos_flash_mp.py"
    script.write_text(FLASH_MP)
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join([str(ROOT / "tests" / "firmware"), str(ROOT / "firmware"),
                                   ".frozen"])
    out = {"flash_cuts": 0, "flash_lost": 0, "flash_runs": [], "flash_errors": []}
    kinds: dict[str, int] = {}
    variants = [(1, "0"), (1, "1"), (256, "0")]
    for i, (page, double) in enumerate(variants):
        want = max(1, cuts // len(variants))
        t0 = time.time()
        res = subprocess.run([str(MPY), "-X", "heapsize=4M", str(script), str(want),
                              str(seed + i), str(page), double], capture_output=True,
                             text=True, env=env, cwd=str(ROOT), timeout=3600)
        m = re.search(r"^FLASH (\d+) (\d+) (\d+) (\d+) (\d+) (.*)$", res.stdout, re.M)
        if res.returncode or not m:
            out["flash_errors"].append(f"page {page} double {double}: "
                                       f"{(res.stdout + res.stderr)[-1500:]}")
            continue
        c, ops, lost, step, total = map(int, m.groups()[:5])
        for kv in m.group(6).split():
            k, v = kv.split("=")
            kinds[k] = kinds.get(k, 0) + int(v)
        out["flash_cuts"] += c
        out["flash_lost"] += lost
        out["flash_runs"].append({"page": page, "double": double == "1", "readings": total,
                                  "ops": ops, "step": step, "cuts": c, "lost": lost,
                                  "s": round(time.time() - t0, 1)})
    for k, v in kinds.items():
        out[f"flash_cut_{k}"] = v
    return out


# --- table -----------------------------------------------------------------------------------

ROWS = [
    ("agent SIGKILLs (power cuts of the node)", "agent_kills"),
    ("agent exits by itself (crashes)", "agent_exits"),
    ("broker SIGKILLs + restarts (empty)", "broker_kills"),
    ("proxy stalls", "proxy_stall"), ("proxy drops (blackhole)", "proxy_drop"),
    ("proxy resets (RST)", "proxy_reset"), ("proxy half-closes", "proxy_halfclose"),
    ("Modbus slave outages (slave 2 silent)", "slave_outages"),
    ("agent boots seen by the consumer", "boots"),
    ("readings stored by the consumer", "readings_stored"),
    ("LOST committed readings (holes in 1..seq_top)", "lost"),
    ("duplicate deliveries (resends, dropped)", "duplicate_deliveries"),
    ("duplicates stored", "duplicates_stored"),
    ("out of order stored (per boot)", "out_of_order_stored"),
    ("latency p50 / p99 / max, s", ("latency_p50_s", "latency_p99_s", "latency_max_s")),
    ("max latency after recovery, s", "latency_after_recovery_max_s"),
    ("drain after the last fault, s", "drain_s"),
    ("agent tracebacks / MemoryErrors in its log", ("agent_tracebacks", "agent_memory_errors")),
    ("flash power cuts (sweep workload)", "flash_cuts"),
    ("  torn: erase (reclaim) / sector header", ("flash_cut_erase", "flash_cut_header")),
    ("  torn: ack entry / group with ack / group",
     ("flash_cut_ack", "flash_cut_group_with_ack", "flash_cut_group")),
    ("  committed readings lost after a cut", "flash_lost"),
    ("wall time, s", "duration_s"),
]


def table(res: dict) -> str:
    lines = ["otlink chaos", "-" * 66]
    for label, key in ROWS:
        if isinstance(key, tuple):
            if not all(k in res for k in key):
                continue
            val = " / ".join(str(res[k]) for k in key)
        else:
            if key not in res:
                continue
            val = str(res[key])
        lines.append(f"{label:<50} {val:>15}")
    lines.append("-" * 66)
    lines.append("verdict: " + ("PASS" if ok(res) else "FAIL " + "; ".join(problems(res))))
    return "\n".join(lines)


def problems(res: dict) -> list[str]:
    p = []
    if res.get("lost"):
        p.append(f"{res['lost']} readings lost (first {res.get('lost_first')})")
    if res.get("duplicates_stored"):
        p.append(f"{res['duplicates_stored']} duplicates stored")
    if "drain_s" in res and res["drain_s"] is None:
        p.append("the node did not drain")
    if "agent_alive_at_end" in res and not res["agent_alive_at_end"]:
        p.append("the agent was not running at the end")
    if res.get("agent_exits"):
        p.append(f"the agent stopped by itself {res['agent_exits']} times")
    if res.get("agent_memory_errors"):
        p.append("MemoryError in the agent log")
    if res.get("flash_lost"):
        p.append(f"{res['flash_lost']} committed readings lost to flash power cuts")
    p += res.get("errors", []) + res.get("flash_errors", [])
    return p


def ok(res: dict) -> bool:
    return not problems(res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent-kills", type=int, default=1000)
    ap.add_argument("--broker-kills", type=int, default=200)
    ap.add_argument("--proxy-faults", type=int, default=200)
    ap.add_argument("--slave-outages", type=int, default=100)
    ap.add_argument("--flash-cuts", type=int, default=1500)
    ap.add_argument("--kill-min", type=float, default=0.3,
                    help="earliest agent kill after its start, s")
    ap.add_argument("--kill-max", type=float, default=2.0, help="latest, s")
    ap.add_argument("--interval-ms", type=int, default=100, help="poll interval (5 points)")
    ap.add_argument("--drain-s", type=float, default=90)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--json", default=str(ROOT / "build" / "chaos.json"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="otlink-chaos-"))
    res: dict = {"command": "tools/chaos.py " + " ".join(argv if argv is not None
                                                         else sys.argv[1:]),
                 "params": vars(args), "firmware": firmware_version()}
    try:
        if args.agent_kills > 0:
            res.update(run_node_chaos(args, work))
        if args.flash_cuts > 0:
            res.update(run_flash_cuts(args.flash_cuts, args.seed, work))
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder: {work}", file=sys.stderr)
    res["pass"] = ok(res)
    print(table(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
