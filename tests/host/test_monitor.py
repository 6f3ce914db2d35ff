"""Monitor output without a broker (messages fed to handle()): untimed readings are never
shown as epoch times, value formatting, the live table for a terminal, scrolling rows."""

from __future__ import annotations

import csv
import io
import json
import time

import cbor2
import pytest

from otlink_tools.monitor import Monitor, format_age, format_value

NODE = "boiler-house-energy-meter-07"  # longer than 12 characters on purpose
T = f"otlink/plant/{NODE}/"


def birth() -> bytes:
    return cbor2.dumps({"v": 1, "node": NODE, "fw": "1.0", "cfg": "ab", "boot": 3,
                        "pts": [[1, "energy_total", "Wh", "u32", 1, 0, None],
                                [2, "voltage_l1", "V", "u16", 0.1, 0, None],
                                [3, "power", "W", "f32", 1, 0, None],
                                [4, "temp", "C", "i16", 1, 0, None]]})


def data(seq: int, t0: int, r: list, flags: int = 0) -> bytes:
    n = sum(1 for x in r if not (isinstance(x, int) and x < 0)) // 2
    return cbor2.dumps({"v": 1, "b": 3, "s": seq, "e": seq + n - 1, "f": flags, "t": t0,
                        "r": r})


def feed(mon: Monitor, untimed: bool = False) -> int:
    """Birth, state and one batch of 4 readings stamped 3 s ago; returns that time."""
    mon.handle(T + "birth", birth())
    mon.handle(T + "state", cbor2.dumps({"v": 1, "online": True, "queue_depth": 12,
                                         "drops": 2, "clock_set": not untimed}))
    t0 = 4200 if untimed else int(time.time() * 1000) - 3000
    mon.handle(T + "data", data(10, t0, [1, 1000000, 2, 2303, 3, 1234.5678912, 4,
                                         cbor2.CBORSimpleValue(1)], 2 if untimed else 0))
    return t0


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "influx"])
def test_untimed_never_presented_as_epoch(fmt):
    out = io.StringIO()
    mon = Monitor(fmt=fmt, out=out, live=False)
    feed(mon, untimed=True)
    text = out.getvalue()
    if fmt == "jsonl":
        rows = [json.loads(x) for x in text.splitlines()]
        assert [(r["time"], r["t_ms"], r["uptime_ms"], r["untimed"]) for r in rows] == \
            [(None, None, 4200, True)] * 4
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [(r["time"], r["uptime_ms"], r["untimed"]) for r in rows] == \
            [("", "4200", "True")] * 4
    else:
        lines = text.splitlines()
        assert len(lines) == 4
        for line in lines:
            tags, fields = line.split(" ")[:2]  # no third part: no timestamp
            assert len(line.split(" ")) == 2, line
            assert "untimed=true" in tags and "uptime_ms=4200i" in fields


def test_timed_rows_keep_epoch_time():
    out = io.StringIO()
    mon = Monitor(fmt="jsonl", out=out, live=False)
    t0 = feed(mon)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert all(r["t_ms"] == t0 and r["uptime_ms"] is None for r in rows)
    assert rows[0]["time"].endswith("+00:00")
    assert [r["value"] for r in rows] == [1000000, pytest.approx(230.3), 1234.5678912, None]


def test_format_value_and_age():
    assert format_value(1000000) == "1000000"
    assert format_value(2303 * 0.1) == "230.3"
    assert format_value(1234.5678912) == "1234.5679"
    assert format_value(1e20) == "1e+20"
    assert format_value(0.00001234) == "1.234e-05"
    assert format_value(-0.0) == "0" and format_value(2.0) == "2"
    assert format_value(None) == "-" and format_value(True) == "True"
    assert format_value("RUN") == "RUN"
    assert format_value(float("nan")) == "nan"
    assert (format_age(3.2), format_age(125), format_age(7300)) == ("3s", "2m05s", "2h01m")


