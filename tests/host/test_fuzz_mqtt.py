"""The node's uplink and publisher against a hostile broker (tools/fuzz_mqtt.py; `make fuzz`
runs more sessions and longer in-session streams): in session, forged acks (unsigned, wrong
key, mangled MACs, garbage), garbage and oversized payloads on cmd, ack and foreign topics,
QoS 0/1/2, stray PUBACKs and PINGRESPs, which the node must take without losing the session;
then broken CONNACKs, malformed lengths, unexpected packet types, 300 KB payloads, truncated
packets, random bytes. The uplink never raises anything but OSError, never hands the command
handler a payload over 2 KiB, no forged ack drops a reading, the node keeps publishing, its
heap does not grow, and every failure is reported as a clear one-line error (what the node
logs and puts in its state)."""

from __future__ import annotations

import sys

import pytest

from mp import ROOT, interpreter

sys.path.insert(0, str(ROOT / "tools"))
import fuzz_mqtt  # noqa: E402


@pytest.mark.parametrize("build", ["64", "32"])
def test_uplink_survives_a_hostile_broker(build):
    interpreter(build)  # skips the 32-bit case when its toolchain is absent
    r = fuzz_mqtt.run(80, seed=11, build=build, stream=25)
    assert fuzz_mqtt.problems(r) == [], r
    sent = r["broker_sent"]
    # the in-session stream reached the publisher: forged acks refused, the session kept
    assert sent["in_session"] > 500 and sent["dropped_by_node"] == 0, sent
    assert r["acks_forged"] > 50 and r["acks_taken"] == 0, r
    assert r["queue_depth"] == r["queue_depth0"], r
    assert r["sessions"] >= 80 and r["connects"] > 12, r
    assert r["cmds_in"] > 0 and r["refused_in"] > 0, r  # good ones in, oversized ones out
    # every error is one the node can explain: no Python internals in last_error
    unclear = [e for e in list(r["errors"]) + r["errors_late"] if "Error" in e or "errno" in e]
    assert unclear == [], unclear
    assert any("protocol error" in e for e in r["errors"]), r["errors"]
