"""What `otlink monitor` writes: decoded readings as rows, and the rows in each output format.

A row is a flat dict built once per reading (`make_row`); a writer turns rows into text on a
stream: JSON lines, CSV, Influx line protocol, or a scrolling table. `LiveTable` is the table
for a terminal: one row per (node, point), redrawn in place. Nothing here knows MQTT; the
session (monitor.py) decides what is written, flushes and acknowledges.
"""

from __future__ import annotations

import csv
import json
import math
import time
from datetime import datetime, timezone
from typing import IO, Any

from otlink_tools import health
from otlink_tools.decode import apply_scale, error_name

FORMATS = ("table", "jsonl", "csv", "influx")
CSV_FIELDS = ["time", "uptime_ms", "site", "node", "boot", "seq", "point", "pid", "value",
              "unit", "raw", "err", "historical", "untimed", "error", "flag", "note"]
# scrolling table: headings, alignment (< left, > right) and the width each column starts
# with; a column widens (and the heading is written again) when content needs more
TABLE_COLUMNS = (("time", "<", 24), ("node", "<", 12), ("point", "<", 16), ("value", ">", 14),
                 ("unit", "<", 6), ("seq", ">", 8))


def plural(n: int, word: str) -> str:
    """`1 reading`, `2 readings`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_value(v: Any) -> str:
    """A reading's value for people: integers as integers (1000000, not 1e+06), floats
    with up to 4 decimals and no trailing zeros (100.3, not 100.30000000000001), very
    large or small floats in exponent form."""
    if v is None:
        return "-"
    if isinstance(v, bool) or isinstance(v, int) or isinstance(v, str):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        if v != 0 and (abs(v) >= 1e15 or abs(v) < 1e-4):
            return f"{v:.6g}"
        text = f"{v:.4f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return str(v)


def format_age(seconds: float) -> str:
    if seconds < 0:
        seconds = 0
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def _iso(t_ms: int) -> str | None:
    try:
        return datetime.fromtimestamp(t_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
    except (ValueError, OSError, OverflowError):
        return None  # a node clock gone wrong (past year 9999): the row keeps its t_ms


def value_flag(v: Any) -> str | None:
    """What a value is when no format can carry it as a number: "nan", "inf", "-inf"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    return None


def make_row(key: tuple[str, str], m: dict, r: dict, birth: dict | None) -> dict:
    """One decoded reading `r` of data message `m` from node `key` (site, node) as a row;
    `birth` (the node's last birth message, if any) names and scales the point.

    Besides the value: "error" names an error code, "flag" says the value is not a finite
    number (nan, inf, -inf: a meter's way of saying "no value"; JSON and Influx cannot carry
    it, so those formats write no value and the flag), "note" says what was wrong with a
    text value that was not UTF-8 (the value then has U+FFFD for each bad byte)."""
    point = None
    if birth is not None:
        for p in birth.get("points", []):
            if p.get("id") == r["pid"]:
                point = p
                break
    value = apply_scale(r, point) if point else r.get("value")
    untimed = r["untimed"]
    err = r.get("err")
    # An untimed reading's clock is the node's uptime, not the epoch: never present it
    # as a time (docs/uplink.md "Untimed readings").
    return {
        "time": None if untimed else _iso(r["t_ms"]),
        "t_ms": None if untimed else r["t_ms"],
        "uptime_ms": r["t_ms"] if untimed else None,
        "site": key[0], "node": key[1], "boot": m["boot"], "seq": r["seq"],
        "point": point.get("name") if point else f"#{r['pid']}", "pid": r["pid"],
        "value": value, "unit": (point.get("unit") if point else None) or "",
        "raw": r.get("value"), "err": err,
        "historical": m["historical"], "untimed": r["untimed"],
        "error": None if err is None else error_name(err),
        "flag": value_flag(value) or value_flag(r.get("value")),
        "note": r.get("note"),
    }


def finite_row(row: dict) -> dict:
    """The row with NaN and infinities as None (the row's "flag" says which): what JSON and
    CSV carry."""
    out = dict(row)
    for k in ("value", "raw"):
        if value_flag(out[k]) is not None:
            out[k] = None
    return out


# --- writers: rows -> text on a stream (the caller flushes) ---------------------------------

