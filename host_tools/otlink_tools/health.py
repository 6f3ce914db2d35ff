"""`otlink health`: a node's health as a person reads it, from its last birth and state.

The pure part (condition, assess, summary, as_json) is shared with the live table of
`otlink monitor`; the command reads what the broker keeps. A node is in one of four
conditions:

- online: its state says so;
- offline: the broker published its last will (the node vanished: power, network, crash);
- stopped: it stopped cleanly and said so (`"stopped": true`, docs/payload.md "State");
- unknown: no state seen yet.

An online node is healthy unless one of the problems below holds; the warnings are shown but
do not make it unhealthy (counters since boot that say something went wrong and recovered).

Every node's birth (its point table) and state are retained on the broker: the command
subscribes, takes what the broker hands over at once and prints it: condition, queue depth
and the age of the oldest unsent reading, uptime, boot and reset cause, free heap, failed
Modbus transactions per slave (and per hour of uptime), and the points whose last report is
an error. It waits at most --wait seconds (default 3), less once the retained messages have
stopped coming. (`otlink status` is another command: one node through its service
console.)

Exit status (scripts and monitoring systems can act on it):
  0  every node seen is online and healthy
  1  the command failed (broker unreachable, refused, bad option value)
  2  usage error (unknown option)
  3  a node is online but unhealthy (points in error, old unsent readings, readings dropped
     or lost, clock not set, state not updated for --stale seconds)
  4  a node is offline (its last will) or stopped
  5  no node found (nothing retained under the prefix, site and node asked for)
The highest applies when nodes differ (offline beats unhealthy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import ssl
import sys
import time
from typing import IO, Any

from otlink_tools.decode import error_name, format_source

MAX_BACKLOG_S = 300  # oldest unsent reading older than this: a problem
STALE_S = 180  # a state older than this (3x the default 60 s interval): a problem


def condition(state: dict | None) -> str:
    """online, offline (last will), stopped (clean stop) or unknown."""
    if not state or "online" not in state:
        return "unknown"
    if state["online"]:
        return "online"
    return "stopped" if state.get("stopped") else "offline"


def _rate(count: int, uptime_s: int | None) -> str:
    """" (12/h)": per hour of uptime, once a rate means something (a minute of uptime)."""
    if not uptime_s or uptime_s < 60:
        return ""
    per_h = count * 3600 / uptime_s
    return f" ({per_h:.3g}/h)" if per_h < 1000 else f" ({per_h:.0f}/h)"


def point_names(birth: dict | None) -> dict[int, dict]:
    return {p["id"]: p for p in (birth or {}).get("points", [])}


def assess(birth: dict | None, state: dict | None, now: float | None = None,
           max_backlog_s: float = MAX_BACKLOG_S, stale_s: float = STALE_S) -> dict:
    """The health of one node: {"condition", "healthy", "problems", "warnings", "figures",
    "point_errors"}. figures: the state's numbers worth showing, by name; point_errors:
    [{"id", "name", "err", "error"}] of the points whose last report is an error."""
    now = time.time() if now is None else now
    st = state or {}
    cond = condition(state)
    problems: list[str] = []
    warnings: list[str] = []
    pts = point_names(birth)
    perr = []
    for pid, code in sorted((st.get("point_errors") or {}).items()):
        name = pts.get(pid, {}).get("name", f"#{pid}")
        perr.append({"id": pid, "name": name, "err": code, "error": error_name(code)})
    if cond == "unknown":
        problems.append("no state message from this node")
    elif cond == "offline":
        problems.append("offline: the broker published its last will (power, network or a "
                        "crash)")
    elif cond == "stopped":
        problems.append("stopped cleanly")
    if cond == "online":
        if perr:
            problems.append(f"{len(perr)} point{'s' if len(perr) > 1 else ''} in error: "
                            + ", ".join(f"{e['name']} ({e['error']})" for e in perr[:5])
                            + (", ..." if len(perr) > 5 else ""))
        age = st.get("oldest_unsent_s", 0)
        if age > max_backlog_s:
            problems.append(f"oldest unsent reading {age} s old (over {max_backlog_s:g} s: "
                            "no consumer acknowledging, or the link is down)")
        if "t" in st and now * 1000 - st["t"] > stale_s * 1000:
            problems.append(f"state not updated for {(now * 1000 - st['t']) / 1000:.0f} s")
        if st.get("clock_set") is False:
            problems.append("clock not set: readings are stamped with uptime")
    if st.get("drops"):
        problems.append(f"{st['drops']} readings dropped (queue full)")
    if st.get("queue_corrupt"):
        problems.append(f"{st['queue_corrupt']} readings lost to flash damage")
    up = st.get("uptime_s")
    for a, n in sorted((st.get("slave_errors") or {}).items()):
        if n:
            warnings.append(f"slave {a}: {n} failed transactions{_rate(n, up)}")
    for key, what in (("bus_errors", "serial port failures"), ("task_errors", "tasks restarted"),
                      ("sensor_errors", "sensor read failures"),
                      ("msgs_refused", "oversized messages refused"),
                      ("cmd_forged", "commands refused (unsigned or forged)"),
                      ("cmd_replayed", "commands refused (replayed)"),
                      ("acks_forged", "consumer acks refused (unsigned or forged)"),
                      ("mqtt_reconnects", "MQTT reconnects")):
        if st.get(key):
            warnings.append(f"{st[key]} {what}{_rate(st[key], up)}")
    if st.get("insecure"):
        warnings.append(f"insecure options in force: {st['insecure']}")
    if st.get("config") not in (None, "ok"):
        warnings.append(f"config {st['config']} (docs/config.md)")
    figures = {k: st[k] for k in ("boot", "uptime_s", "queue_depth", "oldest_unsent_s",
                                  "free_heap", "reset_cause", "drops") if k in st}
    return {"condition": cond, "healthy": cond == "online" and not problems,
            "problems": problems, "warnings": warnings, "figures": figures,
            "point_errors": perr}


def format_seconds(s: float) -> str:
    s = max(0, int(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def summary(h: dict) -> str:
    """One line of figures: condition, queue, oldest unsent, uptime, reset cause, free heap."""
    f = h["figures"]
    cond = h["condition"].upper() if h["condition"] != "online" else "online"
    parts = [cond]
    if "queue_depth" in f:
        parts.append(f"queue {f['queue_depth']}")
    if f.get("oldest_unsent_s"):
        parts.append(f"oldest unsent {format_seconds(f['oldest_unsent_s'])}")
    if "uptime_s" in f:
        parts.append(f"up {format_seconds(f['uptime_s'])}")
    if "boot" in f:
        parts.append(f"boot {f['boot']}")
    if "reset_cause" in f:
        parts.append(f"reset {f['reset_cause']}")
    if "free_heap" in f:
        parts.append(f"heap free {f['free_heap']} B")
    return "  ".join(parts)


def as_json(site: str, node: str, birth: dict | None, state: dict | None,
            h: dict) -> dict[str, Any]:
    """One node's health for `otlink health --json`."""
    out: dict[str, Any] = {"site": site, "node": node, "condition": h["condition"],
                           "healthy": h["healthy"], "problems": h["problems"],
                           "warnings": h["warnings"], "point_errors": h["point_errors"],
                           "state": {k: v for k, v in (state or {}).items() if k != "kind"}}
    if birth is not None:
        out["fw"] = birth.get("fw")
        out["config_hash"] = birth.get("config_hash")
        out["points"] = [{"id": p["id"], "name": p["name"], "unit": p.get("unit") or "",
                          "type": p.get("type")} for p in birth.get("points", [])]
    if "slave_errors" in out["state"]:  # JSON object keys are text
        out["state"]["slave_errors"] = {str(a): n for a, n in
                                        out["state"]["slave_errors"].items()}
    if "point_errors" in out["state"]:
        out["state"]["point_errors"] = {str(a): n for a, n in
                                        out["state"]["point_errors"].items()}
    return out


