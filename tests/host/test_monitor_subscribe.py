"""Monitor.start() returns only when the broker has granted its subscriptions.

A CONNACK says nothing about the SUBSCRIBEs sent after it: a message published between the
two went nowhere. A relay between the monitor and a real mosquitto holds the monitor's
SUBSCRIBE packets back (or drops them), so the window is wide and certain; an ACL on the
broker refuses a subscription outright.
"""

from __future__ import annotations

import io
import socket
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest

from otlink_tools.monitor import Monitor

SUBSCRIBE = 8  # MQTT 3.1.1 §2.2.1 control packet types
SUBACK = 9


def _read_packet(sock: socket.socket) -> bytes | None:
    """One MQTT control packet (fixed header, remaining length, body), or None at EOF."""
    head = sock.recv(1)
    if not head:
        return None
    out = bytearray(head)
    n, mult = 0, 1
    while True:  # remaining length: up to 4 bytes, 7 bits each (§2.2.3)
        b = sock.recv(1)
        if not b:
            return None
        out += b
        n += (b[0] & 0x7F) * mult
        mult <<= 7
        if not b[0] & 0x80:
            break
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return None
        out += chunk
        n -= len(chunk)
    return bytes(out)


class SubscribeRelay:
    """TCP relay to a broker for one client; its SUBSCRIBE packets are held `delay` seconds
    (None: dropped). refuse: every SUBACK return code becomes 0x80, Failure (MQTT 3.1.1
    §3.9.3). Everything else passes unchanged, at once."""

    def __init__(self, port: int, delay: float | None, refuse: bool = False,
                 hold: int = SUBSCRIBE) -> None:
        self.target = port
        self.delay = delay
        self.hold = hold  # the packet type held back (SUBSCRIBE; PUBLISH = 3 for others)
        self.refuse = refuse
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.held = 0
        self._socks: list[socket.socket] = [self.srv]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            client, _ = self.srv.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        self._socks += [client, upstream]
        threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while (pkt := _read_packet(src)) is not None:
                if pkt[0] >> 4 == self.hold:
                    self.held += 1
                    if self.delay is None:
                        continue
                    time.sleep(self.delay)
                dst.sendall(pkt)
        except OSError:
            pass

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while (pkt := _read_packet(src)) is not None:
                if self.refuse and pkt[0] >> 4 == SUBACK:
                    pkt = pkt[:4] + b"\x80" * (len(pkt) - 4)  # header, id, then codes
                dst.sendall(pkt)
        except OSError:
            pass

    def close(self) -> None:
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


def _publish(port: int, topic: str, payload: bytes) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


STATE = cbor2.dumps({"v": 1, "online": True, "boot": 1})


def test_message_published_right_after_start_arrives(broker):
    relay = SubscribeRelay(broker.port, delay=0.6)
    mon = Monitor(port=relay.port, fmt="jsonl", out=io.StringIO(), ack=False, live=False)
    try:
        t0 = time.monotonic()
        mon.start(timeout=5)
        assert time.monotonic() - t0 >= 0.6  # it waited for the held SUBSCRIBEs
        assert relay.held == 3  # data, birth, state
        # not retained: only a subscription that is in place when it is published gets it
        _publish(broker.port, "otlink/s1/n1/state", STATE)
        assert mon.wait(cond=lambda m: ("s1", "n1") in m.states, seconds=5)
    finally:
        mon.stop()
        relay.close()


def test_no_suback_is_a_clear_error(broker):
    relay = SubscribeRelay(broker.port, delay=None)
    mon = Monitor(port=relay.port, fmt="jsonl", out=io.StringIO(), ack=False, live=False)
    try:
        with pytest.raises(ConnectionError, match=r"no SUBACK .* in 1 s for otlink/\+/\+/"):
            mon.start(timeout=1)
    finally:
        relay.close()


def test_refused_subscription_is_a_clear_error(broker):
    # the answer a broker gives a subscription it refuses (an ACL): return code 0x80
    relay = SubscribeRelay(broker.port, delay=0, refuse=True)
    mon = Monitor(port=relay.port, fmt="jsonl", out=io.StringIO(), live=False)
    try:
        with pytest.raises(ConnectionError,
                           match=r"refused the subscription to otlink/\+/\+/"):
            mon.start(timeout=5)
    finally:
        relay.close()
