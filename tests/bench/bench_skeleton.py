"""Walking-skeleton figure: end-to-end readings/s of the whole agent on a simulated meter.

Source: the simulated energy meter (pymodbus RTU on an unpaced pty) polled every 10 ms by
the whole agent (`otlink node run`'s process: Unix port, flash queue on the emulated NOR,
CBOR batches, umqtt.simple QoS 1 with TCP_NODELAY, broker acks, config defaults otherwise).
Rivals, same run, same meter, poll plan and broker (tests/bench/naive_agent_mp.py): the same
poller with no queue, umqtt.simple QoS 1, JSON per reading as typed, the same with
TCP_NODELAY, and one grouped JSON message per poll cycle (as Tasmota's telemetry) with
TCP_NODELAY.

Consumer: tests/bench/sink.py (stores what arrives, decodes nothing during the run);
readings are counted afterwards, in a fixed window after a warm-up. Each figure is the
median of N runs (3; --quick: 1); latency from each reading's own time to its arrival.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl
from sink import Sink

from otlink_tools import node, paths
from otlink_tools.broker import Broker
from otlink_tools.demo import demo_config
from otlink_tools.sim_meter import start_meter

HERE = Path(__file__).resolve().parent
EXCL = ("the RS-485 wire timing (unpaced pty: no baud or turnaround delays), flash "
        "program/erase time (NOR emulated in a file), the network (loopback mosquitto), TLS; "
        "x86 CPU, not an MCU")
MODES = {"agent": "the agent (flash queue, CBOR batches, QoS1, TCP_NODELAY)",
         "typed": "1 JSON msg/reading, umqtt QoS1 as typed (no TCP_NODELAY)",
         "nodelay": "1 JSON msg/reading, umqtt QoS1 + TCP_NODELAY",
         "grouped": "grouped JSON per poll (6 values/msg), umqtt QoS1 + TCP_NODELAY"}


def _config(meter_port: str, broker_port: int) -> dict:
    cfg = demo_config(meter_port, broker_port, baud=115200)
    cfg["groups"]["fast"]["interval_ms"] = 10
    cfg["sensors"] = []
    cfg["serial"]["timeout_ms"] = 100
    # the sink does not acknowledge: broker acks (the default, consumer acks, would stop the
    # node at its 8 unacknowledged batches); bench_uplink measures consumer acks
    cfg["mqtt"]["ack"] = "broker"
    del cfg["mqtt"]["ack_key"]  # consumer acks only
    return cfg


def _window(msgs: list, start: float, end: float) -> list:
    return [m for m in msgs if start <= m[0] < end]


def measure(mode: str, seconds: float, warmup: float) -> dict:
    """Readings/s arriving in [warmup, warmup + seconds] after the start, for the agent or a
    rival, on a fresh meter and broker."""
    work = Path(tempfile.mkdtemp(prefix="otlink-bench-skel-"))
    meter = start_meter(slaves=(1,))
    broker = Broker(workdir=str(work)).start()
    cfgp = work / "node.json"
    cfgp.write_text(json.dumps(_config(meter.agent_port, broker.port)))
    sink = Sink(broker.port, ["otlink/#" if mode == "agent" else "naive/#"])
    sink.start()
    if mode == "agent":
        cmd, env = node.agent_command(str(cfgp), str(work / "state"), "256K",
                                      mpy_dir=node.firmware_mpy())
        (work / "state").mkdir()
    else:
        cmd = [paths.micropython(), "-X", "heapsize=256K", str(HERE / "naive_agent_mp.py"),
               str(cfgp), mode]
        env = dict(os.environ, MICROPYPATH=paths.micropypath())
    proc = bl.Proc(cmd, env, warmup + seconds + 60)
    try:
        time.sleep(warmup)
        start = time.monotonic()
        time.sleep(seconds)
    finally:
        proc.kill()
        proc.finish()
        sink.close()
        meter.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    msgs = _window(sink.msgs, start, start + seconds)
    if mode == "agent":
        got = bl.agent_readings(msgs)
        total = bl.agent_readings(sink.msgs)["readings"]
    else:
        got = bl.rival_readings(msgs)
        total = bl.rival_readings(sink.msgs)["readings"]
    got["rate"] = got["readings"] / seconds  # fixed window: batches arrive in bursts
    got["cpu_us"] = proc.cpu_s * 1e6 / total if total else None
    got["total"] = total
    if not total:
        got["error"] = proc.out.strip()[-300:]
    return got


def run(ctx: dict) -> list[dict]:
    seconds = 3.0 if ctx.get("quick") else 8.0
    n = 1 if ctx.get("quick") else 3
    res = {}
    for mode in MODES:
        rs = []
        for _ in range(n):
            r = measure(mode, seconds, 2.0)
            print(f"    {mode}: {r['rate']:,.0f} readings/s, p99 {r.get('p99_ms')} ms"
                  + (f", ERROR {r['error']}" if r.get("error") else ""), flush=True)
            rs.append(r)
        res[mode] = bl.median_run(rs)
    ag = res["agent"]
    broken = [m for m in MODES if not res[m]["readings"]]
    strongest = max(("typed", "nodelay", "grouped"), key=lambda m: res[m]["rate"])

    def note(r: dict) -> str:
        cpu = "-" if r.get("cpu_us") is None else f"{r['cpu_us']:.0f}"
        return (f"runs {', '.join(f'{x:,.0f}' for x in r['runs'])}; latency p50 "
                f"{bl.fmt_ms(r.get('p50_ms'))} ms, p99 {bl.fmt_ms(r.get('p99_ms'))} ms; "
                f"{cpu} us CPU/reading (process user+sys over all its readings, meter "
                f"polling included); {r.get('bytes_per_reading', 0):.1f} B/reading")

    rows = [{
        "name": "skeleton e2e readings/s (meter, 10 ms poll)", "value": ag["rate"],
        "unit": "readings/s", "rival": res[strongest]["rate"],
        "rival_is": MODES[strongest] + " (strongest rival)",
        "target": ">= 0.9 x rival (the meter is the ceiling)",
        "met": None if broken else ag["rate"] >= 0.9 * res[strongest]["rate"],
        "excludes": EXCL,
        "note": f"whole agent at 256K heap, simulated meter over an unpaced pty, 6 points "
                f"every 10 ms, {seconds:.0f} s window after 2 s warm-up; " + note(ag)
                + "; the meter and poll plan bound every row here: bench_uplink has the "
                  "pipeline's own ceiling"
                + (f"; NO READINGS from {', '.join(broken)}: "
                   + "; ".join(str(res[m].get("error")) for m in broken) if broken else "")}]
    for m in ("typed", "nodelay", "grouped"):
        rows.append({
            "name": f"skeleton rival: {MODES[m]}", "value": res[m]["rate"],
            "unit": "readings/s", "rival": ag["rate"], "rival_is": "the agent (row above)",
            "target": "-", "met": None, "excludes": EXCL + "; no queue at all",
            "note": note(res[m])})
    return rows


if __name__ == "__main__":
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    for r in run({"quick": "--quick" in sys.argv}):
        print(r)
