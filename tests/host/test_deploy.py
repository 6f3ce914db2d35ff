"""`otlink deploy --dry-run`: the tree a board receives, built for its architecture."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
