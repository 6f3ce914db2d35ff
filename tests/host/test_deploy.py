"""`otlink deploy --dry-run`: the tree a board receives, built for its architecture; the board
transport that deploy and config push go through."""

import json
import os
import pty
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from otlink_tools import board_link, device
from otlink_tools.errors import CommandError
from otlink_tools.transport import Transport

OTLINK = str(Path(sys.executable).parent / "otlink")
FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


@pytest.mark.parametrize("board", ["esp32", "pico_w"])
def test_deploy_tree_has_everything_a_board_runs_and_nothing_unix(board, tmp_path):
    res = subprocess.run([OTLINK, "deploy", "--board", board, "--dry-run", "--out",
                          str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    files = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    # exactly: main.py as source, the board definition, and every firmware module as .mpy
    # except the Unix port's emulation harness (otlink/hal/unix/)
    src = FIRMWARE / "otlink"
    modules = {str(Path("otlink", p.relative_to(src).with_suffix(".mpy")))
               for p in src.rglob("*.py") if p.relative_to(src).parts[:2] != ("hal", "unix")}
    assert files == {"main.py", f"boards/{board}.json"} | modules
    assert json.loads((tmp_path / "boards" / f"{board}.json").read_text())["name"] == board
    for mod in ("otlink/app.mpy", "otlink/core/config.mpy", "otlink/modbus_poller.mpy",
                "otlink/publisher.mpy", "otlink/uplink.mpy", "otlink/hal/rs485.mpy",
                "otlink/hal/uart_machine.mpy", "otlink/hal/machine_board.mpy",
                "otlink/hal/esp32.mpy", "otlink/hal/rp2.mpy", "otlink/hal/tls.mpy"):
        assert mod in files, mod
    # the flash queue, a module or a package
    assert {"otlink/core/queue.mpy", "otlink/core/queue/__init__.mpy"} & files
    assert not [f for f in files if f.startswith("otlink/hal/unix/")], files
    # .mpy header: 'M' and format version 6 (MicroPython 1.22 and later)
    hdr = (tmp_path / "otlink" / "app.mpy").read_bytes()[:2]
    assert hdr == b"M\x06"


def test_unknown_board_is_named(tmp_path):
    res = subprocess.run([OTLINK, "deploy", "--board", "esp8266", "--dry-run", "--out",
                          str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "unknown board 'esp8266'" in res.stderr and "esp32" in res.stderr


# --- the board transport: what deploy and config push send, and how a board failing is told ---

def test_deploy_sends_the_tree_and_umqtt_in_one_connection(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # TMPDIR is read again
    try:
        board = Transport("/dev/ttyUSB9", dry_run=True)
        out = tmp_path / "out"
        files = device.deploy(board, "esp32", out)
    finally:
        tempfile.tempdir = None
    assert len(board.sent) == 1  # one mpremote process: one connection, one board reset
    cmd = board.sent[0]
    assert cmd[1:3] == ["connect", "/dev/ttyUSB9"]
    first, second = " ".join(cmd[3:]).split(" + ")
    assert first == f"fs cp -r {out}/. :"
    staged = second.split()[3]
    assert second == f"fs cp -r {staged} :" and staged.endswith("/.")
    assert main_py(files) and (out / "main.py").exists()
    # the umqtt folder it sent from was temporary: nothing is left behind
    assert not Path(staged).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def main_py(files: list[Path]) -> bool:
    return any(f.name == "main.py" for f in files)


def test_a_missing_mpremote_is_one_clear_error(tmp_path):
    f = tmp_path / "node.json"
    f.write_text("{}")
    board = Transport(str(tmp_path), mpremote=str(tmp_path / "no-mpremote"))
    with pytest.raises(CommandError, match="no-mpremote: not found .*make setup"):
        board.copy([(f, "/config.json")])


def test_mpremote_failure_is_reported_in_its_own_words(tmp_path):
    port = tmp_path / "not-a-tty"
    port.write_text("")
    f = tmp_path / "node.json"
    f.write_text("{}")
    board = Transport(str(port))
    board.check_port()  # it exists
    with pytest.raises(CommandError, match=r"^mpremote fs cp: .*failed to access .*not-a-tty"):
        board.copy([(f, "/config.json")])


def test_a_board_that_never_answers_is_given_up_on():
    """mpremote alone waits forever for a raw REPL prompt; the transport stops it."""
    master, slave = pty.openpty()  # a serial port with nobody on the other end
    try:
        board = Transport(os.ttyname(slave), timeout_s=2, min_rate=10**9)
        t0 = time.monotonic()
        with pytest.raises(CommandError, match=r"no answer from the board on /dev/.* within 2 s"):
            board.copy([(Path(__file__), "/x.py")])
        assert time.monotonic() - t0 < 10
    finally:
        os.close(master)
        os.close(slave)


# --- deploy to a MicroPython over its raw REPL: the Unix port on a pty stands in for a board ---

@pytest.fixture
def repl_board(tmp_path):
    """A MicroPython REPL on a serial line: the Unix port with its stdin/stdout on a pty's
    master side; the slave's path is the "board's" port. Its files land in tmp_path/fs."""
    import tty

    master, slave = pty.openpty()
    tty.setraw(slave)
    fs = tmp_path / "fs"
    fs.mkdir()
    mp = Path(sys.executable).parent / "micropython"
    proc = subprocess.Popen([str(mp)], stdin=master, stdout=master, stderr=master, cwd=fs)
    time.sleep(0.2)
    yield os.ttyname(slave), fs
    proc.kill()
    proc.wait()
    os.close(master)
    os.close(slave)


def test_deploy_copies_verifies_by_hash_and_skips_what_is_there(repl_board, tmp_path, capsys):
    port, fs = repl_board
    out = tmp_path / "tree"
    res = device.deploy(Transport(port), "pico_w", out, install_to=port, root=str(fs))
    local = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert res["sent"] == len(local) + 1 == res["verified"] and res["skipped"] == 0
    for rel, data in local.items():  # every byte arrived, .mpy for the board's arch
        assert (fs / rel).read_bytes() == data, rel
    assert (fs / "umqtt" / "simple.py").exists()
    assert "100%" in capsys.readouterr().err  # the progress bar ran to its end
    # again (the compiled tree as it is): nothing changed, nothing sent; one file damaged on
    # the board: only it is sent
    res = board_link.install(port, [(out, "")], root=str(fs))
    assert (res["sent"], res["skipped"]) == (0, len(local))
    (fs / "otlink" / "app.mpy").write_bytes(b"M\x06broken")
    res = board_link.install(port, [(out, "")], root=str(fs))
    assert (res["sent"], res["skipped"]) == (1, len(local) - 1)
    assert (fs / "otlink" / "app.mpy").read_bytes() == local["otlink/app.mpy"]


def test_deploy_names_a_port_without_a_repl(tmp_path):
    master, slave = pty.openpty()  # nobody on the other end
    try:
        t0 = time.monotonic()
        with pytest.raises(CommandError, match="no MicroPython raw REPL on /dev/"):
            board_link.install(os.ttyname(slave), [(Path(__file__), "x.py")], wait_s=1)
        assert time.monotonic() - t0 < 5
    finally:
        os.close(master)
        os.close(slave)
