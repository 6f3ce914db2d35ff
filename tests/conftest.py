"""Shared fixtures: the real parts tests run against, each started on free loopback ports or
ptys and stopped afterwards.

- broker: a private mosquitto for the tests of one module; fresh_broker: one per test.
- auth_broker: a mosquitto that refuses anonymous clients (user alice, password s3cret-pw,
  or the module's AUTH_BROKER_USER = (user, password)).
- tls_material: a throw-away CA with server and client certificates (openssl).
- reference_meter: the simulated meter with the reference map on slaves 1, 2 and 3, for a
  module; demo_meter: the demo's energy meter (slave 1, values frozen), one per test.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# tests/firmware/*.py are MicroPython scripts run by tests/test_firmware.py inside the Unix
# port; tests/bench/*.py are benchmark suites run by `make bench`. pytest must not import them.
collect_ignore = ["firmware", "bench"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A mosquitto on a free 127.0.0.1 port, shared by the tests of one module."""
    from otlink_tools.broker import Broker

    b = Broker(workdir=str(tmp_path_factory.mktemp("broker"))).start()
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path):
    """A mosquitto of this test's own (nothing retained from other tests)."""
    from otlink_tools.broker import Broker

    (tmp_path / "broker").mkdir()
    b = Broker(workdir=str(tmp_path / "broker")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def auth_broker(request):
    """A mosquitto with a password file and no anonymous access: user alice, password
    s3cret-pw, or the (user, password) of the test module's AUTH_BROKER_USER."""
    from otlink_tools.broker import Broker

    user, password = getattr(request.module, "AUTH_BROKER_USER", ("alice", "s3cret-pw"))
    tool = shutil.which("mosquitto_passwd")
    if not tool:
        pytest.skip("mosquitto_passwd is missing")
    d = Path(tempfile.mkdtemp(prefix="otlink-auth-"))
    try:
        pwfile = d / "passwords"
        subprocess.run([tool, "-b", "-c", str(pwfile), user, password], check=True,
                       capture_output=True)
        # mosquitto started as root reads the file as its own user
        os.chmod(d, 0o755)
        os.chmod(pwfile, 0o644)
        b = Broker(workdir=str(d), allow_anonymous=False,
                   extra_conf=f"password_file {pwfile}\n").start()
        yield b
        b.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_material():
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    from otlink_tools.broker import TlsMaterial

    if not shutil.which("openssl"):
        pytest.skip("openssl is missing")
    # its own temp folder (made readable for mosquitto), not pytest's private one
    m = TlsMaterial().generate()
    yield m
    shutil.rmtree(m.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def reference_meter():
    """The simulated meter (pymodbus RTU on a pty) with the reference map: every type and
    word order on slaves 1, 2 and 3; `.agent_port` is the pty to open."""
    from otlink_tools.sim_meter import start_meter

    m = start_meter(slaves=(1, 2, 3), reference_map=True)
    yield m
    m.stop()


@pytest.fixture
def demo_meter():
    """The demo's energy meter on slave 1 with frozen values (`.expected()` is exact), one
    per test, so a test may make it fail (`.fail()`)."""
    from otlink_tools.sim_meter import start_meter

    m = start_meter(slaves=(1,), frozen=True)
    yield m
    m.stop()
