"""End to end with real mosquitto: agent (MicroPython) -> broker -> Monitor (host)."""

from __future__ import annotations

import io
import json
import time

import pytest

from otlink_tools.broker import Broker
from otlink_tools.monitor import Monitor
from uplink_helpers import expected_raw, result, start_agent


@pytest.fixture
def broker(tmp_path):
    b = Broker(workdir=str(tmp_path)).start()  # pytest removes old tmp_paths itself
    yield b
    b.stop()


def rows(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line]


def test_exact_values_broker_ack(broker):
    out = io.StringIO()
    mon = Monitor(port=broker.port, fmt="jsonl", out=out).start()
    try:
        agent = start_agent({"port": broker.port, "total": 1000, "until_acked": True,
                             "seconds": 30})
        assert mon.wait(count=1000, seconds=30), f"got {mon.written}"
        res = result(agent)
        # the death state is published just before the agent exits: let it arrive
        mon.wait(cond=lambda m: m.states.get(("s1", "n1"), {}).get("online") is False,
                 seconds=5)
    finally:
        mon.stop()
    assert res["depth"] == 0 and res["produced"] == 1000 and res["readings"] == 1000
    got = rows(out)
    assert [r["seq"] for r in got] == list(range(1, 1001))
    for r in got:
        pid, raw = expected_raw(r["seq"])
        assert r["pid"] == pid and r["raw"] == raw and r["point"] == f"p{pid}"
        # scale from the retained birth: odd points x0.1
        assert r["value"] == pytest.approx(raw * 0.1 if pid % 2 else raw)
        assert r["boot"] == 1 and r["err"] is None and not r["untimed"]
        assert abs(r["t_ms"] - time.time() * 1000) < 60_000
    assert mon.duplicates == 0 and mon.gaps == [] and mon.bad == 0
    st = mon.states[("s1", "n1")]
    assert st["online"] is False  # the agent published its death state when it stopped


@pytest.mark.parametrize("sig", ["kill", "stop"])
def test_consumer_ack_survives_broker_restart(broker, sig):
    """Consumer acknowledgement: nothing is lost when the broker dies mid-stream."""
    out = io.StringIO()
    mon = Monitor(port=broker.port, fmt="jsonl", out=out, ack=True).start()
    total = 4000
    try:
        agent = start_agent({"port": broker.port, "total": total, "rate": 2000, "ack": "consumer",
                             "until_acked": True, "seconds": 40, "ack_timeout_ms": 1000,
                             "capacity": 8192})
        assert mon.wait(count=1000, seconds=20)
        broker.kill() if sig == "kill" else broker.stop()
        time.sleep(0.5)
        broker.start()
        assert mon.wait(count=total, seconds=40), f"got {mon.written} of {total}"
        res = result(agent)
    finally:
        mon.stop()
    seqs = sorted(r["seq"] for r in rows(out))
    assert seqs == list(range(1, total + 1))  # every reading, exactly once after dedupe
    assert res["depth"] == 0 and res["connects"] >= 2
    for r in rows(out):
        assert r["raw"] == expected_raw(r["seq"])[1]


@pytest.mark.parametrize("sig", ["kill", "stop"])
def test_broker_ack_reconnects_after_restart(broker, sig):
    """Broker acknowledgement: the agent reconnects and carries on; what the broker held
    for the subscriber when it died may be gone (PUBACK is not durability)."""
    out = io.StringIO()
    mon = Monitor(port=broker.port, fmt="jsonl", out=out).start()
    total = 4000
    try:
        agent = start_agent({"port": broker.port, "total": total, "rate": 2000,
                             "until_acked": True, "seconds": 30, "capacity": 8192})
        assert mon.wait(count=1000, seconds=20)
        broker.kill() if sig == "kill" else broker.stop()
        time.sleep(0.5)
        broker.start()
        res = result(agent)
        time.sleep(0.5)
    finally:
        mon.stop()
    seqs = [r["seq"] for r in rows(out)]
    assert res["connects"] >= 2 and res["depth"] == 0
    assert seqs and max(seqs) == total  # data kept flowing after the restart
    assert len(set(seqs)) == len(seqs)  # duplicates (resends) were dropped
    for r in rows(out):
        assert r["raw"] == expected_raw(r["seq"])[1]


