"""`otlink flash`: the exact esptool / picotool command lines against a realistically sized
image (1.6 MB, MicroPython ESP32_GENERIC's layout), checked by esptool itself (merge-bin
refuses overlapping writes offline, as write-flash does on a board)."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from otlink_tools import device, paths
from otlink_tools.errors import CommandError
from otlink_tools.partitions import TABLE_SIZE, build, parse

OTLINK = str(Path(sys.executable).parent / "otlink")
# MicroPython's ESP32_GENERIC partition table (partitions-4MiB.csv): what a downloaded image
# carries at 0x8000
STOCK = [["nvs", "data", "nvs", 0x9000, 0x6000], ["phy_init", "data", "phy", 0xF000, 0x1000],
         ["factory", "app", "factory", 0x10000, 0x1F0000],
         ["vfs", "data", "fat", 0x200000, 0x200000]]
SIZE = 1_600_000  # bytes from 0x1000: bootloader, table, app (a v1.2x image is ~1.6-1.7 MB)


def esp32_image(path: Path, size: int = SIZE, offset: int = 0x1000, table=STOCK) -> Path:
    img = bytearray(os.urandom(size))
    img[0] = 0xE9  # bootloader image header
    img[0x8000 - offset:0x8000 - offset + TABLE_SIZE] = build(table, 0x1000000)
    img[0x10000 - offset] = 0xE9  # app image header
    path.write_bytes(bytes(img))
    return path


def board():
    return device.board_def("esp32")


def test_esp32_plan_is_erase_then_one_merged_write_at_the_chip_offset(tmp_path):
    fw = esp32_image(tmp_path / "ESP32_GENERIC-20250911-v1.28.0.bin")
    work = tmp_path / "work"
    work.mkdir()
    cmds = device.esp32_plan(board(), fw, work, "/dev/ttyUSB0", 460800, erase=True)
    merged = work / "ESP32_GENERIC-20250911-v1.28.0-otlink.bin"
    head = [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0",
            "--baud", "460800"]
    assert cmds == [head + ["erase-flash"], head + ["write-flash", "0x1000", str(merged)]]
    # the merged image is the firmware with otlink's table at 0x8000 and nothing else changed
    a, b = fw.read_bytes(), merged.read_bytes()
    assert len(a) == len(b) == SIZE
    t0, t1 = 0x8000 - 0x1000, 0x8000 - 0x1000 + TABLE_SIZE
    assert a[:t0] == b[:t0] and a[t1:] == b[t1:]
    assert parse(b[t0:t1]) == [list(r) for r in board()["flash"]["partition_table"]]


def test_esptool_accepts_the_plan_and_refused_the_old_one(tmp_path):
    """esptool's merge-bin checks the address/file pairs offline exactly as write-flash does
    before touching a board: the old plan (image at 0x1000 plus the table at 0x8000) overlaps."""
    fw = esp32_image(tmp_path / "fw.bin")
    work = tmp_path / "work"
    work.mkdir()
    write = device.esp32_plan(board(), fw, work, "/dev/null", 115200, erase=False)[0]
    assert "erase-flash" not in write
    pairs = write[write.index("write-flash") + 1:]
    res = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32", "merge-bin",
                          "-o", str(tmp_path / "out.bin"), *pairs], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    table = tmp_path / "pt.bin"
    fl = board()["flash"]
    table.write_bytes(build(fl["partition_table"], fl["size"]))
    old = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32", "merge-bin",
                          "-o", str(tmp_path / "old.bin"), "0x1000", str(fw), "0x8000",
                          str(table)], capture_output=True, text=True)
    assert old.returncode != 0 and "overlap" in (old.stdout + old.stderr).lower()


def test_installed_esptool_has_the_command_names_used():
    res = subprocess.run([sys.executable, "-m", "esptool", "write-flash", "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "--flash-mode" in res.stdout + res.stderr


@pytest.mark.parametrize("mutate, what", [
    (lambda b: b"\x00" + b[1:], "not an ESP32 firmware image"),
    (lambda b: b[:0x7000] + b"\xff" * TABLE_SIZE + b[0x7C00:], "no valid partition table"),
    (lambda b: b + os.urandom(0x200000), "larger than the"),
    (lambda b: b[:0x2000], "too small"),
])
def test_wrong_images_are_refused_before_esptool_runs(tmp_path, mutate, what):
    fw = esp32_image(tmp_path / "fw.bin")
    fw.write_bytes(mutate(fw.read_bytes()))
    with pytest.raises(CommandError, match=what):
        device.esp32_plan(board(), fw, tmp_path, "/dev/ttyUSB0", 460800, True)


def test_an_image_for_another_app_offset_is_refused(tmp_path):
    other = [r[:] for r in STOCK]
    other[2][3] = 0x20000
    other[3][3] = 0x210000
    other[3][4] = 0x1F0000
    fw = esp32_image(tmp_path / "fw.bin", table=other)
    with pytest.raises(CommandError, match="a different image variant"):
        device.esp32_plan(board(), fw, tmp_path, "/dev/ttyUSB0", 460800, True)


def test_flash_without_an_image_names_the_file_to_download():
    res = subprocess.run([OTLINK, "flash", "--board", "esp32", "--port", "/dev/ttyUSB0"],
                         capture_output=True, text=True)
    assert res.returncode == 1
    mp = board()["micropython"]
    assert mp["variant"] in res.stderr and mp["release"] in res.stderr
    assert "ESP32_GENERIC-<date>-v1.28.0.bin" in res.stderr


def test_flash_dry_run_prints_both_commands(tmp_path):
    fw = esp32_image(tmp_path / "ESP32_GENERIC-20250911-v1.28.0.bin")
    res = subprocess.run([OTLINK, "flash", "--board", "esp32", "--port", "/dev/ttyUSB0",
                          "--baud", "921600", "--dry-run", str(fw)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    lines = [x for x in res.stdout.splitlines() if "esptool" in x]
    assert len(lines) == 2
    assert lines[0].endswith("--chip esp32 --port /dev/ttyUSB0 --baud 921600 erase-flash")
    assert " write-flash 0x1000 " in lines[1] and lines[1].endswith("-otlink.bin")
    res = subprocess.run([OTLINK, "flash", "--board", "esp32", "--port", "/dev/ttyUSB0",
                          "--no-erase", "--dry-run", str(fw)], capture_output=True, text=True)
    assert "erase-flash" not in res.stdout


def uf2(path: Path, blocks: int = 3000, family: int = 0xE48BFF56) -> Path:
    out = bytearray()
    for i in range(blocks):
        hdr = struct.pack("<8I", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000 + 256 * i, 256,
                          i, blocks, family)
        out += hdr + os.urandom(256) + bytes(476 - 256) + struct.pack("<I", 0x0AB16F30)
    path.write_bytes(bytes(out))
    return path


def test_pico_uf2_is_copied_to_the_boot_drive_with_progress(tmp_path):
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\n"
                                        "Board-ID: RPI-RP2\n")
    fw = uf2(tmp_path / "RPI_PICO_W-20250911-v1.28.0.uf2")  # 1.5 MB, as a real image
    res = subprocess.run([OTLINK, "flash", "--board", "pico_w", "--port", str(drive),
                          str(fw)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (drive / fw.name).read_bytes() == fw.read_bytes()
    assert "100%" in res.stderr  # the progress bar reached its end
    dry = subprocess.run([OTLINK, "flash", "--board", "pico_w", "--port", "picotool",
                          "--dry-run", str(fw)], capture_output=True, text=True)
    assert dry.stdout.strip() == f"picotool load -v -x {fw}"


def test_pico_refuses_another_chips_uf2_and_a_drive_that_is_not_one(tmp_path):
    drive = tmp_path / "d"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("Board-ID: RPI-RP2\n")
    bad = uf2(tmp_path / "x.uf2", blocks=4, family=0x1C5F21B0)  # an ESP32 family id
    res = subprocess.run([OTLINK, "flash", "--board", "pico_w", "--port", str(drive),
                          str(bad)], capture_output=True, text=True)
    assert res.returncode == 1 and "family 0x1c5f21b0" in res.stderr
    good = uf2(tmp_path / "y.uf2", blocks=4)
    res = subprocess.run([OTLINK, "flash", "--board", "pico_w", "--port", str(tmp_path),
                          str(good)], capture_output=True, text=True)
    assert res.returncode == 1 and "not an RP2 boot drive" in res.stderr


def test_board_files_name_their_micropython():
    for name in ("esp32", "pico_w"):
        mp = json.loads((paths.BOARDS / f"{name}.json").read_text())["micropython"]
        assert mp["release"].startswith("v1.") and mp["variant"] and mp["image"]


def test_esp32_s3_image_goes_at_0x0_with_the_table_at_its_0x8000(tmp_path):
    bd = device.board_def("esp32_s3_devkitc")
    stock = [r[:] for r in STOCK]
    stock[3][4] = 0x600000  # the S3 image's own vfs on 8 MiB
    fw = esp32_image(tmp_path / "ESP32_GENERIC_S3-20250911-v1.28.0.bin", offset=0,
                     table=stock)
    cmds = device.esp32_plan(bd, fw, tmp_path, "/dev/ttyACM0", 460800, erase=True)
    merged = tmp_path / "ESP32_GENERIC_S3-20250911-v1.28.0-otlink.bin"
    head = [sys.executable, "-m", "esptool", "--chip", "esp32s3", "--port", "/dev/ttyACM0",
            "--baud", "460800"]
    assert cmds == [head + ["erase-flash"], head + ["write-flash", "0x0", str(merged)]]
    b = merged.read_bytes()
    assert parse(b[0x8000:0x8000 + TABLE_SIZE]) == [list(r) for r in
                                                   bd["flash"]["partition_table"]]
    res = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32s3", "merge-bin",
                          "-o", str(tmp_path / "out.bin"), "0x0", str(merged)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
