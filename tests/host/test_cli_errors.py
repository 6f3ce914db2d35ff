"""Bad input to `otlink node run`, `deploy`, `config push` and `demo`: one line naming what was
wrong, exit code 1, no traceback and nothing started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from otlink_tools.demo import demo_config

OTLINK = str(Path(sys.executable).parent / "otlink")


def otlink(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([OTLINK, *args], capture_output=True, text=True, timeout=timeout)


def one_clear_line(res: subprocess.CompletedProcess, *words: str) -> str:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Traceback" not in out, out
    for w in words:
        assert w in out, out
    return out


def config_file(tmp_path: Path, **change) -> Path:
    c = demo_config("/dev/otlink-no-such-tty", 1883)
    c.update(change)
    f = tmp_path / "node.json"
    f.write_text(json.dumps(c))
    return f


def test_node_run_names_a_missing_serial_device(tmp_path):
    res = otlink("node", "run", "--config", str(config_file(tmp_path)),
                 "--state", str(tmp_path / "st"))
    one_clear_line(res, "serial.port", "/dev/otlink-no-such-tty", "no such device")
    assert not (tmp_path / "st").exists()  # nothing started


def test_node_run_refuses_a_state_path_that_is_a_file(tmp_path):
    cfg = config_file(tmp_path)
    (tmp_path / "st").write_text("x")
    tty = tmp_path / "tty"
    tty.write_text("")  # exists: the port check passes
    c = json.loads(cfg.read_text())
    c["serial"]["port"] = str(tty)
    cfg.write_text(json.dumps(c))
    res = otlink("node", "run", "--config", str(cfg), "--state", str(tmp_path / "st"))
    one_clear_line(res, "--state", "not a folder")


def test_node_run_checks_heap_argument(tmp_path):
    res = otlink("node", "run", "--config", str(config_file(tmp_path)), "--heap", "banana")
    one_clear_line(res, "--heap", "banana")
    assert res.returncode == 2  # argparse usage error


def test_deploy_and_config_push_name_a_missing_port(tmp_path):
    res = otlink("deploy", "--board", "esp32", "--port", "/dev/otlink-no-such-tty")
    one_clear_line(res, "/dev/otlink-no-such-tty", "no such device")
    cfg = config_file(tmp_path, board="esp32", wifi={"ssid": "plant", "password": "long-enough"})
    res = otlink("config", "push", str(cfg), "--port", "/dev/otlink-no-such-tty")
    one_clear_line(res, "/dev/otlink-no-such-tty", "no such device")


def test_deploy_names_an_unwritable_out_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    res = otlink("deploy", "--board", "esp32", "--dry-run", "--out", str(tmp_path / "f" / "o"))
    one_clear_line(res, "--out", str(tmp_path / "f" / "o"))


def test_demo_names_a_workdir_that_is_a_file(tmp_path):
    (tmp_path / "w").write_text("x")
    res = otlink("demo", "--workdir", str(tmp_path / "w"), "--seconds", "1")
    out = one_clear_line(res, "--workdir", str(tmp_path / "w"))
    assert "stopped broker" not in out  # nothing was started
