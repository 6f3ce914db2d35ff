"""`otlink store` against real parts: mosquitto, the agent under MicroPython (consumer acks),
SQLite files and a private PostgreSQL server. Each test checks the table against what the
node produced: every reading, exactly once, with its engineering value."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import cbor2
import paho.mqtt.client as mqtt
import pytest

from otlink_tools.acktrack import sign_ack
from otlink_tools.store import Store, Track
from otlink_tools.store_pg import PgServer, pg_bin
from uplink_helpers import expected_raw, result, start_agent
from ackkey import ACK_KEY, ACK_KEY_HEX

T0 = 1795000000000
ACK_WAIT = 2.0  # the agent here resends after 1 s without an ack (a node: 10 s)


@pytest.fixture(scope="module")
def pg():
    if pg_bin("initdb") is None:
        pytest.skip("PostgreSQL server not installed (make debs installs it)")
    server = PgServer().start()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database: a new SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'hist.db'}"
    server = request.getfixturevalue("pg")
    return _fresh_pg(server)


def _fresh_pg(server: PgServer) -> str:
    import psycopg
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server.url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + "/" + name


def query(url: str, sql: str) -> list[tuple]:
    """Rows of a query, on a plain connection of its own (as a Grafana or psql user has)."""
    if url.startswith("sqlite:"):
        c = sqlite3.connect(url[len("sqlite:"):], timeout=10)
    else:
        import psycopg
        c = psycopg.connect(url, connect_timeout=5)
    try:
        return [tuple(r) for r in c.execute(sql).fetchall()]
    finally:
        c.close()


def readings(url: str) -> list[tuple]:
    return query(url, "SELECT seq, pid, value_int, value_real, value_text, err, historical, "
                      "birth_boot FROM readings ORDER BY boot, seq")


def count(url: str) -> int:
    try:
        return query(url, "SELECT count(*) FROM readings")[0][0]
    except Exception:
        return 0  # not created yet, or the sink holds it


def assert_all_readings(url: str, total: int, backlog: int | None = 0) -> None:
    """The table equals the node's readings 1..total, each once, values scaled by its birth
    (odd points int32 x0.1, even points float32); the first `backlog` flagged historical
    (None: not checked, a reconnect makes what was queued a backlog)."""
    rows = readings(url)
    assert [r[0] for r in rows] == list(range(1, total + 1))  # none lost, none twice
    for seq, pid, vi, vr, vt, err, hist, bboot in rows:
        want_pid, raw = expected_raw(seq)
        assert pid == want_pid and err is None and vt is None and bboot == 1
        if pid % 2:
            assert vi is None and vr == pytest.approx(raw * 0.1)
        else:
            assert vi is None and vr == raw
        assert backlog is None or bool(hist) == (seq <= backlog)


def agent_opts(port: int, total: int, **more) -> dict:
    o = {"port": port, "total": total, "rate": 2000, "ack": "consumer", "until_acked": True,
         "ack_key": ACK_KEY_HEX,
         "seconds": 45, "ack_timeout_ms": 1000, "capacity": 16384}
    o.update(more)
    return o


def wait_for(pred, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_every_reading_once_with_units_and_health(fresh_broker, db_url):
    st = Store(db_url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=ACK_WAIT).start()
    try:
        res = result(start_agent(agent_opts(fresh_broker.port, 3000, rate=0)))
        st.wait(lambda s: s.stored >= 3000, 10)
        # the death state follows the last ack
        wait_for(lambda: query(db_url, "SELECT count(*) FROM node_health WHERE NOT online")[0][0]
                 >= 1, 5)
    finally:
        st.stop()
    assert res["depth"] == 0 and res["produced"] == 3000
    assert_all_readings(db_url, 3000)
    # the sink saw the node connect (a live birth), so it knew the first batch was the
    # oldest unacknowledged: acked at once, nothing resent
    assert st.duplicates == 0 and st.rejected == 0 and res["ack_timeouts"] == 0
    pts = query(db_url, "SELECT pid, name, unit, type, scale FROM points ORDER BY pid")
    assert pts[0] == (1, "p1", "V", "int32", pytest.approx(0.1)) and len(pts) == 10
    v = query(db_url, "SELECT point, unit, value FROM reading_values WHERE seq = 11")
    assert v == [("p1", "V", pytest.approx(101.0))]
    assert query(db_url, "SELECT boot, seq FROM acks") == [(1, 3000)]
    health = query(db_url, "SELECT online, boot, reset_cause FROM node_health "
                           "ORDER BY received_ms")
    assert [bool(h[0]) for h in health] == [True, False] and health[0][1:] == (1, "power")


def test_track_acks_never_pass_a_hole():
    """The ack position: the floor, then the run of stored seqs that continues it."""
    t = Track(floor=100)
    t.add(151, 200)  # arrived first: 101..150 not stored yet
    assert t.top() == 100
    t.add(101, 150)
    assert t.top() == 200
    t.add(50, 120)  # resent below the floor: nothing changes
    assert t.top() == 200 and t.seen.starts == [101]
    t.raise_floor(250)  # a share-group member acked further
    assert t.top() == 250
    t.add(251, 260)
    assert t.top() == 260
    # first contact: no position until the wait is over, then below the lowest seq seen
    f = Track(grace=10.0)
    f.add(301, 350)
    assert f.top(now=f.born + 5) is None and f.floor is None
    f.add(1, 50)  # the node's resend from its oldest unacknowledged batch
    assert f.top(now=f.born + 11) == 50 and f.floor == 0
    f.add(51, 300)
    assert f.top() == 350


def _sink(db_url: str, port: int, *extra: str) -> subprocess.Popen:
    args = extra or ("--ack", "--ack-wait", str(ACK_WAIT))
    return subprocess.Popen([sys.executable, "-m", "otlink_tools.cli", "store", "--db", db_url,
                             "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OTLINK_ACK_KEY=ACK_KEY_HEX))


def test_sink_started_after_the_node(fresh_broker, db_url, wait=4.0):
    """The node streams before the sink subscribes: its first batches went nowhere, so the
    first batch the sink sees is not the node's oldest unacknowledged one. Acking it at
    once would drop those from the node's queue (found by the SIGKILL test; with wait=0
    this test loses the first 200 readings): the sink waits for the node's resends."""
    total = 1600
    # a batch every 250 ms, resent after 3 s without an ack: the sink subscribes after the
    # first four batches and before any resend
    agent = start_agent(agent_opts(fresh_broker.port, total, rate=200, ack_timeout_ms=3000,
                                   linger_ms=1000))
    time.sleep(1.1)
    st = Store(db_url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=wait).start()
    try:
        res = result(agent)
        st.wait(lambda s: s.stored >= total, 10)
    finally:
        st.stop()
    assert res["depth"] == 0
    assert_all_readings(db_url, total)
    assert res["ack_timeouts"] >= 1  # the first ack waited for the node's resend


