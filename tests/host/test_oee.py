"""`otlink oee` on a historian database (the schema `otlink store` writes, store_db.py):
machine-state events and counter totals as a node sends them (docs/analytics.md) become
availability, performance, quality and OEE per shift (ISO 22400-2), and two PNG charts."""

from __future__ import annotations

import sqlite3

import pytest

from otlink_tools import cli, oee
from otlink_tools.store_db import open_db

T0 = 1796104800000  # 2026-12-01T06:00:00Z
MIN = 60_000
H = 3_600_000


def state(t, new, prev, dur):
    return (t, f"{new} after {prev} {dur}")


# One early shift (06:00-14:00) of a press, boot 3 of node press-01:
#   06:00 running 2 h; 08:00 stopped 3 min (a micro-stop: < 5 min); 08:03 running to 10:00;
#   10:00 stopped 30 min; 10:30 idle 30 min; 11:00 running to 14:00.
EVENTS = [state(T0, "running", "unknown", 0),
          state(T0 + 2 * H, "stopped", "running", 2 * H),
          state(T0 + 2 * H + 3 * MIN, "running", "micro_stop", 3 * MIN),
          state(T0 + 4 * H, "stopped", "running", 2 * H - 3 * MIN),
          state(T0 + 4 * H + 30 * MIN, "idle", "stopped", 30 * MIN),
          state(T0 + 5 * H, "running", "idle", 30 * MIN)]
RUN_MS = 2 * H + (2 * H - 3 * MIN) + 3 * H  # running
APT_MS = RUN_MS + 3 * MIN  # + the micro-stop
CYCLES = [(3, T0, 1000)] + [(3, T0 + k * 20 * MIN, 1000 + 60 * k) for k in range(1, 24)] \
    + [(4, T0 + 7 * H + 50 * MIN, 5)]  # a reboot: boot 4 starts from its own total
REJECTS = [(3, T0, 10), (3, T0 + 3 * H, 16), (3, T0 + 7 * H, 22)]


def fill(path: str) -> None:
    db = open_db(f"sqlite:{path}").connect()
    db.close()
    con = sqlite3.connect(path)
    for boot in (3, 4):
        con.executemany("INSERT INTO points (site, node, boot, pid, name, unit, type, scale, "
                        "value_offset, source) VALUES (?,?,?,?,?,?,?,?,?,?)", [
                            ("plant1", "press-01", boot, 300, "press.state", "", "event", 1,
                             0, "machine:1"),
                            ("plant1", "press-01", boot, 400, "press.cycles", "", "int64", 1,
                             0, "counter:3:cycles:300"),
                            ("plant1", "press-01", boot, 401, "press.rejects", "", "int64", 1,
                             0, "counter:4:rejects:300"),
                            ("plant1", "press-01", boot, 110, "current.mean", "A", "float64",
                             1, 0, "window:1:mean:60000ms")])
    seq = [0]

    def row(boot, pid, t, vi=None, vr=None, vt=None):
        seq[0] += 1
        return ("plant1", "press-01", boot, seq[0], pid, t, vi, vr, vt, None, False, False,
                boot, None)
    rows = [row(3, 300, t, vt=txt) for t, txt in EVENTS]
    rows += [row(b, 400, t, vi=v) for b, t, v in CYCLES]
    rows += [row(b, 401, t, vi=v) for b, t, v in REJECTS]
    rows += [row(3, 110, T0 + k * MIN, vr=5.0 + (k % 60) / 30) for k in range(0, 480, 5)]
    con.executemany("INSERT INTO readings (site, node, boot, seq, pid, t_ms, value_int, "
                    "value_real, value_text, err, historical, untimed, birth_boot, note) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def test_timeline_and_increments():
    segs = oee.timeline(EVENTS, T0 + 8 * H)
    assert [s.state for s in segs] == ["running", "micro_stop", "running", "stopped", "idle",
                                       "running"]
    assert segs[-1].end == T0 + 8 * H
    assert oee.increments([(1, 0, 5), (1, 1, 7), (2, 2, 3), (2, 3, 4), (2, 4, 1)]) == \
        [(1, 2), (3, 1)]
    assert oee.parse_event("running after micro_stop 4200") == ("running", "micro_stop", 4200)
    assert oee.parse_event("garbage") is None


def test_oee_per_shift(tmp_path, capsys):
    path = str(tmp_path / "hist.db")
    fill(path)
    db = open_db(f"sqlite:{path}").connect()
    shifts = oee.shifts_for(["early=06:00-14:00", "late=14:00-22:00"], T0, T0 + 16 * H)
    res, lines = oee.analyse(db, T0, T0 + 8 * H, shifts[:1], ideal_cycle_s=15.0,
                             planned_stop_ms=30 * MIN)
    db.close()
    assert [s.name for s in shifts] == ["early 2026-12-01", "late 2026-12-01"]
    (r,) = res
    assert r.pbt_ms == 8 * H - 30 * MIN
    assert r.apt_ms == APT_MS
    assert r.times["idle"] == 30 * MIN and r.times["stopped"] == 30 * MIN
    assert (r.micro_stops, r.stops) == (1, 1)
    assert r.produced == 23 * 60  # boot 3's increments; boot 4's first total adds nothing
    assert r.rejects == 12
    assert r.availability == pytest.approx(APT_MS / (7.5 * H))
    assert r.performance == pytest.approx(15.0 * 1000 * 1380 / APT_MS)
    assert r.quality == pytest.approx((1380 - 12) / 1380)
    assert r.oee == pytest.approx(r.availability * r.performance * r.quality)


def test_cli_writes_table_and_pictures(tmp_path, capsys):
    path = str(tmp_path / "hist.db")
    fill(path)
    out = tmp_path / "png"
    rc = cli.main(["oee", "--db", f"sqlite:{path}", "--from", "2026-12-01T06:00Z",
                   "--to", "2026-12-01T14:00Z", "--shift", "early=06:00-14:00",
                   "--ideal-cycle-s", "15", "--png", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "press-01" in text and "press.state" in text and "early 2026-12-01" in text
    assert "1380" in text
    import matplotlib.image as mpimg

    tl = mpimg.imread(out / "timeline.png")
    colors = {tuple((tl[y, x, :3] * 255).round().astype(int)) for y in range(0, tl.shape[0], 3)
              for x in range(0, tl.shape[1], 3)}
    for hexc in (oee.COLORS["running"], oee.COLORS["stopped"], oee.COLORS["idle"]):
        rgb = tuple(int(hexc[i:i + 2], 16) for i in (1, 3, 5))
        assert rgb in colors, f"state color {hexc} drawn in the timeline"
    assert (out / "trend.png").stat().st_size > 5000
    assert "current.mean" in text


def test_cli_errors_are_named(tmp_path, capsys):
    path = str(tmp_path / "empty.db")
    open_db(f"sqlite:{path}").connect().close()
    rc = cli.main(["oee", "--db", f"sqlite:{path}", "--from", "2026-12-01T06:00Z",
                   "--to", "2026-12-01T14:00Z"])
    assert rc == 1
    assert "no machine-state point" in capsys.readouterr().err
    rc = cli.main(["oee", "--db", f"sqlite:{path}", "--from", "yesterday", "--to", "x"])
    assert rc == 1 and "--from 'yesterday'" in capsys.readouterr().err
    rc = cli.main(["oee", "--db", f"sqlite:{path}", "--from", "2026-12-01T06:00Z",
                   "--to", "2026-12-01T14:00Z", "--shift", "early=6-14"])
    assert rc == 1 and "NAME=HH:MM-HH:MM" in capsys.readouterr().err
