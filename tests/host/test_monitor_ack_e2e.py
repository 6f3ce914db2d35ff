"""`otlink monitor --ack` against the real agent (MicroPython) and mosquitto: a monitor that
subscribes after the node started streaming must not acknowledge past batches it never saw
(the node would drop them from its queue). It positions itself as acktrack.Track says: the
retained ack, a birth seen live, or a wait past the node's ack timeout for its resends."""

from __future__ import annotations

import io
import threading
import time

import paho.mqtt.client as mqtt

from otlink_tools.monitor import Monitor
from uplink_helpers import result, start_agent
from ackkey import ACK_KEY, ACK_KEY_HEX


def agent_opts(port: int, total: int, **more) -> dict:
    o = {"port": port, "total": total, "rate": 200, "ack": "consumer", "until_acked": True,
         "ack_key": ACK_KEY_HEX, "seconds": 40, "ack_timeout_ms": 3000, "linger_ms": 1000,
         "capacity": 16384}
    o.update(more)
    return o


def wait_node_connected(port: int, seconds: float = 15) -> None:
    """Until the node's birth is on the broker (it connected and streams from now on)."""
    got = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, *a: cl.subscribe("otlink/+/+/birth", qos=1)
    c.on_message = lambda *a: got.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert got.wait(seconds), "the node did not connect"
    finally:
        c.loop_stop()
        c.disconnect()


def written_seqs(mon: Monitor) -> list[int]:
    s = mon.seen.get(("s1", "n1", 1))
    return [] if s is None else [q for a, b in zip(s.starts, s.ends) for q in range(a, b + 1)]


def test_monitor_started_after_the_node_loses_nothing(fresh_broker):
    """A batch every 250 ms, resent after 3 s without an ack; the monitor subscribes after
    the first four batches (whose birth it sees retained only). With the first-contact wait
    the node's queue ends empty and the monitor wrote every reading. (Without the wait, acking
    the first batch seen, the node dropped the batches before it: 200 readings lost in the
    run that found it. A test cannot assert that loss reliably: it depends on timing.)"""
    wait = 4.0
    total = 1600
    agent = start_agent(agent_opts(fresh_broker.port, total))
    wait_node_connected(fresh_broker.port)
    time.sleep(1.1)
    mon = Monitor(port=fresh_broker.port, fmt="jsonl", out=io.StringIO(), err=io.StringIO(),
                  ack=True, ack_key=ACK_KEY, ack_wait=wait).start()
    try:
        res = result(agent)
        mon.wait(cond=lambda m: len(written_seqs(m)) >= total, seconds=5)
    finally:
        mon.stop()
    assert not mon._session_start  # the birth came retained: the node was streaming
    got = written_seqs(mon)
    lost = total - len(got)
    print(f"ack_wait {wait}: {lost} readings lost, node depth {res['depth']}, "
          f"ack timeouts {res['ack_timeouts']}")
    assert res["depth"] == 0 and got == list(range(1, total + 1))
    assert res["ack_timeouts"] >= 1  # the first ack waited for the node's resend


def test_monitor_with_retained_ack_acks_at_once(fresh_broker):
    """A monitor restarted while the node streams: the retained ack of the previous one
    positions it (no wait), and between the two nothing is lost."""
    total = 2400
    agent = start_agent(agent_opts(fresh_broker.port, total))
    first = Monitor(port=fresh_broker.port, fmt="jsonl", out=io.StringIO(), err=io.StringIO(),
                    ack=True, ack_key=ACK_KEY, ack_wait=60).start()
    time.sleep(1.5)  # subscribed before the node connected: it saw the birth live
    got1 = set(written_seqs(first))
    first.stop()
    assert first.acks_sent >= 1 and got1
    second = Monitor(port=fresh_broker.port, fmt="jsonl", out=io.StringIO(),
                     err=io.StringIO(), ack=True, ack_key=ACK_KEY, ack_wait=60).start()
    try:
        res = result(agent)
        second.wait(cond=lambda m: set(written_seqs(m)) | got1 >= set(range(1, total + 1)),
                    seconds=5)
    finally:
        second.stop()
    assert res["depth"] == 0
    assert got1 | set(written_seqs(second)) == set(range(1, total + 1))