@pytest.mark.parametrize("backlog", [0, 2000])
def test_sigkill_sink_mid_stream(fresh_broker, db_url, backlog):
    """SIGKILL the sink twice while the node streams (with a backlog: the first kill lands
    in its replay): whatever was in flight (written or not, acknowledged or not) is resent
    by the node and stored once."""
    total = 6000
    sink = _sink(db_url, fresh_broker.port)
    agent = start_agent(agent_opts(fresh_broker.port, total - backlog, backlog=backlog,
                                   replay_rate=50))
    try:
        for at in (1000, 3000):
            assert wait_for(lambda at=at: count(db_url) >= at, 20), f"stuck below {at}"
            sink.send_signal(signal.SIGKILL)
            sink.communicate()
            sink = _sink(db_url, fresh_broker.port)
        res = result(agent)
        assert wait_for(lambda: count(db_url) >= total, 10)
    finally:
        sink.send_signal(signal.SIGINT)
        out = sink.communicate(timeout=10)[0]
    assert res["depth"] == 0 and res["produced"] == total, out  # backlog included
    assert_all_readings(db_url, total, backlog=backlog)
    assert query(db_url, "SELECT seq FROM acks") == [(total,)]


def test_durable_session_broker_ack_sigkill(fresh_broker, tmp_path):
    """A node in broker-ack mode does not wait for the sink. With --client-id the broker
    keeps the messages for the killed sink, and the sink sends its PUBACK only after COMMIT:
    what it had received but not committed is delivered again. All stored once."""
    url = f"sqlite:{tmp_path / 'h.db'}"
    total = 6000
    sink = _sink(url, fresh_broker.port, "--client-id", "hist-1")
    time.sleep(1.0)  # subscribed (the durable session exists from now on)
    agent = start_agent(agent_opts(fresh_broker.port, total, ack="broker"))
    try:
        assert wait_for(lambda: count(url) >= 1500, 20)
        sink.send_signal(signal.SIGKILL)
        sink.communicate()
        time.sleep(0.5)  # the node goes on publishing to the broker meanwhile
        sink = _sink(url, fresh_broker.port, "--client-id", "hist-1")
        res = result(agent)
        assert wait_for(lambda: count(url) >= total, 15)
    finally:
        sink.send_signal(signal.SIGINT)
        sink.communicate(timeout=10)
    assert res["depth"] == 0
    assert_all_readings(url, total)


