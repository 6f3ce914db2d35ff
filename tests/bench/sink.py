"""A consumer that cannot be the bottleneck of a benchmark: a bare MQTT 3.1.1 subscriber.

It reads the broker's stream in large chunks, splits it into packets, and keeps
(arrival time, topic, payload) for every PUBLISH; nothing is decoded while the benchmark
runs. The caller decodes afterwards with the real decoder (otlink_tools.decode), so
readings are counted as received, duplicates removed, and delivery latency taken from
each reading's own timestamp.

ack=True makes it an acknowledging consumer (the product's "consumer" delivery mode): for
each data batch it reads only the batch header (boot "b", first "s", last "e" seq) and
publishes, retained at QoS 1, the highest contiguous seq per node and boot, as
`otlink monitor --ack` does after writing its rows. Arrival time is the moment the chunk
holding the packet was read (monotonic clock and wall clock both kept).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import cbor2

from otlink_tools.acktrack import sign_ack
from otlink_tools.decode import encode_ack


def _rlen(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _rlen(len(body)) + body


def _uint(body: bytes, i: int) -> tuple[int, int]:
    ai = body[i] & 0x1F
    if body[i] >> 5 != 0:
        raise ValueError("unsigned integer wanted")
    if ai < 24:
        return ai, i + 1
    n = 1 << (ai - 24)
    return int.from_bytes(body[i + 1: i + 1 + n], "big"), i + 1 + n


def _header(body: bytes) -> tuple[int, int, int]:
    """(boot, first seq, last seq) of a data batch, read from its header only: the encoder
    writes the map keys v, b, s, e first (firmware/otlink/core/payload.py, finish()). Any
    other layout falls back to a full decode."""
    try:
        if body[0] != 0xA7:
            raise ValueError
        i, got = 1, {}
        for key in "vbse":
            if body[i] != 0x61 or chr(body[i + 1]) != key:
                raise ValueError
            got[key], i = _uint(body, i + 2)
        return got["b"], got["s"], got["e"]
    except (ValueError, IndexError):
        m = cbor2.loads(body)
        return m["b"], m["s"], m["e"]


class Sink(threading.Thread):
    def __init__(self, port: int, topics: list[str], ack: bool = False, qos: int = 1,
                 host: str = "127.0.0.1", client_id: str | None = None,
                 ack_key: bytes | None = None):
        super().__init__(daemon=True)
        self.topics, self.ack, self.qos = topics, ack, qos
        self.ack_key = ack_key  # the node's mqtt.ack_key: acks signed as the monitor signs
        self.msgs: list[tuple[float, float, str, bytes]] = []  # (monotonic, wall, topic, body)
        self.count = 0
        self.data_readings = 0  # from batch headers (s..e), duplicates included
        self.error: BaseException | None = None
        self._stop_flag = False
        self._pid = 0
        self._next: dict[tuple[str, int], int] = {}  # (ack topic, boot) -> next seq wanted
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        cid = client_id or f"sink{time.monotonic_ns() % 10**9}"
        # CONNECT: MQTT 3.1.1, clean session, keepalive 0 (no pings needed)
        body = _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _str(cid)
        self.sock.sendall(_packet(0x10, body))
        connack = self._read_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"sink: broker refused the connection: {connack.hex()}")
        subs = b"".join(_str(t) + bytes([qos]) for t in topics)
        self.sock.sendall(_packet(0x82, struct.pack("!H", 1) + subs))
        suback = self._read_exact(4 + len(topics))  # 0x90, length, packet id, one code per topic
        if suback[0] != 0x90:
            raise RuntimeError(f"sink: no SUBACK: {suback.hex()}")
        self.sock.settimeout(None)

    def _read_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise RuntimeError("sink: broker closed the connection")
            out += chunk
        return out

    def _send_ack(self, topic: str, boot: int, seq: int, out: list[bytes]) -> None:
        self._pid = self._pid % 65535 + 1
        ack = encode_ack(boot, seq)
        if self.ack_key is not None:
            ack = sign_ack(self.ack_key, topic, ack)
        body = _str(topic) + struct.pack("!H", self._pid) + ack
        out.append(_packet(0x33, body))  # PUBLISH, QoS 1, retained

    def _batch_header(self, topic: str, body: bytes, out: list[bytes]) -> None:
        try:
            b, s, e = _header(body)
        except Exception:  # noqa: BLE001 - counted by the decode afterwards
            return
        self.data_readings += (e - s) % 2**32 + 1
        if not self.ack:
            return
        at = topic[: -len("data")] + "ack"
        key = (at, b)
        nxt = self._next.get(key)
        if nxt is None or s <= nxt <= e + 1:
            if nxt is None or e + 1 > nxt:
                self._next[key] = e + 1
                self._send_ack(at, b, e, out)

    def run(self) -> None:
        buf = bytearray()
        try:
            while not self._stop_flag:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                mono, wall = time.monotonic(), time.time()
                buf += chunk
                out: list[bytes] = []
                i, n = 0, len(buf)
                while True:
                    if n - i < 2:
                        break
                    kind = buf[i]
                    ln, mul, j = 0, 1, i + 1
                    while j < n:
                        b = buf[j]
                        ln += (b & 0x7F) * mul
                        mul <<= 7
                        j += 1
                        if not b & 0x80:
                            break
                    else:
                        break
                    if j + ln > n:
                        break
                    if kind >> 4 == 3:
                        tl = (buf[j] << 8) | buf[j + 1]
                        topic = bytes(buf[j + 2: j + 2 + tl]).decode()
                        p = j + 2 + tl
                        q = (kind >> 1) & 3
                        if q:
                            out.append(b"\x40\x02" + bytes(buf[p: p + 2]))  # PUBACK
                            p += 2
                        body = bytes(buf[p: j + ln])
                        self.msgs.append((mono, wall, topic, body))
                        self.count += 1
                        if topic.endswith("/data") and body[:1] != b"{":
                            self._batch_header(topic, body, out)
                    i = j + ln
                del buf[:i]
                if out:
                    self.sock.sendall(b"".join(out))
        except OSError as e:
            if not self._stop_flag:
                self.error = e
        except Exception as e:  # noqa: BLE001 - reported to the bench
            self.error = e

    def wait(self, pred, seconds: float, stop=None) -> bool:
        """Poll pred() every 10 ms for up to `seconds` (or until stop() is true)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if pred():
                return True
            if stop is not None and stop():
                return pred()
            time.sleep(0.01)
        return pred()

    def close(self) -> None:
        self._stop_flag = True
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.is_alive():
            self.join(5)
