"""`make fuzz`: every input surface of the node and the host decoder, fuzzed (docs/reliability.md).

Surfaces (the generator of each is in the file named; all seeded, no hypothesis):
- Modbus response frames through the firmware's Modbus core, in MicroPython, both builds
  (tests/firmware/test_fuzz_modbus.py: check() + decoding under heap_lock), and through the
  whole poller on a simulated line with noise between frames;
- noise on a real pty: the poller against pymodbus through the fault-injecting relay
  (tools/fuzz_pty.py);
- MQTT from a hostile broker into the real uplink and publisher, both builds
  (tools/fuzz_mqtt.py): an in-session stream the node must survive, then session killers;
- CBOR (and JSON) into the host decoder and the monitor's row path (tools/fuzz_cbor.py);
- JSON and garbage on the cmd topic: parse() and the command task, both builds
  (tests/firmware/test_fuzz_cmd.py);
- console input, both builds (tests/firmware/test_fuzz_console.py).

Prints a table of counts and outcomes, writes build/fuzz.json; exit status 1 when any surface
crashed, hung, grew its heap or let anything but its own error out.

    .venv/bin/python tools/fuzz.py [--scale 1.0] [--seed 1] [-k SURFACE]
--scale multiplies every count (0.01 for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "host_tools"))

# full-run counts (--scale 1)
# (mqtt: sessions, each with an in-session stream of fuzz_mqtt.STREAM packets on average:
# the cases are the packets, about 10^6; modbus_pty: relay cycles, ~4,100 frames)
COUNTS = {"modbus_core": 1_000_000, "modbus_poller": 1_000_000, "modbus_pty": 1500,
          "mqtt": 2000, "cbor": 1_000_000, "cmd": 1_000_000, "console": 1_000_000}


def fw(stem: str, env: dict, build: str, timeout: float = 7200) -> tuple[dict, str, int]:
    """Run a firmware test file with env set; ({FUZZ_* line key: {k: v}}, output, status)."""
    import mp
    from test_firmware import compile_firmware, compile_tests, heap_of

    path = ROOT / "tests" / "firmware" / f"{stem}.py"
    extra = (compile_tests(),) if build == "32" else (compile_tests(), compile_firmware())
    old = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        with tempfile.TemporaryDirectory(prefix="otlink-fuzz-") as scratch:
            t0 = time.time()
            res = mp.run(stem, scratch, heap=heap_of(path, build), module=True, extra=extra,
                         build=build, timeout=timeout)
            secs = time.time() - t0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out = res.stdout + res.stderr
    lines = {}
    for m in re.finditer(r"^(FUZZ_\w+) (.*)$", res.stdout, re.M):
        lines[m[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", m[2])}
    lines["_seconds"] = round(secs, 1)
    return lines, out, res.returncode


def surface_modbus(n_core: int, n_poll: int, seed: int, builds) -> list[dict]:
    rows = []
    for b in builds:
        env = {"FUZZ_MODBUS_N": n_core, "FUZZ_MODBUS_POLL_N": n_poll, "FUZZ_SEED": seed}
        got, out, rc = fw("test_fuzz_modbus", dict(env, MPTEST_ONLY="test_core_"), b)
        c = got.get("FUZZ_MODBUS_CORE", {})
        rows.append(_row(f"Modbus frames, core ({b}-bit)", c.get("frames"), rc, out, {
            "accepted": c.get("accepted"), "refused": c.get("errors"),
            "outcomes": c.get("codes"), "heap_delta": c.get("heap_delta"),
            "seconds": got["_seconds"]}))
        got, out, rc = fw("test_fuzz_modbus", dict(env, MPTEST_ONLY="test_whole_poller_"), b)
        p = got.get("FUZZ_MODBUS_POLL", {})
        rows.append(_row(f"Modbus frames, whole poller + noise ({b}-bit)", p.get("requests"),
                         rc, out, {"noise_bytes": p.get("noise"), "values": p.get("values"),
                                   "error_readings": p.get("errors"),
                                   "offline": p.get("offline"), "skipped": p.get("skipped"),
                                   "retries": p.get("retries"),
                                   "heap_delta": p.get("heap_delta"),
                                   "seconds": got["_seconds"]}))
    return rows


def surface_pty(cycles: int, seed: int) -> list[dict]:
    import fuzz_pty

    r = fuzz_pty.run(cycles, seed)
    pr = fuzz_pty.problems(r)
    return [{"surface": "Modbus frames on a real pty, noise between frames (64-bit)",
             "cases": r.get("frames"), "ok": not pr, "problems": pr,
             "detail": {"noisy_frames": r.get("noisy_frames"),
                        "wrong_values": r.get("wrong_values"), "codes": r.get("codes"),
                        "seconds": r.get("seconds")}}]


def surface_mqtt(sessions: int, seed: int, builds) -> list[dict]:
    import fuzz_mqtt

    rows = []
    for b in builds:
        r = fuzz_mqtt.run(sessions, seed, b)
        pr = fuzz_mqtt.problems(r)
        unclear = [e for e in list(r.get("errors", {})) + r.get("errors_late", [])
                   if "Error" in e or "errno" in e]
        if unclear:
            pr.append(f"unclear errors: {unclear}")
        rows.append({"surface": f"MQTT from a hostile broker ({b}-bit)",
                     "cases": r.get("broker_sent", {}).get("packets"), "ok": not pr,
                     "problems": pr,
                     "detail": {"sessions": r.get("sessions"), "connects": r.get("connects"),
                                "in_session": r.get("broker_sent", {}).get("in_session"),
                                "dropped_by_node": r.get("broker_sent", {}).get(
                                    "dropped_by_node"),
                                "refused_in": r.get("refused_in"), "cmds_in": r.get("cmds_in"),
                                "acks_forged": r.get("acks_forged"),
                                "acks_taken": r.get("acks_taken"),
                                "data_batches": r.get("batches"),
                                "heap_delta": r.get("heap_delta"),
                                "errors": r.get("errors"), "seconds": r.get("seconds")}})
    return rows


def surface_cbor(n: int, seed: int) -> list[dict]:
    import fuzz_cbor

    r = fuzz_cbor.run(n, seed)
    pr = [f"{r['other_exceptions']} exceptions other than PayloadError: {r['by_type']}"] \
        if r["other_exceptions"] else []
    return [{"surface": "CBOR/JSON into the host decoder + monitor rows", "cases": r["cases"],
             "ok": not pr, "problems": pr, "examples": r["examples"],
             "detail": {"payload_errors": r["payload_errors"], "decoded": r["decoded"],
                        "rows": r["rows"], "max_case_ms": r["max_case_ms"],
                        "seconds": r["seconds"]}}]


def surface_cmd(n: int, seed: int, builds) -> list[dict]:
    rows = []
    for b in builds:
        got, out, rc = fw("test_fuzz_cmd", {"FUZZ_CMD_N": n, "FUZZ_SEED": seed}, b)
        p = got.get("FUZZ_CMD_PARSE", {})
        t = got.get("FUZZ_CMD_TASK", {})
        rows.append(_row(f"JSON and garbage on cmd: parse ({b}-bit)", p.get("cases"), rc, out,
                         {"writes": p.get("ok"), "refused": p.get("refused"),
                          "heap_delta": p.get("heap_delta"), "seconds": got["_seconds"]}))
        rows.append(_row(f"JSON and garbage on cmd: command task ({b}-bit)", t.get("messages"),
                         rc, out, {"answered": t.get("answered"), "dropped": t.get("dropped")}))
    return rows


def surface_console(n: int, seed: int, builds) -> list[dict]:
    rows = []
    for b in builds:
        got, out, rc = fw("test_fuzz_console", {"FUZZ_CONSOLE_N": n, "FUZZ_SEED": seed}, b)
        c = got.get("FUZZ_CONSOLE", {})
        rows.append(_row(f"console input ({b}-bit)", c.get("lines"), rc, out, {
            "bytes": c.get("bytes"), "at_lines": c.get("at_lines"),
            "refused": c.get("refused"), "heap_delta": c.get("heap_delta"),
            "secrets_out": c.get("secrets_out"), "seconds": got["_seconds"]}))
    return rows


def _row(name: str, cases, rc: int, out: str, detail: dict) -> dict:
    pr = []
    if rc:
        fails = re.findall(r"^(?:FAIL .*|\w+Error: .*|Fail: .*)$", out, re.M)
        pr.append("; ".join(fails[:4]) or out[-600:])
    if cases is None:
        pr.append("no count reported")
    return {"surface": name, "cases": cases, "ok": not pr, "problems": pr, "detail": detail}


def table(rows: list[dict]) -> str:
    out = ["otlink fuzz", "-" * 100,
           f"{'surface':<58}{'cases':>12}  {'result':<8} notes", "-" * 100]
    for r in rows:
        d = r["detail"]
        notes = ", ".join(f"{k} {v}" for k, v in d.items()
                          if k in ("heap_delta", "refused", "payload_errors", "wrong_values",
                                   "sessions", "in_session", "acks_forged", "noise_bytes",
                                   "noisy_frames", "seconds"))
        out.append(f"{r['surface']:<58}{str(r['cases']):>12}  "
                   f"{'ok' if r['ok'] else 'FAIL':<8} {notes}")
        for p in r["problems"]:
            out.append(f"    ! {p[:300]}")
    out.append("-" * 100)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-k", default="", help="only surfaces whose key contains this")
    ap.add_argument("--builds", default="64,32")
    ap.add_argument("--json", default=str(ROOT / "build" / "fuzz.json"))
    a = ap.parse_args(argv)
    n = {k: max(1, int(v * a.scale)) for k, v in COUNTS.items()}
    builds = [b.strip() for b in a.builds.split(",")]
    if "32" in builds:
        import mp

        if mp.mp32() is None:
            print("32-bit build absent: fuzzing the 64-bit build only")
            builds = ["64"]
    t0 = time.time()
    rows: list[dict] = []
    jobs = [("modbus_core", lambda: surface_modbus(n["modbus_core"], n["modbus_poller"],
                                                   a.seed, builds)),
            ("modbus_pty", lambda: surface_pty(n["modbus_pty"], a.seed)),
            ("mqtt", lambda: surface_mqtt(n["mqtt"], a.seed, builds)),
            ("cbor", lambda: surface_cbor(n["cbor"], a.seed)),
            ("cmd", lambda: surface_cmd(n["cmd"], a.seed, builds)),
            ("console", lambda: surface_console(n["console"], a.seed, builds))]
    for key, job in jobs:
        if a.k in key:
            print(f"fuzzing {key} ...", flush=True)
            rows += job()
    print(table(rows))
    res = {"command": "tools/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "counts": n, "seed": a.seed, "seconds": round(time.time() - t0, 1), "rows": rows,
           "pass": all(r["ok"] for r in rows)}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1, default=str) + "\n")
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