@pytest.mark.parametrize("sig", ["kill", "stop"])
def test_broker_restart_mid_stream(fresh_broker, tmp_path, sig):
    """The broker dies mid-stream and comes back: the sink reconnects and resubscribes, the
    node resends what was not acknowledged, the table gets all of it once."""
    url = f"sqlite:{tmp_path / 'h.db'}"
    total = 5000
    st = Store(url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=ACK_WAIT).start()
    try:
        agent = start_agent(agent_opts(fresh_broker.port, total))
        assert st.wait(lambda s: s.stored >= 1500, 20)
        fresh_broker.kill() if sig == "kill" else fresh_broker.stop()
        time.sleep(0.5)
        fresh_broker.start()
        res = result(agent)
        assert st.wait(lambda s: s.stored >= total, 10)
    finally:
        st.stop()
    assert res["depth"] == 0 and res["connects"] >= 2
    assert_all_readings(url, total, backlog=None)


def test_postgres_crash_and_restart_mid_stream(fresh_broker, pg):
    """The database dies (immediate shutdown: crash recovery at start) mid-stream: the sink
    keeps the messages, retries, and acknowledges nothing it has not committed."""
    url = _fresh_pg(pg)
    total = 6000
    st = Store(url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=ACK_WAIT).start()
    try:
        agent = start_agent(agent_opts(fresh_broker.port, total))
        assert st.wait(lambda s: s.stored >= 1500, 20)
        pg.crash()
        time.sleep(1.5)
        pg.start()
        res = result(agent)
        assert st.wait(lambda s: s.stored >= total, 10)
    finally:
        st.stop()
    assert res["depth"] == 0
    assert st.db_retries >= 1  # it did see the database down
    assert_all_readings(url, total)


def test_sqlite_locked_by_a_reader_then_free(fresh_broker, tmp_path):
    """Another process holds the SQLite file locked for longer than the busy timeout: the
    sink retries with the messages kept, then stores everything once."""
    url = f"sqlite:{tmp_path / 'h.db'}"
    total = 3000
    st = Store(url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=ACK_WAIT).start()
    lock = sqlite3.connect(str(tmp_path / "h.db"), isolation_level=None)
    try:
        agent = start_agent(agent_opts(fresh_broker.port, total))
        assert st.wait(lambda s: s.stored >= 500, 20)
        st.db.conn.execute("PRAGMA busy_timeout=300")  # fail fast while locked
        lock.execute("BEGIN EXCLUSIVE")
        time.sleep(2)
        lock.execute("COMMIT")
        res = result(agent)
        assert st.wait(lambda s: s.stored >= total, 10)
    finally:
        lock.close()
        st.stop()
    assert res["depth"] == 0 and st.db_retries >= 1
    assert_all_readings(url, total)


