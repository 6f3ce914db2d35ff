"""A node's health as a person reads it, from its last birth and state messages.

Pure functions, shared by `otlink status` (a one-shot view from the broker's retained
messages) and the live table of `otlink monitor`. A node is in one of four conditions:

- online: its state says so;
- offline: the broker published its last will (the node vanished: power, network, crash);
- stopped: it stopped cleanly and said so (`"stopped": true`, docs/payload.md "State");
- unknown: no state seen yet.

An online node is healthy unless one of the problems below holds; the warnings are shown but
do not make it unhealthy (counters since boot that say something went wrong and recovered).
"""

from __future__ import annotations

import time
from typing import Any

from otlink_tools.decode import error_name

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
                      ("mqtt_reconnects", "MQTT reconnects")):
        if st.get(key):
            warnings.append(f"{st[key]} {what}{_rate(st[key], up)}")
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
    """One node's health for `otlink status --json`."""
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
