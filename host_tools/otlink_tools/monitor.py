"""`otlink monitor`: subscribe to nodes, decode their CBOR messages and write them out.

Formats: a readable table, JSON lines, CSV or Influx line protocol. Readings are
deduplicated by (node, boot, seq); holes in a node's sequence are reported (and reported
again when a replay fills them). `--group NAME` joins an MQTT shared subscription
($share/NAME/...) so several monitors split one fleet's data; each member then sees only
part of every node's sequence, so gap detection is off (duplicates are still dropped).
Consumer acknowledgement is on by default (`--no-ack` turns it off, for a viewer beside
another acknowledging consumer; nodes default to `"ack": "consumer"`, docs/uplink.md): after
the rows of a batch are written and flushed, the monitor publishes (retained, QoS 1) the
highest contiguous seq it has written for that node and boot on the node's ack topic; the
node's queue advances only then. Before its first ack for a node and boot the monitor must
know where the node's unacknowledged range starts (acktrack.Track): from the retained ack,
or from a birth it saw live (the node connecting, so its first batch is its oldest
unacknowledged); otherwise it waits --ack-wait seconds (default 15, past the node's 10 s ack
timeout) for the node to resend from its oldest unacknowledged batch. `--count N` stops
after exactly N readings (a batch is cut there; an ack covers only what was written).

When the reader of the output goes away (a closed pipe, as in `otlink monitor | head`), the
monitor stops quietly with exit status 141, like a Unix tool ended by SIGPIPE.
"""

from __future__ import annotations

import errno
import io
import math
import os
import ssl
import sys
import threading
import time
from typing import IO

import paho.mqtt.client as mqtt

from otlink_tools.acktrack import ACK_WAIT_S, Seen, Track, ack_key, key_warning, sign_ack
from otlink_tools.decode import PayloadError, decode_message, encode_ack, valid_level, \
    valid_prefix
from otlink_tools.monitor_formats import FORMATS, WRITERS, LiveTable, format_age, \
    format_value, make_row, plural

__all__ = ["ACK_WAIT_S", "EXIT_OUTPUT_CLOSED", "FORMATS", "Monitor", "Seen", "check_topic_args",
           "format_age", "format_value", "output_gone", "plural", "run"]

REDRAW_S = 0.5  # live table: at most two redraws a second
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `cat big | head`


def output_gone(e: BaseException) -> bool:
    """True for a write error meaning the reader of the output has gone (EPIPE)."""
    return isinstance(e, OSError) and e.errno == errno.EPIPE


def check_topic_args(prefix: str, site: str, node: str, group: str | None = None) -> None:
    """Refuse topic parts that would make a wrong or invalid subscription (ValueError, naming
    the option): site and node are one topic level or + (all); the prefix is one or more
    levels (docs/payload.md "Topics"); the share group is one level. No wildcards inside."""
    if not valid_prefix(prefix):
        raise ValueError(f"--prefix {prefix!r}: topic levels joined by / wanted, none empty, "
                         "without + # or NUL, not starting with $ (default otlink)")
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