def test_backlog_replay_and_live(fresh_broker, db_url):
    """A backlog queued while the node was offline is replayed (historical) beside live
    readings: all of it lands, flagged."""
    backlog, live = 3000, 1000
    st = Store(db_url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=ACK_WAIT).start()
    try:
        res = result(start_agent(agent_opts(fresh_broker.port, live, backlog=backlog,
                                            rate=500, replay_rate=50)))
        st.wait(lambda s: s.stored >= backlog + live, 10)
    finally:
        st.stop()
    assert res["depth"] == 0 and res["hist_batches"] > 0
    assert_all_readings(db_url, backlog + live, backlog=backlog)


# --- hand-made CBOR: decoding corner cases, the integer/real split, rejected batches ----------

def _publish(port: int, msgs: list[tuple[str, bytes, bool]]) -> None:
    # no wait: Store.start() returns once the broker has answered its SUBSCRIBEs
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for t, p, retain in msgs:
        c.publish(t, p, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def _acks(port: int, topic: str, seconds: float = 5) -> list[dict]:
    got: list[dict] = []
    ev = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_msg(cl, u, m):
        got.append(cbor2.loads(m.payload))
        ev.set()
    c.on_message = on_msg
    c.connect("127.0.0.1", port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    ev.wait(seconds)
    c.disconnect()
    c.loop_stop()
    return got


def _data(b: int, s: int, r: list, f: int = 0) -> bytes:
    n = sum(1 for i in range(0, len(r)) if not (isinstance(r[i], int) and r[i] < 0)) // 2
    return cbor2.dumps({"v": 1, "b": b, "s": s, "e": s + n - 1, "f": f, "t": T0, "r": r})


BIRTH = cbor2.dumps({"v": 1, "node": "m7", "fw": "1.0", "cfg": "abcd", "boot": 4, "pts": [
    [1, "energy", "kWh", "u32", 1, 0, "modbus 1/4/0"],
    [2, "voltage", "V", "float32", 1, 0, "modbus 1/4/2"],
    [3, "freq", "Hz", "int16", 0.01, 0, "modbus 1/4/4"],
    [4, "serial", None, "string", 1, 0, "modbus 1/3/9"]]})


def test_values_split_rejected_batch_kept_and_acked(fresh_broker, db_url):
    """Integers stay integers (value_int), scaled values are reals, text is text, errors
    carry their code; a non-UTF-8 string flags only its reading; an undecodable batch is
    kept verbatim in `rejected` and the ack moves past it, so the node is not wedged;
    resends are ignored by the primary key."""
    t = "otlink/plant1/m7/"
    st = Store(db_url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=ACK_WAIT).start()
    try:
        good = _data(4, 1, [1, 123456, 2, 230.5, 3, 5000, 4, "SN-1", 1, 3])
        bad = _data(4, 5, [1, 1, 2, {"x": 1}])  # a map is no value: the batch is invalid
        head = cbor2.dumps({"v": 1, "b": 4, "s": 7, "e": 8, "f": 0, "t": T0})
        nonutf8 = bytes([head[0] + 1]) + head[1:] + cbor2.dumps("r") + b"\x84" + \
            cbor2.dumps(4) + b"\x63a\xffb" + cbor2.dumps(3) + b"\xf8\x82"
        _publish(fresh_broker.port, [(t + "birth", BIRTH, True), (t + "data", good, False),
                                     (t + "data", bad, False), (t + "data", nonutf8, False),
                                     (t + "data", good, False)])
        assert st.wait(lambda s: s.messages >= 5 and s.acked.get(("plant1", "m7", 4)) == 8,
                       10)
        time.sleep(0.3)  # the ack is published right after COMMIT
        acks = _acks(fresh_broker.port, t + "ack")
    finally:
        st.stop()
    rows = readings(db_url)
    assert rows == [
        (1, 1, 123456, None, None, None, False, 4),
        (2, 2, None, 230.5, None, None, False, 4),
        (3, 3, None, 50.0, None, None, False, 4),
        (4, 4, None, None, "SN-1", None, False, 4),
        (5, 1, 123459, None, None, None, False, 4),
        (7, 4, None, None, "a\ufffdb", None, False, 4),
        (8, 3, None, None, None, 0x82, False, 4)]
    assert query(db_url, "SELECT note FROM readings WHERE seq = 7") == [
        ("text value is not UTF-8: bytes 61ff62",)]
    rej = query(db_url, "SELECT boot, seq_first, seq_last, error, payload FROM rejected")
    assert len(rej) == 1 and rej[0][:3] == (4, 5, 6) and "unsupported type dict" in rej[0][3]
    assert bytes(rej[0][4]) == bad  # kept byte for byte
    # past the rejected batch 5..6, signed with the node's key (acktrack.sign_ack)
    assert [{k: a[k] for k in ("v", "b", "s")} for a in acks] == [{"v": 1, "b": 4, "s": 8}]
    assert sign_ack(ACK_KEY, t + "ack", cbor2.dumps({"v": 1, "b": 4, "s": 8})) == \
        cbor2.dumps(acks[0])
    assert st.duplicates == 5  # the resent first batch
    assert query(db_url, "SELECT unit FROM reading_values WHERE seq = 3") == [("Hz",)]


def test_share_group_two_sinks_one_database(fresh_broker, pg):
    """Two sinks in one share group write into one PostgreSQL database: together they hold
    every reading once, and the node's queue drains on their acks."""
    url = _fresh_pg(pg)
    total = 4000
    a = Store(url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, group="hist",
              ack_wait=ACK_WAIT).start()
    b = Store(url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, group="hist",
              ack_wait=ACK_WAIT).start()
    try:
        res = result(start_agent(agent_opts(fresh_broker.port, total)))
        wait_for(lambda: count(url) >= total, 10)
    finally:
        a.stop()
        b.stop()
    assert res["depth"] == 0
    assert a.stored > 0 and b.stored > 0  # both took part
    assert_all_readings(url, total)


def test_cli_refuses_bad_db_url(fresh_broker, tmp_path):
    r = subprocess.run([sys.executable, "-m", "otlink_tools.cli", "store", "--db",
                        "mysql://x", "--port", str(fresh_broker.port)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "sqlite:PATH or postgresql://" in r.stderr
    r = subprocess.run([sys.executable, "-m", "otlink_tools.cli", "store", "--db",
                        "postgresql://u:hunter2@127.0.0.1:1/x", "--port",
                        str(fresh_broker.port)],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PGCONNECT_TIMEOUT="2"))
    assert r.returncode == 1 and "hunter2" not in r.stderr and "***" in r.stderr, r.stderr


def _doc_queries() -> list[str]:
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "historian.md").read_text()
    out = []
    for block in re.findall(r"```sql\n(.*?)```", text, re.S):
        out += [q.strip() for q in block.split(";") if q.strip()]
    return out


def test_doc_queries_run(fresh_broker, db_url):
    """Every example query of docs/historian.md runs on the database it is written for, and
    the ones for one node and point find its readings."""
    t = "otlink/plant1/meter-7/"
    birth = cbor2.dumps({"v": 1, "node": "meter-7", "fw": "1.0", "cfg": "ab", "boot": 2,
                         "pts": [[1, "energy", "Wh", "u32", 1, 0, None],
                                 [2, "voltage", "V", "float32", 1, 0, None]]})
    now = int(time.time() * 1000) // 3_600_000 * 3_600_000 + 1000  # both in one hour
    batch = cbor2.dumps({"v": 1, "b": 2, "s": 1, "e": 4, "f": 0, "t": now,
                         "r": [1, 1000, 2, 230.5, -1000, 1, 7, 2, 231.0]})
    st = Store(db_url, port=fresh_broker.port, ack_wait=0).start()
    try:
        # the birth retained, as a node sends it: a sink whose subscriptions complete after
        # the publish still gets the point table (it did not, once, under a loaded CI run)
        _publish(fresh_broker.port, [(t + "birth", birth, True), (t + "data", batch, False)])
        assert st.wait(lambda s: s.stored >= 4, 10)
    finally:
        st.stop()
    pg_only = ("date_trunc", "$__timeFilter")
    queries = _doc_queries()
    assert len(queries) >= 6
    for q in queries:
        if db_url.startswith("sqlite:") and any(w in q for w in pg_only):
            continue
        if db_url.startswith("postgresql") and "strftime" in q:
            continue
        q = q.replace("$__timeFilter(ts)", "ts > now() - interval '1 hour'")
        rows = query(db_url, q)
        if "point = 'voltage'" in q:
            assert [r[1] for r in rows] == [230.5, 231.0], q
        if "SELECT point, unit, value" in q:
            assert sorted(r[:3] for r in rows) == [("energy", "Wh", 1007),
                                                   ("voltage", "V", 231.0)], q
        if "date_trunc" in q:
            assert [r[1] for r in rows] == [7], q


def test_message_the_database_refuses_is_quarantined(fresh_broker, db_url):
    """A message the database refuses even alone (here a rule a DBA added: no point 99) is
    kept in `rejected` and acknowledged past, the messages of the same group around it are
    stored; a text with a NUL (PostgreSQL refuses it in text) is stored with a note."""
    from otlink_tools.store_db import open_db
    db = open_db(db_url).connect()  # the schema, then the rule
    with db.conn.cursor() if db_url.startswith("postgresql") else db.conn as c:
        if db_url.startswith("postgresql"):
            c.execute("ALTER TABLE readings ADD CONSTRAINT no_99 CHECK (pid <> 99)")
            db.conn.commit()
        else:
            c.execute("CREATE TRIGGER no_99 BEFORE INSERT ON readings WHEN NEW.pid = 99 "
                      "BEGIN SELECT RAISE(ABORT, 'point 99 refused'); END")
    db.close()
    t = "otlink/plant1/m7/"
    msgs = [(t + "birth", BIRTH, False),
            (t + "data", _data(4, 1, [1, 10, 4, "a\x00b"]), False),
            (t + "data", _data(4, 3, [99, 1, 1, 11]), False),
            (t + "data", _data(4, 5, [1, 12]), False)]
    st = Store(db_url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=0, group_max=64)
    st.start()
    try:
        _publish(fresh_broker.port, msgs)
        assert st.wait(lambda s: s.acked.get(("plant1", "m7", 4)) == 5, 10)
    finally:
        st.stop()
    assert [r[:5] for r in readings(db_url)] == [(1, 1, 10, None, None),
                                                 (2, 4, None, None, "a\ufffdb"),
                                                 (5, 1, 12, None, None)]
    assert query(db_url, "SELECT note FROM readings WHERE seq = 2") == [
        ("text value holds NUL characters (stored as U+FFFD)",)]
    rej = query(db_url, "SELECT boot, seq_first, seq_last, error FROM rejected")
    assert len(rej) == 1 and rej[0][:3] == (4, 3, 4) and "99" in rej[0][3]
    assert query(db_url, "SELECT seq FROM acks") == [(5,)]


def test_tls_with_client_certificate(tls_material, tmp_path):
    """The broker options are the monitor's: TLS verified against --cafile, a client
    certificate when the broker asks for one."""
    import ssl

    from otlink_tools.broker import tls_broker
    m = tls_material
    broker, tls_port = tls_broker(m, require_certificate=True)
    broker.start()
    url = f"sqlite:{tmp_path / 'h.db'}"
    try:
        st = Store(url, port=tls_port, cafile=str(m.ca_cert), cert=str(m.client_cert),
                   key=str(m.client_key), ack_wait=0).start()
        try:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            ctx = ssl.create_default_context(cafile=str(m.ca_cert))
            ctx.load_cert_chain(str(m.client_cert), str(m.client_key))
            c.tls_set_context(ctx)
            c.connect("127.0.0.1", tls_port)
            c.loop_start()
            c.publish("otlink/plant1/m7/birth", BIRTH, qos=1).wait_for_publish(5)
            c.publish("otlink/plant1/m7/data", _data(4, 1, [1, 5, 1, 6]),
                      qos=1).wait_for_publish(5)
            c.disconnect()
            c.loop_stop()
            assert st.wait(lambda s: s.stored >= 2, 10)
        finally:
            st.stop()
        with pytest.raises(ConnectionError):  # no client certificate: refused, said at once
            Store(url, port=tls_port, cafile=str(m.ca_cert)).start(timeout=5)
    finally:
        broker.stop()
    assert [r[:3] for r in readings(url)] == [(1, 1, 5), (2, 1, 11)]  # 6 is a difference


@pytest.mark.parametrize("live", [True, False])
def test_session_start_positions_every_boot(fresh_broker, tmp_path, live):
    """A node that connects (a live birth) after a reboot sends the older boot's backlog,
    then the new boot, in seq order: the first batch of each boot is that boot's oldest
    unacknowledged one, so both are acknowledged at once. A birth delivered retained (the
    sink joined later) proves nothing: no ack before the first-contact wait is over."""
    url = f"sqlite:{tmp_path / 'h.db'}"
    t = "otlink/plant1/m7/"
    birth5 = cbor2.dumps({"v": 1, "node": "m7", "fw": "1.0", "cfg": "ab", "boot": 5,
                          "pts": [[1, "energy", "Wh", "u32", 1, 0, None]]})
    if not live:
        _publish(fresh_broker.port, [(t + "birth", birth5, True)])
    st = Store(url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, ack_wait=60).start()
    try:
        msgs = [(t + "birth", birth5, True)] if live else []
        msgs += [(t + "data", _data(4, 100, [1, 7, 1, 1], f=1), False),
                 (t + "data", _data(5, 102, [1, 9, 1, 1]), False)]
        _publish(fresh_broker.port, msgs)
        assert st.wait(lambda s: s.stored >= 4, 10)
        time.sleep(0.5)
    finally:
        st.stop()
    want = {("plant1", "m7", 4): 101, ("plant1", "m7", 5): 103} if live else {}
    assert st.acked == want
    assert sorted(query(url, "SELECT boot, seq FROM acks")) == sorted(
        (k[2], v) for k, v in want.items())


def test_start_returns_subscribed(fresh_broker, tmp_path):
    """A message published the moment start() returns is stored: start() waits for the
    SUBACKs, not only the CONNACK (it did not, and a non-retained message published in
    between went nowhere)."""
    for i in range(5):
        url = f"sqlite:{tmp_path / f'h{i}.db'}"
        st = Store(url, port=fresh_broker.port, ack_wait=0).start()
        try:
            _publish(fresh_broker.port, [("otlink/plant1/m7/data", _data(4, 1, [1, i]),
                                          False)])
            assert st.wait(lambda s: s.stored == 1, 5), f"round {i}: lost"
        finally:
            st.stop()


def test_group_position_is_what_the_database_holds(fresh_broker, tmp_path):
    """A group member acks the run the shared database holds, whoever wrote it: not past
    a batch no member has committed (1..2 here), and past one another member committed
    (written straight into the table here, as a member's transaction would)."""
    url = f"sqlite:{tmp_path / 'h.db'}"
    t = "otlink/plant1/m7/"
    st = Store(url, port=fresh_broker.port, ack=True, ack_key=ACK_KEY, group="hist",
               ack_wait=0).start()
    key = ("plant1", "m7", 4)
    try:
        _publish(fresh_broker.port, [(t + "ack", cbor2.dumps({"v": 1, "b": 4, "s": 0}), True),
                                     (t + "data", _data(4, 3, [1, 3, 1, 4]), False)])
        assert st.wait(lambda s: s.stored >= 2, 10)
        time.sleep(0.5)
        assert st.acked.get(key) in (None, 0)  # 1..2 missing: no ack past them
        c = sqlite3.connect(url[len("sqlite:"):], timeout=10)
        with c:  # another member's commit
            c.executemany("INSERT INTO readings (site, node, boot, seq, pid, t_ms, value_int, "
                          "historical, untimed) VALUES ('plant1', 'm7', 4, ?, 1, 0, ?, 0, 0)",
                          [(1, 1), (2, 2)])
        c.close()
        _publish(fresh_broker.port, [(t + "data", _data(4, 5, [1, 5]), False)])
        assert st.wait(lambda s: s.acked.get(key) == 5, 10), st.acked
    finally:
        st.stop()
    assert query(url, "SELECT seq FROM acks") == [(5,)]
    assert [r[0] for r in readings(url)] == [1, 2, 3, 4, 5]


def online_node(port: int, site: str = "plant1", node: str = "m7", batches: int = 20) -> None:
    """A node's retained birth and online state, as a node publishes them at connect, then
    data batches of 2 readings, one every 0.1 s (default 20: 2 s, 40 readings)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t = f"otlink/{site}/{node}/"
    birth = cbor2.dumps({"v": 1, "node": node, "fw": "1", "cfg": "ab", "boot": 1,
                         "pts": [[1, "e", "Wh", "u32", 1, 0, None]]})
    state = cbor2.dumps({"v": 1, "online": True, "boot": 1, "uptime_s": 5})
    c.publish(t + "birth", birth, qos=1, retain=True).wait_for_publish(5)
    c.publish(t + "state", state, qos=1, retain=True).wait_for_publish(5)
    for s in range(1, 2 * batches, 2):
        c.publish(t + "data", _data(1, s, [1, 5, 1, 1]), qos=1).wait_for_publish(5)
        time.sleep(0.1)
    c.disconnect()
    c.loop_stop()


class Err:
    """A stderr that keeps what the sink says."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, s: str) -> None:
        self.lines.append(s)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.lines)


def test_mosquitto_share_group_no_warning(fresh_broker, tmp_path):
    """On mosquitto $share delivers: a group member storing data never warns."""
    err = Err()
    st = Store(f"sqlite:{tmp_path / 'q.db'}", port=fresh_broker.port, group="g",
               quiet_warn=1.5, err=err).start()
    try:
        online_node(fresh_broker.port)
        st.wait(lambda s: s.stored >= 40, 2)
    finally:
        st.stop()
    assert st.stored == 40 and st.quiet_warnings == 0, err.text()


def test_subscription_emptied_by_an_acl_warns(tmp_path):
    """mosquitto grants a subscription its access list does not let the client read, and
    delivers nothing on it: the sink sees the node online (state and birth are readable)
    and says so within --quiet-warn instead of waiting silently."""
    import shutil
    import tempfile
    from pathlib import Path

    from otlink_tools.broker import Broker
    d = Path(tempfile.mkdtemp(prefix="otlink-acl-"))  # mosquitto started as root reads it
    os.chmod(d, 0o755)  # as its own user: not under pytest's private folder
    acl = d / "acl"
    acl.write_text("topic write otlink/#\n" + "".join(f"topic read otlink/+/+/{k}\n"
                                                     for k in ("birth", "state", "ack")))
    os.chmod(acl, 0o644)
    broker = Broker(workdir=str(d), extra_conf=f"acl_file {acl}\n").start()
    err = Err()
    try:
        st = Store(f"sqlite:{tmp_path / 'q.db'}", port=broker.port, quiet_warn=1.5,
                   err=err).start()
        try:
            online_node(broker.port)
            assert st.wait(lambda s: s.quiet_warnings >= 1, 5), err.text()
        finally:
            st.stop()
    finally:
        broker.stop()
        shutil.rmtree(d, ignore_errors=True)
    assert st.stored == 0
    assert "WARNING: no data for" in err.text() and "plant1/m7 says it is online" in err.text()
    assert "allowed to read otlink/+/+/data" in err.text()
