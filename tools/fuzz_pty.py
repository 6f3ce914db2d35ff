"""Noise on a real serial line (docs/reliability.md, "Fuzzing"): the firmware's poller (real
Unix UART driver on a pty, tests/host/modbus_agent_mp.py) reads the reference meter (pymodbus)
through the fault-injecting line relay (tests/host/relay.py, baud-paced): random bytes run on
after answers (noise between frames), bytes replaced by random values, answers cut short,
answers from the wrong slave. Every integer point's value is known, so a corrupted frame
that got through would show as a wrong value; it must never happen, and the poller must
survive every frame.

    .venv/bin/python tools/fuzz_pty.py [--cycles N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "host"))
sys.path.insert(0, str(ROOT / "host_tools"))

FAULTS = {"garbage": 0.25, "corrupt": 0.01, "corrupt_mode": "byte", "truncate": 0.05,
          "wrong_slave": 0.05}


def run(cycles: int, seed: int = 1, build: str = "64") -> dict:
    from mp import run as mp_run
    from otlink_tools.sim_meter import REFERENCE_POINTS, start_meter
    from relay import Relay

    relay = Relay(115200, FAULTS, seed=seed)
    meter = start_meter(reference_map=True, device_port=relay.device_port)
    t0 = time.time()
    try:
        pts = [p for p in REFERENCE_POINTS if p["slave"] == 1]
        expect = {p["id"]: meter.expected(p["slave"], p["table"], p["address"], p["type"],
                                          p["order"]) for p in pts
                  if p["type"] in ("uint32", "int16", "uint16", "int32", "float64", "int64",
                                   "uint64")}
        job = {"serial": {"port": relay.agent_port, "baud": 115200, "timeout_ms": 100,
                          "char_timeout_ms": 30, "offline_after": 1000000,
                          "groups": {"fast": {"interval_ms": 0}}},
               "points": pts, "expect": expect, "cycles": cycles, "warmup": 0, "keep": False}
        with tempfile.TemporaryDirectory() as d:
            jp, op = Path(d) / "job.json", Path(d) / "out.json"
            jp.write_text(json.dumps(job))
            res = mp_run(ROOT / "tests" / "host" / "modbus_agent_mp.py", str(jp), str(op),
                         heap="256K", timeout=7200, build=build)
            out = json.loads(op.read_text()) if op.exists() else None
    finally:
        meter.stop()
        st = relay.close()
    r = {"build": build, "cycles": cycles, "returncode": res.returncode,
         "seconds": round(time.time() - t0, 1), "relay": st,
         "frames": st.get("responses", 0), "noisy_frames": sum(st.get(k, 0) for k in (
             "garbage", "resp_corrupted", "truncate", "wrong_slave"))}
    if out is None:
        r["error"] = (res.stdout + res.stderr)[-2000:]
    else:
        r["wrong_values"] = out["wrong"]
        r["records"] = out.get("records")
        r["codes"] = out["stats"]["codes"]
    return r


def problems(r: dict) -> list[str]:
    if "error" in r or r["returncode"]:
        return ["the poller failed: " + str(r.get("error", r["returncode"]))]
    p = []
    if r["wrong_values"]:
        p.append(f"{r['wrong_values']} wrong values accepted from noisy frames")
    if not r["noisy_frames"]:
        p.append("no noise was injected")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    r = run(a.cycles, a.seed)
    print(json.dumps(r, indent=1))
    return 1 if problems(r) else 0


if __name__ == "__main__":
    sys.exit(main())