class Monitor:
    """Subscribe, decode, dedupe, write out and (optionally) acknowledge.

    out/err: text streams for rows and for notices (gaps, bad payloads, connection).
    Usable from tests: start(); wait(count=..., seconds=...); stop().
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, prefix: str = "otlink",
                 site: str = "+", node: str = "+", fmt: str = "table",
                 out: IO[str] | None = None, err: IO[str] | None = None,
                 group: str | None = None, ack: bool = True,
                 cafile: str | None = None, cert: str | None = None, key: str | None = None,
                 tls_hostname: str | None = None, user: str | None = None,
                 password: str | None = None, client_id: str = "", keepalive: int = 30,
                 fsync: bool = False, live: bool | None = None,
                 count: int | None = None, ack_wait: float = ACK_WAIT_S,
                 ack_key: bytes | None = None) -> None:
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
        self.writer = WRITERS[fmt](self.out)  # rows as text (not used by the live table)
        self.table = LiveTable()  # the live table's latest row of every (node, point)
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
        self.client.on_subscribe = self._on_subscribe
        self.births: dict[tuple[str, str], dict] = {}
        self.states: dict[tuple[str, str], dict] = {}
        self.seen: dict[tuple[str, str, int], Seen] = {}
        self.acked: dict[tuple[str, str, int], int] = {}
        # --ack: positions per (site, node, boot); those whose first-contact wait runs; the
        # connection generation in which each node was seen connecting (a live birth)
        self.ack_wait = ack_wait
        self.tracks: dict[tuple[str, str, int], Track] = {}
        self._waiting: set[tuple[str, str, int]] = set()
        self._session_start: dict[tuple[str, str], int] = {}
        self._gen = 0
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.connected = threading.Event()  # set by the first accepted CONNACK
        self._connack = threading.Event()  # set by a CONNACK, accepted or refused
        self.connect_error: str | None = None
        # SUBSCRIBEs of the first connection not answered yet (packet id -> topic); set when
        # every one has its SUBACK: only then does the broker deliver what is published
        self._sub_pending: dict[int, str] = {}
        self._subscribed = threading.Event()
        self.subscribe_error: str | None = None
        # counters
        self.messages = 0
        self.batches = 0
        self.written = 0
        self.duplicates = 0
        self.bad = 0
        self.gaps: list[tuple[str, int, int, int]] = []
        self.acks_sent = 0
        self.ack_key = ack_key  # the node's mqtt.ack_key: acks signed (acktrack.sign_ack)

    # --- topics -------------------------------------------------------------------------
    def _topic(self, kind: str) -> str:
        return f"{self.prefix}/{self.site}/{self.node}/{kind}"

    def subscriptions(self) -> list[str]:
        data = self._topic("data")
        if self.group:
            data = f"$share/{self.group}/{data}"
        # births and states stay ordinary subscriptions: every member needs the point tables
        # (and shared subscriptions get no retained messages). --ack: the ack topic first,
        # so that the retained position arrives before any data batch.
        subs = [data, self._topic("birth"), self._topic("state")]
        return [self._topic("ack"), *subs] if self.ack else subs

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
        # The CONNACK is not the subscription: a message published before the broker has
        # answered the SUBSCRIBEs goes nowhere. Return only when every one is granted.
        if not self._subscribed.wait(timeout) or self.subscribe_error:
            c.disconnect()
            c.loop_stop()
            with self.lock:
                waiting = ", ".join(sorted(self._sub_pending.values()))
            raise ConnectionError(self.subscribe_error or
                                  f"no SUBACK from {self.host}:{self.port} in {timeout} s for "
                                  f"{waiting}")
        if self.ack:
            self._ticker = threading.Thread(target=self._tick, name="otlink-monitor-acks",
                                            daemon=True)
            self._ticker.start()
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
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(2)
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
        self._gen += 1
        if not self._subscribed.is_set():
            with self.lock:
                self._sub_pending.clear()  # an earlier connection's, never to be answered
        for t in self.subscriptions():
            rc, mid = client.subscribe(t, qos=1)
            if not self._subscribed.is_set() and rc == mqtt.MQTT_ERR_SUCCESS:
                with self.lock:
                    self._sub_pending[mid] = t
        self.connected.set()
        self._connack.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if self._subscribed.is_set():
            return  # a reconnect's subscriptions: start() no longer waits for them
        with self.lock:
            topic = self._sub_pending.pop(mid, None)
            left = len(self._sub_pending)
        if topic is not None and any(rc.is_failure for rc in reason_codes):
            # an ACL that denies the topic (SUBACK 0x80): nothing would ever arrive
            self.subscribe_error = (f"broker {self.host}:{self.port} refused the subscription "
                                    f"to {topic} (not authorized for it?)")
            self._subscribed.set()
        elif not left:
            self._subscribed.set()

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
            self.handle(msg.topic, msg.payload, retain=bool(msg.retain))
        except Exception as e:  # the monitor reports and carries on, whatever arrives
            self.bad += 1
            self._note(f"error handling {msg.topic}: {type(e).__name__}: {e}")

    def handle(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Decode and process one message (the paho callback; also callable directly).
        retain: the broker's retained copy, not published just now."""
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
                if key not in self.births:  # once per node
                    why = key_warning(m, self.ack, self.ack_key is not None)
                    if why:
                        self._note(why)
                self.births[key] = m
                if not retain and not self.group:
                    # the node connects: its data from its oldest unacknowledged on
                    self._session_start[key] = self._gen
            elif kind == "state":
                self.states[key] = m
                if self.live:
                    self._maybe_draw()
            elif kind == "data":
                self._data(key, m)
            elif kind == "ack" and self.ack:
                # the retained position, ours echoed, or a share-group member's ack
                skey = (key[0], key[1], m["boot"])
                self._track(skey).raise_floor(m["seq"])
                if self.acked.get(skey, -1) < m["seq"]:
                    self.acked[skey] = m["seq"]  # already on the broker: not again
                self._send_ack(skey)
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
            t = self._track(skey)
            if t.floor is None and self._session_start.get(key) == self._gen:
                # seen since the node connected, on this connection: batches go in seq
                # order, so its first batch of a boot is that boot's oldest unacknowledged
                t.floor = m["seq_first"] - 1
            for r in rows:
                t.add(r["seq"], r["seq"])
            # the node resends what was acknowledged: it missed the ack; say it again
            again = skey in self.acked and m["seq_last"] <= self.acked[skey]
            self._send_ack(skey, again)

    # --- acknowledgements (--ack; the rule is acktrack.Track's, shared with the store) -------
    def _track(self, skey: tuple[str, str, int]) -> Track:
        t = self.tracks.get(skey)
        if t is None:
            t = self.tracks[skey] = Track(grace=self.ack_wait)
            self._waiting.add(skey)
        return t

    def _send_ack(self, skey: tuple[str, str, int], again: bool = False) -> None:
        """Publish (retained, QoS 1) the highest seq up to which everything is written, when
        it is known and moved (or again: the node resent what was acknowledged)."""
        t = self.tracks[skey]
        top = t.top()
        if t.floor is not None:
            self._waiting.discard(skey)
        if top is None or top < 0 or (self.acked.get(skey) == top and not again):
            return
        self.acked[skey] = top
        topic = f"{self.prefix}/{skey[0]}/{skey[1]}/ack"
        payload = encode_ack(skey[2], top)
        if self.ack_key is not None:  # a node with mqtt.ack_key takes signed acks only
            payload = sign_ack(self.ack_key, topic, payload)
        self.client.publish(topic, payload, qos=1, retain=True)
        self.acks_sent += 1

    def _tick(self) -> None:
        """A first-contact wait may end while nothing arrives: ack then."""
        while not self._stopping.wait(0.25):
            with self.cond:
                if self.output_closed:
                    continue
                for skey in list(self._waiting):
                    self._send_ack(skey)

    # --- output (the formats are in monitor_formats.py) ---------------------------------------
    def _write(self, key: tuple[str, str], m: dict, readings: list[dict]) -> None:
        """Write readings of data message m out, flush (and fsync); count them written."""
        out = self.out
        rows = [make_row(key, m, r, self.births.get(key)) for r in readings]
        if self.live:
            self.table.update(key, rows)
            self._maybe_draw()
        else:
            self.writer.write(rows)
        out.flush()
        if self.fsync:
            try:
                os.fsync(out.fileno())
            except (OSError, io.UnsupportedOperation, AttributeError):
                pass
        self.written += len(rows)

    # --- live table -------------------------------------------------------------------------
    def _maybe_draw(self) -> None:
        if time.monotonic() - self._drawn >= REDRAW_S:
            self.draw()

    def render(self, now: float | None = None) -> str:
        """The live table as text: per node a state line, then one row per point."""
        return self.table.render(self.states, self.births, now)

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
    if not (math.isfinite(args.ack_wait) and args.ack_wait >= 0):
        raise CommandError(f"--ack-wait {args.ack_wait:g}: a number of seconds >= 0 wanted")
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
                      count=args.count, ack_wait=args.ack_wait,
                      ack_key=ack_key(getattr(args, "ack_key_file", None)))
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
