"""`otlink monitor`: subscribe to nodes, decode their CBOR messages and write them out.

Formats: a readable table, JSON lines, CSV or Influx line protocol. Readings are
deduplicated by (node, boot, seq); holes in a node's sequence are reported (and reported
again when a replay fills them). `--group NAME` joins an MQTT shared subscription
($share/NAME/...) so several monitors split one fleet's data; each member then sees only
part of every node's sequence, so gap detection is off (duplicates are still dropped).
`--ack` is consumer acknowledgement: after the rows of a batch are written and flushed,
the monitor publishes (retained, QoS 1) the highest contiguous seq it has written for that
node and boot on the node's ack topic; the node's queue advances only then. `--count N`
stops after exactly N readings (a batch is cut there; an ack covers only what was written).

When the reader of the output goes away (a closed pipe, as in `otlink monitor | head`), the
monitor stops quietly with exit status 141, like a Unix tool ended by SIGPIPE.
"""

from __future__ import annotations

import bisect
import csv
import errno
import io
import json
import math
import os
import ssl
import sys
import threading
import time
from datetime import datetime, timezone
from typing import IO, Any

import paho.mqtt.client as mqtt

from otlink_tools.decode import PayloadError, apply_scale, decode_message, encode_ack, \
    error_name, valid_level, valid_prefix

FORMATS = ("table", "jsonl", "csv", "influx")
CSV_FIELDS = ["time", "uptime_ms", "site", "node", "boot", "seq", "point", "pid", "value",
              "unit", "raw", "err", "historical", "untimed"]
REDRAW_S = 0.5  # live table: at most two redraws a second
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `cat big | head`
# scrolling table: headings, alignment (< left, > right) and the width each column starts
# with; a column widens (and the heading is written again) when content needs more
TABLE_COLUMNS = (("time", "<", 24), ("node", "<", 12), ("point", "<", 16), ("value", ">", 14),
                 ("unit", "<", 6), ("seq", ">", 8))


def plural(n: int, word: str) -> str:
    """`1 reading`, `2 readings`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def output_gone(e: BaseException) -> bool:
    """True for a write error meaning the reader of the output has gone (EPIPE)."""
    return isinstance(e, OSError) and e.errno == errno.EPIPE


def check_topic_args(prefix: str, site: str, node: str, group: str | None = None) -> None:
    """Refuse topic parts that would make a wrong or invalid subscription (ValueError, naming
    the option): site and node are one topic level or + (all); the prefix is one or more
    levels (docs/payload.md "Topics"); the share group is one level. No wildcards inside."""
    if not valid_prefix(prefix):
        raise ValueError(f"--prefix {prefix!r}: topic levels joined by / wanted, none empty, "
                         "without + # or NUL (default otlink)")
    for value, what in ((site, "site"), (node, "node")):
        if value != "+" and not valid_level(value):
            raise ValueError(f"--{what} {value!r}: one {what} name wanted (one topic level, "
                             f"not empty, without / + # or NUL), or + for every {what}")
    if group is not None and not valid_level(group):
        raise ValueError(f"--group {group!r}: a share group name wanted (not empty, "
                         "without / + # or NUL)")


def _ssl_detail(e: ssl.SSLError) -> str:
    reason = getattr(e, "reason", None)
    return f" ({reason.lower().replace('_', ' ')})" if reason else ""


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


class Seen:
    """Sequence numbers stored for one (node, boot): sorted disjoint [first, last] runs."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def has(self, seq: int) -> bool:
        i = bisect.bisect_right(self.starts, seq) - 1
        return i >= 0 and seq <= self.ends[i]

    def add(self, seq: int) -> None:
        """Record seq (must not be present): extend or merge neighbouring runs."""
        i = bisect.bisect_right(self.starts, seq) - 1
        left = i >= 0 and self.ends[i] == seq - 1
        right = i + 1 < len(self.starts) and self.starts[i + 1] == seq + 1
        if left and right:
            self.ends[i] = self.ends[i + 1]
            del self.starts[i + 1], self.ends[i + 1]
        elif left:
            self.ends[i] = seq
        elif right:
            self.starts[i + 1] = seq
        else:
            self.starts.insert(i + 1, seq)
            self.ends.insert(i + 1, seq)

    def contiguous(self) -> int | None:
        """Highest seq of the run that starts at the lowest seq seen."""
        return self.ends[0] if self.ends else None

    def holes(self) -> list[tuple[int, int]]:
        return [(self.ends[i] + 1, self.starts[i + 1] - 1) for i in range(len(self.starts) - 1)]


