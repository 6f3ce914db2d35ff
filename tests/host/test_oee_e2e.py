"""`otlink oee` on a stream a node really sent: the demo's analytics (machine state from the
press's run/stop contact, its cycle counter) -> mosquitto -> `otlink store` into SQLite ->
`otlink oee`. The state timeline and the cycle count the host derives from the stored events
and totals are checked against the raw contact and counter readings stored beside them."""

from __future__ import annotations

import json
import sqlite3

from otlink_tools import cli, node, oee
from otlink_tools.demo import demo_analytics, demo_config
from otlink_tools.store import Store
from otlink_tools.store_db import open_db
from ackkey import ACK_KEY, ACK_KEY_HEX


def test_oee_from_a_stored_node_stream(fresh_broker, demo_meter, tmp_path, capsys):
    cfg = demo_config(demo_meter.agent_port, fresh_broker.port, every_sensor=True,
                      ack_key=ACK_KEY_HEX)
    a = demo_analytics()
    a.pop("vibration")  # not needed here: a smaller, faster agent
    cfg["analytics"] = a
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    path = tmp_path / "hist.db"
    st = Store(f"sqlite:{path}", port=fresh_broker.port, ack=True, ack_wait=1.0,
               ack_key=ACK_KEY).start()
    log = open(tmp_path / "agent.log", "wb")
    agent = node.start_agent(str(tmp_path / "node.json"), str(tmp_path / "state"), heap="384K",
                             log=log)

    def events() -> int:
        con = sqlite3.connect(path)
        try:
            return con.execute("SELECT count(*) FROM readings WHERE pid = 300").fetchone()[0]
        except sqlite3.Error:
            return 0
        finally:
            con.close()
    try:
        ok = st.wait(lambda s: events() >= 3, 45)
    finally:
        agent.kill()
        agent.wait()
        log.close()
        st.stop()
    assert ok, (tmp_path / "agent.log").read_text()[-3000:]
    con = sqlite3.connect(path)
    ev = con.execute("SELECT t_ms, value_text FROM readings WHERE pid = 300 ORDER BY t_ms"
                     ).fetchall()
    # in the order the node read them (seq): a contact's change event and the periodic
    # sample of the same instant can be stamped a millisecond apart the other way round
    contact = con.execute("SELECT t_ms, value_int FROM readings WHERE pid = 60 ORDER BY boot, "
                          "seq").fetchall()
    starts = con.execute("SELECT boot, t_ms, value_int FROM readings WHERE pid = 61 ORDER BY "
                         "boot, seq").fetchall()
    con.close()
    t0, t1 = ev[0][0], ev[-1][0]
    # the host's timeline against the raw contact: a change of state exactly where the
    # contact's reading changed (an event carries its reading's time), running while it is 1
    changes = [(t, v) for (_ta, va), (t, v) in zip(contact, contact[1:]) if v != va]
    changes = [c for c in changes if t0 < c[0] <= t1]
    assert [t for t, _x in ev[1:]] == [t for t, _v in changes]
    segs = oee.timeline(ev, t1)
    assert [s.state for s in segs[1:]] == ["running" if v else "stopped" for _t, v in changes
                                           ][:len(segs) - 1]
    run_ms = sum(s.end - s.start for s in segs if s.state == "running")
    raw_run = sum(tb - ta for (ta, va), (tb, _vb) in zip(changes, changes[1:]) if va)
    assert run_ms == raw_run > 0
    db = open_db(f"sqlite:{path}").connect()
    shift = oee.Shift("period", t0, t1)
    (r,), _lines = oee.analyse(db, t0, t1, [shift], ideal_cycle_s=2.0)
    db.close()
    assert r.apt_ms == run_ms and r.pbt_ms == t1 - t0
    # cycles: the increments of the node's counter = those of the raw change counter
    raw_inc = sum(b[2] - a[2] for a, b in zip(starts, starts[1:])
                  if a[0] == b[0] and t0 <= b[1] < t1)
    assert r.produced == raw_inc > 0
    rc = cli.main(["oee", "--db", f"sqlite:{path}", "--from", "2020-01-01T00:00Z",
                   "--to", "2100-01-01T00:00Z", "--ideal-cycle-s", "2",
                   "--png", str(tmp_path / "png")])
    assert rc == 0
    assert "press_state" in capsys.readouterr().out
    assert (tmp_path / "png" / "timeline.png").stat().st_size > 3000
