"""`otlink status`: the health of one node or of the fleet, from what the broker keeps.

Every node's birth (its point table) and state (health) are retained on the broker, so this
command subscribes, takes what the broker hands over at once and prints it: condition (online,
offline after its last will, stopped cleanly), queue depth and the age of the oldest unsent
reading, uptime, boot and reset cause, free heap, failed Modbus transactions per slave (and per
hour of uptime), and the points whose last report is an error. It waits at most --wait
seconds (default 3), less once the retained messages have stopped coming.

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
from typing import IO

from otlink_tools import health
from otlink_tools.decode import format_source
from otlink_tools.monitor import Monitor, check_topic_args

EXIT_OK, EXIT_UNHEALTHY, EXIT_DOWN, EXIT_NONE = 0, 3, 4, 5
QUIET_S = 0.5  # retained messages come in one burst after the SUBACK: this long without one


class _Reader(Monitor):
    """A Monitor that subscribes to births and states only (nothing to write or ack)."""

    def subscriptions(self) -> list[str]:
        return [self._topic("birth"), self._topic("state")]


def collect(host: str, port: int, prefix: str = "otlink", site: str = "+", node: str = "+",
            wait: float = 3.0, err: IO[str] | None = None, **conn) -> tuple[dict, dict]:
    """(births, states) by (site, node): what the broker holds retained, gathered for at most
    `wait` seconds (less once it has been quiet for QUIET_S, or once the one node asked for
    has sent both). Raises ConnectionError / ValueError like Monitor.start()."""
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
           max_backlog_s: float = health.MAX_BACKLOG_S,
           stale_s: float = health.STALE_S) -> tuple[list[dict], int]:
    """(per-node health as JSON-ready dicts, exit status)."""
    nodes = []
    code = EXIT_NONE
    for key in sorted(set(births) | set(states)):
        h = health.assess(births.get(key), states.get(key), now, max_backlog_s, stale_s)
        nodes.append(health.as_json(key[0], key[1], births.get(key), states.get(key), h))
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
        lines.append(f"{n['node']} ({n['site']})  {health.summary(h)}{tail}  {verdict}")
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
    """health of one node or the fleet (online / offline / stopped, queue, errors)"""
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
    p.add_argument("--max-backlog", type=float, default=health.MAX_BACKLOG_S, metavar="S",
                   help="unhealthy when the oldest unsent reading is older (default 300)")
    p.add_argument("--stale", type=float, default=health.STALE_S, metavar="S",
                   help="unhealthy when the node's state is older (default 180)")
    p.add_argument("--cafile", help="CA certificate to verify the broker (enables TLS)")
    p.add_argument("--cert", help="client certificate (with --key)")
    p.add_argument("--key", help="client private key")
    p.add_argument("--user")
    p.add_argument("--password", help="or set OTLINK_MQTT_PASSWORD (preferred)")


def run(args) -> int:
    from otlink_tools.errors import CommandError

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
        print(f"otlink status: no node found under {where} on {args.host}:{port} "
              f"(nothing retained in {args.wait:g} s)", file=sys.stderr)
    else:
        print(render(nodes, births, points=args.node != "+"))
    return code
