"""Historian sink throughput: `otlink store` (Store) into SQLite and PostgreSQL, beside a naive
sink in the same run: the same decoder, the same table and dedupe key, but one INSERT per
reading in autocommit (one durable commit per reading), the way a first script would do it.

Both read the same pre-built data batches (50 readings, 10 points, half integer counters and
half float32, as the agent sends) published QoS 1 through a private mosquitto as fast as
paho can; the figure is readings stored per second, from the first publish until the table
holds them all. Median of N runs, each into a fresh database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid

import cbor2
import paho.mqtt.client as mqtt

from benchlib import median
from otlink_tools.broker import Broker
from otlink_tools.decode import decode_message
from otlink_tools.store import Store
from otlink_tools.store_db import READING_COLUMNS, open_db
from otlink_tools.store_pg import PgServer, pg_bin

T0 = 1795000000000
NPTS = 10
BATCH = 50
EXCL = ("the node (batches pre-built, published by one paho client as fast as it goes), "
        "network latency (loopback); the database on this machine's ext4 disk, durable "
        "commits (SQLite WAL synchronous=FULL, PostgreSQL synchronous_commit on)")


def batches(total: int) -> list[bytes]:
    """total readings as data batches of BATCH readings: one poll cycle of NPTS points per
    second, odd points integer counters (delta-coded after the first), even points floats."""
    out = []
    seq = 1
    while seq <= total:
        n = min(BATCH, total - seq + 1)
        r: list = []
        last: dict[int, int] = {}
        for i in range(n):
            k = seq - 1 + i
            pid = 1 + k % NPTS
            if k % NPTS == 0 and i:
                r.append(-1000)
            if pid % 2:
                v = 1000 + k
                r += [pid, v - last[pid] if pid in last else v]
                last[pid] = v
            else:
                r += [pid, k * 0.5]
        t = T0 + (seq - 1) // NPTS * 1000
        out.append(cbor2.dumps({"v": 1, "b": 1, "s": seq, "e": seq + n - 1, "f": 0, "t": t,
                                "r": r}))
        seq += n
    return out


BIRTH = cbor2.dumps({"v": 1, "node": "n1", "fw": "bench", "cfg": "0", "boot": 1, "pts": [
    [i, f"p{i}", "V", "int32" if i % 2 else "float32", 0.1 if i % 2 else 1, 0, "synthetic"]
    for i in range(1, NPTS + 1)]})


def publish(port: int, msgs: list[bytes], site: str = "s1") -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(f"otlink/{site}/n1/birth", BIRTH, qos=1, retain=True).wait_for_publish(10)
    last = None
    for p in msgs:
        last = c.publish(f"otlink/{site}/n1/data", p, qos=1)
    if last is not None:
        last.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


class NaiveSink:
    """The rival: decode each message, then one INSERT per reading, each its own commit."""

    def __init__(self, url: str, port: int) -> None:
        self.db = open_db(url).connect()  # creates the same schema
        self.db.close()
        if url.startswith("sqlite:"):
            self.conn = sqlite3.connect(url[len("sqlite:"):], isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            ph = "?"
        else:
            import psycopg
            self.conn = psycopg.connect(url, autocommit=True)
            ph = "%s"
        self.sql = (f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) VALUES "
                    f"({', '.join([ph] * len(READING_COLUMNS))}) ON CONFLICT DO NOTHING")
        self.stored = 0
        self.done = threading.Event()
        self.want = 0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._msg
        self.c.on_connect = lambda c, *a: c.subscribe("otlink/+/+/data", qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _msg(self, c, u, msg) -> None:
        m = decode_message(msg.topic, msg.payload)
        for r in m["readings"]:
            v = r["value"]
            self.conn.execute(self.sql, ("s1", "n1", m["boot"], r["seq"], r["pid"], r["t_ms"],
                                         v if isinstance(v, int) else None,
                                         v if isinstance(v, float) else None, None, r["err"],
                                         m["historical"], r["untimed"], None, None))
            self.stored += 1
        if self.stored >= self.want:
            self.done.set()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
        self.conn.close()


def one_run(kind: str, url: str, msgs: list[bytes], total: int) -> float:
    """Readings/s of one run of `kind` ("store" or "naive") into the fresh database url."""
    with Broker() as broker:
        if kind == "store":
            st = Store(url, port=broker.port).start()
            t0 = time.monotonic()
            publish(broker.port, msgs)
            ok = st.wait(lambda s: s.stored >= total, 300)
            dt = time.monotonic() - t0
            st.stop()
            got = st.stored
        else:
            nv = NaiveSink(url, broker.port)
            nv.want = total
            time.sleep(0.3)  # subscribed
            t0 = time.monotonic()
            publish(broker.port, msgs)
            ok = nv.done.wait(600)
            dt = time.monotonic() - t0
            nv.close()
            got = nv.stored
    if not ok:
        raise RuntimeError(f"{kind} stored {got} of {total}")
    return total / dt


NATS_EXCL = ("the node and the MQTT gateway (the batches are in the stream before the sinks "
             "start: the figure is the sinks' drain rate), network latency (loopback: the 3 "
             "servers and the sinks share this machine's 2 cores); SQLite WAL "
             "synchronous=FULL, one file both sinks write")


def one_run_nats(cluster, url: str, msgs: list[bytes], total: int, sinks: int,
                 run_id: str) -> float:
    """Readings/s that `sinks` Stores sharing one durable JetStream consumer drain into one
    database: the batches are published (through one server's MQTT gateway, as nodes do)
    into a fresh R3 work-queue stream first; the rate is taken from the first stored
    reading to the last."""
    import json

    from otlink_tools.nats_sink import JetStreamFeed

    stream, site = f"BENCH_{run_id}", f"s{run_id}"
    subject = f"otlink.{site}.n1.data"
    cluster.api(f"$JS.API.STREAM.CREATE.{stream}", json.dumps(
        {"name": stream, "subjects": [subject], "retention": "workqueue", "storage": "file",
         "num_replicas": 3}).encode(), timeout=10)
    try:
        publish(cluster.servers[2].mqtt, msgs, site=site)
        deadline = time.monotonic() + 60
        while (cluster.api(f"$JS.API.STREAM.INFO.{stream}")["state"]["messages"] < len(msgs)
               and time.monotonic() < deadline):
            time.sleep(0.05)
        stores = [Store(url, port=cluster.servers[i % 3].mqtt, site=site, group="bench",
                        feed=JetStreamFeed(cluster.urls, "bench", subject, stream=stream,
                                           held=True),
                        quiet_warn=0) for i in range(sinks)]
        t0 = None
        try:
            for st in stores:
                st.start(timeout=30)
            for st in stores:  # all connected: fetch from now on
                st.feed.release()
            deadline = time.monotonic() + 300
            got = 0
            while got < total and time.monotonic() < deadline:
                got = sum(st.stored for st in stores)
                if t0 is None and got:
                    t0, first = time.monotonic(), got
                time.sleep(0.002)
            dt = time.monotonic() - t0
        finally:
            for st in stores:
                st.stop()
    finally:
        cluster.api(f"$JS.API.STREAM.DELETE.{stream}")
    if got < total:
        raise RuntimeError(f"NATS sinks stored {got} of {total}")
    return (total - first) / dt


def nats_rows(tmp: str, quick: bool, fresh=None) -> list[dict]:
    """2 sinks (and 1, for comparison) through a 3-server NATS JetStream cluster, into SQLite
    files, or into the databases fresh() makes (PostgreSQL: see the end of this file)."""
    from otlink_tools.nats_cluster import NatsCluster, nats_server_binary
    try:
        import nats  # noqa: F401
    except ImportError:
        return []
    if nats_server_binary() is None:
        return []
    n, total = (1, 5000) if quick else (3, 50000)
    msgs = batches(total)
    cluster = NatsCluster(3).start()
    out: dict[int, list[float]] = {1: [], 2: []}
    try:
        for i in range(n):
            for sinks in (2, 1):
                url = fresh() if fresh else f"sqlite:{os.path.join(tmp, uuid.uuid4().hex + '.db')}"
                out[sinks].append(one_run_nats(cluster, url, msgs, total, sinks,
                                               f"{sinks}x{i}"))
    finally:
        cluster.stop()
    two, one = median(out[2]), median(out[1])
    into = "PostgreSQL" if fresh else "SQLite"
    return [{"name": f"historian: 2 sinks via NATS JetStream into {into}", "value": round(two),
             "unit": "readings/s", "rival": round(one), "rival_is": "1 sink, same path",
             "target": "", "met": None, "excludes": NATS_EXCL,
             "note": (f"runs {[round(x) for x in out[2]]} (1 sink "
                      f"{[round(x) for x in out[1]]}); {total} readings per run, 3-server "
                      f"cluster, stream R3 work queue, one durable pull consumer shared by "
                      f"the sinks, acked after COMMIT")}]


def run(ctx: dict) -> list[dict]:
    quick = bool(ctx.get("quick"))
    n = 1 if quick else 3
    total = 10000 if quick else 50000
    naive_total = 1000 if quick else 3000
    msgs, naive_msgs = batches(total), batches(naive_total)
    tmp = tempfile.mkdtemp(prefix="otlink-bench-store-", dir=str(ctx["build"]))
    pg = None
    rows = []
    try:
        def fresh(kind: str) -> str:
            if kind == "sqlite":
                return f"sqlite:{os.path.join(tmp, uuid.uuid4().hex + '.db')}"
            import psycopg
            name = "b_" + uuid.uuid4().hex[:12]
            with psycopg.connect(pg.url, autocommit=True) as c:
                c.execute(f"CREATE DATABASE {name}")
            return pg.url.rsplit("/", 1)[0] + "/" + name

        dbs = ["sqlite"]
        if pg_bin("initdb"):
            pg = PgServer().start()
            dbs.append("postgresql")
        for db in dbs:
            store = [one_run("store", fresh(db), msgs, total) for _ in range(n)]
            naive = [one_run("naive", fresh(db), naive_msgs, naive_total) for _ in range(n)]
            s, r = median(store), median(naive)
            rows.append({
                "name": f"historian sink into {'SQLite' if db == 'sqlite' else 'PostgreSQL'}",
                "value": round(s), "unit": "readings/s", "rival": round(r),
                "rival_is": "one INSERT per reading, autocommit",
                "target": "", "met": None, "excludes": EXCL,
                "note": (f"{s / r:.0f}x the rival; runs {[round(x) for x in store]} vs "
                         f"{[round(x) for x in naive]}; {total} readings per run "
                         f"(rival {naive_total}), one transaction per group of MQTT "
                         f"messages, dedupe by the primary key in both")})
        rows += nats_rows(tmp, quick)
    finally:
        if pg is not None:
            pg.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    # The NATS row into PostgreSQL, by hand (not in make bench: another 45 s):
    #   PYTHONPATH=tests .venv/bin/python tests/bench/bench_store.py
    server = PgServer().start()

    def fresh_pg() -> str:
        import psycopg
        name = "b_" + uuid.uuid4().hex[:12]
        with psycopg.connect(server.url, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return server.url.rsplit("/", 1)[0] + "/" + name
    try:
        for row in nats_rows(tempfile.mkdtemp(prefix="otlink-bench-"), False, fresh_pg):
            print(f"{row['name']}: {row['value']} {row['unit']}, {row['rival_is']}: "
                  f"{row['rival']}; {row['note']}")
    finally:
        server.remove()
