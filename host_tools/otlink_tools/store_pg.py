"""A private PostgreSQL server for tests and benchmarks: its own data folder, a free loopback
port, no Unix socket, trust authentication on 127.0.0.1 only. Nothing touches a system
cluster.

PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the `postgres` user
(`runuser -u postgres --`) on a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from otlink_tools.broker import free_port

__all__ = ["PgServer", "pg_bin"]


def pg_bin(name: str) -> str | None:
    """Path of a PostgreSQL server program (Debian keeps them in /usr/lib/postgresql/N/bin),
    None when the server is not installed."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    return shutil.which(name)


class PgServer:
    """initdb + pg_ctl on a temporary folder. start(), stop(), crash() (immediate shutdown:
    no checkpoint, crash recovery at the next start), url, remove()."""

    def __init__(self, port: int | None = None) -> None:
        initdb = pg_bin("initdb")
        if initdb is None:
            raise RuntimeError("PostgreSQL server is missing: apt-get install postgresql")
        self.bindir = os.path.dirname(initdb)
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="otlink-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, prog: str, *args: str, timeout: float = 60) -> None:
        r = subprocess.run([*self._as, os.path.join(self.bindir, prog), *args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{prog} failed ({r.returncode}): {r.stderr.strip()[-500:]}")

    def start(self) -> PgServer:
        opts = f"-p {self.port} -k '' -c listen_addresses=127.0.0.1"
        self._pg("pg_ctl", "start", "-w", "-t", "30", "-D", str(self.data), "-l",
                 str(self.log), "-o", opts)
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg("pg_ctl", "stop", "-w", "-t", "30", "-D", str(self.data), "-m", mode)

    def crash(self) -> None:
        """Stop as a crash would: every process gone at once, recovery on the next start."""
        self.stop("immediate")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-h", "127.0.0.1",
                                "-p", str(self.port)], capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not become ready")

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)
