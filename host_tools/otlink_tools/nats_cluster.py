"""A private NATS cluster for tests and benchmarks: N nats-server processes (Debian
`nats-server`) with JetStream and the MQTT gateway, each with its own folder and free
loopback ports (client, cluster route, MQTT, HTTP monitoring). Nothing touches a system
server.

`stream_leader(name)` asks the JetStream API ($JS.API.STREAM.INFO.<name>, over a plain
socket, no client library) which server leads a stream; `kill(name)` SIGKILLs one server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from otlink_tools.broker import free_port

__all__ = ["NatsCluster", "nats_server_binary"]


def nats_server_binary() -> str | None:
    for cand in (shutil.which("nats-server"), "/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if cand and os.path.exists(cand):
            return cand
    return None


class NatsServer:
    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.port, self.route, self.mqtt, self.http = (free_port() for _ in range(4))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class NatsCluster:
    """start(), servers, urls, kill(name), restart(name), stream_leader(name), stop()."""

    def __init__(self, size: int = 3, cluster: str = "otlink-test") -> None:
        exe = nats_server_binary()
        if exe is None:
            raise RuntimeError("nats-server is missing: run 'make debs' (Debian nats-server)")
        self.exe = exe
        self.size = size
        self.cluster = cluster
        self.root = Path(tempfile.mkdtemp(prefix="otlink-nats-"))
        self.servers = [NatsServer(f"n{i + 1}", self.root) for i in range(size)]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def server(self, name: str) -> NatsServer:
        return next(s for s in self.servers if s.name == name)

    def _conf(self, s: NatsServer) -> Path:
        lines = [f"server_name: {s.name}", f"listen: 127.0.0.1:{s.port}",
                 f"http: 127.0.0.1:{s.http}",
                 f'jetstream {{ store_dir: "{s.dir / "js"}" }}',
                 f"mqtt {{ listen: 127.0.0.1:{s.mqtt} }}"]
        if self.size > 1:
            routes = ", ".join(f"nats://127.0.0.1:{o.route}" for o in self.servers)
            lines.append(f"cluster {{ name: {self.cluster}, listen: 127.0.0.1:{s.route}, "
                         f"routes: [{routes}] }}")
        path = s.dir / "server.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _spawn(self, s: NatsServer) -> None:
        log = open(s.dir / "server.log", "ab")
        s.proc = subprocess.Popen([self.exe, "-c", str(self._conf(s))], stdout=log,
                                  stderr=subprocess.STDOUT)
        log.close()

    def start(self, timeout: float = 20.0) -> NatsCluster:
        for s in self.servers:
            self._spawn(s)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0, names: list[str] | None = None) -> None:
        """Every (running) server answers /healthz with JetStream ready (a cluster: a meta
        leader elected)."""
        import urllib.request
        deadline = time.monotonic() + timeout
        for s in self.servers:
            if (names is not None and s.name not in names) or s.proc is None:
                continue
            while True:
                if s.proc.poll() is not None:
                    raise RuntimeError(f"nats-server {s.name} exited: "
                                       f"{(s.dir / 'server.log').read_text()[-800:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{s.http}/healthz",
                                                timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {s.name}: JetStream not ready in "
                                       f"{timeout:g} s")
                time.sleep(0.1)

    def kill(self, name: str) -> None:
        s = self.server(name)
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait(5)
        s.proc = None

    def restart(self, name: str) -> None:
        self._spawn(self.server(name))

    def stop(self) -> None:
        for s in self.servers:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.terminate()
        for s in self.servers:
            if s.proc is not None:
                try:
                    s.proc.wait(5)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
                    s.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    def api(self, subject: str, body: bytes = b"", timeout: float = 3.0,
            via: str | None = None) -> dict:
        """One JetStream API request over the NATS text protocol on a plain socket."""
        live = [s for s in self.servers if s.proc is not None and s.proc.poll() is None
                and (via is None or s.name == via)]
        if not live:
            raise RuntimeError("no NATS server running")
        s = live[0]
        with socket.create_connection(("127.0.0.1", s.port), timeout=timeout) as sock:
            f = sock.makefile("rb")
            f.readline()  # INFO
            inbox = "_INBOX.otlink-test"
            sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                         + f"SUB {inbox} 1\r\nPUB {subject} {inbox} {len(body)}\r\n".encode()
                         + body + b"\r\nPING\r\n")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                line = f.readline()
                if not line:
                    break
                if line.startswith(b"PING"):
                    sock.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG"):
                    size = int(line.split()[-1])
                    data = f.read(size + 2)[:size]
                    return json.loads(data)
                elif line.startswith(b"-ERR"):
                    raise RuntimeError(line.decode().strip())
        raise TimeoutError(f"no answer to {subject}")

    def stream_leader(self, stream: str) -> str | None:
        info = self.api(f"$JS.API.STREAM.INFO.{stream}")
        return (info.get("cluster") or {}).get("leader")
