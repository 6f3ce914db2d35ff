"""Scale-out on a real distributed engine: a 3-server NATS cluster (Debian nats-server) with
JetStream and its MQTT gateway, the agent under MicroPython publishing to the gateway, and
`otlink store --nats` sinks sharing one durable JetStream consumer into one SQLite file.
The stream's leader is SIGKILLed mid-run: every reading lands exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import warnings

import pytest

from otlink_tools.nats_cluster import NatsCluster, nats_server_binary
from otlink_tools.nats_sink import JetStreamFeed, subject_to_topic, topic_to_subject
from otlink_tools.store import Store
from otlink_tools.store_db import contiguous_top
from test_store import ACK_WAIT, Err, agent_opts, assert_all_readings, count, online_node, \
    query, wait_for
from uplink_helpers import result, start_agent
from ackkey import ACK_KEY_HEX

_MISSING = "nats-server is not installed (make debs installs Debian nats-server): the NATS " \
    "scale-out tests did not run"
if nats_server_binary() is None:  # loud: a warning in pytest's summary, not only an "s"
    warnings.warn(_MISSING, stacklevel=1)


@pytest.fixture(scope="module")
def cluster():
    if nats_server_binary() is None:
        pytest.skip(_MISSING)
    pytest.importorskip("nats", reason="nats-py missing (make venv installs it)")
    c = NatsCluster(3).start()
    yield c
    c.stop()


def _sink(url: str, c: NatsCluster, mqtt_server: str, stream: str, *extra: str):
    return subprocess.Popen(
        [sys.executable, "-m", "otlink_tools.cli", "store", "--db", url, "--nats",
         ",".join(c.urls), "--group", "sinks", "--stream", stream, "--port",
         str(c.server(mqtt_server).mqtt), "--ack-wait", str(ACK_WAIT), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, OTLINK_ACK_KEY=ACK_KEY_HEX))  # the node's ack key


def test_cli_nats_needs_group_and_urls(tmp_path, fresh_broker):
    """--nats without --group (no consumer to share) and a server that is no URL are refused
    before anything connects, naming the option."""
    base = [sys.executable, "-m", "otlink_tools.cli", "store", "--db",
            f"sqlite:{tmp_path / 'h.db'}", "--port", str(fresh_broker.port)]
    r = subprocess.run(base + ["--nats", "nats://127.0.0.1:1"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "--nats needs --group NAME" in r.stderr, r.stderr
    r = subprocess.run(base + ["--nats", "127.0.0.1:4222", "--group", "g"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "a URL wanted, e.g. nats://host:4222" in r.stderr, r.stderr
    # no server answers: start() gives up after its timeout, naming servers and error
    pytest.importorskip("nats", reason="nats-py missing (make venv installs it)")
    from otlink_tools.nats_sink import FeedError
    feed = JetStreamFeed(["nats://127.0.0.1:1", "nats://127.0.0.1:2"], "g", "otlink.*.*.data")
    notes: list[str] = []
    with pytest.raises(FeedError, match=r"nats://127.0.0.1:1, nats://127.0.0.1:2: cannot "
                                        r"connect within 1 s: .*(refused|failed)"):
        feed.start(lambda item: None, notes.append, lambda: 0, timeout=1)
    assert notes == []  # the retries are not said one by one


def test_subject_mapping():
    """The MQTT gateway's mapping: / is ., a . inside a level is //, + is *, # is >."""
    assert topic_to_subject("otlink/plant1/m7/data") == "otlink.plant1.m7.data"
    assert topic_to_subject("otlink/+/+/data") == "otlink.*.*.data"
    assert topic_to_subject("a/b.c/#") == "a.b//c.>"
    for t in ("otlink/plant1/m7/data", "a/b.c/d", "x/v1.2.3/y"):
        assert subject_to_topic(topic_to_subject(t)) == t


def test_contiguous_top():
    """A group's position: the run above the floor, over readings and rejected batches."""
    assert contiguous_top(0, [1, 2, 3, 5], []) == 3
    assert contiguous_top(0, [1, 2, 3, 7], [(4, 6)]) == 7
    assert contiguous_top(10, [1, 2, 11, 12, 14], [(3, 9), (13, 13)]) == 14
    assert contiguous_top(5, [], []) == 5


def _has_stream(c: NatsCluster, stream: str) -> bool:
    try:
        return c.stream_leader(stream) is not None
    except (RuntimeError, TimeoutError, OSError):
        return False


