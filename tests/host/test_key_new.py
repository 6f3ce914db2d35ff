"""`otlink key new`: a fresh key file only its owner may read, never printed, never
overwritten; and a consumer without the key is told at a signed node's birth that its acks
will be refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from otlink_tools import paths
from otlink_tools.acktrack import key_warning

OTLINK = str(Path(sys.executable).parent / "otlink")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OTLINK, *args], capture_output=True, text=True, timeout=30)


def test_key_new_makes_a_private_key_the_node_accepts(tmp_path):
    key_file = tmp_path / "ack.key"
    r = _run("key", "new", str(key_file))
    assert r.returncode == 0, r.stderr
    key = key_file.read_text().strip()
    assert len(key) == 64 and int(key, 16) >= 0
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert key not in r.stdout + r.stderr  # the key is never shown
    paths.firmware_import_path()
    from otlink.core.config import parse_mqtt

    assert parse_mqtt({"host": "127.0.0.1", "ack_key": key})["ack_key"] == key
    # two runs: two different keys
    _run("key", "new", str(tmp_path / "other.key"))
    assert (tmp_path / "other.key").read_text().strip() != key


def test_key_new_never_overwrites(tmp_path):
    key_file = tmp_path / "ack.key"
    key_file.write_text("held by a node\n")
    r = _run("key", "new", str(key_file))
    assert r.returncode == 1 and "never overwritten" in r.stderr
    assert key_file.read_text() == "held by a node\n"
    r = _run("key", "new", str(tmp_path / "no-such-dir" / "k"))
    assert r.returncode == 1 and "cannot create" in r.stderr


def test_consumer_without_the_key_is_told():
    birth = {"node": "press-01", "sec": {"ack": "signed"}}
    why = key_warning(birth, acking=True, have_key=False)
    assert why and "press-01" in why and "--ack-key-file" in why
    assert key_warning(birth, acking=True, have_key=True) is None
    assert key_warning(birth, acking=False, have_key=False) is None  # a --no-ack viewer
    assert key_warning({"node": "n", "sec": {"ack": "unsigned"}}, True, False) is None
    why = key_warning({"node": "n9", "sec": {"ack": "unsigned"}}, True, True)
    assert why and "n9" in why and "mqtt.ack_key" in why  # signed acks it cannot read
    assert key_warning({"node": "n"}, True, False) is None  # an older node: no posture