# --- the command: what the broker keeps, as a report ------------------------------------

EXIT_OK, EXIT_UNHEALTHY, EXIT_DOWN, EXIT_NONE = 0, 3, 4, 5
QUIET_S = 0.5  # retained messages come in one burst after the SUBACK: this long without one


def collect(host: str, port: int, prefix: str = "otlink", site: str = "+", node: str = "+",
            wait: float = 3.0, err: IO[str] | None = None, **conn) -> tuple[dict, dict]:
    """(births, states) by (site, node): what the broker holds retained, gathered for at most
    `wait` seconds (less once it has been quiet for QUIET_S, or once the one node asked for
    has sent both). Raises ConnectionError / ValueError like Monitor.start()."""
    from otlink_tools.monitor import Monitor  # monitor -> monitor_formats -> health

    class _Reader(Monitor):
        """A Monitor that subscribes to births and states only (nothing to write or ack)."""

        def subscriptions(self) -> list[str]:
            return [self._topic("birth"), self._topic("state")]

    r = _Reader(host, port, prefix=prefix, site=site, node=node, fmt="jsonl",
                out=open(os.devnull, "w"), err=err or sys.stderr, ack=False, live=False,
                **conn)
    t0 = time.monotonic()
    r.start(timeout=max(wait, 1.0))
    try:
        last_n, last_t = -1, time.monotonic()
        while time.monotonic() - t0 < wait:
            with r.lock:
                n = r.messages
                done = (node != "+" and site != "+" and (site, node) in r.births
                        and (site, node) in r.states)
            if done:
                break
            if n != last_n:
                last_n, last_t = n, time.monotonic()
            elif time.monotonic() - last_t >= QUIET_S:
                break
            time.sleep(0.05)
    finally:
        r.stop()
        r.out.close()
    with r.lock:
        return dict(r.births), dict(r.states)


