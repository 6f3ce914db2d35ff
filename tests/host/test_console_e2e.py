"""The host CLI drives the Unix-port agent's service console over a pty, end to end: set,
validate, diff, commit (the agent restarts into it), rollback, a bad commit rolled back by
the agent itself, malformed input refused with the running config unchanged, PIN lockout,
and readings flowing to the broker while the console is used."""

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otlink_tools.console_client import NodeConsole
from otlink_tools.demo import demo_config
from otlink_tools.errors import CommandError

OTLINK = str(Path(sys.executable).parent / "otlink")
ROOT = Path(__file__).resolve().parents[2]
PIN = "482913"
KEY = "5ec7e7c0ffee" * 5 + "5ec7"  # a planted secret (the command key): never shown


def file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class Node:
    def __init__(self, tmp: Path, broker_port: int, meter_port: str) -> None:
        self.dir = tmp
        self.config = tmp / "node.json"
        cfg = demo_config(meter_port, broker_port)
        cfg["console"] = {"commit_check_s": 5, "pin": PIN}
        cfg["mqtt"]["ack"] = "broker"  # no consumer acks here: the PUBACK advances the queue
        del cfg["mqtt"]["ack_key"]
        cfg["commands"] = {"key": KEY}
        self.config.write_text(json.dumps(cfg, indent=2))
        self.link = str(tmp / "console")
        self.log = open(tmp / "node.log", "wb")
        self.proc = subprocess.Popen(
            [OTLINK, "node", "run", "--config", str(self.config), "--state", str(tmp / "st"),
             "--console", "--console-link", self.link], stdout=self.log,
            stderr=subprocess.STDOUT, cwd=str(ROOT))
        self.wait_ready()

    def text(self) -> str:
        return (self.dir / "node.log").read_text(errors="replace")

    def wait_ready(self, after: int = 0, timeout: float = 30) -> None:
        """Until the agent's console is ready (the after-th time: restarts count)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.text().count("console ready") > after:
                return
            assert self.proc.poll() is None, self.text()
            time.sleep(0.1)
        raise AssertionError("console not ready:\n" + self.text())

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        """`otlink ARGS` run in this process (cli.main, as the otlink script runs it: the
        same parser, handlers and exit status, without a Python start per command; the
        PIN test runs the real script)."""
        import contextlib
        import io

        from otlink_tools import cli

        out, err = io.StringIO(), io.StringIO()
        os.environ["OTLINK_CONSOLE_PIN"] = PIN
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = cli.main(list(args))
                except SystemExit as e:  # argparse usage errors
                    rc = e.code
        finally:
            os.environ.pop("OTLINK_CONSOLE_PIN", None)
        res = subprocess.CompletedProcess(["otlink", *args], rc, out.getvalue(), err.getvalue())
        if ok:
            assert res.returncode == 0, res.stdout + res.stderr
        return res

    def status(self) -> dict:
        return json.loads(self.cli("status", "--port", self.link, "--json").stdout)

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def node(broker, tmp_path_factory):
    from otlink_tools.sim_meter import start_meter

    meter = start_meter(slaves=(1,))
    n = Node(tmp_path_factory.mktemp("console"), broker.port, meter.agent_port)
    n.original = file_hash(n.config)
    yield n
    n.stop()
    meter.stop()


def test_status_names_the_running_config(node):
    st = node.status()
    assert st["config_hash"] == node.original and st["config"] == "ok"
    assert st["console"] == "unlocked"  # the CLI unlocked it with OTLINK_CONSOLE_PIN


def test_set_validate_diff_commit_restart_rollback(node):
    p = ["--port", node.link]
    node.cli("config", "set", *p, "node.site", "plant2")
    diff = json.loads(node.cli("config", "diff", *p, "--json").stdout)
    assert diff == ['node.site: "demo-plant" -> "plant2"']
    assert "ok (staged config)" in node.cli("config", "validate", *p).stdout
    assert node.cli("config", "get", *p, "node.site", "--json").stdout.strip() == '"plant2"'
    assert file_hash(node.config) == node.original  # nothing written before the commit
    out = node.cli("config", "commit", *p).stdout
    assert "committed config" in out
    node.wait_ready(after=1)
    st = node.status()
    assert st["node"] == "plant2/demo-press-01"
    assert st["config_hash"] == file_hash(node.config) != node.original
    assert Path(str(node.config) + ".prev").exists()
    # rollback with nothing staged: back to the previous config, and restart
    assert "restored the previous config" in node.cli("config", "rollback", *p).stdout
    node.wait_ready(after=2)
    assert node.status()["config_hash"] == node.original == file_hash(node.config)


def test_malformed_input_is_refused_and_the_running_config_stays(node):
    p = ["--port", node.link]
    for path, value, words in [("mqtt.port", "abc", "must be an integer"),
                               ("mqtt.bogus", "1", "unknown field"),
                               ("points[0].type", "float33", "must be one of"),
                               ("points[9].address", "1", "list has 6")]:
        res = node.cli("config", "set", *p, path, value, ok=False)
        assert res.returncode == 1 and words in res.stderr, res.stderr
    with NodeConsole(node.link, pin=PIN) as con:  # the bulk in one connection
        for i in range(40):
            with pytest.raises(CommandError):
                con.call(f"set points[0].address {70000 + i}")
        con.ser.write(b"@set mqtt.port \xff\xfe\x01\r")  # binary garbage
        with pytest.raises(CommandError, match="byte 0xff refused"):
            con.reply()
        with pytest.raises(CommandError, match="must be one of drop_oldest"):
            con.call("set queue.policy drop_all")
        con.ser.write(b"@set node.site " + b"x" * 400 + b"\r")
        with pytest.raises(CommandError, match="line longer than 256 bytes"):
            con.reply()
        con.ser.write(b"@set mqtt.port 1884\x03")  # Ctrl-C: the line is cancelled
        with pytest.raises(CommandError, match="cancelled"):
            con.reply()
        assert con.call("diff") == "no staged changes"
        assert con.call("status")["config_hash"] == node.original
    assert file_hash(node.config) == node.original


def test_readings_keep_flowing_while_the_console_is_used(node):
    with NodeConsole(node.link, pin=PIN) as con:
        st0 = con.call("status")
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 2:
            con.call("show slaves")
            con.call("get points")
            n += 1
        st1 = con.call("status")
    assert n >= 4
    assert st1["poll_cycles"] >= st0["poll_cycles"] + 2, (st0, st1)
    assert st1["published_batches"] > st0["published_batches"], (st0, st1)


def test_a_bad_commit_is_rolled_back_by_the_agent(node):
    master, slave = pty.openpty()  # a bus where nobody answers
    try:
        with NodeConsole(node.link, pin=PIN) as con:
            before = con.call("status")["config_hash"]
            con.call(f"set serial.port \"{os.ttyname(slave)}\"")
            con.call("set mqtt.port 9")  # nothing listens there
            con.call("commit")
        node.wait_ready(after=3)
        end = time.monotonic() + 30
        while "config rolled back" not in node.text() and time.monotonic() < end:
            time.sleep(0.2)
        node.wait_ready(after=4)
    finally:
        os.close(master)
        os.close(slave)
    st = node.status()
    assert st["config"].startswith("rolled_back (no successful poll or publish within 5 s")
    assert st["config_hash"] == before == file_hash(node.config)
    assert "no successful poll or publish within 5 s" in node.text()
    logs = node.cli("logs", "--port", node.link).stdout
    assert "config was rolled back: no successful poll or publish" in logs


def test_pin_lockout(node):
    with NodeConsole(node.link) as con:
        con.call("lock")
        for _i in (1, 2):
            with pytest.raises(CommandError, match="wrong PIN"):
                con.call("unlock 0000")
        t_lock = time.monotonic()
        with pytest.raises(CommandError, match="locked out for 5 s"):
            con.call("unlock 1111")
        with pytest.raises(CommandError, match="locked out: try again in 5 s"):
            con.call(f"unlock {PIN}")  # the right PIN is not even tried during the lockout
        with pytest.raises(CommandError, match="console locked"):
            con.call("show config")
    r = subprocess.run([OTLINK, "status", "--port", node.link, "--pin", PIN],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "locked out: try again" in r.stderr
    while r.returncode != 0 and time.monotonic() - t_lock < 12:  # the lockout runs out
        time.sleep(0.5)
        r = subprocess.run([OTLINK, "status", "--port", node.link, "--pin", PIN],
                           capture_output=True, text=True)
    assert r.returncode == 0 and "config_hash" in r.stdout, r.stderr
    assert time.monotonic() - t_lock >= 4.5  # not before its 5 s


def test_the_planted_secret_is_never_shown(node, tmp_path):
    p = ["--port", node.link]
    shown = [node.cli("config", "get", *p, "commands.key").stdout,
             node.cli("config", "get", *p, "commands", "--json").stdout,
             node.cli("config", "pull", *p, "-o", str(tmp_path / "pulled.json")).stderr,
             (tmp_path / "pulled.json").read_text(),
             node.cli("logs", *p).stdout, node.cli("status", *p).stdout]
    with NodeConsole(node.link, pin=PIN) as con:
        con.ser.write(b"show config\r")  # a person's view, echo and all
        time.sleep(0.5)
        shown.append(con.ser.read(65536).decode(errors="replace"))
    shown.append(node.text())  # everything the agent printed since it started
    assert '"key": "******"' in shown[3]
    for text in shown:
        assert KEY not in text and KEY[:16] not in text
