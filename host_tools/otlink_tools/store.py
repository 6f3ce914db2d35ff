"""`otlink store`: a historian sink. Every reading nodes publish goes into a database once.

--db sqlite:PATH (embedded, one file, no server) or postgresql://user@host/dbname (a plant
server; the password from PGPASSWORD or ~/.pgpass rather than the URL). The schema is made
when missing (docs/historian.md): readings, points (from births), node_health (from state
messages), births, acks and rejected.

Each group of MQTT messages (one batch, or the few that queued up meanwhile) is written in
ONE transaction. A reading's key (site, node, boot, seq) is the readings table's primary
key and inserts that conflict are ignored: resends, replays, restarts and share-group
members can never store a reading twice. `--ack` is consumer acknowledgement: only after
COMMIT does the sink publish (retained, QoS 1) the highest seq up to which the database holds
every reading of that boot; the node's queue advances only then. The MQTT PUBACK of every
message is also sent only after COMMIT, so with `--client-id` (a durable session) the broker
redelivers what a killed sink had not committed. A batch that cannot be decoded is kept
verbatim in `rejected` (and counts as stored, so that one bad batch cannot wedge a node's
queue); a database that goes away is retried, with the messages kept, until it is back.

Several sinks can share the work: `--group NAME` with MQTT shared subscriptions, or `--nats`
with one durable JetStream consumer on a NATS cluster (nats_sink.py, docs/scale-out.md). The
members of a group write into one database and acknowledge the run it holds without a hole,
whoever wrote it (store_db.Db._advance). Data that stops coming while a node says it is
online (`--quiet-warn`) is said loudly: a broker may grant a subscription and deliver nothing.
"""

from __future__ import annotations

import copy
import functools
import math
import queue
import ssl
import sys
import threading
import time

import cbor2
import paho.mqtt.client as mqtt

from otlink_tools.acktrack import ACK_WAIT_S, Track, ack_key, key_warning, sign_ack
from otlink_tools.broker_args import add_broker_args, broker_password, broker_port, refusal, \
    tls_context
from otlink_tools.decode import PayloadError, apply_scale, decode_message, encode_ack
from otlink_tools.monitor import check_topic_args, plural
from otlink_tools.nats_sink import STREAM, topic_to_subject
from otlink_tools.store_db import Db, DbDown, DbRefused, Tx, health_row, open_db, redact

__all__ = ["Store", "Track", "build_parser", "run"]

_I64 = 1 << 63
GROUP_MAX = 64  # MQTT messages written in one transaction at most
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # waits between attempts while the database is down
QUIET_WARN_S = 60.0  # no data this long while a node says it is online: say so


def _header(payload: bytes) -> tuple[int | None, int | None, int | None]:
    """(boot, first seq, last seq) of a data batch that failed to decode, when its header is
    still readable; Nones otherwise."""
    try:
        m = cbor2.loads(bytes(payload), str_errors="replace")
        b, s, e = m["b"], m["s"], m["e"]
        if all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 32
               for x in (b, s, e)) and s <= e:
            return b, s, e
    except Exception:
        pass
    return None, None, None


def split_value(v) -> tuple[int | None, float | None, str | None, str | None]:
    """(value_int, value_real, value_text, note) of an engineering value."""
    if v is None:
        return None, None, None, None
    if isinstance(v, bool):
        return int(v), None, None, None
    if isinstance(v, int):
        if -_I64 <= v < _I64:
            return v, None, None, None
        return None, float(v), str(v), "integer beyond 64 bits: exact value in value_text"
    if isinstance(v, float):
        return None, v, None, ("not a number" if v != v else None)
    v = str(v)
    if "\x00" in v:  # PostgreSQL text cannot hold NUL (a node cuts strings at the first)
        return None, None, v.replace("\x00", "\ufffd"), "text value holds NUL characters " \
            "(stored as U+FFFD)"
    return None, None, v, None


