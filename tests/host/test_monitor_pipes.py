"""`otlink monitor` in pipelines and groups: a reader that goes away (`| head -2`) stops the
monitor quietly; `--count N` writes exactly N readings and acks no more than that; members
of a share group report no false gaps; counts read "1 reading", not "1 readings"; the
scrolling table's columns fit node ids longer than the first guess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest

from otlink_tools.decode import decode_message
from otlink_tools.monitor import EXIT_OUTPUT_CLOSED, Monitor

OTLINK = str(Path(sys.executable).parent / "otlink")
NODE = "demo-press-01"  # 13 characters: one more than the table's first node column
T = f"otlink/plant/{NODE}/"


def birth(node: str = NODE) -> bytes:
    return cbor2.dumps({"v": 1, "node": node, "fw": "1.0", "cfg": "ab", "boot": 1,
                        "pts": [[1, "pressure", "bar", "u16", 1, 0, None],
                                [2, "motor_current_phase_a", "A", "u16", 1, 0, None]]})


def batch(seq: int, n: int = 7) -> bytes:
    """n readings seq..seq+n-1 of boot 1, alternating points 1 and 2, stamped now."""
    r: list = []
    for i in range(n):
        r += [1 + i % 2, 0 if i >= 2 else 100 + i]  # ints after the first are deltas
    return cbor2.dumps({"v": 1, "b": 1, "s": seq, "e": seq + n - 1, "f": 0,
                        "t": int(time.time() * 1000), "r": r})


def client(port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def monitor_proc(port: int, *args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("OTLINK_MQTT_PASSWORD", None)
    return subprocess.Popen([OTLINK, "monitor", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def publish_until_exit(port: int, proc: subprocess.Popen, topic_prefix: str, payloads,
                       seconds: float = 8.0) -> threading.Thread:
    """Publish birth (retained) and then `payloads(i)` every 50 ms until proc exits: the
    monitor's subscription is in place at some point, whenever that is."""
    def loop() -> None:
        c = client(port)
        try:
            c.publish(topic_prefix + "birth", birth(), qos=1, retain=True).wait_for_publish(5)
            deadline = time.monotonic() + seconds
            i = 0
            while proc.poll() is None and time.monotonic() < deadline:
                c.publish(topic_prefix + "data", payloads(i), qos=1).wait_for_publish(5)
                i += 1
                time.sleep(0.05)
        finally:
            c.loop_stop()
            c.disconnect()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


# --- the reader goes away -------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "table"])
def test_closed_pipe_stops_the_monitor_quietly(broker, fmt):
    """`otlink monitor --format csv | head -2`: exits soon, no error per batch, no
    BrokenPipeError from Python at exit, not counted as bad messages."""
    prefix = f"otlink/pipe-{fmt}/{NODE}/"
    proc = monitor_proc(broker.port, "--site", f"pipe-{fmt}", "--format", fmt,
                        "--seconds", "20")
    pub = publish_until_exit(broker.port, proc, prefix, lambda i: batch(1 + 7 * i))
    try:
        first = [proc.stdout.readline(), proc.stdout.readline()]  # `head -2`
        proc.stdout.close()
        rc = proc.wait(timeout=6)  # before the fix: ran on until --seconds 20
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        pub.join(10)
    assert all(line.endswith(b"\n") for line in first), first
    assert rc == EXIT_OUTPUT_CLOSED, err
    for bad in ("BrokenPipe", "Broken pipe", "Traceback", "Exception ignored",
                "error handling"):
        assert bad not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # just the summary
    assert "output closed by its reader" in lines[0] and "0 bad messages" in lines[0], err


class GonePipe(io.StringIO):
    """A stream whose reader has gone: every flush fails like a closed pipe."""

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_output_is_not_a_bad_message():
    err = io.StringIO()
    mon = Monitor(fmt="jsonl", out=GonePipe(), err=err, ack=True)
    mon.handle(T + "birth", birth())
    for i in range(3):
        mon.handle(T + "data", batch(1 + 7 * i))
    assert mon.output_closed
    assert mon.bad == 0 and mon.written == 0 and err.getvalue() == ""
    assert mon.acked == {}  # nothing written, nothing acknowledged
    t0 = time.monotonic()
    assert mon.wait(seconds=5) is False and time.monotonic() - t0 < 1  # wait() ends at once
    mon.stop()  # no second BrokenPipeError from the final flush


# --- --count --------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 3])
def test_count_writes_exactly_n_and_acks_only_those(broker, count):
    site = f"count{count}"
    prefix = f"otlink/{site}/{NODE}/"
    # this publisher's birth may be retained by the time the monitor subscribes, and it never
    # resends: --ack-wait 0 acks at first contact
    proc = monitor_proc(broker.port, "--site", site, "--format", "jsonl", "--ack",
                        "--ack-wait", "0", "--count", str(count), "--seconds", "20")
    pub = publish_until_exit(broker.port, proc, prefix, lambda i: batch(1))  # one batch of 7
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        pub.join(10)
    err = err.decode()
    assert proc.returncode == 0, err
    rows = [json.loads(x) for x in out.decode().splitlines()]
    assert [r["seq"] for r in rows] == list(range(1, count + 1)), err  # not the whole batch
    noun = "reading" if count == 1 else "readings"
    assert f"monitor: {count} {noun} written," in err, err
    # the retained ack covers only what was written, not the rest of the batch
    got: list[dict] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, *a: cl.subscribe(prefix + "ack", qos=1)
    c.on_message = lambda cl, u, msg: (got.append(decode_message(msg.topic, msg.payload)),
                                       done.set())
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        assert done.wait(5), "no retained ack"
    finally:
        c.loop_stop()
        c.disconnect()
    assert (got[0]["boot"], got[0]["seq"]) == (1, count)