class JsonlWriter:
    """One JSON object per line, every row field."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            # strict JSON (RFC 8259 has no NaN or Infinity): null and the row's flag
            self.out.write(json.dumps(finite_row(row), allow_nan=False) + "\n")


class CsvWriter:
    """CSV with a header line before the first rows."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._csv: Any = None

    def write(self, rows: list[dict]) -> None:
        if self._csv is None:
            self._csv = csv.DictWriter(self.out, CSV_FIELDS, extrasaction="ignore")
            self._csv.writeheader()
        self._csv.writerows(finite_row(r) for r in rows)  # nan, inf: empty, and the flag


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
# field keys every line may carry besides the point's own; a point named like one of them
# (or "time", which InfluxDB refuses as a field key) writes its value as <name>_value
INFLUX_FIELDS = ("err", "error", "flag", "note", "seq", "boot", "historical", "uptime_ms")


def _influx_key(s: str) -> str:
    """A measurement-safe tag value, tag key or field key (line protocol: comma, equals sign
    and space escaped with a backslash). InfluxDB 1.x takes any other backslash literally,
    so one before those characters or at the end cannot be written: it becomes "/". Line
    breaks cannot be written either: they become spaces."""
    s = s.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    out = []
    for i, c in enumerate(s):
        if c == "\\" and (i + 1 == len(s) or s[i + 1] in ", ="):
            c = "/"
        elif c in ", =":
            c = "\\" + c
        out.append(c)
    return "".join(out)


def _influx_str(s: str) -> str:
    """A string field value: quoted, with backslash and double quote escaped; a line break
    is written as the two characters \\n (\\r) so that every line is one point."""
    s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + s + '"'


def influx_field_key(point: str) -> str:
    """The field key of a point's value: its name, or <name>_value for a name that is one
    of the fields every line has (INFLUX_FIELDS) or "time"."""
    return point + "_value" if point in INFLUX_FIELDS or point == "time" else point


def influx_line(row: dict) -> str:
    """A row in Influx line protocol: measurement otlink, tags site/node/point/unit, the
    value as a field named after the point (one field per point name, so a text point beside
    number points never conflicts in type: integers with the i suffix, floats, text
    quoted), seq and boot as fields, nanosecond time unless untimed. A value no field can
    hold (NaN, an infinity, an integer outside int64) is left out and "flag" says what it
    was; an error reading has err (the code) and error (its name) instead of a value."""
    tags = (f"otlink,site={_influx_key(row['site'])},node={_influx_key(row['node'])},"
            f"point={_influx_key(str(row['point']))}")
    if row["unit"]:
        tags += f",unit={_influx_key(row['unit'])}"
    if row["untimed"]:
        tags += ",untimed=true"  # no timestamp: the node's clock was not set
    v = row["value"]
    key = _influx_key(influx_field_key(str(row["point"])))
    fields = []
    flag = row.get("flag")
    if row["err"] is not None:
        fields.append(f"err={row['err']}i")
        fields.append("error=" + _influx_str(row.get("error") or error_name(row["err"])))
    elif isinstance(v, bool):
        fields.append(f"{key}={'true' if v else 'false'}")
    elif isinstance(v, int):
        if INT64_MIN <= v <= INT64_MAX:
            fields.append(f"{key}={v}i")
        else:
            flag = flag or "outside int64"
    elif isinstance(v, float):
        if value_flag(v) is None:
            fields.append(f"{key}={v!r}")
    elif isinstance(v, str):
        fields.append(f"{key}=" + _influx_str(v))
    if flag:
        fields.append("flag=" + _influx_str(flag))
    if row.get("note"):
        fields.append("note=" + _influx_str(row["note"]))
    fields += [f"seq={row['seq']}i", f"boot={row['boot']}i"]
    if row["historical"]:
        fields.append("historical=true")
    if row["untimed"]:
        fields.append(f"uptime_ms={row['uptime_ms']}i")
    line = tags + " " + ",".join(fields)
    if not row["untimed"]:
        line += f" {row['t_ms'] * 1_000_000}"
    return line


class InfluxWriter:
    """Influx line protocol, one line per row."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self.out.write(influx_line(row) + "\n")


class ScrollingTable:
    """A table for a file or a pipe: aligned rows, the heading written again whenever a
    column has to widen."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._header = False
        self._widths = [w for _, _, w in TABLE_COLUMNS]

    def write(self, rows: list[dict]) -> None:
        now = time.time() * 1000
        lines = []
        for row in rows:
            if row["untimed"]:
                when = f"uptime+{row['uptime_ms'] / 1000:.1f}s"
            else:
                when = row["time"][11:23] + f" ({(now - row['t_ms']) / 1000:.0f}s ago)"
            note = []
            if row["historical"]:
                note.append("historical")
            if row["err"] is not None:
                note.append(f"error {row['err']}: {error_name(row['err'])}")
            if row.get("note"):
                note.append(row["note"])
            lines.append(([when, row["node"], str(row["point"]), format_value(row["value"]),
                           row["unit"], str(row["seq"])], ", ".join(note)))
        widths = [max([w] + [len(cells[i]) for cells, _ in lines])
                  for i, w in enumerate(self._widths)]
        if not self._header or widths != self._widths:
            # first rows, or a node id / point name / value longer than any before:
            # widen the columns and head them again so rows and headings line up
            self._widths = widths
            self.out.write(self._line([h for h, _, _ in TABLE_COLUMNS], "note"))
            self._header = True
        for cells, note in lines:
            self.out.write(self._line(cells, note))

    def _line(self, cells: list[str], note: str) -> str:
        parts = [f"{c:{a}{w}}" for c, (_, a, _), w in zip(cells, TABLE_COLUMNS, self._widths)]
        return (" ".join(parts) + "  " + note).rstrip() + "\n"