def test_backlog_replayed_historical_with_live_interleaved(broker):
    out = io.StringIO()
    mon = Monitor(port=broker.port, fmt="jsonl", out=out).start()
    backlog, live = 3000, 1000
    try:
        agent = start_agent({"port": broker.port, "backlog": backlog, "total": live,
                             "rate": 500, "replay_rate": 20, "until_acked": True,
                             "seconds": 30, "capacity": 8192, "linger_ms": 100})
        assert mon.wait(count=backlog + live, seconds=30)
        res = result(agent)
    finally:
        mon.stop()
    got = rows(out)
    assert sorted(r["seq"] for r in got) == list(range(1, backlog + live + 1))
    for r in got:
        assert r["historical"] == (r["seq"] <= backlog), r
    order = [r["seq"] for r in got]
    first_live = next(i for i, s in enumerate(order) if s > backlog)
    last_hist = max(i for i, s in enumerate(order) if s <= backlog)
    assert first_live < last_hist  # live readings went out while the backlog drained
    hist = [s for s in order if s <= backlog]
    assert hist == sorted(hist)  # backlog oldest first
    assert res["hist_batches"] == backlog // 50


def test_untimed_readings_retimed_once_clock_set(broker):
    out = io.StringIO()
    mon = Monitor(port=broker.port, fmt="jsonl", out=out).start()
    try:
        agent = start_agent({"port": broker.port, "untimed": True, "clock_after_ms": 300,
                             "backlog": 200, "total": 200, "rate": 400, "until_acked": True,
                             "seconds": 20, "linger_ms": 20, "connect_after_clock": True})
        assert mon.wait(count=400, seconds=20)
        res = result(agent)
    finally:
        mon.stop()
    got = rows(out)
    now = time.time() * 1000
    assert res["retimed"] >= 200  # at least the backlog, stamped before the clock was set
    timed = [r for r in got if not r["untimed"]]
    assert timed and all(abs(r["t_ms"] - now) < 60_000 for r in timed)
    for r in got:
        if r["untimed"]:  # only what was sent before the clock was set
            assert r["t_ms"] is None and r["uptime_ms"] < 60_000


def test_monitor_bad_payloads_reported_never_crash(broker):
    out, err = io.StringIO(), io.StringIO()
    mon = Monitor(port=broker.port, fmt="table", out=out, err=err)
    cases = [b"", b"\xff\xff", b"\xa1\x61v\x02", b"\x9f" * 50, bytes(range(256))]
    for p in cases:
        mon.handle("otlink/s/n/data", p)
    mon.handle("not/a/topic", b"\xa0")
    assert mon.bad == len(cases) + 1 and mon.written == 0
    assert "bad payload on otlink/s/n/data" in err.getvalue()


# --- umqtt.simple's limits, fixed in otlink.uplink (docs/uplink.md) -----------------------
# Runs in MicroPython: one Uplink session against the broker, driven by argv[2] (JSON).
SESSION_MP = r'''
import json, sys, time
from otlink.uplink import Uplink
from otlink.hal.clock import Clock  # the agent's clock: the uplink takes every tick from it

o = json.load(open(sys.argv[1]))
cmds = []
acks = []
# the raw uplink: acks are handed over as they come (the publisher checks signatures)
m = {"host": "127.0.0.1", "port": o["port"], "backoff_ms": [100, 200],
     "insecure_unsigned_acks": True}
try:
    from otlink.core.config import parse_mqtt
    m = parse_mqtt(m, "n1", "s1")
except ImportError:
    pass
m["prefix"] = o.get("prefix", "otlink")  # past the config's topic-length check
up = Uplink(m, {"id": "n1", "site": "s1"}, Clock(), on_ack=acks.append, on_cmd=cmds.append)
ok = up.connect(b"birth")
print("CONNECTED", ok, up.last_error)
t0 = time.ticks_ms()
sent = 0
for i in range(o.get("publish", 0)):
    up.publish(up.t_data, b"x", 1, False)
    sent += 1
pid = up.client.pid if up.client else None
deadline = time.ticks_add(time.ticks_ms(), o.get("listen_ms", 0))
while time.ticks_diff(deadline, time.ticks_ms()) > 0 and len(cmds) < o.get("want_cmds", 0):
    try:
        up.poll()
        up.publish(up.t_data, b"y", 1, False)  # data keeps flowing meanwhile
        sent += 1
    except OSError:
        if not up.connected:
            up.connect()
    time.sleep_ms(5)
print("RESULT " + json.dumps({"connected": up.connected, "connects": up.connects,
                              "failures": up.failures, "error": up.last_error, "sent": sent,
                              "pid": pid, "ms": time.ticks_diff(time.ticks_ms(), t0),
                              "cmds": [bytes(c).decode() for c in cmds],
                              "acks": len(acks), "refused": up.refused_in,
                              "topic_len": len(up.t_cmd)}))
up.close()
'''


