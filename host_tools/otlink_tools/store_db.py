"""The historian's databases: SQLite (embedded, one file) and PostgreSQL (a plant server).

One schema for both (docs/historian.md), written with the few type names that differ per
dialect filled in. `open_db(url)` gives a Db: `write(tx)` runs everything one group of MQTT
messages produced in ONE transaction and returns only after COMMIT; any failure rolls it
back whole and raises. `DbDown` means the database could not be reached or went away (the
caller keeps the work and retries after `reconnect()`); any other `DbRefused` means this
data itself was refused (the caller stores the messages one by one, quarantining the bad).

Dedupe lives in the schema: readings have the primary key (site, node, boot, seq) and every
insert is `ON CONFLICT DO NOTHING`, so a replayed or resent reading can never be stored twice,
whichever sink process, restart or share-group member writes it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Db", "DbDown", "DbRefused", "Tx", "contiguous_top", "open_db", "redact",
           "READING_COLUMNS"]

#: Columns of a readings row, in the order the sink builds its tuples.
READING_COLUMNS = ("site", "node", "boot", "seq", "pid", "t_ms", "value_int", "value_real",
                   "value_text", "err", "historical", "untimed", "birth_boot", "note")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    site TEXT NOT NULL,
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    pid INTEGER NOT NULL,
    t_ms BIGINT NOT NULL,
    value_int BIGINT,
    value_real DOUBLE PRECISION,
    value_text TEXT,
    err INTEGER,
    historical BOOLEAN NOT NULL,
    untimed BOOLEAN NOT NULL,
    birth_boot BIGINT,
    note TEXT,
    ts {TS},
    PRIMARY KEY (site, node, boot, seq)
){ROWID};
CREATE INDEX IF NOT EXISTS readings_point_time ON readings (node, pid, t_ms);
CREATE TABLE IF NOT EXISTS births (
    site TEXT NOT NULL,
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    fw TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    t_ms BIGINT,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (site, node, boot)
);
CREATE TABLE IF NOT EXISTS points (
    site TEXT NOT NULL,
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    pid INTEGER NOT NULL,
    name TEXT NOT NULL,
    unit TEXT,
    type TEXT NOT NULL,
    scale DOUBLE PRECISION NOT NULL,
    value_offset DOUBLE PRECISION NOT NULL,
    source TEXT,
    PRIMARY KEY (site, node, boot, pid)
);
CREATE TABLE IF NOT EXISTS node_health (
    site TEXT NOT NULL,
    node TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    online BOOLEAN,
    boot BIGINT,
    uptime_s BIGINT,
    t_ms BIGINT,
    queue_depth BIGINT,
    oldest_unsent_s BIGINT,
    drops BIGINT,
    free_heap BIGINT,
    reset_cause TEXT,
    mqtt_reconnects BIGINT,
    clock_set BOOLEAN,
    queue_corrupt BIGINT,
    sensor_errors BIGINT,
    task_errors BIGINT,
    bus_errors BIGINT,
    msgs_refused BIGINT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS node_health_node_time ON node_health (site, node, received_ms);
CREATE TABLE IF NOT EXISTS acks (
    site TEXT NOT NULL,
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (site, node, boot)
);
CREATE TABLE IF NOT EXISTS rejected (
    site TEXT NOT NULL,
    node TEXT NOT NULL,
    topic TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    error TEXT NOT NULL,
    boot BIGINT,
    seq_first BIGINT,
    seq_last BIGINT,
    payload {BLOB} NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rejected_batch ON rejected (site, node, boot, seq_first,
    seq_last);
{VIEW} reading_values AS
SELECT r.site, r.node, r.boot, r.seq, r.t_ms, r.ts, r.pid, p.name AS point, p.unit,
       COALESCE(r.value_real, r.value_int) AS value, r.value_int, r.value_real, r.value_text,
       r.err, r.historical, r.untimed, r.note
FROM readings r LEFT JOIN points p
  ON p.site = r.site AND p.node = r.node AND p.boot = r.birth_boot AND p.pid = r.pid;
"""

