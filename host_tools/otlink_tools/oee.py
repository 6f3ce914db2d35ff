"""`otlink oee`: availability, performance, quality and OEE per node, machine and shift,
from what `otlink store` keeps (docs/historian.md), with a PNG timeline of the machine
states and a trend plot of one feature (docs/analytics.md, "OEE on the host").

The node sends (docs/analytics.md): machine-state events, text readings of a machine point
(birth source `machine:<pid>`) such as "running after micro_stop 4200"; and counter totals,
integer readings of a counter point (`counter:<pid>:cycles[:<machine id>]` or
`...:rejects...`), whose first reading after each boot is its starting total.

Definitions (ISO 22400-2:2014, KPIs 5.3/6.4; the time elements named as there):
  PBT  planned busy time: the shift (or the --from/--to period) minus --planned-stop-min
  APT  actual production time: time in state running, plus micro-stops (a stop shorter than
       the node's micro_stop_ms is a speed loss, not downtime)
  PQ   produced quantity: increments of the machine's cycles counter in the shift
  SQ   scrap quantity: increments of its rejects counter; GQ = PQ - SQ good quantity
  PRI  planned run time per item: --ideal-cycle-s
  availability = APT / PBT; effectiveness (performance) = PRI * PQ / APT;
  quality rate = GQ / PQ; OEE index = availability * effectiveness * quality rate.
Time without a known state (node off or not yet reporting) is not production time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from dataclasses import dataclass, field

from otlink_tools.errors import CommandError

STATES = ("stopped", "idle", "running", "micro_stop")
_EVENT = re.compile(r"^(stopped|idle|running) after (stopped|idle|running|micro_stop|unknown) "
                    r"(-?\d+)$")
COLORS = {"running": "#2e7d32", "micro_stop": "#f9a825", "idle": "#90a4ae",
          "stopped": "#c62828", "unknown": "#eeeeee"}


@dataclass
class Segment:
    start: int  # ms since the epoch
    end: int
    state: str


@dataclass
class Shift:
    name: str
    start: int
    end: int


@dataclass
class Result:
    node: str
    machine: str
    shift: str
    pbt_ms: int
    apt_ms: int
    times: dict = field(default_factory=dict)  # state -> ms in the shift
    micro_stops: int = 0
    stops: int = 0
    produced: int = 0
    rejects: int = 0
    ideal_cycle_s: float | None = None

    @property
    def availability(self) -> float | None:
        return self.apt_ms / self.pbt_ms if self.pbt_ms > 0 else None

    @property
    def performance(self) -> float | None:
        if self.ideal_cycle_s is None or self.apt_ms <= 0:
            return None
        return self.ideal_cycle_s * 1000.0 * self.produced / self.apt_ms

    @property
    def quality(self) -> float | None:
        return (self.produced - self.rejects) / self.produced if self.produced else None

    @property
    def oee(self) -> float | None:
        a, p, q = self.availability, self.performance, self.quality
        return a * p * q if None not in (a, p, q) else None


def parse_event(text: str):
    """(new state, previous state, previous duration ms) of a machine-state event, or None."""
    m = _EVENT.match(text or "")
    if not m:
        return None
    return m.group(1), m.group(2), int(m.group(3))


def timeline(events: list[tuple[int, str]], end_ms: int) -> list[Segment]:
    """State segments from a machine's events [(t_ms, text)], oldest first. A stop that ended
    as a micro-stop (the next event says so) is one. The last state lasts until end_ms."""
    segs: list[Segment] = []
    for t, text in events:
        ev = parse_event(text)
        if ev is None:
            continue
        new, prev, _dur = ev
        if segs:
            segs[-1].end = t
            if prev == "micro_stop" and segs[-1].state == "stopped":
                segs[-1].state = "micro_stop"
        segs.append(Segment(t, max(t, end_ms), new))
    return [s for s in segs if s.end > s.start]


def increments(rows: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """[(t_ms, count)] from counter totals [(boot, t_ms, total)] ordered by time: within a
    boot each reading adds its difference from the one before; the first of a boot is its
    starting total and adds nothing; a total going down (a reset) adds nothing."""
    out = []
    last: dict[int, int] = {}
    for boot, t, v in rows:
        p = last.get(boot)
        if p is not None and v > p:
            out.append((t, v - p))
        last[boot] = v
    return out


def shifts_for(spec: list[str], t0: int, t1: int) -> list[Shift]:
    """Shift windows between t0 and t1 (ms, UTC) from specs NAME=HH:MM-HH:MM (a window may
    run past midnight); none: the whole period as one shift named "period"."""
    if not spec:
        return [Shift("period", t0, t1)]
    out = []
    day = dt.datetime.fromtimestamp(t0 / 1000, dt.timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    while day.timestamp() * 1000 < t1:
        for s in spec:
            m = re.match(r"^([\w.-]+)=(\d\d):(\d\d)-(\d\d):(\d\d)$", s)
            if not m:
                raise CommandError(f"--shift {s!r}: NAME=HH:MM-HH:MM wanted, e.g. "
                                   "early=06:00-14:00")
            a = day + dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
            b = day + dt.timedelta(hours=int(m.group(4)), minutes=int(m.group(5)))
            if b <= a:
                b += dt.timedelta(days=1)
            sa, sb = int(a.timestamp() * 1000), int(b.timestamp() * 1000)
            if sb > t0 and sa < t1:
                out.append(Shift(f"{m.group(1)} {a:%Y-%m-%d}", max(sa, t0), min(sb, t1)))
        day += dt.timedelta(days=1)
    return sorted(out, key=lambda s: s.start)


def compute(node: str, machine: str, segs: list[Segment], cycles: list[tuple[int, int]],
            rejects: list[tuple[int, int]], shift: Shift, ideal_cycle_s: float | None,
            planned_stop_ms: int = 0) -> Result:
    times = {s: 0 for s in STATES}
    stops = micro = 0
    for g in segs:
        a, b = max(g.start, shift.start), min(g.end, shift.end)
        if b > a:
            times[g.state] += b - a
            if shift.start <= g.start < shift.end:
                stops += g.state == "stopped"
                micro += g.state == "micro_stop"
    pbt = max(0, shift.end - shift.start - planned_stop_ms)
    apt = times["running"] + times["micro_stop"]
    r = Result(node, machine, shift.name, pbt, apt, times, micro, stops,
               sum(n for t, n in cycles if shift.start <= t < shift.end),
               sum(n for t, n in rejects if shift.start <= t < shift.end), ideal_cycle_s)
    return r


# --- the stored stream -----------------------------------------------------------------------

def _points(db, site: str | None, node: str | None) -> list[tuple]:
    """(site, node, pid, name, source) of every point any birth named, latest name first."""
    sql = "SELECT site, node, pid, name, source, boot FROM points"
    args: list = []
    cond = []
    if site:
        cond.append("site = ?")
        args.append(site)
    if node:
        cond.append("node = ?")
        args.append(node)
    if cond:
        sql += " WHERE " + " AND ".join(cond)
    rows = db.query(sql + " ORDER BY boot DESC", tuple(args))
    seen = {}
    for s, n, pid, name, src, _b in rows:
        seen.setdefault((s, n, pid), (s, n, pid, name, src or ""))
    return list(seen.values())


def _readings(db, site: str, node: str, pid: int, t0: int, t1: int, col: str) -> list:
    # in the node's order (boot, seq): two readings of one instant can be stamped a
    # millisecond apart the other way round (a change event and a periodic sample)
    return db.query(f"SELECT boot, t_ms, {col} FROM readings WHERE site = ? AND node = ? AND "
                    f"pid = ? AND t_ms >= ? AND t_ms < ? AND untimed = ? ORDER BY boot, seq",
                    (site, node, pid, t0, t1, False))


def analyse(db, t0: int, t1: int, shifts: list[Shift], site=None, node=None,
            ideal_cycle_s=None, planned_stop_ms=0):
    """[Result] per (node, machine, shift), and {(site, node, machine): segments}."""
    pts = _points(db, site, node)
    results, lines = [], {}
    for s, n, pid, name, src in pts:
        if not src.startswith("machine:"):
            continue
        # state before t0 matters: the last event before the period starts it
        prior = db.query("SELECT t_ms, value_text FROM readings WHERE site = ? AND node = ? "
                         "AND pid = ? AND t_ms < ? AND untimed = ? ORDER BY boot DESC, seq "
                         "DESC LIMIT 1", (s, n, pid, t0, False))
        ev = [(max(t, t0), txt) for t, txt in prior]
        ev += [(t, txt) for _b, t, txt in _readings(db, s, n, pid, t0, t1, "value_text")]
        segs = timeline(ev, t1)
        lines[(s, n, name)] = segs
        cyc, rej = [], []
        for s2, n2, cpid, _cname, csrc in pts:
            parts = csrc.split(":")
            if (s2, n2) != (s, n) or parts[0] != "counter" or len(parts) < 3:
                continue
            mine = len(parts) > 3 and parts[3] == str(pid)
            alone = len(parts) == 3
            if not (mine or alone):
                continue
            inc = increments(_readings(db, s, n, cpid, t0, t1, "value_int"))
            (rej if parts[2] == "rejects" else cyc).extend(inc)
        for sh in shifts:
            results.append(compute(n, name, segs, cyc, rej, sh, ideal_cycle_s,
                                   planned_stop_ms))
    return results, lines


# --- pictures ----------------------------------------------------------------------------------

def plot_timeline(lines: dict, shifts: list[Shift], t0: int, t1: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = sorted(lines)
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.6 * max(1, len(rows))))
    for i, key in enumerate(rows):
        for g in lines[key]:
            ax.barh(i, (g.end - g.start) / 3.6e6, left=(g.start - t0) / 3.6e6, height=0.6,
                    color=COLORS[g.state], linewidth=0)
    for sh in shifts:
        ax.axvline((sh.start - t0) / 3.6e6, color="black", linewidth=0.6, linestyle=":")
    ax.set_yticks(range(len(rows)), [f"{n} / {m}" for _s, n, m in rows])
    ax.set_xlim(0, (t1 - t0) / 3.6e6)
    start = dt.datetime.fromtimestamp(t0 / 1000, dt.timezone.utc)
    ax.set_xlabel(f"hours from {start:%Y-%m-%d %H:%M} UTC")
    ax.legend(handles=[Patch(color=COLORS[s], label=s) for s in STATES], ncol=4,
              loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title("machine states", loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_trend(db, t0: int, t1: int, path: str, point: str | None, site=None,
               node=None) -> str | None:
    """A feature's trend (a derived point: a window statistic or a vibration feature, or
    the named point). Returns the point's name, None when there is none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = _points(db, site, node)
    pick = None
    for s, n, pid, name, src in pts:
        if point is not None:
            if name == point:
                pick = (s, n, pid, name)
                break
        elif src.startswith("window:") or (src.startswith("adxl345:") and
                                             src.endswith(":velocity")):
            if pick is None or src.endswith(":velocity"):
                pick = (s, n, pid, name)
    if pick is None:
        return None
    s, n, pid, name = pick
    rows = db.query("SELECT t_ms, COALESCE(value_real, value_int) FROM readings WHERE site = ? "
                    "AND node = ? AND pid = ? AND t_ms >= ? AND t_ms < ? AND untimed = ? AND "
                    "err IS NULL ORDER BY t_ms", (s, n, pid, t0, t1, False))
    fig, ax = plt.subplots(figsize=(12, 3.5))
    ax.plot([(t - t0) / 3.6e6 for t, _v in rows], [v for _t, v in rows], marker=".",
            linewidth=1)
    start = dt.datetime.fromtimestamp(t0 / 1000, dt.timezone.utc)
    ax.set_xlabel(f"hours from {start:%Y-%m-%d %H:%M} UTC")
    ax.set_title(f"{n} / {name}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return name


# --- the command -------------------------------------------------------------------------------

def _time(s: str, what: str) -> int:
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{what} {s!r}: an ISO 8601 time wanted, e.g. 2026-12-05T06:00Z")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp() * 1000)


def build_parser(p: argparse.ArgumentParser) -> None:
    """availability, performance, quality (ISO 22400) per node and shift, PNG charts"""
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--db", required=True, help="the historian: sqlite:PATH or postgresql://...")
    p.add_argument("--from", dest="t0", required=True, help="start, ISO 8601 (UTC if no zone)")
    p.add_argument("--to", dest="t1", required=True, help="end, ISO 8601")
    p.add_argument("--site")
    p.add_argument("--node")
    p.add_argument("--shift", action="append", default=[], metavar="NAME=HH:MM-HH:MM",
                   help="a shift, UTC (repeat for several); default: the whole period")
    p.add_argument("--ideal-cycle-s", type=float, help="planned run time per item, seconds "
                   "(ISO 22400 PRI); without it performance and OEE are not computed")
    p.add_argument("--planned-stop-min", type=float, default=0.0,
                   help="planned stops per shift (breaks), minutes: taken off PBT")
    p.add_argument("--png", metavar="DIR", help="write timeline.png and trend.png here")
    p.add_argument("--trend", metavar="POINT", help="point name for trend.png (default: a "
                   "vibration velocity, else the first window statistic)")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def report(results: list[Result]) -> str:
    head = ("node", "machine", "shift", "avail", "perf", "quality", "OEE", "run h",
            "micro", "stops", "PQ", "SQ")
    rows = [head]
    for r in results:
        rows.append((r.node, r.machine, r.shift, _pct(r.availability), _pct(r.performance),
                     _pct(r.quality), _pct(r.oee), f"{r.apt_ms / 3.6e6:.2f}",
                     str(r.micro_stops), str(r.stops), str(r.produced), str(r.rejects)))
    w = [max(len(x[i]) for x in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(x)).rstrip() for x in rows)


def run(args) -> int:
    from otlink_tools.store_db import DbDown, DbRefused, open_db

    t0, t1 = _time(args.t0, "--from"), _time(args.t1, "--to")
    if t1 <= t0:
        raise CommandError("--to must be after --from")
    if args.ideal_cycle_s is not None and not args.ideal_cycle_s > 0:
        raise CommandError("--ideal-cycle-s must be above 0")
    shifts = shifts_for(args.shift, t0, t1)
    try:
        db = open_db(args.db).connect()
    except ValueError as e:
        raise CommandError(str(e))
    except (DbDown, DbRefused) as e:
        raise CommandError(str(e))
    try:
        results, lines = analyse(db, t0, t1, shifts, args.site, args.node,
                                 args.ideal_cycle_s, int(args.planned_stop_min * 60000))
        if not lines:
            raise CommandError("no machine-state point in the stored births (analytics."
                               "machines in the node config; docs/analytics.md)")
        print(report(results))
        if args.png:
            os.makedirs(args.png, exist_ok=True)
            tl = os.path.join(args.png, "timeline.png")
            plot_timeline(lines, shifts, t0, t1, tl)
            print(f"wrote {tl}")
            tr = os.path.join(args.png, "trend.png")
            name = plot_trend(db, t0, t1, tr, args.trend, args.site, args.node)
            if name is None and args.trend:
                raise CommandError(f"--trend {args.trend!r}: no such point in the births")
            if name is not None:
                print(f"wrote {tr} ({name})")
    finally:
        db.close()
    return 0
