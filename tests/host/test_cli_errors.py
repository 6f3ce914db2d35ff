"""Bad input to `otlink node run`, `deploy`, `config push` and `demo`: one line naming what was
wrong, exit code 1, no traceback and nothing started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def many_points(n: int, port: str) -> dict:
    c = demo_config(port, 1)  # no broker on port 1: the agent boots and retries
    c["points"] = [{"id": 100 + i, "name": f"p{i}", "slave": 1 + i // 100, "table": "input",
                    "address": 2 * (i % 100), "type": "float32", "group": "fast"}
                   for i in range(n)]
    return c


def test_node_validate_lists_every_error_with_its_path(tmp_path):
    c = demo_config("/dev/ttyUSB0", 1883)
    c["mqtt"]["prefix"] = "plant/#"
    c["mqtt"]["host"] = "mqtt://broker:1883"
    c["points"][0]["address"] = 30001  # an input register number
    c["points"][2]["name"] = c["points"][1]["name"]
    c["points"][3]["address"] = c["points"][2]["address"] + 1  # inside a float32
    f = tmp_path / "node.json"
    f.write_text(json.dumps(c))
    out = one_clear_line(otlink("node", "validate", str(f)), "5 config errors")
    for field in ("mqtt.host", "mqtt.prefix", "points[0].address", "points[2].name",
                  "points[3].address"):
        assert f"  {field}: " in out, out
    assert "is address 0" in out and "URL" in out, out


def test_agent_boot_log_lists_every_error(tmp_path):
    """The board has no laptop in front of it: its boot log names every wrong field too."""
    from otlink_tools import node

    c = demo_config("/dev/ttyUSB0", 1883)
    c["mqtt"]["batch_bytes"] = 16384
    del c["serial"]["port"]
    f = tmp_path / "node.json"
    f.write_text(json.dumps(c))
    cmd, env = node.agent_command(str(f), str(tmp_path / "st"), mpy_dir=node.firmware_mpy())
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in out, out
    assert "config: mqtt.batch_bytes: must be in 128..8192, got 16384" in out, out
    assert "config: serial.port: is required on board unix" in out, out


def boot_line(cfg: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    """Run `otlink node run` until the agent says it booted (or exits); stop it; output."""
    import signal
    import time

    log = tmp_path / "run.log"
    with open(log, "w") as out_f:
        p = subprocess.Popen([OTLINK, "node", "run", "--config", str(cfg), "--state",
                              str(tmp_path / "st"), *extra], stdout=out_f,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        end = time.monotonic() + 60
        while (time.monotonic() < end and p.poll() is None
               and " points, broker " not in log.read_text()):
            time.sleep(0.1)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode, log.read_text()


@pytest.mark.parametrize("npoints, batch_bytes", [(50, 1024), (6, 8192)],
                         ids=["50-points", "batch_bytes-8192"])
def test_node_run_boots_at_the_default_heap(tmp_path, npoints, batch_bytes):
    """Once a raw MemoryError: 50 points, or the largest batch_bytes validate accepted."""
    import os

    master, slave = os.openpty()  # a tty the agent can open; nobody answers on it
    try:
        c = many_points(npoints, os.ttyname(slave))
        c["mqtt"]["batch_bytes"] = batch_bytes
        f = tmp_path / "node.json"
        f.write_text(json.dumps(c))
        code, out = boot_line(f, tmp_path)
    finally:
        os.close(master)
        os.close(slave)
    assert f"{npoints + 2} points, broker 127.0.0.1:1" in out, out
    assert "MemoryError" not in out and "Traceback" not in out, out


def test_node_run_out_of_memory_names_heap_and_points(tmp_path):
    import os

    master, slave = os.openpty()
    try:
        f = tmp_path / "node.json"
        f.write_text(json.dumps(many_points(50, os.ttyname(slave))))
        code, out = boot_line(f, tmp_path, "--heap", "160K")
    finally:
        os.close(master)
        os.close(slave)
    assert code == 3, out
    assert "out of memory at boot while" in out and "52 points" in out, out
    assert "KiB heap" in out and "--heap" in out and "Traceback" not in out, out


def test_node_validate_checks_sensor_buses_against_the_board_file(tmp_path):
    c = demo_config("/dev/ttyUSB0", 1883)
    c["board"] = "esp32"
    c["wifi"] = {"ssid": "plant", "password": "long-enough"}
    c["sensors"][0]["bus"] = "i2c1"  # boards/esp32.json has i2c0 only: a KeyError at boot
    f = tmp_path / "node.json"
    f.write_text(json.dumps(c))
    one_clear_line(otlink("node", "validate", str(f)), "sensors[0].bus", "i2c1", "i2c0")