@pytest.mark.parametrize("how", ["share", "stream"])
def test_quiet_group_says_so(cluster, tmp_path, how):
    """NATS grants a $share subscription and delivers nothing on it; a JetStream stream that
    does not capture the data subjects delivers nothing too. Either way the sink sees the
    node online (retained birth and state) and says so within --quiet-warn, loudly."""
    srv = cluster.servers[1]
    err = Err()
    feed = None
    if how == "stream":  # a stream made for another prefix
        feed = JetStreamFeed(cluster.urls, "quiet", "other.*.*.data", stream="OTHER")
    st = Store(f"sqlite:{tmp_path / 'q.db'}", port=srv.mqtt, group="quiet", ack=False,
               feed=feed, quiet_warn=1.5, err=err).start()
    try:
        online_node(srv.mqtt, node=f"q-{how}", batches=5)  # state retained: seen at once
        assert st.wait(lambda s: s.quiet_warnings >= 1, 8), err.text()
    finally:
        st.stop()
    assert st.stored == 0
    text = err.text()
    # (it may name the other case's node, whose online state is retained on the cluster)
    assert re.search(r"WARNING: no data for \d+ s although plant1/q-\w+(, plant1/q-\w+)? "
                     r"(says it is|say they are) online", text), text
    assert ("--nats" in text) if how == "share" else ("does the stream capture" in text)


# last in this module: it kills a server of the shared cluster
def test_leader_sigkill_every_reading_once(cluster, tmp_path):
    """Two sinks share the durable consumer; the node publishes to one server's MQTT
    gateway. Mid-run one sink is SIGKILLed (what it had fetched and not committed stays
    unacknowledged: the other member must not ack the node past it), then the stream's
    leader. The node's queue drains on the surviving sink's acks (published after COMMIT
    through NATS to the node's ack topic) and the table holds every reading once."""
    url = f"sqlite:{tmp_path / 'h.db'}"
    total = 6000
    stream = "OTLINK_KILL"
    sinks = [_sink(url, cluster, "n1", stream), _sink(url, cluster, "n2", stream)]
    killed = None
    agent = None
    try:
        assert wait_for(lambda: _has_stream(cluster, stream), 15), "no stream made"
        leader = cluster.stream_leader(stream)
        # the node on a server that does not lead the stream (the node has one broker
        # address: its server dying would be a broker outage, tested elsewhere)
        node_srv = next(s for s in cluster.servers if s.name != leader)
        agent = start_agent(agent_opts(node_srv.mqtt, total, rate=1000, seconds=90))
        # bounds for a loaded host: a run with two suites on 2 cores stored 365 in 20 s
        assert wait_for(lambda: count(url) >= 1500, 60), "stuck before the sink kill"
        sinks[0].send_signal(signal.SIGKILL)
        killed_out = sinks[0].communicate()[0]
        at_sink_kill = count(url)
        del sinks[0]
        assert wait_for(lambda: count(url) >= 3000, 60), "stuck before the leader kill"
        leader = cluster.stream_leader(stream)
        if leader == node_srv.name:  # moved meanwhile: hand it on, then kill
            cluster.api(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}")
            assert wait_for(lambda: cluster.stream_leader(stream) not in (None, leader), 10)
            leader = cluster.stream_leader(stream)
        at_kill = count(url)
        cluster.kill(leader)
        killed = leader
        res = result(agent, timeout=100)
        assert wait_for(lambda: count(url) >= total, 10)
        new_leader = cluster.stream_leader(stream)
    finally:
        outs = []
        for s in sinks:
            s.send_signal(signal.SIGINT)
            outs.append(s.communicate(timeout=15)[0])
        if agent is not None and agent.poll() is None:
            agent.kill()
            outs.append(agent.communicate()[0][-2000:])
        print("\n".join(outs))  # shown when the test fails
        if killed is not None:
            cluster.restart(killed)  # the fixture's teardown stops it
    assert at_kill < total, "the kill came after the end"
    assert new_leader not in (None, leader)
    assert res["depth"] == 0 and res["produced"] == total, outs
    assert_all_readings(url, total, backlog=None)  # 0 lost, 0 twice
    assert at_sink_kill < at_kill
    assert "storing into" in killed_out  # it was up and storing when killed
    stored = int(re.search(r"(\d+) readings? stored", outs[0]).group(1))
    assert 0 < stored < total, outs  # the survivor stored part, the killed one the rest
    assert query(url, "SELECT seq FROM acks") == [(total,)]