class Store:
    """Subscribe, decode, write to the database, acknowledge after COMMIT.

    Usable from tests: start(); wait(cond=..., seconds=...); stop(). The paho thread only
    queues messages; one writer thread decodes and writes them in arrival order.
    """

    def __init__(self, db: str | Db, host: str = "127.0.0.1", port: int = 1883,
                 prefix: str = "otlink", site: str = "+", node: str = "+",
                 group: str | None = None, ack: bool = False, cafile: str | None = None,
                 cert: str | None = None, key: str | None = None, user: str | None = None,
                 password: str | None = None, client_id: str = "", keepalive: int = 30,
                 err=None, group_max: int = GROUP_MAX, ack_wait: float = ACK_WAIT_S,
                 feed=None, quiet_warn: float = QUIET_WARN_S,
                 ack_key: bytes | None = None) -> None:
        check_topic_args(prefix, site, node, group)
        if feed is not None and not group:
            raise ValueError("--nats needs --group NAME: the durable consumer the sinks share")
        self.tls = tls_context(cafile, cert, key) if (cafile or cert) else None
        self.db = open_db(db) if isinstance(db, str) else db
        self.host, self.port, self.user, self.password = host, port, user, password
        self.keepalive = keepalive
        self.prefix, self.site, self.node, self.group, self.ack = prefix, site, node, group, ack
        self.feed = feed  # JetStreamFeed: data from a JetStream consumer, not from MQTT
        self.err = err or sys.stderr
        self.group_max = group_max
        self.ack_wait = ack_wait
        self.quiet_warn = quiet_warn
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not client_id, protocol=mqtt.MQTTv311,
                                  manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self._connack = threading.Event()  # a CONNACK came, accepted or refused
        self._connected = threading.Event()  # a CONNACK accepted the connection
        self.connect_error: str | None = None
        self._subscribed = threading.Event()  # every SUBACK of this connection is in
        self._sub_lock = threading.Lock()
        self._sub_pending: dict[int, str] = {}  # SUBSCRIBE packet id -> topic
        self.sub_error: str | None = None
        self._gen = 0  # connection generation: a PUBACK belongs to the session it came in
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self.cond = threading.Condition()
        # state (writer thread only)
        self.points: dict[tuple[str, str], dict[int, dict[int, dict]]] = {}
        self.tracks: dict[tuple[str, str, int], Track] = {}
        self.acked: dict[tuple[str, str, int], int] = {}
        self.last_health: dict[tuple[str, str], str] = {}
        self._waiting: set = set()  # tracks whose first-contact wait (ack_wait) runs
        # nodes seen connecting (a live birth) -> the connection generation it came in
        self._session_start: dict[tuple[str, str], int] = {}
        # the quiet-group check: when data last came, which nodes say they are online
        self._data_at: float | None = None
        self._started_at = 0.0
        self._online: dict[tuple[str, str], bool] = {}
        self._quiet_said = False
        self._quiet_said_at = 0.0
        self._quiet_checked = 0.0
        self.quiet_warnings = 0
        # counters
        self.messages = self.stored = self.duplicates = self.rejected = 0
        self.acks_sent = self.transactions = self.db_retries = 0
        self.ack_key = ack_key  # the node's mqtt.ack_key: acks signed (acktrack.sign_ack)
        self._warned_key: set = set()  # nodes told about: their acks must be signed
        self.db_down = False

    # --- MQTT -----------------------------------------------------------------------------
    def subscriptions(self) -> list[str]:
        t = f"{self.prefix}/{self.site}/{self.node}/"
        # acks first: the retained position arrives before any data batch (see Track)
        subs = [t + "ack", t + "birth", t + "state"]
        if self.feed is None:  # with --nats the data comes from the JetStream consumer
            subs.append(f"$share/{self.group}/{t}data" if self.group else t + "data")
        return subs

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._gen += 1
        if reason_code.is_failure:
            self.connect_error = refusal(self.host, self.port, reason_code, self.user)
            if self._connected.is_set():  # a later reconnect refused: paho keeps trying
                self._note(self.connect_error)
            self._connack.set()
            return
        self.connect_error = None
        self._subscribed.clear()
        with self._sub_lock:
            self._sub_pending = {}
            for t in self.subscriptions():
                _rc, mid = client.subscribe(t, qos=1)
                self._sub_pending[mid] = t
        self._connected.set()
        self._connack.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        """A SUBACK: the subscription is in place (or refused: said at once, and by start()
        as its error). start() returns only when every SUBACK of the connection is in."""
        with self._sub_lock:
            topic = self._sub_pending.pop(mid, None)
            done = not self._sub_pending
        if topic is None:
            return
        if any(rc.is_failure for rc in reason_codes):
            self.sub_error = (f"broker {self.host}:{self.port} refused the subscription "
                              f"to {topic} (is this user allowed to read it?)")
            self._note(self.sub_error)
        if done:
            self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code != 0 and self._connected.is_set() and not self._stop.is_set():
            self._note(f"disconnected from broker {self.host}:{self.port} ({reason_code}); "
                       "reconnecting")

    def _on_message(self, client, userdata, msg) -> None:
        ack = None
        if msg.qos:
            ack = functools.partial(self._mqtt_ack, msg.mid, msg.qos, self._gen)
        self._put((msg.topic, bytes(msg.payload), ack, self._gen, msg.retain))

    def _put(self, item) -> None:
        """Hand one message to the writer (from the MQTT or the NATS thread)."""
        if item[0].endswith("/data"):
            self._data_at = time.monotonic()
        self._q.put(item)

    def _mqtt_ack(self, mid: int, qos: int, gen: int) -> None:
        if gen == self._gen:  # a PUBACK belongs to the session the message came in
            self.client.ack(mid, qos)

    def _transport_ack(self, items) -> None:
        """After COMMIT: tell the transport each message is safe (MQTT PUBACK, JetStream
        ack), so that it is not delivered again."""
        for item in items:
            if item[2] is not None:
                item[2]()

    # --- life cycle -----------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Store:
        """Connect the database, the broker (returning once every subscription is granted:
        a message published between the CONNACK and the SUBACKs would go nowhere) and,
        with --nats, the JetStream consumer. ConnectionError saying what failed."""
        deadline = time.monotonic() + timeout
        self._connect_db_until_up(deadline=deadline)
        self._load()
        self._started_at = time.monotonic()
        self._writer = threading.Thread(target=self._run, name="otlink-store", daemon=True)
        self._writer.start()
        try:
            self._connect_mqtt(timeout, deadline)
            if self.feed is not None:
                self.feed.start(self._put, self._note, self._q.qsize,
                                max(1.0, deadline - time.monotonic()))
        except BaseException:
            self._stop.set()
            self._writer.join()
            self.client.disconnect()
            self.client.loop_stop()
            self.db.close()
            raise
        return self

    def _connect_mqtt(self, timeout: float, deadline: float) -> None:
        c = self.client
        where = f"{self.host}:{self.port}"
        if self.user is not None:
            c.username_pw_set(self.user, self.password)
        if self.tls is not None:
            c.tls_set_context(self.tls)
        try:
            c.connect(self.host, self.port, self.keepalive)
        except ssl.SSLCertVerificationError as e:
            raise ConnectionError(f"TLS: broker {where}: certificate refused: "
                                  f"{e.verify_message}") from None
        except (OSError, ssl.SSLError) as e:
            raise ConnectionError(f"cannot connect to broker {where}: {e}") from None
        c.loop_start()
        if not self._connack.wait(max(0.1, deadline - time.monotonic())):
            raise ConnectionError(self.connect_error or f"no CONNACK from {where} in "
                                                        f"{timeout:g} s")
        if not self._connected.is_set():
            raise ConnectionError(self.connect_error or f"broker {where} refused the "
                                                        "connection")
        if not self._subscribed.wait(max(0.1, deadline - time.monotonic())):
            with self._sub_lock:
                waiting = ", ".join(sorted(self._sub_pending.values()))
            raise ConnectionError(f"broker {where} accepted the connection but did not "
                                  f"answer the subscription to {waiting} within {timeout:g} s")
        if self.sub_error:
            raise ConnectionError(self.sub_error)

    def stop(self, drain_s: float = 5.0) -> None:
        """Write what has arrived (up to drain_s) while still connected, so that its acks
        and PUBACKs go out; then disconnect and close the database. What was fetched from
        JetStream and not written is delivered again (to another member, or to this sink
        when it is back) after the consumer's ack wait."""
        deadline = time.monotonic() + drain_s
        if self.feed is not None:
            self.feed.pause()
        while (self._writer is not None and self._writer.is_alive() and not self._q.empty()
               and time.monotonic() < deadline):
            time.sleep(0.02)
        self._stop.set()
        if self._writer is not None:
            self._writer.join(drain_s + 1)
        if self.feed is not None:
            self.feed.stop()  # after the writer: its last JetStream acks go out first
        self.client.disconnect()
        self.client.loop_stop()
        self.db.close()

    def wait(self, cond, seconds: float | None = None) -> bool:
        """Block until cond(self) holds (True) or `seconds` passed (False)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        with self.cond:
            while not cond(self):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(0.5 if left is None else min(left, 0.5))
        return True

    def _note(self, text: str) -> None:
        try:
            print(f"otlink store: {text}", file=self.err, flush=True)
        except OSError:
            pass

    def _connect_db_until_up(self, deadline: float | None = None) -> None:
        """Connect, retrying while the database is down (until deadline: then DbDown)."""
        n = 0
        while True:
            try:
                self.db.connect()
                if self.db_down:
                    self._note(f"database {redact(self.db.url)} is back")
                self.db_down = False
                return
            except DbDown as e:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                if not self.db_down:
                    self._note(f"{e}; retrying, messages are kept until it is back")
                self.db_down = True
                self.db_retries += 1
                if self._stop.wait(RETRY_S[min(n, len(RETRY_S) - 1)]):
                    raise
                n += 1

    def _load(self) -> None:
        """Point tables and acknowledged positions already in the database."""
        for row in self.db.query("SELECT site, node, boot, pid, name, unit, type, scale, "
                                 "value_offset, source FROM points"):
            self._point(row[:2], row[2], {"id": row[3], "name": row[4], "unit": row[5],
                                          "type": row[6], "scale": _num(row[7]),
                                          "offset": _num(row[8]), "source": row[9]})
        for site, node, boot, seq in self.db.query("SELECT site, node, boot, seq FROM acks"):
            self.tracks[(site, node, boot)] = Track(seq)

    def _point(self, key, boot: int, p: dict) -> None:
        self.points.setdefault(tuple(key), {}).setdefault(boot, {})[p["id"]] = p

    # --- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._q.get(timeout=0.2)
            except queue.Empty:
                if self._waiting and self.ack:
                    self._process([])  # a first-contact wait may have ended: ack now
                self._check_quiet()
                continue
            items = [first]
            while len(items) < self.group_max:
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            self._check_quiet()
            try:
                self._process(items)
            except DbDown:
                return  # stopping while the database was down: nothing was acknowledged
            except Exception as e:  # a bug must not silently stop the historian
                self._note(f"internal error: {type(e).__name__}: {e}")

    def _process(self, items: list) -> None:
        tracks_before: dict = {}
        while True:
            try:
                tx, acks, health, resent = self._build(items, tracks_before)
                new = self.db.write(tx) if not tx.empty() else 0
                break
            except DbDown as e:
                self._restore(tracks_before)
                self._note(f"{e}; keeping {plural(len(items), 'message')}, retrying")
                self.db_down = True
                self.db_retries += 1
                self.db.close()
                self._connect_db_until_up()
            except DbRefused as e:
                self._restore(tracks_before)
                if len(items) == 1:
                    self._quarantine(items[0], str(e))
                    return
                for it in items:  # find the one that is refused: one transaction each
                    self._process([it])
                return
        self.last_health.update(health)
        for key, top in tx.advanced.items():  # a group: positions read from the database
            if top is None:
                continue
            self.tracks[key].raise_floor(top)
            if self.acked.get(key) != top or key in resent:
                acks[key] = top
        with self.cond:
            self.transactions += 1
            self.messages += len(items)
            self.stored += new
            self.duplicates += len(tx.readings) - new
            self.rejected += len(tx.rejected)
            self.cond.notify_all()
        self._publish_acks(acks)
        self._transport_ack(items)

    def _restore(self, before: dict) -> None:
        for k, t in before.items():
            if k == "session_start":
                self._session_start = t
                continue
            if t is None:
                self.tracks.pop(k, None)
            else:
                self.tracks[k] = t
        before.clear()

    def _track(self, key, before: dict) -> Track:
        before.setdefault("session_start", dict(self._session_start))
        if key not in before:
            t = self.tracks.get(key)
            before[key] = copy.deepcopy(t)
            if t is None:
                t = self.tracks[key] = Track(grace=self.ack_wait)
                self._waiting.add(key)
        return self.tracks[key]

    def _build(self, items: list, before: dict):
        """Decode a group of messages into one Tx; update the tracks (undone by _restore
        when the transaction fails). Returns (tx, acks to publish after COMMIT, latest
        health detail per node)."""
        before.setdefault("session_start", dict(self._session_start))
        tx = Tx()
        now = int(time.time() * 1000)
        touched: set = set()
        resent: set = set()  # keys that got a batch already acknowledged: ack again
        health_seen: dict = {}
        for topic, payload, _ack, gen, retain in items:
            try:
                m = decode_message(topic, payload)
            except PayloadError as e:
                self._reject(tx, topic, payload, str(e), now, before, touched)
                continue
            site, node, kind = m.get("site", ""), m.get("node", ""), m["kind"]
            if kind == "data":
                self._data(tx, site, node, m)
                key = (site, node, m["boot"])
                t = self._track(key, before)
                if t.floor is None and self._session_start.get((site, node)) == gen:
                    # seen since the node connected, on one connection of ours: batches go
                    # in seq order, so the first one of a boot is that boot's oldest
                    # unacknowledged (the backlog of an older boot first, then this one)
                    t.floor = m["seq_first"] - 1
                if not self.group:  # a group's position is read from the database
                    t.add(m["seq_first"], m["seq_last"])
                touched.add(key)
                if key in self.acked and m["seq_last"] <= self.acked[key]:
                    # the node resends what was acknowledged: it missed the ack (or got it
                    # between clearing its in-flight list and resending); say it again
                    resent.add(key)
            elif kind == "birth":
                if (site, node) not in self._warned_key:  # once per node
                    self._warned_key.add((site, node))
                    why = key_warning(m, self.ack, self.ack_key is not None)
                    if why:
                        self._note(why)
                tx.births.append(((site, node, m["boot"], m["fw"], m["config_hash"],
                                   m.get("t"), now),
                                  [(site, node, m["boot"], p["id"], p["name"], p["unit"],
                                    p["type"], p["scale"], p["offset"], p["source"])
                                   for p in m["points"]]))
                for p in m["points"]:
                    self._point((site, node), m["boot"], p)
                if not retain:
                    self._online[(site, node)] = True
                if not retain and not self.group:
                    # published live: a session starts, its data from the oldest unacked
                    self._session_start[(site, node)] = gen
            elif kind == "state":
                self._online[(site, node)] = m.get("online") is not False
                row = health_row(site, node, now, m)
                k = (site, node)
                last = health_seen.get(k, self._last_health(k))
                if row[-1] != last:  # a retained state seen again on reconnect: once only
                    tx.health.append(row)
                    health_seen[k] = row[-1]
            elif kind == "ack":  # the retained position, or a share-group member's ack
                key = (site, node, m["boot"])
                self._track(key, before).raise_floor(m["seq"])
                touched.add(key)
        acks = {}
        touched |= self._waiting
        for key in touched:
            t = self.tracks.get(key)
            if self.group and t is not None:
                # the members of a group share one database: the position is what the
                # database holds without a hole, whoever wrote it (Db.write, "advance")
                if t.floor is None and time.monotonic() - t.born < t.grace:
                    continue  # first contact: wait for the node's resends
                self._waiting.discard(key)
                tx.advance[key] = t.floor  # None: from the lowest seq the database holds
                continue
            top = t.top() if t is not None else None
            if t is None or t.floor is not None:
                self._waiting.discard(key)
            if top is not None and (self.acked.get(key) != top or key in resent):
                acks[key] = top
                tx.acks[key] = top  # the position is committed with the readings it covers
        return tx, acks, health_seen, resent

    def _last_health(self, key) -> str | None:
        if key not in self.last_health:
            rows = self.db.query("SELECT detail FROM node_health WHERE site = ? AND node = ? "
                                 "ORDER BY received_ms DESC LIMIT 1", key)
            self.last_health[key] = rows[0][0] if rows else None
        return self.last_health[key]

    def _data(self, tx: Tx, site: str, node: str, m: dict) -> None:
        boots = self.points.get((site, node), {})
        boot = m["boot"]
        # the point table of the readings' own boot; for a backlog of a boot whose birth was
        # never seen, the latest one (birth_boot says which was used)
        pboot = boot if boot in boots else (max(boots) if boots else None)
        table = boots.get(pboot, {}) if pboot is not None else {}
        hist, rows = m["historical"], tx.readings
        for r in m["readings"]:
            p = table.get(r["pid"])
            v = apply_scale(r, p) if p is not None else r["value"]
            vi, vr, vt, note = split_value(v)
            note = r.get("note") or note
            rows.append((site, node, boot, r["seq"], r["pid"], r["t_ms"], vi, vr, vt,
                         r["err"], hist, r["untimed"], pboot if p is not None else None,
                         note))

    def _reject(self, tx: Tx, topic: str, payload: bytes, error: str, now: int,
                before: dict, touched: set) -> None:
        parts = topic.split("/")
        site, node = (parts[-3], parts[-2]) if len(parts) >= 4 else ("", "")
        boot = first = last = None
        if parts[-1] == "data":
            boot, first, last = _header(payload)
        tx.rejected.append((site, node, topic, now, error, boot, first, last, payload))
        self._note(f"bad payload on {topic}: {error} (kept in table rejected)")
        if boot is not None and parts[-1] == "data":
            key = (site, node, boot)
            t = self._track(key, before)
            if not self.group:
                t.add(first, last)
            touched.add(key)

    def _quarantine(self, item, error: str) -> None:
        """A message the database refuses even alone: keep it in `rejected`, so that it
        neither blocks the messages behind it nor is lost."""
        topic, payload = item[0], item[1]
        tx = Tx()
        parts = topic.split("/")
        site, node = (parts[-3], parts[-2]) if len(parts) >= 4 else ("", "")
        boot, first, last = _header(payload) if parts[-1] == "data" else (None, None, None)
        tx.rejected.append((site, node, topic, int(time.time() * 1000), error, boot, first,
                            last, payload))
        self._note(f"database refused a message on {topic}: {error} (kept in table "
                   "rejected)")
        before: dict = {}
        acks = {}
        if boot is not None:
            key = (site, node, boot)
            t = self._track(key, before)
            # in a group the next transaction's position covers it (rejected counts)
            top = None
            if not self.group:
                t.add(first, last)
                top = t.top()
            if top is not None and self.acked.get(key) != top:
                acks[key] = tx.acks[key] = top
        try:
            self.db.write(tx)
        except DbRefused as e:
            self._restore(before)
            self._note(f"cannot even keep it in rejected: {e}")
            return
        with self.cond:
            self.rejected += 1
            self.messages += 1
            self.cond.notify_all()
        self._publish_acks(acks)
        self._transport_ack([item])

    def _publish_acks(self, acks: dict) -> None:
        for key, top in acks.items():
            self.acked[key] = top
            if self.ack:
                site, node, boot = key
                topic = f"{self.prefix}/{site}/{node}/ack"
                payload = encode_ack(boot, top)
                if self.ack_key is not None:  # a node with mqtt.ack_key takes signed acks only
                    payload = sign_ack(self.ack_key, topic, payload)
                if self.feed is not None:
                    # through the NATS cluster, which fails over: the MQTT gateway of the
                    # node's server hands it to the node (not retained: a restarted member
                    # reads the position from the acks table)
                    self.feed.publish(topic_to_subject(topic), payload)
                else:
                    self.client.publish(topic, payload, qos=1, retain=True)
                self.acks_sent += 1

    def _check_quiet(self) -> None:
        """Say so, loudly, when no data message came for quiet_warn seconds although a node
        says it is online (its retained state, a live birth): a broker that grants a $share
        subscription and delivers nothing on it (RabbitMQ, NATS), a stream that does not
        capture the data subjects, a subscription an ACL silently empties."""
        now = time.monotonic()
        if not self.quiet_warn or now - self._quiet_checked < 1.0:
            return
        self._quiet_checked = now
        data_at = self._data_at
        since = data_at if data_at is not None else self._started_at
        if self._quiet_said:
            if data_at is not None and data_at > self._quiet_said_at:
                self._note("data arrives again")
                self._quiet_said = False
            return
        online = sorted(f"{s}/{n}" for (s, n), up in self._online.items() if up)
        if self._quiet_said or not online or now - since < self.quiet_warn:
            return
        self._quiet_said = True
        self._quiet_said_at = now
        self.quiet_warnings += 1
        nodes = ", ".join(online[:5]) + (f" and {len(online) - 5} more" if len(online) > 5
                                         else "")
        head = (f"WARNING: no data for {now - since:.0f} s although {nodes} "
                f"{'says it is' if len(online) == 1 else 'say they are'} online")
        t = f"{self.prefix}/{self.site}/{self.node}/data"
        if self.feed is not None:
            why = (f"JetStream consumer {self.group} of stream {self.feed.stream} delivers "
                   f"nothing: does the stream capture {topic_to_subject(t)} (--prefix), and "
                   "do the nodes publish to this NATS cluster?")
        elif self.group:
            why = (f"this broker granted $share/{self.group}/{t} but may not deliver shared "
                   "subscriptions (RabbitMQ and NATS do not): on NATS use --nats; or the "
                   "other members of the group took everything")
        else:
            why = (f"is this user allowed to read {t}? (a broker may grant a subscription "
                   "and drop what its access list does not let you read)")
        self._note(f"{head}: {why}")


def _num(x):
    """A scale/offset read back from the database: integers as int (apply_scale keeps
    integer values integer only when scale is 1 and offset an int)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


