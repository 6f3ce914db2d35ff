"""`otlink monitor` refuses wrong arguments with one line naming the argument or file:
topic levels with wildcards, TLS files that are missing or not certificates, an output
file that cannot be opened, ports and durations out of range, and a broker that refuses
the user name or password (at once, not after retrying for 10 s)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otlink_tools import cli
from otlink_tools.broker import tls_broker
from otlink_tools.monitor import Monitor

OTLINK = str(Path(sys.executable).parent / "otlink")


def otlink(*args: str, timeout: float = 30) -> tuple[int, str, float]:
    """Run `otlink monitor ARGS`; (exit code, stderr, seconds taken)."""
    env = dict(os.environ)
    env.pop("OTLINK_MQTT_PASSWORD", None)
    t0 = time.monotonic()
    r = subprocess.run([OTLINK, "monitor", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    return r.returncode, r.stderr, time.monotonic() - t0


def one_line_error(rc: int, err: str) -> str:
    assert rc == 1, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("otlink: "), err
    return lines[0]


def main(capsys, *args: str) -> tuple[int, str]:
    """The CLI in this process (quicker than a subprocess): (exit code, stderr)."""
    rc = cli.main(["monitor", *args])
    return rc, capsys.readouterr().err


# --- topic levels ---------------------------------------------------------------------------

@pytest.mark.parametrize("opt,value", [
    ("--site", "bad/#"), ("--site", "a+"), ("--site", "#"), ("--site", ""), ("--site", "a/b"),
    ("--node", "bad/#"), ("--node", "n+1"), ("--node", ""), ("--node", "x/y"),
    ("--prefix", "otlink/#"), ("--prefix", "a/+/b"), ("--prefix", ""), ("--prefix", "/otlink"),
    ("--prefix", "otlink/"), ("--prefix", "a//b"),
    ("--group", "a/b"), ("--group", "+"), ("--group", "g#"), ("--group", ""),
])
def test_wildcards_and_levels_refused(capsys, broker, opt, value):
    rc, err = main(capsys, "--port", str(broker.port), "--seconds", "0", opt, value)
    line = one_line_error(rc, err)
    assert f"{opt} {value!r}" in line
    assert "without" in line  # says what is accepted


def test_valid_topic_arguments_still_accepted(capsys, broker):
    rc, err = main(capsys, "--port", str(broker.port), "--seconds", "0", "--prefix",
                   "plant/a/otlink", "--site", "+", "--node", "meter-07", "--group", "g1")
    assert rc == 0, err
    mon = Monitor(prefix="plant/a/otlink", site="s1", node="+", group="g1")
    # acknowledging (the default): the ack topic first, for the retained position
    assert mon.subscriptions() == ["plant/a/otlink/s1/+/ack",
                                   "$share/g1/plant/a/otlink/s1/+/data",
                                   "plant/a/otlink/s1/+/birth", "plant/a/otlink/s1/+/state"]
    mon = Monitor(prefix="plant/a/otlink", site="s1", node="+", group="g1", ack=False)
    assert mon.subscriptions() == ["$share/g1/plant/a/otlink/s1/+/data",
                                   "plant/a/otlink/s1/+/birth", "plant/a/otlink/s1/+/state"]


def test_monitor_class_refuses_wildcards_too():
    with pytest.raises(ValueError, match="--site"):
        Monitor(site="a/#")
    with pytest.raises(ValueError, match="--group"):
        Monitor(group="a/b")


# --- numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("opt,value,accepted", [
    ("--port", "70000", "1..65535"), ("--port", "0", "1..65535"), ("--port", "-1", "1..65535"),
    ("--seconds", "-1", ">= 0"), ("--seconds", "nan", ">= 0"), ("--count", "-3", ">= 0"),
    ("--ack-wait", "-1", ">= 0"), ("--ack-wait", "inf", ">= 0"),
])
def test_numbers_out_of_range_refused(capsys, opt, value, accepted):
    rc, err = main(capsys, opt, value)
    line = one_line_error(rc, err)
    assert f"{opt} {value}" in line and accepted in line


# --- output file --------------------------------------------------------------------------------

def test_output_in_missing_folder(capsys, tmp_path):
    path = tmp_path / "nonexistent" / "out.csv"
    rc, err = main(capsys, "-o", str(path))
    line = one_line_error(rc, err)
    assert f"--output {path}" in line and "No such file or directory" in line


def test_output_is_a_folder(capsys, tmp_path):
    rc, err = main(capsys, "-o", str(tmp_path))
    line = one_line_error(rc, err)
    assert f"--output {tmp_path}" in line


def test_output_not_created_for_wrong_arguments(capsys, tmp_path):
    path = tmp_path / "out.csv"
    rc, _ = main(capsys, "-o", str(path), "--site", "a/#")
    assert rc == 1 and not path.exists()


# --- TLS files ---------------------------------------------------------------------------------

def test_cafile_missing():
    rc, err, _ = otlink("--cafile", "/nonexistent/ca.pem")
    line = one_line_error(rc, err)
    assert "--cafile /nonexistent/ca.pem" in line and "No such file or directory" in line


def test_cafile_not_a_certificate(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    rc, err, _ = otlink("--cafile", str(bad))
    line = one_line_error(rc, err)
    assert f"--cafile {bad}" in line and "not a PEM CA certificate" in line


def test_cert_not_a_certificate(capsys, tmp_path, tls_material):
    bad = tmp_path / "client.crt"
    bad.write_text("not a certificate\n")
    rc, err = main(capsys, "--cafile", str(tls_material.ca_cert), "--cert", str(bad),
                   "--key", str(tls_material.client_key))
    line = one_line_error(rc, err)
    assert f"--cert {bad}" in line and "not a PEM certificate" in line


def test_key_not_matching_cert(capsys, tls_material):
    rc, err = main(capsys, "--cafile", str(tls_material.ca_cert),
                   "--cert", str(tls_material.client_cert), "--key", str(tls_material.server_key))
    line = one_line_error(rc, err)
    assert f"--key {tls_material.server_key}" in line and "matching" in line


def test_key_missing(capsys, tls_material):
    rc, err = main(capsys, "--cafile", str(tls_material.ca_cert),
                   "--cert", str(tls_material.client_cert), "--key", "/nonexistent/client.key")
    line = one_line_error(rc, err)
    assert "--key /nonexistent/client.key" in line


def test_valid_tls_still_connects(capsys, tls_material):
    b, tls_port = tls_broker(tls_material, require_certificate=True)
    b.start()
    try:
        rc, err = main(capsys, "--port", str(tls_port), "--cafile", str(tls_material.ca_cert),
                       "--cert", str(tls_material.client_cert),
                       "--key", str(tls_material.client_key), "--seconds", "0")
    finally:
        b.stop()
        shutil.rmtree(b.dir, ignore_errors=True)
    assert rc == 0, err


# --- user name and password ---------------------------------------------------------------------

def test_wrong_password_refused_at_once(auth_broker):
    rc, err, took = otlink("--port", str(auth_broker.port), "--user", "alice",
                           "--password", "wrong-pw-123", "--seconds", "5")
    line = one_line_error(rc, err)  # no "disconnected ... reconnecting" lines before it
    assert "refused the connection" in line and "--user 'alice'" in line
    assert "wrong-pw-123" not in err
    assert took < 5  # paho's retries ran for the whole 10 s CONNACK wait before


def test_no_user_for_broker_with_auth(auth_broker):
    rc, err, _ = otlink("--port", str(auth_broker.port), "--seconds", "5")
    line = one_line_error(rc, err)
    assert "refused the connection" in line and "--user" in line


def test_right_password_still_accepted(auth_broker):
    env_pw = {"OTLINK_MQTT_PASSWORD": "s3cret-pw"}
    r = subprocess.run([OTLINK, "monitor", "--port", str(auth_broker.port), "--user", "alice",
                        "--seconds", "0"], capture_output=True, text=True, timeout=30,
                       env={**os.environ, **env_pw})
    assert r.returncode == 0, r.stderr
    assert "s3cret-pw" not in r.stderr