def _iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


def _influx_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


class Monitor:
    """Subscribe, decode, dedupe, write out and (optionally) acknowledge.

    out/err: text streams for rows and for notices (gaps, bad payloads, connection).
    Usable from tests: start(); wait(count=..., seconds=...); stop().
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, prefix: str = "otlink",
                 site: str = "+", node: str = "+", fmt: str = "table",
                 out: IO[str] | None = None, err: IO[str] | None = None,
                 group: str | None = None, ack: bool = False,
                 cafile: str | None = None, cert: str | None = None, key: str | None = None,
                 tls_hostname: str | None = None, user: str | None = None,
                 password: str | None = None, client_id: str = "", keepalive: int = 30,
                 fsync: bool = False, live: bool | None = None,
                 count: int | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        if (cert is None) != (key is None):
            raise ValueError("--cert and --key go together")
        check_topic_args(prefix, site, node, group)
        self.host, self.port, self.prefix = host, port, prefix
        self.site, self.node, self.fmt, self.group, self.ack = site, node, fmt, group, ack
        self.out = out or sys.stdout
        if live is None:
            isatty = getattr(self.out, "isatty", None)
            live = bool(isatty and isatty())
        # table on a terminal: one row per (node, point) redrawn in place
        self.live = fmt == "table" and live
        self.latest: dict[tuple[str, str], dict[int, dict]] = {}
        self.last_seq: dict[tuple[str, str], tuple[int, int]] = {}
        self._drawn = 0.0
        self.err = err or sys.stderr
        self.fsync = fsync
        self.count = count  # write at most this many readings (None: no limit)
        self.output_closed = False  # the reader of `out` went away (EPIPE): write no more
        self.cafile, self.cert, self.key, self.tls_hostname = cafile, cert, key, tls_hostname
        self.user, self.password = user, password
        self.keepalive = keepalive
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.births: dict[tuple[str, str], dict] = {}
        self.states: dict[tuple[str, str], dict] = {}
        self.seen: dict[tuple[str, str, int], Seen] = {}
        self.acked: dict[tuple[str, str, int], int] = {}
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.connected = threading.Event()  # set by the first accepted CONNACK
        self._connack = threading.Event()  # set by a CONNACK, accepted or refused
        self.connect_error: str | None = None
        # counters
        self.messages = 0
        self.batches = 0
        self.written = 0
        self.duplicates = 0
        self.bad = 0
        self.gaps: list[tuple[str, int, int, int]] = []
        self.acks_sent = 0
        self._csv: Any = None
        self._header = False
        self._widths = [w for _, _, w in TABLE_COLUMNS]

    # --- topics -------------------------------------------------------------------------
    def _topic(self, kind: str) -> str:
        return f"{self.prefix}/{self.site}/{self.node}/{kind}"

    def subscriptions(self) -> list[str]:
        data = self._topic("data")
        if self.group:
            data = f"$share/{self.group}/{data}"
        # births and states stay ordinary subscriptions: every member needs the point tables
        # (and shared subscriptions get no retained messages).
        return [data, self._topic("birth"), self._topic("state")]

    # --- connection -----------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Monitor:
        c = self.client
        if self.user is not None:
            c.username_pw_set(self.user, self.password)
        if self.cafile or self.cert:
            c.tls_set_context(self._tls_context())
        try:
            c.connect(self.host, self.port, self.keepalive)
        except ssl.SSLCertVerificationError as e:
            raise ConnectionError(f"TLS: broker certificate refused: {e.verify_message}") from None
        except (OSError, ssl.SSLError) as e:
            raise ConnectionError(f"cannot connect to {self.host}:{self.port}: {e}") from None
        c.loop_start()
        if not self._connack.wait(timeout):
            c.loop_stop()
            raise ConnectionError(self.connect_error
                                  or f"no CONNACK from {self.host}:{self.port} in {timeout} s")
        if not self.connected.is_set():
            # refused (bad user name or password, not authorized, ...): say so at once
            # rather than retrying until the timeout
            c.disconnect()
            c.loop_stop()
            raise ConnectionError(self.connect_error or "broker refused the connection")
        if self.group:
            self._note(f"--group {self.group}: gap detection is off (the members of a share "
                       "group split every node's stream, so what this one misses the others "
                       "got); duplicates are still dropped")
        return self

    def _tls_context(self) -> ssl.SSLContext:
        """TLS context from --cafile/--cert/--key; ValueError naming the file that is wrong."""
        for opt, path in (("--cafile", self.cafile), ("--cert", self.cert), ("--key", self.key)):
            if path:
                try:
                    with open(path, "rb"):
                        pass
                except OSError as e:
                    raise ValueError(f"{opt} {path}: cannot read it: {e.strerror or e}") from None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        except (OSError, ssl.SSLError) as e:
            what = f"--cafile {self.cafile}" if self.cafile else "system CA certificates"
            detail = _ssl_detail(e) if isinstance(e, ssl.SSLError) else f" ({e})"
            raise ValueError(f"{what}: not a PEM CA certificate{detail}") from None
        if self.cert:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (OSError, ssl.SSLError) as e:
                # which file is wrong: the certificate alone must load as a certificate
                probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                try:
                    probe.load_verify_locations(cafile=self.cert)
                except (OSError, ssl.SSLError):
                    raise ValueError(f"--cert {self.cert}: not a PEM certificate") from None
                detail = _ssl_detail(e) if isinstance(e, ssl.SSLError) else f" ({e})"
                raise ValueError(f"--key {self.key}: not a PEM private key matching --cert "
                                 f"{self.cert}{detail}") from None
        return ctx

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        if self.output_closed:
            return
        if self.live:
            self.draw()
        try:
            self.out.flush()
        except OSError as e:
            if not output_gone(e):
                raise
            self.output_closed = True

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            msg = f"broker {self.host}:{self.port} refused the connection: {reason_code}"
            if reason_code.value in (134, 135):  # bad user name or password, not authorized
                if self.user is None:
                    msg += " (give --user and --password or OTLINK_MQTT_PASSWORD)"
                else:  # never the password itself
                    msg += f" (check --user {self.user!r} and its password)"
            self.connect_error = msg
            if self.connected.is_set():  # a later reconnect refused: paho keeps retrying
                self._note(msg)
            self._connack.set()
            return
        self.connect_error = None
        for t in self.subscriptions():
            client.subscribe(t, qos=1)
        self.connected.set()
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connect_error is not None and not self.connected.is_set():
            return  # the first connection was refused: start() reports that, once
        if reason_code != 0:
            self._note(f"disconnected from broker ({reason_code}); reconnecting")

    def _note(self, text: str) -> None:
        try:
            print(f"otlink monitor: {text}", file=self.err, flush=True)
        except OSError:
            pass  # nowhere left to report to (stderr closed too): carry on

    # --- messages -------------------------------------------------------------------------
    def _on_message(self, client, userdata, msg) -> None:
        try:
            self.handle(msg.topic, msg.payload)
        except Exception as e:  # the monitor reports and carries on, whatever arrives
            self.bad += 1
            self._note(f"error handling {msg.topic}: {type(e).__name__}: {e}")

    def handle(self, topic: str, payload: bytes) -> None:
        """Decode and process one message (the paho callback; also callable directly)."""
        with self.cond:
            self.messages += 1
            try:
                m = decode_message(topic, payload)
            except PayloadError as e:
                self.bad += 1
                self._note(f"bad payload on {topic}: {e}")
                return
            key = (m.get("site", ""), m.get("node", ""))
            kind = m["kind"]
            if kind == "birth":
                self.births[key] = m
            elif kind == "state":
                self.states[key] = m
                if self.live:
                    self._maybe_draw()
            elif kind == "data":
                self._data(key, m)
            self.cond.notify_all()

    def _data(self, key: tuple[str, str], m: dict) -> None:
        self.batches += 1
        if self.output_closed:
            return  # nothing more is written, so nothing more is stored or acknowledged
        skey = (key[0], key[1], m["boot"])
        seen = self.seen.get(skey)
        if seen is None:
            seen = self.seen[skey] = Seen()
        before = set(seen.holes())
        rows = []
        fresh: set[int] = set()
        for r in m["readings"]:
            if seen.has(r["seq"]) or r["seq"] in fresh:
                self.duplicates += 1
                continue
            fresh.add(r["seq"])
            rows.append(r)
        if self.count is not None:
            rows = rows[:max(0, self.count - self.written)]  # --count: exactly N in all
        if rows:
            try:
                self._write(key, m, rows)
            except OSError as e:
                if not output_gone(e):
                    raise  # reported as a bad message; the batch stays unstored
                self.output_closed = True
                return
        # only what was written counts as stored: an ack (the highest contiguous seq stored)
        # never covers readings cut by --count or lost to a failed write
        for r in rows:
            seen.add(r["seq"])
        if not self.group:  # members of a share group each get part of the stream
            for h in seen.holes():
                if h not in before:
                    self.gaps.append((key[1], m["boot"], h[0], h[1]))
                    self._note(f"gap: {key[1]} boot {m['boot']} missing seq {h[0]}..{h[1]} "
                               f"({plural(h[1] - h[0] + 1, 'reading')})")
        if self.ack:
            top = seen.contiguous()
            if top is not None and self.acked.get(skey) != top:
                self.acked[skey] = top
                t = f"{self.prefix}/{key[0]}/{key[1]}/ack"
                self.client.publish(t, encode_ack(m["boot"], top), qos=1, retain=True)
                self.acks_sent += 1

    # --- output ---------------------------------------------------------------------------
    def _row(self, key: tuple[str, str], m: dict, r: dict) -> dict:
        birth = self.births.get(key)
        point = None
        if birth is not None:
            for p in birth.get("points", []):
                if p.get("id") == r["pid"]:
                    point = p
                    break
        value = apply_scale(r, point) if point else r.get("value")
        untimed = r["untimed"]
        # An untimed reading's clock is the node's uptime, not the epoch: never present it
        # as a time (docs/uplink.md "Untimed readings").
        return {
            "time": None if untimed else _iso(r["t_ms"]),
            "t_ms": None if untimed else r["t_ms"],
            "uptime_ms": r["t_ms"] if untimed else None,
            "site": key[0], "node": key[1], "boot": m["boot"], "seq": r["seq"],
            "point": point.get("name") if point else f"#{r['pid']}", "pid": r["pid"],
            "value": value, "unit": (point.get("unit") if point else None) or "",
            "raw": r.get("value"), "err": r.get("err"),
            "historical": m["historical"], "untimed": r["untimed"],
        }

    def _write(self, key: tuple[str, str], m: dict, readings: list[dict]) -> None:
        out = self.out
        rows = [self._row(key, m, r) for r in readings]
        if self.fmt == "jsonl":
            for row in rows:
                out.write(json.dumps(row) + "\n")
        elif self.fmt == "csv":
            if self._csv is None:
                self._csv = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerows(rows)
        elif self.fmt == "influx":
            for row in rows:
                out.write(self._influx(row) + "\n")
        elif self.live:
            pts = self.latest.setdefault(key, {})
            now = time.time()
            for row in rows:
                row["_rx"] = now
                pts[row["pid"]] = row
            last = rows[-1]
            prev = self.last_seq.get(key)
            if prev is None or (last["boot"], last["seq"]) > prev:
                self.last_seq[key] = (last["boot"], last["seq"])
            self._maybe_draw()
        else:
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
                lines.append(([when, row["node"], str(row["point"]), format_value(row["value"]),
                               row["unit"], str(row["seq"])], ", ".join(note)))
            widths = [max([w] + [len(cells[i]) for cells, _ in lines])
                      for i, w in enumerate(self._widths)]
            if not self._header or widths != self._widths:
                # first rows, or a node id / point name / value longer than any before:
                # widen the columns and head them again so rows and headings line up
                self._widths = widths
                out.write(self._table_line([h for h, _, _ in TABLE_COLUMNS], "note"))
                self._header = True
            for cells, note in lines:
                out.write(self._table_line(cells, note))
        out.flush()
        if self.fsync:
            try:
                os.fsync(out.fileno())
            except (OSError, io.UnsupportedOperation, AttributeError):
                pass
        self.written += len(rows)

    def _table_line(self, cells: list[str], note: str) -> str:
        parts = [f"{c:{a}{w}}" for c, (_, a, _), w in zip(cells, TABLE_COLUMNS, self._widths)]
        return (" ".join(parts) + "  " + note).rstrip() + "\n"

    # --- live table -------------------------------------------------------------------------
    def _maybe_draw(self) -> None:
        if time.monotonic() - self._drawn >= REDRAW_S:
            self.draw()

    def render(self, now: float | None = None) -> str:
        """The live table as text: per node a state line, then one row per point."""
        now = time.time() if now is None else now
        lines = []
        keys = sorted(set(self.latest) | set(self.states) | set(self.births))
        for key in keys:
            st = self.states.get(key, {})
            online = st.get("online")
            state = "online" if online else ("OFFLINE" if online is False else "state unknown")
            seq = self.last_seq.get(key)
            head = [f"{key[1]} ({key[0]})", state]
            if "queue_depth" in st:
                head.append(f"queue {st['queue_depth']}")
            if "drops" in st:
                head.append(f"drops {st['drops']}")
            if seq is not None:
                head.append(f"boot {seq[0]} last seq {seq[1]}")
            if not st.get("clock_set", True):
                head.append("clock not set")
            lines.append("  ".join(head))
            pts = self.latest.get(key, {})
            if not pts:
                lines.append("  (no readings yet)")
            rows = [pts[p] for p in sorted(pts)]
            wn = max([5] + [len(str(r["point"])) for r in rows])
            wv = max([5] + [len(format_value(r["value"])) for r in rows])
            wu = max([4] + [len(r["unit"]) for r in rows])
            if rows:
                lines.append(f"  {'point':{wn}}  {'value':>{wv}}  {'unit':{wu}}  {'age':>7}  "
                             "error")
            for r in rows:
                if r["untimed"]:
                    age = now - r["_rx"]  # no wall time on the node: age since arrival
                else:
                    age = now - r["t_ms"] / 1000
                err = "" if r["err"] is None else f"{r['err']}: {error_name(r['err'])}"
                note = " (historical)" if r["historical"] else ""
                lines.append(f"  {str(r['point']):{wn}}  {format_value(r['value']):>{wv}}  "
                             f"{r['unit']:{wu}}  {format_age(age):>7}  {err}{note}")
            lines.append("")
        return "\n".join(lines)

    def draw(self) -> None:
        """Redraw the live table in place (cursor home, clear screen)."""
        self._drawn = time.monotonic()
        if self.output_closed:
            return
        try:
            self.out.write("\x1b[H\x1b[2J" + self.render() + "\n")
            self.out.flush()
        except OSError as e:
            if not output_gone(e):
                raise
            self.output_closed = True

    @staticmethod
    def _influx(row: dict) -> str:
        tags = (f"otlink,site={_influx_escape(row['site'])},node={_influx_escape(row['node'])},"
                f"point={_influx_escape(str(row['point']))}")
        if row["unit"]:
            tags += f",unit={_influx_escape(row['unit'])}"
        if row["untimed"]:
            tags += ",untimed=true"  # no timestamp: the node's clock was not set
        v = row["value"]
        fields = []
        if row["err"] is not None:
            fields.append(f"err={row['err']}i")
        elif isinstance(v, bool):
            fields.append(f"value={'true' if v else 'false'}")
        elif isinstance(v, int):
            fields.append(f"value={v}i")
        elif isinstance(v, float):
            fields.append(f"value={v!r}")
        elif isinstance(v, str):
            fields.append('value="' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
        fields += [f"seq={row['seq']}i", f"boot={row['boot']}i"]
        if row["historical"]:
            fields.append("historical=true")
        if row["untimed"]:
            fields.append(f"uptime_ms={row['uptime_ms']}i")
        line = tags + " " + ",".join(fields)
        if not row["untimed"]:
            line += f" {row['t_ms'] * 1_000_000}"
        return line

    # --- waiting --------------------------------------------------------------------------
    def wait(self, count: int | None = None, seconds: float | None = None,
             cond=None) -> bool:
        """Block until `count` readings were written, `cond(self)` holds, `seconds`
        passed (None: forever) or the output's reader went away (output_closed). Returns
        True when the count/condition was reached."""
        deadline = None if seconds is None else time.monotonic() + seconds
        with self.cond:
            while True:
                if self.output_closed:
                    return False
                if count is not None and self.written >= count:
                    return True
                if cond is not None and cond(self):
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(0.5 if left is None else min(left, 0.5))
                if self.live:
                    self._maybe_draw()  # ages move on while nothing arrives


# --- CLI: the `otlink monitor` handler (its arguments are in cli.py) --------------------------
def run(args) -> int:
    from otlink_tools.errors import CommandError

    password = args.password or os.environ.get("OTLINK_MQTT_PASSWORD")
    try:
        check_topic_args(args.prefix, args.site, args.node, args.group)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if args.port is not None and not 1 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: out of range, 1..65535 wanted")
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds >= 0):
        raise CommandError(f"--seconds {args.seconds:g}: a number of seconds >= 0 wanted "
                           "(leave it out to run until Ctrl-C)")
    if args.count is not None and args.count < 0:
        raise CommandError(f"--count {args.count}: a number of readings >= 0 wanted")
    tls = bool(args.cafile or args.cert)
    port = args.port or (8883 if tls else 1883)
    out: IO[str] = sys.stdout
    if args.output:
        try:
            out = open(args.output, "a", encoding="utf-8")
        except OSError as e:
            raise CommandError(f"--output {args.output}: cannot open it for writing: "
                               f"{e.strerror or e}") from None
    try:
        mon = Monitor(args.host, port, prefix=args.prefix, site=args.site, node=args.node,
                      fmt=args.format, out=out, group=args.group, ack=args.ack,
                      cafile=args.cafile, cert=args.cert, key=args.key, user=args.user,
                      password=password, client_id=args.client_id, fsync=args.fsync,
                      count=args.count)
        mon.start()
    except (ValueError, ConnectionError, OSError, ssl.SSLError) as e:
        if args.output:
            out.close()
        if isinstance(e, (ValueError, ConnectionError)):
            raise CommandError(str(e)) from None
        raise CommandError(f"cannot start the monitor on {args.host}:{port}: {e}") from None
    try:
        mon.wait(count=args.count, seconds=args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        mon.stop()
        if mon.output_closed and out is sys.stdout:
            _discard_stdout()
        gaps = "gap detection off (--group)" if args.group else plural(len(mon.gaps), "gap")
        closed = "output closed by its reader; " if mon.output_closed else ""
        try:
            print(f"otlink monitor: {closed}{plural(mon.written, 'reading')} written, "
                  f"{plural(mon.duplicates, 'duplicate')} dropped, {gaps}, "
                  f"{plural(mon.bad, 'bad message')}", file=sys.stderr)
        except OSError:
            pass  # stderr went with the pipe (2>&1 | head)
        if args.output:
            try:
                out.close()
            except OSError as e:
                if not output_gone(e):
                    raise
    return EXIT_OUTPUT_CLOSED if mon.output_closed else 0


def _discard_stdout() -> None:
    """The reader of stdout has gone: point file descriptor 1 at /dev/null, so that what is
    still buffered (ours, or a later print) goes nowhere instead of failing again when
    Python flushes stdout at exit ("Exception ignored ... BrokenPipeError")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
