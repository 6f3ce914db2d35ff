"""Baud-paced RS-485 line between two ptys, with fault injection.

A pty has no baud rate, so a master talking to a simulated slave through one would be
measured against nothing. The relay sits between two ptys (agent side and device side) and
delivers every byte 11 bit-times after the previous one, like the wire at the configured baud
(Modbus RTU: 11 bits per character, serial line spec section 2.5.1). It also

* measures the slave's turnaround (last request byte delivered -> first response byte seen),
  the part of a transaction the master cannot shorten;
* injects faults per frame: corrupt bytes (a flipped bit, or with corrupt_mode "byte" a random
  value), drop, delay, truncate, add garbage, answer as the
  wrong slave, and keep slaves silent (dead) - each counted by kind;
* can echo the master's bytes back to it (transceivers that hear themselves).

Use from tests: ``with Relay(baud=9600, faults={...}) as r: ... r.agent_port, r.device_port,
r.stats()``. It runs as its own process so its timing is not disturbed by the test's threads.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

from otlink_tools.modbus_probe import crc16  # the host's one CRC-16/MODBUS

FAULT_KINDS = ("corrupt", "drop", "delay", "truncate", "garbage", "wrong_slave")


def _complete(frame: bytearray) -> bool:
    n = len(frame)
    return n >= 4 and crc16(bytes(frame[:-2])) == frame[-2] | (frame[-1] << 8)


class Line:
    """The relay loop (runs in the relay process)."""

    def __init__(self, baud: int, faults: dict, seed: int, bits: int = 11):
        self.char = bits / baud if baud else 0.0
        self.faults = faults
        self.rng = random.Random(seed)
        self.a_m, a_s = os.openpty()
        self.d_m, d_s = os.openpty()
        for fd in (a_s, self.a_m, d_s, self.d_m):
            tty.setraw(fd)
        self.agent_port = os.ttyname(a_s)
        self.device_port = os.ttyname(d_s)
        self._keep = (a_s, d_s)  # keep the slave ends open so the masters never see EOF
        # per direction: pending [(due, byte)], time the line is busy until
        self.q = {self.a_m: [], self.d_m: []}
        self.busy = {self.a_m: 0.0, self.d_m: 0.0}
        self.last_rx = {self.a_m: 0.0, self.d_m: 0.0}
        self.gap = max(3.5 * self.char, 0.00175) if baud else 0.0005
        self.req_delivered = None  # time the last request byte reached the device
        self.awaiting = False
        self.req_arrival = 0.0
        self.turn: list[float] = []
        self.idle: list[float] = []
        self.log: list = []
        self.resp_done = None  # due time of the last response byte delivered to the master
        self.count = {k: 0 for k in FAULT_KINDS}
        self.count.update(requests=0, responses=0, req_corrupted=0, resp_corrupted=0,
                          silenced=0, req_chars=0, resp_chars=0, echo_chars=0, late=0,
                          unsolicited=0, overtaken=0)
        # answers slower than this are counted as "late" (the master may have given up)
        self.late_s = faults.get("late_ms", 1e9) / 1000.0
        self.dead = set(faults.get("dead", ()))
        self.echo = bool(faults.get("echo", False))
        self.req_frame = bytearray()
        self.resp_frame = bytearray()
        self.resp_start = 0.0

    # -- faults --
    def _p(self, kind: str) -> bool:
        p = self.faults.get(kind, 0)
        if isinstance(p, (list, tuple)):
            p = p[0]
        return p > 0 and self.rng.random() < p

    def _corrupt(self, data: bytearray, direction: str) -> bool:
        p = self.faults.get("corrupt_" + direction, self.faults.get("corrupt", 0))
        # "bit": one flipped bit per hit byte, what a noise spike does to a character;
        # "byte": the byte replaced by a random other value (a harsher model)
        bit_mode = self.faults.get("corrupt_mode", "bit") == "bit"
        hit = False
        for i in range(len(data)):
            if p and self.rng.random() < p:
                data[i] ^= (1 << self.rng.randrange(8)) if bit_mode else self.rng.randrange(1, 256)
                hit = True
        return hit

    def _request(self, data: bytearray, now: float) -> None:
        """A complete request frame from the master."""
        self.count["requests"] += 1
        self.count["req_chars"] += len(data)
        if self.resp_done is not None:
            # silence the master left after the last response byte reached it
            self.idle.append(now - self.resp_done)
            self.resp_done = None
        if self.echo:
            self._schedule(self.a_m, bytes(data), now, count=False)
            self.count["echo_chars"] += len(data)
        if data and data[0] in self.dead:
            self.count["silenced"] += 1
            # the bytes still take wire time (the line is busy), nobody answers
            self.busy[self.d_m] = max(self.busy[self.d_m], now) + len(data) * self.char
            return
        self.req_arrival = now
        if self.awaiting:
            self.count["overtaken"] += 1  # the master asked again before an answer came
        orig = bytes(data)
        if self._corrupt(data, "req"):
            self.count["req_corrupted"] += 1
            if self.faults.get("log"):
                self.log.append(["req*", bytes(data).hex(), bytes(orig).hex()])
        self._schedule(self.d_m, bytes(data), now)
        self.awaiting = True

    def _response(self, data: bytearray, now: float) -> None:
        self.count["responses"] += 1
        self.count["resp_chars"] += len(data)
        delay = 0.0
        if self._p("drop"):
            self.count["drop"] += 1
            return
        if self._p("wrong_slave"):
            self.count["wrong_slave"] += 1
            data[0] = (data[0] % 247) + 1
            c = crc16(bytes(data[:-2]))
            data[-2], data[-1] = c & 0xFF, c >> 8
        elif self._p("truncate") and len(data) > 1:
            self.count["truncate"] += 1
            del data[self.rng.randrange(1, len(data)):]
        elif self._p("garbage"):
            self.count["garbage"] += 1
            junk = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 4)))
            self._schedule(self.a_m, bytes(data), now)
            # delivered in the same write as the last frame byte, so a busy host can never
            # open a t3.5 gap between frame and garbage (on the wire they run on back to back)
            t = self.busy[self.a_m]
            self.q[self.a_m].extend((t, b) for b in junk)
            return
        else:
            before = bytes(data)
            if self._corrupt(data, "resp"):
                self.count["resp_corrupted"] += 1
                if self.faults.get("log"):
                    self.log.append(["resp*", bytes(data).hex(), before.hex()])
        if self._p("delay"):
            self.count["delay"] += 1
            delay = self.faults["delay"][1] / 1000.0
        self._schedule(self.a_m, bytes(data), now + delay)

    def _schedule(self, fd: int, data: bytes, now: float, count: bool = True) -> None:
        t = max(self.busy[fd], now)
        q = self.q[fd]
        for b in data:
            t += self.char
            q.append((t, b))
        self.busy[fd] = t

    # -- loop --
    def run(self, stop) -> None:
        a, d = self.a_m, self.d_m
        while not stop():
            now = time.perf_counter()
            nxt = now + 0.05
            for fd in (a, d):
                q = self.q[fd]
                if q:
                    i = 0
                    while i < len(q) and q[i][0] <= now:
                        i += 1
                    if i:
                        if fd == a and now - q[0][0] > self.late_s:
                            # the relay itself stalled (busy host): these bytes reach the
                            # master late, which it may rightly see as a timeout or a gap
                            self.count["late"] += 1
                        os.write(fd, bytes(b for _, b in q[:i]))
                        if fd == d and i == len(q) and self.awaiting:
                            self.req_delivered = q[i - 1][0]
                        if fd == a and i == len(q):
                            self.resp_done = q[i - 1][0]
                        del q[:i]
                    if q:
                        nxt = min(nxt, q[0][0])
            # a frame from either side ends after a gap of silence
            if self.req_frame and now - self.last_rx[a] >= self.gap:
                self._request(self.req_frame, self.last_rx[a])
                self.req_frame = bytearray()
            if self.resp_frame and now - self.last_rx[d] >= min(self.gap, 0.001):
                self._response(self.resp_frame, self.resp_start)
                self.resp_frame = bytearray()
            if self.req_frame:
                nxt = min(nxt, self.last_rx[a] + self.gap)
            if self.resp_frame:
                nxt = min(nxt, self.last_rx[d] + min(self.gap, 0.001))
            wait = nxt - time.perf_counter()
            if wait > 0.0003:
                r, _, _ = select.select([a, d], [], [], wait - 0.0002)
            else:
                r, _, _ = select.select([a, d], [], [], 0)
            t = time.perf_counter()
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                self.last_rx[fd] = t
                if fd == a:
                    self.req_frame += data
                    if _complete(self.req_frame):
                        # whole frame in hand (masters write a frame at once): no need to
                        # wait for the gap, which would delay every request by t3.5
                        self._request(self.req_frame, t)
                        self.req_frame = bytearray()
                else:
                    if not self.resp_frame:
                        if not self.awaiting:
                            self.count["unsolicited"] += 1  # an answer nobody asked for
                        # the response starts: the slave's turnaround ends here. Pymodbus
                        # writes the whole response at once, so arrival = first byte.
                        self.resp_start = t
                        if self.awaiting and self.req_delivered is not None:
                            self.turn.append(t - self.req_delivered)
                        # late as the master sees it: from when its request reached the relay
                        # (includes any hiccup of the relay itself)
                        if self.awaiting and t - self.req_arrival > self.late_s:
                            self.count["late"] += 1
                        self.awaiting = False
                    self.resp_frame += data
                    if _complete(self.resp_frame):
                        self._response(self.resp_frame, self.resp_start)
                        self.resp_frame = bytearray()

    def stats(self) -> dict:
        turn = sorted(self.turn)
        out = dict(self.count)
        out["turnarounds"] = len(turn)
        out["log"] = self.log[-2000:]
        idle = sorted(self.idle)
        out["master_idle_mean_s"] = sum(idle) / len(idle) if idle else 0.0
        out["master_idle_median_s"] = idle[len(idle) // 2] if idle else 0.0
        out["turnaround_mean_s"] = sum(turn) / len(turn) if turn else 0.0
        out["turnaround_median_s"] = turn[len(turn) // 2] if turn else 0.0
        out["turnaround_min_s"] = turn[0] if turn else 0.0
        out["turnaround_p95_s"] = turn[int(len(turn) * 0.95)] if turn else 0.0
        return out


def _serve(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    line = Line(cfg["baud"], cfg.get("faults", {}), cfg.get("seed", 1))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    print(json.dumps({"agent_port": line.agent_port, "device_port": line.device_port}),
          flush=True)
    try:
        line.run(lambda: bool(stopping))
    finally:
        Path(cfg["stats"]).write_text(json.dumps(line.stats()))
    return 0


def _read_line(fd: int, timeout: float) -> bytes | None:
    """One line from a pipe, or None when none came within timeout (never blocks longer)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                return None  # the relay died before it said where its ports are
            buf += chunk
    return buf.split(b"\n", 1)[0]


class Relay:
    """Start the relay process; context manager. stats() stops it and returns its counters."""

    def __init__(self, baud: int, faults: dict | None = None, seed: int = 1,
                 stats_path: str | None = None):
        import tempfile

        self._stats = stats_path or tempfile.mktemp(prefix="relay-", suffix=".json")
        cfg = {"baud": baud, "faults": faults or {}, "seed": seed, "stats": self._stats}
        for _attempt in range(2):  # once seen on a loaded host: the port line never arrived
            self.proc = subprocess.Popen([sys.executable, __file__, json.dumps(cfg)],
                                         stdout=subprocess.PIPE)
            line = _read_line(self.proc.stdout.fileno(), 15.0)
            if line is not None:
                break
            self.proc.kill()
            self.proc.wait()
        else:
            raise RuntimeError("relay: no port line within 15 s (twice)")
        ports = json.loads(line)
        self.agent_port = ports["agent_port"]
        self.device_port = ports["device_port"]
        self.baud = baud
        self._result = None

    def stats(self) -> dict:
        if self._result is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            self._result = json.loads(Path(self._stats).read_text())
            os.unlink(self._stats)
        return self._result

    close = stats

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