# --- CLI -------------------------------------------------------------------------------------

def build_parser(p) -> None:
    """write every reading into a database, once (SQLite or PostgreSQL)"""
    import argparse
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--db", required=True,
                   help="sqlite:PATH or postgresql://user@host[:port]/dbname")
    add_broker_args(p, client_id_help="durable MQTT session under this id: the broker "
                                      "keeps messages for the sink while it is down")
    p.add_argument("--prefix", default="otlink")
    p.add_argument("--site", default="+", help="site to store (default all)")
    p.add_argument("--node", default="+", help="node to store (default all)")
    p.add_argument("--group", help="join shared subscription group NAME ($share/NAME/...)")
    p.add_argument("--ack", action=argparse.BooleanOptionalAction, default=True,
                   help="consumer acknowledgement (default on): ack to the node what the "
                        "database committed")
    p.add_argument("--ack-key-file", help="sign acks with this key (hex; or set "
                   "OTLINK_ACK_KEY): for nodes with mqtt.ack_key (docs/security.md)")
    p.add_argument("--ack-wait", type=float, default=ACK_WAIT_S, metavar="S",
                   help="--ack, first contact with a node and boot it has no position for: "
                        "wait S seconds for the node's resends before the first ack (more "
                        f"than the node's ack timeout, 10 s; default {ACK_WAIT_S:g})")
    p.add_argument("--quiet-warn", type=float, default=QUIET_WARN_S, metavar="S",
                   help="warn when no data came for S seconds although a node says it is "
                        f"online (default {QUIET_WARN_S:g}; 0: never)")
    p.add_argument("--seconds", type=float, help="exit after S seconds")
    n = p.add_argument_group("scale-out on a NATS cluster with JetStream (docs/scale-out.md)")
    n.add_argument("--nats", metavar="URL[,URL...]",
                   help="read the data from JetStream on these NATS servers (nats://host:4222"
                        ", tls://...), as one durable consumer shared by every sink of "
                        "--group; --host/--port name one server's MQTT gateway (births, "
                        "states, retained messages)")
    n.add_argument("--stream", default=STREAM,
                   help=f"JetStream stream of the data (default {STREAM}; made when missing)")
    n.add_argument("--replicas", type=int, default=3,
                   help="replicas of a stream the sink makes (default 3)")


