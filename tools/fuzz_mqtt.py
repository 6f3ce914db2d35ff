"""A hostile MQTT broker for fuzzing the node's uplink (docs/reliability.md, "Fuzzing").

A socket server that speaks just enough MQTT 3.1.1 to get the real uplink and publisher
(otlink.uplink over umqtt.simple, otlink.publisher in consumer-ack mode with an ack key, in
MicroPython: tools/fuzz_mqtt_mp.py) into a session, then sends what no broker should.

In session (the node must take it and keep the session): a stream of PUBLISH packets, QoS 0,
1 and 2, retained or not, DUP or not, on the ack topic (forged acks: unsigned acks naming the
very readings the node has in flight, acks signed with a wrong key, truncated or mangled
MACs, random and mutated CBOR), on the cmd topic (garbage, JSON-ish text, empty, exactly
2 KiB), on topics the node never subscribed (short, just over the node's topic length, 300
bytes), payloads over the 2 KiB the node takes in (to 64 KiB, and 300 KB now and then: read
and dropped in chunks); PINGRESPs at any point, and stray PUBACKs for ids not in flight while
the node waits for the PUBACK of its own publish. The stream is paced by the node itself:
each burst ends with a QoS 1 marker and at most two bursts are unanswered at a time.

Then, in most sessions, what ends a session: remaining lengths that never end or claim
256 MB, packet types a client never receives (CONNECT, SUBSCRIBE, reserved 0 and 15), a
second CONNACK, SUBACKs and PUBACKs for packets never sent, PINGRESPs with a body, PUBLISH
with QoS 3 or a topic longer than the packet, truncated packets, random bytes; and before
any of it, broken CONNACKs (refusals, wrong lengths, other packets, silence, RST). Every
session ends with a close or a reset. Cases are packets sent.

    .venv/bin/python tools/fuzz_mqtt.py [-n SESSIONS] [--stream MEAN] [--seed S]
                                        [--build 64|32]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

TOPIC_CMD = b"otlink/s1/n1/cmd"
TOPIC_ACK = b"otlink/s1/n1/ack"
BOOT = 3  # the boot of the node's queue (fuzz_mqtt_mp.py): forged acks name its readings
SEQS = 40  # readings in that queue (seqs 1..SEQS)
STREAM = 750  # mean in-session packets per session (the full run)


def varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int = 0, retain: bool = False,
            pid: int = 7) -> bytes:
    body = struct.pack(">H", len(topic)) + topic + (struct.pack(">H", pid) if qos else b"")
    return bytes([0x30 | qos << 1 | int(retain)]) + varlen(len(body) + len(payload)) + body \
        + payload


class Hostile:
    """Per-session behaviour drawn from one seeded generator; counts what it sent."""

    CONNECT_PHASE = ("close", "rst", "stall", "connack_bad_len", "connack_refused",
                     "connack_other_packet", "garbage", "connack_bad_varlen", "connack_half")
    INJECT = ("cmd_ok", "ack_ok", "other_topic", "huge_declared", "big_cmd", "big_cmd_retained",
              "topic_over_length", "qos3", "bad_varlen", "unexpected_type", "second_connack",
              "pingresp_body", "puback_unsolicited", "suback_unsolicited", "random_bytes",
              "truncated", "empty_cmd", "cmd_at_limit", "cmd_over_limit")

    STREAM = ("ack_unsigned", "ack_wrong_key", "ack_mac_mangled", "ack_garbage", "cmd_garbage",
              "cmd_2k", "other_topic_short", "topic_long", "payload_over_2k", "payload_300k",
              "pingresp", "stray_puback")

    def __init__(self, seed: int, stream: int = STREAM) -> None:
        self.r = random.Random(seed)
        self.stream = stream
        self.lock = threading.Lock()
        self.sent = {k: 0 for k in self.CONNECT_PHASE + self.INJECT + self.STREAM}
        self.sent.update(sessions=0, packets=0, suback_fuzzed=0, puback_fuzzed=0,
                         in_session=0, qos1=0, qos2=0, retained=0, markers=0, data_in=0,
                         state_in=0, dropped_by_node=0, streams_done=0, acks_sent=0)
        self._pid = 0
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(32)
        self.port = self.ls.getsockname()[1]
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def count(self, k: str, packets: int = 1) -> None:
        with self.lock:
            self.sent[k] += 1
            self.sent["packets"] += packets

    def _accept(self) -> None:
        self.ls.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.ls.accept()
            except OSError:
                continue
            # no Nagle: a PUBACK after a stray one would wait for the node's delayed ACK
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.sent["sessions"] += 1
                seed = self.r.getrandbits(32)
            # one session at a time: the node has one
            try:
                self._session(c, random.Random(seed))
            except OSError:
                pass
            finally:
                try:
                    c.close()
                except OSError:
                    pass

    def _read_packet(self, c: socket.socket) -> tuple[int, bytes] | None:
        h = _recv(c, 1)
        if not h:
            return None
        return _rest(c, h[0])

    def _session(self, c: socket.socket, r: random.Random) -> None:
        c.settimeout(1.0)
        if self._read_packet(c) is None:  # CONNECT
            return
        if r.random() < 0.3:
            k = r.choice(self.CONNECT_PHASE)
            self.count(k)
            if k == "rst":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif k == "stall":
                time.sleep(0.45)
            elif k == "connack_bad_len":
                c.sendall(b"\x20\x03\x00\x00\x00")
            elif k == "connack_refused":
                c.sendall(b"\x20\x02\x00" + bytes([r.choice((1, 2, 3, 4, 5, 6, 0x80, 0xFF))]))
            elif k == "connack_other_packet":
                c.sendall(r.choice((b"\x90\x03\x00\x01\x00", b"\xd0\x00", b"\x30\x02\x00\x00",
                                    b"\x10\x00")))
            elif k == "garbage":
                c.sendall(bytes(r.getrandbits(8) for _ in range(r.randrange(1, 64))))
            elif k == "connack_bad_varlen":
                c.sendall(b"\x20\xff\xff\xff\xff\xff")
            else:
                c.sendall(b"\x20")
            return
        c.sendall(b"\x20\x02\x00\x00")
        if not self._stream(c, r):
            return
        injects = r.randrange(1, 8)
        deadline = time.monotonic() + r.uniform(0.01, 0.1)
        c.settimeout(0.02)
        while time.monotonic() < deadline:
            try:
                p = self._read_packet(c)
            except socket.timeout:
                p = ()
            if p is None:
                return
            if p:
                self._answer(c, r, *p)
            if injects and (not p or r.random() < 0.3):
                injects -= 1
                if self._inject(c, r):
                    return
        if r.random() < 0.5:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _answer(self, c: socket.socket, r: random.Random, typ: int, body: bytes) -> None:
        fuzz = r.random() < 0.15
        if typ == 0x82 and len(body) >= 2:  # SUBSCRIBE
            pid = body[0:2]
            if fuzz:
                self.count("suback_fuzzed")
                c.sendall(r.choice((b"\x90\x03" + bytes([pid[0] ^ 1, pid[1]]) + b"\x01",
                                    b"\x90\x03" + pid + b"\x80", b"\x90\x02" + pid,
                                    b"\x90\x05" + pid + b"\x01\x01\x01")))
            else:
                c.sendall(b"\x90\x03" + pid + b"\x01")
        elif typ & 0xF0 == 0x30 and (typ >> 1) & 3 == 1 and len(body) >= 2:  # PUBLISH QoS 1
            tl = body[0] << 8 | body[1]
            pid = body[2 + tl:4 + tl]
            self._count_in(body[2:2 + tl])
            if fuzz:
                self.count("puback_fuzzed")
                c.sendall(r.choice((b"\x40\x02\x00\x00", b"\x40\x03" + pid + b"\x00",
                                    b"\x50\x02" + pid, b"\x40\x02" + bytes([pid[0] ^ 0x80,
                                                                            pid[1]]))))
            else:
                c.sendall(b"\x40\x02" + pid)
        elif typ == 0xC0:  # PINGREQ
            c.sendall(b"\xd0\x00")

    def _count_in(self, topic: bytes) -> None:
        with self.lock:
            if topic.endswith(b"/data"):
                self.sent["data_in"] += 1
            elif topic.endswith(b"/state"):
                self.sent["state_in"] += 1

    # ---- in session: what the node must take without losing the session -----------------

    def _stream(self, c: socket.socket, r: random.Random) -> bool:
        """Send about `stream` survivable packets (uniform 0..2*stream), paced by the node's
        PUBACKs of the burst markers. False when the node dropped the session meanwhile
        (counted: it must not), True when the stream is done."""
        budget = r.randrange(0, 2 * self.stream + 1) if self.stream else 0
        if not budget:
            return True
        markers: list[int] = []  # QoS 1 burst ends not yet acknowledged by the node
        c.settimeout(0.002)
        buf = b""
        t_end = time.monotonic() + 60  # a node that stops reading fails the run, no hang
        last = time.monotonic()
        while (budget or markers) and time.monotonic() < t_end:
            # wait for the node only when the window is full (or the stream is all sent)
            wait = 0 if budget and len(markers) < 2 else 0.002
            h = None
            if select.select([c], [], [], wait)[0]:
                try:
                    h = c.recv(1)
                except OSError:
                    h = b""
            if h == b"":
                self.count("dropped_by_node", 0)
                return False
            if h:
                p = self._read_rest(c, h[0])
                if p is None:
                    self.count("dropped_by_node", 0)
                    return False
                typ, body = p
                last = time.monotonic()
                if typ == 0xE0:
                    return False  # DISCONNECT: the node's run is over (fuzz_mqtt_mp.py)
                if typ == 0x40 and len(body) == 2:
                    pid = body[0] << 8 | body[1]
                    if pid in markers:
                        markers.remove(pid)
                elif typ & 0xF0 == 0x30 and (typ >> 1) & 3 == 1:
                    tl = body[0] << 8 | body[1]
                    pid = body[2 + tl:4 + tl]
                    self._count_in(body[2:2 + tl])
                    # before the PUBACK the node waits for: PINGRESPs and PUBACKs of other ids
                    for _ in range(r.choice((0, 0, 0, 1, 2, 5)) if budget else 0):
                        if r.random() < 0.5:
                            other = (pid[0] << 8 | pid[1]) ^ r.randrange(1, 0x10000)
                            c.sendall(b"\x40\x02" + struct.pack(">H", other))
                            self.count("stray_puback")
                        else:
                            c.sendall(b"\xd0\x00")
                            self.count("pingresp")
                        self.count("in_session", 0)
                        budget = max(0, budget - 1)
                    c.sendall(b"\x40\x02" + pid)
                elif typ == 0x82 and len(body) >= 2:
                    c.sendall(b"\x90\x03" + body[0:2] + b"\x01")
                elif typ == 0xC0:
                    c.sendall(b"\xd0\x00")
                continue  # answer everything waiting before sending more
            if budget and len(markers) < 2:
                k = min(budget, r.randrange(1, 65))
                buf = b"".join(self._survivable(r) for _ in range(k - 1))
                self._pid = self._pid % 0xFFFF + 1
                markers.append(self._pid)
                buf += publish(r.choice((TOPIC_ACK, TOPIC_CMD, b"otlink/s1/n1/x")),
                               os.urandom(r.randrange(0, 40)), 1, pid=self._pid)
                self.count("markers", 0)
                with self.lock:
                    self.sent["packets"] += 1
                    self.sent["qos1"] += 1
                    self.sent["in_session"] += k
                budget -= k
                try:
                    c.sendall(buf)
                except OSError:
                    self.count("dropped_by_node", 0)
                    return False
            elif time.monotonic() - last > 5:
                break  # the node went quiet with markers unanswered: judged by its results
        self.count("streams_done", 0)
        return True

    def _read_rest(self, c: socket.socket, h: int) -> tuple[int, bytes] | None:
        c.settimeout(1.0)
        try:
            return _rest(c, h)
        except OSError:
            return None
        finally:
            c.settimeout(0.002)

    def _ack(self, r: random.Random) -> tuple[str, bytes]:
        seq = r.choice((r.randrange(1, SEQS + 1), r.randrange(0, 1 << 32), SEQS, 1))
        boot = BOOT if r.random() < 0.8 else r.randrange(0, 1 << 32)
        plain = b"\xa3\x61v\x01\x61b" + _uint(boot) + b"\x61s" + _uint(seq)
        k = r.random()
        if k < 0.3:
            return "ack_unsigned", plain
        if k < 0.55:
            key = os.urandom(r.choice((16, 32, 64)))
            tag = hmac.new(key, TOPIC_ACK + b"\n" + plain, hashlib.sha256).digest()
            return "ack_wrong_key", b"\xa4" + plain[1:] + b"\x61m\x58\x20" + tag
        if k < 0.8:
            tag = bytearray(os.urandom(32))
            m = b"\xa4" + plain[1:] + b"\x61m\x58" + bytes([r.choice((32, 31, 33, 0))]) \
                + bytes(tag[:r.choice((32, 32, 31, 0))])
            return "ack_mac_mangled", m
        g = bytearray(plain + b"\x61m\x58\x20" + os.urandom(32))
        for _ in range(r.randrange(0, 4)):
            g[r.randrange(len(g))] = r.getrandbits(8)
        if r.random() < 0.3:
            g = bytearray(os.urandom(r.randrange(0, 80)))
        return "ack_garbage", bytes(g)

    def _survivable(self, r: random.Random) -> bytes:
        """One packet the node must take in session (or answer) and stay connected."""
        k = r.random()
        topic = None
        if k < 0.35:
            kind, payload = self._ack(r)
            topic = TOPIC_ACK
            with self.lock:
                self.sent["acks_sent"] += 1
        elif k < 0.55:
            kind, topic = "cmd_garbage", TOPIC_CMD
            payload = r.choice((os.urandom(r.randrange(0, 300)),
                                b'{"op":"write","point":%d,"value":%r}' % (
                                    r.randrange(-5, 70000), r.choice((1, -1e999, "x", None))),
                                b"{" * r.randrange(1, 2000), b""))
        elif k < 0.6:
            kind, topic, payload = "cmd_2k", TOPIC_CMD, os.urandom(2048)
        elif k < 0.7:
            kind = "other_topic_short"
            topic = r.choice((b"otlink/s1/n1/ac", b"otlink/s1/n1/acK", b"", b"#", b"\x00" * 16,
                              os.urandom(r.randrange(0, 17))))
            payload = os.urandom(r.randrange(0, 64))
        elif k < 0.78:
            kind = "topic_long"
            topic = r.choice((TOPIC_ACK + b"x", TOPIC_CMD + b"/x", os.urandom(300),
                              b"otlink/s1/n1/x" * 40))
            payload = os.urandom(r.randrange(0, 64))
        elif k < 0.82:
            kind = "payload_over_2k"
            topic = r.choice((TOPIC_ACK, TOPIC_CMD, b"otlink/s1/n1/x"))
            payload = os.urandom(r.choice((2049, 2050, 4096, r.randrange(2049, 8192),
                                           r.randrange(2049, 65536))))
        elif k < 0.8203:
            kind = "payload_300k"
            topic = r.choice((TOPIC_ACK, TOPIC_CMD))
            payload = os.urandom(300 * 1024)
        else:
            self.count("pingresp")
            return b"\xd0\x00"
        qos = r.choice((0, 0, 1, 1, 2))
        retain = r.random() < 0.2
        pkt = bytearray(publish(topic, payload, qos, retain, pid=r.randrange(1, 0x10000)))
        if r.random() < 0.1:
            pkt[0] |= 0x08  # DUP
        with self.lock:
            self.sent[kind] += 1
            self.sent["packets"] += 1
            self.sent["qos1"] += qos == 1
            self.sent["qos2"] += qos == 2
            self.sent["retained"] += retain
        return bytes(pkt)

    def _inject(self, c: socket.socket, r: random.Random) -> bool:
        """Send one hostile packet; True when the session ends with it."""
        k = r.choice(self.INJECT)
        self.count(k)
        if k == "cmd_ok":
            c.sendall(publish(TOPIC_CMD, b'{"op":"write"}', r.choice((0, 1))))
        elif k == "ack_ok":
            c.sendall(publish(TOPIC_ACK, b"\xa3\x61v\x01\x61b\x01\x61s\x01", r.choice((0, 1))))
        elif k == "other_topic":
            c.sendall(publish(b"otlink/s1/n1/x" * r.choice((1, 10, 300)), b"zz", 1))
        elif k == "huge_declared":
            c.sendall(b"\x30\xff\xff\xff\x7f\x00\x10" + TOPIC_CMD + b"abc")
            time.sleep(r.choice((0, 0.05)))
            return True
        elif k in ("big_cmd", "big_cmd_retained"):
            c.sendall(publish(TOPIC_CMD, os.urandom(300 * 1024), 1, k.endswith("retained")))
        elif k == "topic_over_length":
            c.sendall(b"\x30\x06\x00\xff" + b"abcd")
        elif k == "qos3":
            c.sendall(b"\x36\x06\x00\x02ab\x00\x01")
        elif k == "bad_varlen":
            c.sendall(r.choice((b"\x30\xff\xff\xff\xff\x7f", b"\xd0\xff\xff\xff\xff\x01",
                                b"\x90\x80\x80\x80\x80\x80")))
        elif k == "unexpected_type":
            c.sendall(r.choice((b"\x10\x00", b"\x82\x05\x00\x01\x00\x00\x00", b"\xb0\x02\x00\x01",
                                b"\x00\x00", b"\xf0\x00", b"\x62\x02\x00\x01", b"\xc0\x00",
                                b"\xe0\x00", b"\xa2\x02\x00\x01", b"\x70\x02\x00\x01")))
        elif k == "second_connack":
            c.sendall(b"\x20\x02\x00\x00")
        elif k == "pingresp_body":
            c.sendall(b"\xd0\x05hello")
        elif k == "puback_unsolicited":
            c.sendall(b"\x40\x02" + os.urandom(2))
        elif k == "suback_unsolicited":
            c.sendall(b"\x90\x03" + os.urandom(2) + b"\x00")
        elif k == "random_bytes":
            c.sendall(os.urandom(r.randrange(1, 200)))
        elif k == "truncated":
            p = publish(TOPIC_CMD, b'{"op":"write","point":1,"value":2}', 1)
            c.sendall(p[:r.randrange(1, len(p))])
            return True
        elif k == "empty_cmd":
            c.sendall(publish(TOPIC_CMD, b"", 1, True))
        elif k == "cmd_at_limit":
            c.sendall(publish(TOPIC_CMD, b"x" * 2048, 1))
        else:
            c.sendall(publish(TOPIC_CMD, b"x" * 2049, 1))
        return False

    def close(self) -> None:
        self.stop.set()
        self.t.join(3)
        self.ls.close()


def _uint(v: int) -> bytes:
    """A CBOR unsigned integer (major type 0), shortest form."""
    if v < 24:
        return bytes([v])
    if v < 0x100:
        return bytes([0x18, v])
    if v < 0x10000:
        return b"\x19" + struct.pack(">H", v)
    return b"\x1a" + struct.pack(">I", v)


def _rest(c: socket.socket, h: int) -> tuple[int, bytes] | None:
    """The packet whose first byte h was read: its remaining length, then its body."""
    n = 0
    for i in range(4):
        b = _recv(c, 1)
        if not b:
            return None
        n |= (b[0] & 0x7F) << (7 * i)
        if not b[0] & 0x80:
            break
    body = _recv(c, n) if n else b""
    return None if body is None else (h, body)


def _recv(c: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            d = c.recv(n - len(buf))
        except socket.timeout:
            if not buf:
                raise
            continue
        if not d:
            return None
        buf += d
    return buf


def run(sessions: int, seed: int = 1, build: str = "64", stream: int = STREAM) -> dict:
    """sessions: connections the node goes through; stream: mean in-session packets each."""
    import mp
    from test_firmware import compile_tests

    h = Hostile(seed, stream)
    try:
        tests = compile_tests()  # the RAM queue (tests/firmware/ramqueue.py) as bytecode
        if build == "32":
            cmd = [mp.interpreter("32"), "-X", "heapsize=64K",
                   str(ROOT / "tools" / "fuzz_mqtt_mp.py")]
            env = mp.env(tests, build="32")
        else:
            cmd = [mp.MICROPYTHON, "-X", "heapsize=256K", str(ROOT / "tools" / "fuzz_mqtt_mp.py")]
            env = mp.env(tests)
        t0 = time.time()
        res = subprocess.run(cmd + [str(h.port), str(sessions)], capture_output=True, text=True,
                             env=env, timeout=7200, cwd=str(ROOT))
        out = res.stdout + res.stderr
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        r = json.loads(line[7:]) if line else {"error": out[-2000:]}
        r["returncode"] = res.returncode
        r["seconds"] = round(time.time() - t0, 1)
    finally:
        h.close()
    r["broker_sent"] = dict(h.sent)
    r["build"] = build
    heap = r.get("heap_free") or []
    r["heap_delta"] = heap[0] - heap[-1] if len(heap) == 2 else None
    return r


def problems(r: dict) -> list[str]:
    p = []
    if "error" in r or r.get("returncode"):
        p.append("the uplink process failed: " + str(r.get("error", r.get("returncode")))[-500:])
        return p
    if r["other_exceptions"]:
        p.append(f"exceptions other than OSError: {r['other_exceptions']}")
    if r["oversized_handed_in"]:
        p.append("a payload over 2 KiB was handed to the command handler")
    sent = r.get("broker_sent", {})
    # the broker holds no ack key: every ack it sent is forged, none may drop a reading
    if r["acks_taken"] or r["queue_depth"] != r["queue_depth0"] \
            or r["queue_first"] != r["queue_first0"]:
        p.append(f"forged acks dropped readings: {r['acks_taken']} taken, queue "
                 f"{r['queue_first0']}+{r['queue_depth0']} -> {r['queue_first']}+"
                 f"{r['queue_depth']}")
    if r["acks_forged"] != r["acks_in"]:
        p.append(f"{r['acks_in']} acks reached the publisher, {r['acks_forged']} refused")
    if sent.get("acks_sent") and not r["acks_forged"]:
        p.append("no forged ack reached the publisher")
    if sent.get("dropped_by_node"):
        p.append(f"the node dropped {sent['dropped_by_node']} sessions during survivable "
                 "traffic")
    if sent.get("in_session") and (not r["batches_last_3q"] or not sent.get("data_in")):
        p.append("the node stopped publishing data")
    # bounded: a few hundred bytes of dict and allocator state, not growing with sessions
    if r["heap_delta"] is None or r["heap_delta"] > 512:
        p.append(f"heap grew by {r['heap_delta']} bytes")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="sessions")
    ap.add_argument("--stream", type=int, default=STREAM,
                    help="mean in-session packets per session")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build", default="64")
    a = ap.parse_args(argv)
    r = run(a.n, a.seed, a.build, a.stream)
    print(json.dumps(r, indent=1))
    return 1 if problems(r) else 0


if __name__ == "__main__":
    sys.exit(main())
