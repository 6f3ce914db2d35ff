"""A throw-away InfluxDB 1.x (Debian's influxd) on free loopback ports in a temporary folder,
for tests that check what `otlink monitor --format influx` writes against the real parser."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from otlink_tools.broker import free_port


class InfluxServer:
    def __init__(self) -> None:
        self.binary = shutil.which("influxd")
        self.dir = Path(tempfile.mkdtemp(prefix="otlink-influx-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> InfluxServer:
        d = self.dir
        conf = d / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[subscriber]\n  enabled = false\n[continuous_queries]\n  enabled = false\n")
        self.log = open(d / "influxd.log", "wb")
        self.proc = subprocess.Popen([self.binary, "-config", str(conf)], stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("influxd exited: " + (d / "influxd.log").read_text()[-2000:])
            try:
                if self.request("GET", "/ping")[0] == 204:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("influxd did not answer /ping in time")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body,
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def query(self, db: str, q: str) -> dict:
        qs = urllib.parse.urlencode({"db": db, "q": q})
        status, text = self.request("POST" if q.upper().startswith("CREATE") else "GET",
                                    "/query?" + qs)
        if status != 200:
            raise RuntimeError(f"influx query {q!r}: HTTP {status} {text}")
        return json.loads(text)

    def write(self, db: str, lines: str) -> tuple[int, str]:
        """POST line protocol to /write (nanosecond times): (HTTP status, body)."""
        return self.request("POST", f"/write?db={db}&precision=ns", lines.encode())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
