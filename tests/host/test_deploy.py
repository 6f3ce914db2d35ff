"""`otlink deploy --dry-run`: the tree a board receives, built for its architecture."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

OTLINK = str(Path(sys.executable).parent / "otlink")


@pytest.mark.parametrize("board", ["esp32", "pico_w"])
def test_deploy_tree_has_everything_a_board_runs_and_nothing_unix(board, tmp_path):
    res = subprocess.run([OTLINK, "deploy", "--board", board, "--dry-run", "--out",
                          str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    files = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert "main.py" in files
    assert json.loads((tmp_path / "boards" / f"{board}.json").read_text())["name"] == board
    for mod in ("otlink/app.mpy", "otlink/core/queue.mpy", "otlink/core/config.mpy",
                "otlink/modbus_poller.mpy", "otlink/publisher.mpy", "otlink/uplink.mpy",
                "otlink/hal/rs485.mpy", "otlink/hal/uart_machine.mpy",
                "otlink/hal/machine_board.mpy", "otlink/hal/esp32.mpy", "otlink/hal/rp2.mpy"):
        assert mod in files, mod
    assert not [f for f in files if f.endswith(".py") and f != "main.py"]
    assert not [f for f in files if f.startswith("otlink/hal/unix/")], files
    assert "otlink/hal/tls.mpy" in files and "otlink/core/queue_codec_src.mpy" in files
    # .mpy header: 'M' and format version 6 (MicroPython 1.22 and later)
    hdr = (tmp_path / "otlink" / "app.mpy").read_bytes()[:2]
    assert hdr == b"M\x06"


def test_unknown_board_is_named(tmp_path):
    res = subprocess.run([OTLINK, "deploy", "--board", "esp8266", "--dry-run", "--out",
                          str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "unknown board 'esp8266'" in res.stderr and "esp32" in res.stderr
