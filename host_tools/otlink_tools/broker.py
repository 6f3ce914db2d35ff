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
import weakref
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
    workdir: the broker's folder (config, log, persistence). Without one, a temporary
    folder is made and removed once the Broker object is gone (or at interpreter exit):
    stop() keeps it, so a stopped broker can start again with its persistence file.
    """

    def __init__(self, port: int | None = None, extra_conf: str = "",
                 persistence: bool = False, workdir: str | None = None,
                 allow_anonymous: bool = True) -> None:
        self.port = port or free_port()
        if workdir:
            self.dir = Path(workdir)
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="otlink-broker-"))
            weakref.finalize(self, shutil.rmtree, str(self.dir), ignore_errors=True)
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
            lines += ["persistence true", f"persistence_location {self.dir}/",
                      "autosave_interval 1"]
        return "\n".join(lines) + "\n" + self.extra_conf + "\n"

    def start(self, timeout: float = 10.0) -> Broker:
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

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- TLS test material -------------------------------------------------------------------

class TlsMaterial:
    """A throw-away CA, a server certificate signed by it and a client certificate.

    Everything is generated at test time with the `openssl` command into `dir` (a temp
    folder by default): nothing is committed and the keys never leave that folder.
    Attributes are file paths: ca_cert, ca_key, server_cert, server_key, client_cert,
    client_key.
    """

    def __init__(self, dir: str | None = None, hostname: str = "localhost",
                 ips: tuple[str, ...] = ("127.0.0.1",), days: int = 2) -> None:
        self.dir = Path(dir or tempfile.mkdtemp(prefix="otlink-tls-"))
        self.hostname = hostname
        self.ips = ips
        self.days = days
        self.ca_cert = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"
        self.server_cert = self.dir / "server.crt"
        self.server_key = self.dir / "server.key"
        self.client_cert = self.dir / "client.crt"
        self.client_key = self.dir / "client.key"

    def _openssl(self, *args: str) -> None:
        exe = shutil.which("openssl")
        if not exe:
            raise RuntimeError("openssl is missing: run 'sudo apt-get install openssl'")
        res = subprocess.run([exe, *args], cwd=self.dir, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {res.stderr.strip()}")

    def _key(self, path: Path) -> None:
        # P-256: small and quick for mbedTLS on the boards and for the Unix port here.
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", str(path))

    def _sign(self, name: str, key: Path, cert: Path, cn: str, ext: str) -> None:
        csr = self.dir / f"{name}.csr"
        extfile = self.dir / f"{name}.ext"
        extfile.write_text(ext)
        self._openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr))
        self._openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert),
                      "-CAkey", str(self.ca_key), "-CAcreateserial", "-days", str(self.days),
                      "-sha256", "-extfile", str(extfile), "-out", str(cert))

    def generate(self, ca_cn: str = "otlink test CA") -> TlsMaterial:
        self._key(self.ca_key)
        self._openssl("req", "-x509", "-new", "-key", str(self.ca_key), "-sha256",
                      "-days", str(self.days), "-subj", f"/CN={ca_cn}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                      "-out", str(self.ca_cert))
        san = ",".join([f"DNS:{self.hostname}"] + [f"IP:{ip}" for ip in self.ips])
        self._key(self.server_key)
        self._sign("server", self.server_key, self.server_cert, self.hostname,
                   f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=serverAuth\n")
        self._key(self.client_key)
        self._sign("client", self.client_key, self.client_cert, "otlink-node",
                   "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
        # mosquitto started as root drops to its own user before it reads the server key:
        # these throw-away files must be readable by it (the CA key stays private).
        os.chmod(self.dir, 0o755)
        for f in (self.ca_cert, self.server_cert, self.server_key):
            os.chmod(f, 0o644)
        return self

    def listener_conf(self, port: int, require_certificate: bool = False) -> str:
        """mosquitto.conf lines for a TLS listener on 127.0.0.1:port using this material."""
        lines = [
            f"listener {port} 127.0.0.1",
            f"cafile {self.ca_cert}",
            f"certfile {self.server_cert}",
            f"keyfile {self.server_key}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if require_certificate else 'false'}",
        ]
        return "\n".join(lines) + "\n"


def tls_broker(material: TlsMaterial, require_certificate: bool = False,
               **kw) -> tuple[Broker, int]:
    """A Broker with its plain listener plus a TLS listener; returns (broker, tls_port)."""
    tls_port = free_port()
    b = Broker(extra_conf=material.listener_conf(tls_port, require_certificate), **kw)
    return b, tls_port