_DIALECT = {
    "sqlite": {
        "MAX": "max",
        # an ISO-8601 UTC text time, computed when read (VIRTUAL: costs no space)
        "TS": "TEXT GENERATED ALWAYS AS (CASE WHEN untimed THEN NULL ELSE "
              "strftime('%Y-%m-%dT%H:%M:%fZ', t_ms / 1000.0, 'unixepoch') END) VIRTUAL",
        "ROWID": " WITHOUT ROWID", "BLOB": "BLOB", "VIEW": "CREATE VIEW IF NOT EXISTS"},
    "postgresql": {
        "MAX": "GREATEST",
        "TS": "TIMESTAMPTZ GENERATED ALWAYS AS (CASE WHEN untimed THEN NULL ELSE "
              "to_timestamp(t_ms::double precision / 1000) END) STORED",
        "ROWID": "", "BLOB": "BYTEA", "VIEW": "CREATE OR REPLACE VIEW"},
}

ADVANCE_MAX = 50_000  # readings above a group's position read per transaction at most
_INSERT_READING = (f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) VALUES "
                   f"({', '.join('?' * len(READING_COLUMNS))}) ON CONFLICT DO NOTHING")
_HEALTH_COLUMNS = ("online", "boot", "uptime_s", "t", "queue_depth", "oldest_unsent_s",
                   "drops", "free_heap", "reset_cause", "mqtt_reconnects", "clock_set",
                   "queue_corrupt", "sensor_errors", "task_errors", "bus_errors",
                   "msgs_refused")


def schema_sql(dialect: str) -> list[str]:
    """The schema's statements for one dialect ("sqlite" or "postgresql")."""
    text = _SCHEMA.format(**_DIALECT[dialect])
    return [s.strip() for s in text.split(";") if s.strip()]


class DbRefused(Exception):
    """The database refused a transaction; str() says why."""


class DbDown(DbRefused):
    """The database cannot be reached (not running, restarting, network, locked)."""


@dataclass
class Tx:
    """Everything one group of MQTT messages writes, applied in one transaction."""

    births: list[tuple[tuple, list[tuple]]] = field(default_factory=list)  # (birth, points)
    health: list[tuple] = field(default_factory=list)
    readings: list[tuple] = field(default_factory=list)
    rejected: list[tuple] = field(default_factory=list)
    acks: dict[tuple[str, str, int], int] = field(default_factory=dict)
    # a share group: (site, node, boot) -> the member's floor (None: not known yet); write()
    # fills `advanced` with the position the database holds without a hole
    advance: dict[tuple[str, str, int], int | None] = field(default_factory=dict)
    advanced: dict[tuple[str, str, int], int | None] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.births or self.health or self.readings or self.rejected or self.acks
                    or self.advance)


def contiguous_top(floor: int, seqs: list[int], ranges: list[tuple[int, int]]) -> int:
    """The highest s such that every seq in floor+1..s is in `seqs` (sorted) or inside one
    of `ranges` ((first, last), sorted by first): where the run above floor ends."""
    top, i, j = floor, 0, 0
    while True:
        while j < len(ranges) and ranges[j][1] <= top:
            j += 1
        if j < len(ranges) and ranges[j][0] <= top + 1:
            top = ranges[j][1]
            continue
        while i < len(seqs) and seqs[i] <= top:
            i += 1
        if i < len(seqs) and seqs[i] == top + 1:
            top += 1
            i += 1
            continue
        return top


def health_row(site: str, node: str, received_ms: int, state: dict) -> tuple:
    """A node_health row from a decoded state message; `detail` keeps every field (JSON)."""
    detail = {k: v for k, v in state.items() if k not in ("kind", "v", "site", "node")}
    vals = []
    for k in _HEALTH_COLUMNS:
        v = detail.get(k)
        vals.append(v if v is None or isinstance(v, (bool, str)) or -2**63 <= v < 2**63
                    else None)
    return (site, node, received_ms, *vals,
            json.dumps(detail, sort_keys=True, default=str))