def _feed(args, password):
    """The JetStream data feed of --nats (None without it)."""
    from otlink_tools.errors import CommandError
    from otlink_tools.nats_sink import JetStreamFeed

    if not args.nats:
        return None
    if not args.group:
        raise CommandError("--nats needs --group NAME: the durable consumer the sinks share")
    if args.replicas < 1:
        raise CommandError(f"--replicas {args.replicas}: 1 or more wanted")
    try:
        import nats  # noqa: F401
    except ImportError:
        raise CommandError("--nats: the nats-py package is missing (pip install nats-py)") \
            from None
    tls = tls_context(args.cafile, args.cert, args.key) if (args.cafile or args.cert) else None
    subject = topic_to_subject(f"{args.prefix}/{args.site}/{args.node}/data")
    extra = tuple(topic_to_subject(f"{args.prefix}/{args.site}/{args.node}/{k}")
                  for k in ("ack", "birth", "state"))
    try:
        return JetStreamFeed([u.strip() for u in args.nats.split(",") if u.strip()],
                             args.group, subject, stream=args.stream, replicas=args.replicas,
                             user=args.user, password=password, tls=tls,
                             extra_subjects=extra)
    except ValueError as e:
        raise CommandError(str(e)) from None


def run(args) -> int:
    from otlink_tools.errors import CommandError

    password = broker_password(args)
    try:
        port = broker_port(args)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds >= 0):
        raise CommandError(f"--seconds {args.seconds:g}: a number of seconds >= 0 wanted")
    if not (math.isfinite(args.ack_wait) and args.ack_wait >= 0):
        raise CommandError(f"--ack-wait {args.ack_wait:g}: a number of seconds >= 0 wanted")
    if not (math.isfinite(args.quiet_warn) and args.quiet_warn >= 0):
        raise CommandError(f"--quiet-warn {args.quiet_warn:g}: a number of seconds >= 0 "
                           "wanted")
    try:
        st = Store(args.db, args.host, port, prefix=args.prefix, site=args.site,
                   node=args.node, group=args.group, ack=args.ack, cafile=args.cafile,
                   cert=args.cert, key=args.key, user=args.user, password=password,
                   client_id=args.client_id, ack_wait=args.ack_wait,
                   feed=_feed(args, password), quiet_warn=args.quiet_warn,
                   ack_key=ack_key(getattr(args, "ack_key_file", None)))
        st.start()
    except (ValueError, ConnectionError, DbRefused) as e:
        raise CommandError(str(e)) from None
    except (OSError, ssl.SSLError) as e:
        raise CommandError(f"cannot start the store on {args.host}:{port}: {e}") from None
    via = (f" from JetStream stream {args.stream}, consumer {args.group}" if args.nats
           else "")
    st._note(f"storing into {redact(st.db.url)}{via}" + (" (consumer acks)" if args.ack
                                                        else ""))
    try:
        st.wait(lambda s: False, args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        st.stop()
        print(f"otlink store: {plural(st.stored, 'reading')} stored, "
              f"{plural(st.duplicates, 'duplicate')} ignored, "
              f"{plural(st.rejected, 'bad message')} kept in rejected", file=sys.stderr)
    return 0
