"""Start and stop private mosquitto brokers on free loopback ports.

Used by tests, `otlink demo` and benchmarks: each broker gets its own config file,
its own port on 127.0.0.1 and no persistence unless asked, so nothing touches a
system broker.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.path.exists(cand):
            return cand
    raise RuntimeError("mosquitto is missing: run 'sudo apt-get install mosquitto'")


class Broker:
    """A mosquitto process listening on 127.0.0.1:port.

    extra_conf: further mosquitto.conf lines (a TLS listener, ACLs, ...).
    persistence: keep a persistence file in the broker's folder (survives restarts).
    """

    def __init__(self, port: int | None = None, extra_conf: str = "",
                 persistence: bool = False, workdir: str | None = None,
                 allow_anonymous: bool = True) -> None:
        self.port = port or free_port()
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="otlink-broker-"))
        self.extra_conf = extra_conf
        self.persistence = persistence
        self.allow_anonymous = allow_anonymous
        self.proc: subprocess.Popen | None = None

    def conf_text(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        return "\n".join(lines) + "\n" + self.extra_conf + "\n"

    def start(self, timeout: float = 10.0) -> "Broker":
        conf = self.dir / "mosquitto.conf"
        conf.write_text(self.conf_text())
        self.log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)],
                                     stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the broker loses whatever it held in memory."""
        self.stop(signal.SIGKILL)

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