def redact(url: str) -> str:
    """The database URL with any password replaced by ***, for messages."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Db:
    """Common part: SQL for the schema and the transaction; subclasses connect and run it."""

    dialect = ""
    param = "?"

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = None

    # --- to be provided by each dialect ---------------------------------------------------
    def _connect(self):
        raise NotImplementedError

    def _is_down(self, e: Exception) -> bool:
        raise NotImplementedError

    # --- common ---------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text if self.param == "?" else text.replace("?", self.param)

    def connect(self) -> Db:
        """Connect and create the schema if it is missing. Raises DbDown or DbRefused."""
        self.close()
        try:
            self.conn = self._connect()
            self._run(lambda cur: [cur.execute(s) for s in schema_sql(self.dialect)])
        except DbRefused:
            raise
        except Exception as e:
            self._raise(e, "cannot open the database")
        return self

    def reconnect(self) -> None:
        self.connect()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def _raise(self, e: Exception, what: str):
        msg = f"{what} {redact(self.url)}: {type(e).__name__}: {str(e).strip()}"
        if self._is_down(e):
            raise DbDown(msg) from None
        raise DbRefused(msg) from None

    def _run(self, body) -> None:
        """Run body(cursor) in one transaction; commit, or roll back and re-raise."""
        raise NotImplementedError

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of one read-only query (its own transaction)."""
        out: list[tuple] = []

        def body(cur):
            cur.execute(self._sql(sql), args)
            out.extend(cur.fetchall())
        try:
            self._run(body)
        except DbRefused:
            raise
        except Exception as e:
            self._raise(e, "query failed on")
        return out

    def write(self, tx: Tx) -> int:
        """Apply tx in one transaction, return how many readings were new (the rest were
        already stored). Returns after COMMIT; raises DbDown/DbRefused after a rollback."""
        new = [0]

        def body(cur):
            q = self._sql
            for birth, pts in tx.births:
                cur.execute(q("INSERT INTO births (site, node, boot, fw, config_hash, t_ms, "
                              "received_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, "
                              "node, boot) DO UPDATE SET fw = excluded.fw, config_hash = "
                              "excluded.config_hash, t_ms = excluded.t_ms"), birth)
                if pts:
                    cur.executemany(q(
                        "INSERT INTO points (site, node, boot, pid, name, unit, type, scale, "
                        "value_offset, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (site, node, boot, pid) DO UPDATE SET name = "
                        "excluded.name, unit = excluded.unit, type = excluded.type, scale = "
                        "excluded.scale, value_offset = excluded.value_offset, source = "
                        "excluded.source"), pts)
            if tx.health:
                cur.executemany(q(
                    f"INSERT INTO node_health (site, node, received_ms, online, boot, "
                    f"uptime_s, t_ms, queue_depth, oldest_unsent_s, drops, free_heap, "
                    f"reset_cause, mqtt_reconnects, clock_set, queue_corrupt, sensor_errors, "
                    f"task_errors, bus_errors, msgs_refused, detail) VALUES "
                    f"({', '.join('?' * 20)})"), tx.health)
            if tx.readings:
                new[0] = self._insert_readings(cur, tx.readings)
            if tx.rejected:
                cur.executemany(q("INSERT INTO rejected (site, node, topic, received_ms, "
                                  "error, boot, seq_first, seq_last, payload) VALUES "
                                  "(?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                                tx.rejected)
            if tx.acks:
                now = int(time.time() * 1000)
                cur.executemany(q(
                    "INSERT INTO acks (site, node, boot, seq, updated_ms) VALUES "
                    "(?, ?, ?, ?, ?) ON CONFLICT (site, node, boot) DO UPDATE SET "
                    "seq = excluded.seq, updated_ms = excluded.updated_ms"),
                    [(*k, s, now) for k, s in tx.acks.items()])
            for key in sorted(tx.advance):  # one order: no deadlock between members
                tx.advanced[key] = self._advance(cur, key, tx.advance[key])
        try:
            self._run(body)
        except DbRefused:
            raise
        except Exception as e:
            self._raise(e, "transaction failed on")
        return new[0]

    def _insert_readings(self, cur, rows: list[tuple]) -> int:
        cur.executemany(self._sql(_INSERT_READING), rows)
        return cur.rowcount

    def _advance(self, cur, key: tuple, floor: int | None) -> int | None:
        """A share-group member's position for (site, node, boot), in its transaction: the
        acks row (every member's truthful position) is locked, raised to `floor`, then to
        the end of the run of readings (and rejected batches) above it that the database
        holds, whoever wrote them. Members commit one after the other on that row, so the
        last one sees all. floor None (first contact): from the lowest seq held."""
        q = self._sql
        where = "site = ? AND node = ? AND boot = ?"
        now = int(time.time() * 1000)
        if floor is None:
            cur.execute(q(f"SELECT seq FROM acks WHERE {where}"), key)
            row = cur.fetchone()
            if row is None:
                cur.execute(q(f"SELECT min(seq) FROM readings WHERE {where}"), key)
                lows = [cur.fetchone()[0]]
                cur.execute(q(f"SELECT min(seq_first) FROM rejected WHERE {where}"), key)
                lows.append(cur.fetchone()[0])
                lows = [x for x in lows if x is not None]
                if not lows:
                    return None
                floor = min(lows) - 1
            else:
                floor = row[0]
        mx = _DIALECT[self.dialect]["MAX"]
        cur.execute(q(f"INSERT INTO acks (site, node, boot, seq, updated_ms) VALUES "
                      f"(?, ?, ?, ?, ?) ON CONFLICT (site, node, boot) DO UPDATE SET "
                      f"seq = {mx}(acks.seq, excluded.seq)"), (*key, floor, now))
        cur.execute(q(f"SELECT seq FROM acks WHERE {where}"), key)
        floor = cur.fetchone()[0]
        cur.execute(q(f"SELECT seq FROM readings WHERE {where} AND seq > ? ORDER BY seq "
                      f"LIMIT {ADVANCE_MAX}"), (*key, floor))
        seqs = [r[0] for r in cur.fetchall()]
        cur.execute(q(f"SELECT seq_first, seq_last FROM rejected WHERE {where} AND "
                      f"seq_last > ? ORDER BY seq_first"), (*key, floor))
        top = contiguous_top(floor, seqs, [tuple(r) for r in cur.fetchall()])
        if top > floor:
            cur.execute(q(f"UPDATE acks SET seq = ?, updated_ms = ? WHERE {where}"),
                        (top, now, *key))
        return top


class SqliteDb(Db):
    """SQLite in WAL mode with synchronous=FULL: a COMMIT has reached the disk when it
    returns (what an acknowledgement to the node promises). Readers (Grafana, sqlite3)
    may query the file while the sink writes."""

    dialect = "sqlite"

    def __init__(self, url: str, path: str) -> None:
        super().__init__(url)
        self.path = path

    def _connect(self):
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _is_down(self, e: Exception) -> bool:
        # locked or busy past the timeout, disk full, file gone: worth a retry later
        return isinstance(e, sqlite3.OperationalError)

    def _run(self, body) -> None:
        if self.conn is None:
            raise DbDown(f"not connected to {self.url}")
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            body(cur)
            cur.execute("COMMIT")
        except BaseException:
            try:
                cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise


class PostgresDb(Db):
    """PostgreSQL through psycopg 3; synchronous_commit as the server has it (on by
    default: a COMMIT is on disk when it returns)."""

    dialect = "postgresql"
    param = "%s"

    def _connect(self):
        import psycopg
        return psycopg.connect(self.url, connect_timeout=5, autocommit=False)

    def _is_down(self, e: Exception) -> bool:
        import psycopg
        if isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
            return True
        # admin shutdown, crash recovery and the like arrive as other classes with SQLSTATE
        # class 57 (operator intervention) or 08 (connection exception)
        state = getattr(e, "sqlstate", None) or ""
        # class 40 (a deadlock, a serialization failure) is retried too
        return state[:2] in ("57", "08", "40") or (self.conn is not None and
                                                    self.conn.closed)

    def _run(self, body) -> None:
        if self.conn is None or self.conn.closed:
            raise DbDown(f"not connected to {redact(self.url)}")
        try:
            with self.conn.cursor() as cur:
                body(cur)
            self.conn.commit()
        except BaseException:
            try:
                self.conn.rollback()
            except Exception:
                pass
            raise

    def _insert_readings(self, cur, rows: list[tuple]) -> int:
        # one statement for the whole group: the columns as arrays, unnested on the server
        cols = list(zip(*rows))
        types = ("text", "text", "int8", "int8", "int4", "int8", "int8", "float8", "text",
                 "int4", "bool", "bool", "int8", "text")
        args = ", ".join(f"%s::{t}[]" for t in types)
        cur.execute(f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) SELECT * FROM "
                    f"unnest({args}) ON CONFLICT DO NOTHING", [list(c) for c in cols])
        return cur.rowcount


def open_db(url: str) -> Db:
    """A Db (not yet connected) for `sqlite:PATH` or `postgresql://...` (also
    `postgres://`). ValueError naming what is wrong with the URL."""
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if path.startswith("//"):
            path = path[2:]  # sqlite://rel/path or sqlite:///abs/path
        if not path:
            raise ValueError(f"--db {url!r}: sqlite:PATH wanted, a file path after sqlite:")
        return SqliteDb(url, path)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ValueError("--db postgresql://...: the psycopg package is missing "
                             "(pip install 'psycopg[binary]')") from None
        return PostgresDb(url)
    raise ValueError(f"--db {redact(url)!r}: sqlite:PATH or postgresql://user@host/dbname "
                     "wanted")