def report(births: dict, states: dict, now: float | None = None,
           max_backlog_s: float = MAX_BACKLOG_S,
           stale_s: float = STALE_S) -> tuple[list[dict], int]:
    """(per-node health as JSON-ready dicts, exit status)."""
    nodes = []
    code = EXIT_NONE
    for key in sorted(set(births) | set(states)):
        h = assess(births.get(key), states.get(key), now, max_backlog_s, stale_s)
        nodes.append(as_json(key[0], key[1], births.get(key), states.get(key), h))
        c = EXIT_OK if h["healthy"] else (
            EXIT_DOWN if h["condition"] in ("offline", "stopped") else EXIT_UNHEALTHY)
        code = c if code == EXIT_NONE else max(code, c)
    return nodes, code


def render(nodes: list[dict], births: dict, points: bool) -> str:
    """The health view as text; points: list every point of each node's birth table."""
    lines = []
    for n in nodes:
        h = {"condition": n["condition"], "figures": {k: n["state"][k] for k in
             ("boot", "uptime_s", "queue_depth", "oldest_unsent_s", "free_heap",
              "reset_cause") if k in n["state"]}}
        tail = f"  fw {n['fw']}" if n.get("fw") else ""
        verdict = "healthy" if n["healthy"] else "NOT HEALTHY"
        lines.append(f"{n['node']} ({n['site']})  {summary(h)}{tail}  {verdict}")
        for p in n["problems"]:
            lines.append(f"  problem: {p}")
        for w in n["warnings"]:
            lines.append(f"  warning: {w}")
        if points:
            birth = births.get((n["site"], n["node"]))
            if birth is None:
                lines.append("  (no birth message: the point table is unknown)")
            else:
                errs = {e["id"]: e for e in n["point_errors"]}
                rows = [(str(p["id"]), p["name"], p.get("unit") or "", p.get("type") or "",
                         format_source(p.get("source")),
                         f"error {errs[p['id']]['err']}: {errs[p['id']]['error']}"
                         if p["id"] in errs else "ok")
                        for p in birth["points"]]
                heads = ("id", "point", "unit", "type", "source", "last report")
                w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                     for i, h in enumerate(heads)]
                lines.append("  " + "  ".join(f"{h:{w[i]}}" for i, h in enumerate(heads)))
                for r in rows:
                    lines.append(("  " + "  ".join(f"{c:{w[i]}}" for i, c in enumerate(r)))
                                 .rstrip())
        lines.append("")
    return "\n".join(lines)


def build_parser(p: argparse.ArgumentParser) -> None:
    """health of one node or the fleet, from the broker (online, offline, stopped; errors)"""
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default 1883, 8883 with TLS")
    p.add_argument("--prefix", default="otlink")
    p.add_argument("--site", default="+", help="site (default all)")
    p.add_argument("--node", default="+", help="node (default all); its points are listed")
    p.add_argument("--json", action="store_true", help="print JSON (one object) instead")
    p.add_argument("--wait", type=float, default=3.0, metavar="S",
                   help="wait at most S seconds for the retained messages (default 3)")
    p.add_argument("--max-backlog", type=float, default=MAX_BACKLOG_S, metavar="S",
                   help="unhealthy when the oldest unsent reading is older (default 300)")
    p.add_argument("--stale", type=float, default=STALE_S, metavar="S",
                   help="unhealthy when the node's state is older (default 180)")
    p.add_argument("--cafile", help="CA certificate to verify the broker (enables TLS)")
    p.add_argument("--cert", help="client certificate (with --key)")
    p.add_argument("--key", help="client private key")
    p.add_argument("--user")
    p.add_argument("--password", help="or set OTLINK_MQTT_PASSWORD (preferred)")


def run(args) -> int:
    from otlink_tools.errors import CommandError
    from otlink_tools.monitor import check_topic_args

    try:
        check_topic_args(args.prefix, args.site, args.node)
    except ValueError as e:
        raise CommandError(str(e)) from None
    for opt, v in (("--wait", args.wait), ("--max-backlog", args.max_backlog),
                   ("--stale", args.stale)):
        if not (math.isfinite(v) and v >= 0):
            raise CommandError(f"{opt} {v:g}: a number of seconds >= 0 wanted")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: out of range, 1..65535 wanted")
    port = args.port or (8883 if (args.cafile or args.cert) else 1883)
    password = args.password or os.environ.get("OTLINK_MQTT_PASSWORD")
    try:
        births, states = collect(args.host, port, args.prefix, args.site, args.node,
                                 args.wait, cafile=args.cafile, cert=args.cert, key=args.key,
                                 user=args.user, password=password)
    except (ValueError, ConnectionError) as e:
        raise CommandError(str(e)) from None
    except (OSError, ssl.SSLError) as e:
        raise CommandError(f"cannot reach {args.host}:{port}: {e}") from None
    nodes, code = report(births, states, max_backlog_s=args.max_backlog, stale_s=args.stale)
    if args.json:
        print(json.dumps({"nodes": nodes, "exit": code}, indent=2))
    elif not nodes:
        where = f"{args.prefix}/{args.site}/{args.node}"
        print(f"otlink health: no node found under {where} on {args.host}:{port} "
              f"(nothing retained in {args.wait:g} s)", file=sys.stderr)
    else:
        print(render(nodes, births, points=args.node != "+"))
    return code