def session(tmp_path, build="64", **opts) -> dict:
    """One Uplink session in MicroPython: the 64-bit port from source, or the 32-bit build
    (the boards' object model) with the agent frozen in."""
    from mp import run

    script = tmp_path / "session.py"
    script.write_text(SESSION_MP)
    (tmp_path / "opts.json").write_text(json.dumps(opts))
    res = run(script, str(tmp_path / "opts.json"), heap="1M" if build == "64" else "256K",
              timeout=240, build=build)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError(res.stdout + res.stderr)


@pytest.mark.parametrize("build", ["64", "32"])
def test_70000_qos1_publishes_in_one_session(broker, tmp_path, build):
    # umqtt.simple sends packet id 0 at publish 65,536; mosquitto drops the session for it.
    res = session(tmp_path, build, port=broker.port, publish=70_000)
    assert res["sent"] == 70_000
    assert res["connects"] == 1 and res["failures"] == 0 and res["connected"], res
    # 2 SUBSCRIBEs + birth + 70,000 publishes = 70,003 ids: wrapped once, 0 skipped
    assert res["pid"] == 70_003 - 65_535, res


def _paho(port: int):
    import paho.mqtt.client as mqtt

    cli = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    cli.connect("127.0.0.1", port)
    cli.loop_start()
    return cli


def test_subscription_on_a_200_byte_topic(broker, tmp_path):
    prefix = "plant-" + "x" * 184  # cmd topic: prefix/s1/n1/cmd = 200 bytes
    topic = prefix + "/s1/n1/cmd"
    assert len(topic) == 200
    cli = _paho(broker.port)
    pub = None
    try:
        import threading

        def later():
            time.sleep(1.5)  # the node is subscribed by then
            for k in range(3):
                cli.publish(topic, json.dumps({"id": "c%d" % k}), qos=1).wait_for_publish(5)

        pub = threading.Thread(target=later, daemon=True)
        pub.start()
        res = session(tmp_path, "32", port=broker.port, prefix=prefix, listen_ms=15_000,
                      want_cmds=3)
    finally:
        if pub is not None:
            pub.join(10)  # its last PUBACK may come after the node has the message
        cli.loop_stop()
        cli.disconnect()
    assert res["topic_len"] == 200
    assert res["connects"] == 1 and res["failures"] == 0, res
    assert res["cmds"] == ['{"id": "c0"}', '{"id": "c1"}', '{"id": "c2"}'], res


@pytest.mark.parametrize("size,build", [(8_000, "64"), (300_000, "64"), (300_000, "32")])
def test_oversized_cmd_and_ack_refused_session_kept(broker, tmp_path, size, build):
    # A retained oversized command is delivered at every subscribe; umqtt.simple read it
    # whole (MemoryError at 300 KB: no data batch ever left). It is read and discarded now.
    cli = _paho(broker.port)
    base = "otlink/s1/n1/"
    pub = None
    try:
        cli.publish(base + "cmd", b"{" + b"x" * size, qos=1, retain=True).wait_for_publish(5)
        import threading

        def later():
            time.sleep(1.5)
            cli.publish(base + "ack", b"\xa0" * size, qos=1).wait_for_publish(5)
            cli.publish(base + "cmd", b"\x00" * size, qos=0).wait_for_publish(5)
            cli.publish(base + "cmd", b'{"id": "small"}', qos=1).wait_for_publish(5)

        pub = threading.Thread(target=later, daemon=True)
        pub.start()
        res = session(tmp_path, build, port=broker.port, publish=10, listen_ms=20_000,
                      want_cmds=1)
        res2 = session(tmp_path, build, port=broker.port, publish=10)  # retained again
    finally:
        if pub is not None:
            pub.join(10)  # its last PUBACK may come after the node has the message
        cli.publish(base + "cmd", b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        cli.loop_stop()
        cli.disconnect()
    assert res["connects"] == 1 and res["failures"] == 0 and res["connected"], res
    assert res["cmds"] == ['{"id": "small"}'], res
    assert res["refused"] == 3 and res["sent"] > 10, res  # retained cmd, ack, cmd
    assert res2["connects"] == 1 and res2["failures"] == 0 and res2["sent"] == 10, res2
    assert res2["refused"] == 1, res2