WRITERS = {"jsonl": JsonlWriter, "csv": CsvWriter, "influx": InfluxWriter,
           "table": ScrollingTable}


# --- the live table for a terminal ------------------------------------------------------------

class LiveTable:
    """The latest row of every (node, point), rendered as one block per node: its condition
    and figures (health.py), problems and warnings, then one line per point of its birth
    table with its value and age."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], dict[int, dict]] = {}
        self.last_seq: dict[tuple[str, str], tuple[int, int]] = {}

    def update(self, key: tuple[str, str], rows: list[dict]) -> None:
        """Newer readings replace older ones of the same point; rows stamped on arrival."""
        pts = self.latest.setdefault(key, {})
        now = time.time()
        for row in rows:
            row["_rx"] = now
            pts[row["pid"]] = row
        last = rows[-1]
        prev = self.last_seq.get(key)
        if prev is None or (last["boot"], last["seq"]) > prev:
            self.last_seq[key] = (last["boot"], last["seq"])

    def render(self, states: dict, births: dict, now: float | None = None) -> str:
        """The table as text; states and births: the nodes' last state and birth messages.
        Per node: its condition and figures (health.summary), what is wrong, then one line
        per point of its birth table, those that never reported too ("no data yet", or the
        error the node's state lists for it), and points seen without a birth."""
        now = time.time() if now is None else now
        lines = []
        keys = sorted(set(self.latest) | set(states) | set(births))
        for key in keys:
            st = states.get(key)
            birth = births.get(key)
            h = health.assess(birth, st, now)
            seq = self.last_seq.get(key)
            head = [f"{key[1]} ({key[0]})", health.summary(h)]
            if seq is not None:
                head.append(f"boot {seq[0]} last seq {seq[1]}")
            lines.append("  ".join(head))
            for p in h["problems"]:
                lines.append(f"  ! {p}")
            for w in h["warnings"]:
                lines.append(f"  ~ {w}")
            pts = self.latest.get(key, {})
            table = health.point_names(birth)
            state_err = {e["id"]: e for e in h["point_errors"]}
            rows = []
            for pid in sorted(set(table) | set(pts)):
                if pid in pts:
                    rows.append(pts[pid])
                    continue
                p = table[pid]
                e = state_err.get(pid)
                rows.append({"point": p["name"], "value": None, "unit": p.get("unit") or "",
                             "err": e["err"] if e else None, "historical": False,
                             "untimed": False, "_never": True})
            if not rows:
                lines.append("  (no birth message and no readings yet)")
                lines.append("")
                continue
            wn = max([5] + [len(str(r["point"])) for r in rows])
            wv = max([5] + [len(format_value(r["value"])) for r in rows])
            wu = max([4] + [len(r["unit"]) for r in rows])
            lines.append(f"  {'point':{wn}}  {'value':>{wv}}  {'unit':{wu}}  {'age':>7}  "
                         "error")
            for r in rows:
                if r.get("_never"):
                    age = "-"
                    err = "no data yet" if r["err"] is None else \
                        f"{r['err']}: {error_name(r['err'])} (from the node's state)"
                else:
                    # an untimed reading has no wall time on the node: age since arrival
                    t = r["_rx"] if r["untimed"] else r["t_ms"] / 1000
                    age = format_age(now - t)
                    err = "" if r["err"] is None else f"{r['err']}: {error_name(r['err'])}"
                    if r.get("flag"):
                        err = (err + " " if err else "") + f"({r['flag']})"
                    if r.get("note"):
                        err = (err + " " if err else "") + r["note"]
                note = " (historical)" if r["historical"] else ""
                lines.append(f"  {str(r['point']):{wn}}  {format_value(r['value']):>{wv}}  "
                             f"{r['unit']:{wu}}  {age:>7}  {err}{note}".rstrip())
            lines.append("")
        return "\n".join(lines)
