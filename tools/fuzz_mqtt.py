"""A hostile MQTT broker for fuzzing the node's uplink (docs/reliability.md, "Fuzzing").

A socket server that speaks just enough MQTT 3.1.1 to get the real uplink (otlink.uplink
over umqtt.simple, in MicroPython: tools/fuzz_mqtt_mp.py) into a session, then sends what
no broker should: remaining lengths that never end or claim 256 MB, packet types a client
never receives (CONNECT, SUBSCRIBE, reserved 0 and 15), a second CONNACK, SUBACKs and
PUBACKs for packets never sent, PINGRESPs with a body, PUBLISH with QoS 3, with a topic
longer than the packet, on topics the node never subscribed, payloads of 300 KB (retained
and not), truncated packets, random bytes; and before that, broken CONNACKs (refusals,
wrong lengths, other packets, silence, RST). Every session ends with a close or a reset.

    .venv/bin/python tools/fuzz_mqtt.py [-n SESSIONS] [--seed S] [--build 64|32]
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.lock = threading.Lock()
        self.sent = {k: 0 for k in self.CONNECT_PHASE + self.INJECT}
        self.sent.update(sessions=0, packets=0, suback_fuzzed=0, puback_fuzzed=0)
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
        n = 0
        for i in range(4):
            b = _recv(c, 1)
            if not b:
                return None
            n |= (b[0] & 0x7F) << (7 * i)
            if not b[0] & 0x80:
                break
        body = _recv(c, n) if n else b""
        if body is None:
            return None
        return h[0], body

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
        injects = r.randrange(1, 8)
        deadline = time.monotonic() + r.uniform(0.02, 0.3)
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
            if fuzz:
                self.count("puback_fuzzed")
                c.sendall(r.choice((b"\x40\x02\x00\x00", b"\x40\x03" + pid + b"\x00",
                                    b"\x50\x02" + pid, b"\x40\x02" + bytes([pid[0] ^ 0x80,
                                                                            pid[1]]))))
            else:
                c.sendall(b"\x40\x02" + pid)
        elif typ == 0xC0:  # PINGREQ
            c.sendall(b"\xd0\x00")

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


def run(sessions: int, seed: int = 1, build: str = "64") -> dict:
    import mp

    h = Hostile(seed)
    try:
        if build == "32":
            cmd = [mp.interpreter("32"), "-X", "heapsize=64K",
                   str(ROOT / "tools" / "fuzz_mqtt_mp.py")]
            env = mp.env(build="32")
        else:
            cmd = [mp.MICROPYTHON, "-X", "heapsize=256K", str(ROOT / "tools" / "fuzz_mqtt_mp.py")]
            env = mp.env()
        t0 = time.time()
        res = subprocess.run(cmd + [str(h.port), str(sessions)], capture_output=True, text=True,
                             env=env, timeout=3600, cwd=str(ROOT))
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
    # bounded: a few hundred bytes of dict and allocator state, not growing with sessions
    if r["heap_delta"] is None or r["heap_delta"] > 512:
        p.append(f"heap grew by {r['heap_delta']} bytes")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="sessions")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build", default="64")
    a = ap.parse_args(argv)
    r = run(a.n, a.seed, a.build)
    print(json.dumps(r, indent=1))
    return 1 if problems(r) else 0


if __name__ == "__main__":
    sys.exit(main())
