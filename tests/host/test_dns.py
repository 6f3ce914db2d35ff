"""The boards' bounded DNS lookup (firmware/otlink/dns.py) against a real UDP DNS server
(a small RFC 1035 responder here): an A record found, an IP literal passed through, NXDOMAIN
named, a server that never answers given up on at the deadline (lwIP's own resolver waits
out its retries, past the RP2040's watchdog), and the uplink reaching a broker by name."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
from pathlib import Path

from mp import MICROPYTHON, ROOT, env

SCRIPT = Path(__file__).resolve().parent / "dns_mp.py"


def _name(b: bytes, i: int) -> tuple[str, int]:
    labels = []
    while b[i]:
        labels.append(b[i + 1:i + 1 + b[i]].decode())
        i += 1 + b[i]
    return ".".join(labels), i + 1


def serve(sock: socket.socket, stop: threading.Event) -> None:
    """Answer A queries: broker.plant.test -> 127.0.0.1; silent.* never; others NXDOMAIN."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            q, peer = sock.recvfrom(512)
        except OSError:
            continue
        qid, _flags, qd = struct.unpack(">HHH", q[:6])
        name, end = _name(q, 12)
        question = q[12:end + 4]
        if name.startswith("silent."):
            continue
        if name == "broker.plant.test":
            head = struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0)
            rr = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([127, 0, 0, 1])
            sock.sendto(head + question + rr, peer)
        else:
            sock.sendto(struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question, peer)


def test_bounded_dns_lookup_and_a_broker_by_name(broker):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()
    t = threading.Thread(target=serve, args=(sock, stop), daemon=True)
    t.start()
    try:
        res = subprocess.run([MICROPYTHON, "-X", "heapsize=256K", str(SCRIPT),
                              str(sock.getsockname()[1]), str(broker.port)],
                             capture_output=True, text=True, timeout=30, cwd=str(ROOT),
                             env=env())
    finally:
        stop.set()
        t.join()
        sock.close()
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(next(ln[7:] for ln in res.stdout.splitlines() if ln.startswith("RESULT ")))
    assert out["found"] == "127.0.0.1" and out["literal"] == "10.1.2.3", out
    assert out["nxdomain"] == "OSError 2", out  # ENOENT
    assert out["silent"] == "OSError 110" and 650 <= out["silent_ms"] < 1500, out  # ETIMEDOUT
    assert out["connected"], out