def test_live_table_redrawn_in_place():
    out = io.StringIO()
    mon = Monitor(fmt="table", out=out, live=True)
    feed(mon)
    text = mon.render()
    lines = text.splitlines()
    assert lines[0].startswith(f"{NODE} (plant)  online  queue 12  boot 3 last seq 13")
    assert lines[1] == "  ! 2 readings dropped (queue full)"
    body = {ln.split()[0]: ln for ln in lines[3:] if ln.strip()}
    assert set(body) == {"energy_total", "voltage_l1", "power", "temp"}
    assert body["energy_total"].split()[1:3] == ["1000000", "Wh"]
    assert body["voltage_l1"].split()[1:3] == ["230.3", "V"]
    assert body["power"].split()[1:3] == ["1234.5679", "W"]
    assert body["energy_total"].split()[3] in ("3s", "4s")
    assert body["temp"].split()[1:3] == ["-", "C"]
    assert body["temp"].rstrip().endswith(" 1: timeout")
    # one row per point: newer readings replace older ones
    mon._drawn = 0
    mon.handle(T + "data", data(14, int(time.time() * 1000), [2, 2310]))
    lines = mon.render().splitlines()
    assert sum(1 for ln in lines if ln.strip().startswith("voltage_l1")) == 1
    assert "231" in next(ln for ln in lines if ln.strip().startswith("voltage_l1"))
    assert "last seq 14" in lines[0]
    # drawn with cursor-home + clear, never scrolled
    assert out.getvalue().startswith("\x1b[H\x1b[2J")
    mon.handle(T + "state", cbor2.dumps({"v": 1, "online": False}))
    assert "OFFLINE" in mon.render().splitlines()[0]
    assert "last will" in mon.render().splitlines()[1]
    mon.handle(T + "state", cbor2.dumps({"v": 1, "online": False, "stopped": True}))
    assert mon.render().splitlines()[:2] == [
        f"{NODE} (plant)  STOPPED  boot 3 last seq 14", "  ! stopped cleanly"]


def test_live_table_lists_every_point_of_the_birth_and_the_health():
    """Points that never reported are listed too: "no data yet", or the error the node's
    retained state names (a monitor started after the error was sent); the state's figures
    head the node's block."""
    mon = Monitor(fmt="table", out=io.StringIO(), live=True)
    mon.handle(T + "birth", birth())
    now = time.time()
    mon.handle(T + "state", cbor2.dumps({
        "v": 1, "online": True, "boot": 3, "uptime_s": 7200, "queue_depth": 40,
        "oldest_unsent_s": 400, "free_heap": 61440, "reset_cause": "watchdog",
        "t": int(now * 1000), "clock_set": True, "slave_errors": {1: 0, 2: 36},
        "point_errors": {4: 0x82}}))
    mon.handle(T + "data", data(20, int(now * 1000), [2, 2301, 3, float("nan")]))
    lines = mon.render(now).splitlines()
    assert lines[0] == (f"{NODE} (plant)  online  queue 40  oldest unsent 6m40s  up 2h00m  "
                        "boot 3  reset watchdog  heap free 61440 B  boot 3 last seq 21")
    assert lines[1].startswith("  ! 1 point in error: temp (Modbus exception 2: illegal data")
    assert lines[2].startswith("  ! oldest unsent reading 400 s old")
    assert lines[3] == "  ~ slave 2: 36 failed transactions (18/h)"
    body = {ln.split()[0]: ln for ln in lines[5:] if ln.strip()}
    assert body["energy_total"].split()[1:] == ["-", "Wh", "-", "no", "data", "yet"]
    assert body["voltage_l1"].split()[1:3] == ["230.1", "V"]
    assert body["power"].split()[1:] == ["nan", "W", "0s", "(nan)"]
    assert body["temp"].endswith("130: Modbus exception 2: illegal data address (from the "
                                 "node's state)")


def test_scrolling_table_when_not_a_terminal():
    out = io.StringIO()
    mon = Monitor(fmt="table", out=out)  # StringIO is not a terminal
    assert not mon.live
    feed(mon)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    assert len(lines) == 5  # header + 4 rows
    assert all(NODE in ln for ln in lines[1:])  # node names are not cut
    assert "1000000" in lines[1] and "1e+06" not in lines[1]
    assert "error 1" in lines[4]


def test_scrolling_untimed_shows_uptime():
    out = io.StringIO()
    mon = Monitor(fmt="table", out=out, live=False)
    feed(mon, untimed=True)
    assert "uptime+4.2s" in out.getvalue().splitlines()[1]