def test_count_cut_in_process_acks_what_was_written():
    out = io.StringIO()
    mon = Monitor(fmt="csv", out=out, err=io.StringIO(), ack=True, count=3)
    mon.handle(T + "birth", birth())
    mon.handle(T + "data", batch(1))
    mon.handle(T + "data", batch(8))  # after the count: neither written nor acked
    assert mon.written == 3 and len(out.getvalue().splitlines()) == 1 + 3  # header + 3
    assert mon.acked == {("plant", NODE, 1): 3}
    assert mon.duplicates == 0 and mon.gaps == []


# --- share groups ---------------------------------------------------------------------------

def test_group_members_report_no_false_gaps(broker):
    site = "grouped"
    prefix = f"otlink/{site}/{NODE}/"
    c = client(broker.port)
    mons = []
    try:
        c.publish(prefix + "birth", birth(), qos=1, retain=True).wait_for_publish(5)
        errs = [io.StringIO(), io.StringIO()]
        for e in errs:
            mons.append(Monitor(port=broker.port, site=site, fmt="jsonl", out=io.StringIO(),
                                err=e, group="g1").start())
        # the retained birth arrives after the data subscription (same SUBSCRIBE order)
        for m in mons:
            assert m.wait(seconds=5, cond=lambda m: m.births), "no birth"
        for i in range(10):
            c.publish(prefix + "data", batch(1 + 3 * i, 3), qos=1).wait_for_publish(5)
        ok = mons[0].wait(seconds=5, cond=lambda _: sum(m.written for m in mons) >= 30)
        assert ok, [m.written for m in mons]
    finally:
        c.loop_stop()
        c.disconnect()
        for m in mons:
            m.stop()
    assert all(m.written > 0 for m in mons), "the broker did not split the stream"
    for m, e in zip(mons, errs):
        text = e.getvalue()
        assert m.gaps == [] and "gap:" not in text, text
        assert "gap detection is off" in text and text.count("gap detection is off") == 1
    # duplicates are still dropped in group mode
    m = mons[0]
    before = m.written
    m.handle(prefix + "data", batch(1, 3))
    m.handle(prefix + "data", batch(1, 3))
    assert m.written - before in (0, 3) and m.duplicates >= 3


def test_gap_note_counts_in_singular_and_plural():
    err = io.StringIO()
    mon = Monitor(fmt="jsonl", out=io.StringIO(), err=err)
    mon.handle(T + "birth", birth())
    mon.handle(T + "data", batch(1, 2))   # 1..2
    mon.handle(T + "data", batch(4, 2))   # 4..5: 3 missing
    mon.handle(T + "data", batch(8, 2))   # 8..9: 6..7 missing
    notes = [ln for ln in err.getvalue().splitlines() if "gap:" in ln]
    assert notes[0].endswith("missing seq 3..3 (1 reading)"), notes
    assert notes[1].endswith("missing seq 6..7 (2 readings)"), notes


# --- scrolling table ------------------------------------------------------------------------

def columns_line_up(header: str, row: str, point: str, value: str) -> None:
    assert row.index(point) == header.index("point"), (header, row)
    # values are right-aligned under the heading
    assert row.index(f" {value} ") + 1 + len(value) == header.index("value") + 5, (header, row)


def test_table_columns_fit_long_node_ids():
    out = io.StringIO()
    mon = Monitor(fmt="table", out=out)  # not a terminal: scrolling rows
    mon.handle(T + "birth", birth())
    mon.handle(T + "data", batch(1, 2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    columns_line_up(lines[0], lines[1], "pressure", "100")
    columns_line_up(lines[0], lines[2], "motor_current_phase_a", "101")
    assert lines[1].index(NODE) == lines[0].index("node")
    # a longer node id later: columns widen and the heading is written again, aligned
    other = "boiler-house-energy-meter-07"
    t2 = f"otlink/plant/{other}/"
    mon.handle(t2 + "birth", birth(other))
    mon.handle(t2 + "data", batch(1, 2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and lines[3].split() == lines[0].split()
    columns_line_up(lines[3], lines[4], "pressure", "100")
    columns_line_up(lines[3], lines[5], "motor_current_phase_a", "101")
    # rows of the first node after the widening use the new widths too
    mon.handle(T + "data", batch(3, 1))
    last = out.getvalue().splitlines()[-1]
    columns_line_up(lines[3], last, "pressure", "100")
