"""Board commands over USB serial: flash MicroPython, deploy the firmware, push a config.

`flash` wraps esptool (ESP32) or copies a UF2 (Pico W); `deploy` compiles the firmware to
.mpy with mpy-cross for the board's architecture and copies it to the board; `config push`
validates a node config on the laptop first, then copies it to /config.json on the board.
Both reach the board through one Transport (transport.py). Nothing is sent to a board before
the local checks pass.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from otlink_tools import mpy, paths
from otlink_tools.errors import CommandError
from otlink_tools.manifest import board_modules
from otlink_tools.transport import Transport

MPY_ARCH = {"xtensawin": "xtensawin", "armv6m": "armv6m", "armv7emsp": "armv7emsp", "x64": "x64"}


def board_def(name: str) -> dict:
    f = paths.BOARDS / f"{name}.json"
    if not f.exists():
        known = ", ".join(sorted(p.stem for p in paths.BOARDS.glob("*.json")))
        raise CommandError(f"unknown board {name!r} (known: {known})")
    return json.loads(f.read_text())


def compile_firmware(out: Path, arch: str, board: str) -> list[Path]:
    """The tree a board runs, in `out`: every firmware module as .mpy for `arch` (main.py as
    source), and the board definition at /boards/<board>.json, which the board HAL reads."""
    files = []
    src = paths.FIRMWARE
    bdst = out / "boards" / f"{board}.json"
    bdst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(paths.BOARDS / f"{board}.json", bdst)
    files.append(bdst)
    main = out / "main.py"
    shutil.copy(src / "main.py", main)  # main.py stays source: the board runs it by name
    files.append(main)
    # The modules firmware/manifest.py freezes into a board image: the same list here.
    mods = [(s, r) for s, r in board_modules(src / "manifest.py") if r.parts[0] == "otlink"]
    files += mpy.compile_tree(mods, out, arch)
    return files


def cmd_deploy(args: argparse.Namespace) -> int:
    board_def(args.board)  # an unknown board is named before anything else
    board = Transport(args.port, dry_run=args.dry_run)
    if args.dry_run:
        deploy(board, args.board, Path(args.out) if args.out else None)
        return 0
    board.check_port()
    res = deploy(board, args.board, Path(args.out) if args.out else None,
                 install_to=args.port, baud=args.baud, reset=args.reset)
    print(f"deployed to {args.port}: {res['sent']} files sent ({res['bytes']} bytes), "
          f"{res['skipped']} already there, all {res['verified']} verified by SHA-256 on "
          f"the board{'; board reset' if args.reset else ''}")
    return 0


def deploy(board: Transport, board_name: str, out: Path | None = None,
           install_to: str | None = None, baud: int = 115200, reset: bool = True,
           root: str = "", wait_s: float = 8):
    """Compile the firmware for `board_name` into `out` (None: a temporary folder, removed
    at the end) with umqtt.simple beside it. Dry (install_to None): record the mpremote copy
    the board transport would run, return the compiled files. Otherwise copy it to the board
    on install_to with a progress bar, verify each file by its SHA-256 computed on the board,
    reset the board, and return board_link.install()'s figures."""
    arch = MPY_ARCH[board_def(board_name)["arch"]]
    lib = paths.BUILD_LIB / "umqtt" / "simple.py"
    if not lib.exists():
        raise CommandError("umqtt.simple is not fetched: run 'make setup'")
    # umqtt.simple travels in a folder of its own (its source is not part of --out)
    with tempfile.TemporaryDirectory(prefix="otlink-mpy-") as tmp:
        stage = Path(tmp) / "lib"
        (stage / "umqtt").mkdir(parents=True)
        shutil.copy(lib, stage / "umqtt" / "simple.py")
        where = out or Path(tmp) / "tree"
        try:
            files = compile_firmware(where, arch, board_name)
        except OSError as e:
            raise CommandError(f"--out {where}: cannot write the compiled firmware there: "
                               f"{e.strerror or e}") from None
        shown = str(out) if out else "a temporary folder (removed; --out DIR keeps the files)"
        print(f"compiled {len(files)} modules for {arch} into {shown}")
        if install_to is None:
            board.copy([(where, ""), (stage, "")])
            return files
        from otlink_tools import board_link

        return board_link.install(install_to, [(where, ""), (stage, "")], baud=baud,
                                  reset=reset, root=root, wait_s=wait_s)


def cmd_config_push(args: argparse.Namespace) -> int:
    from otlink_tools.node import validate_file

    cfg = validate_file(args.config)
    if cfg["board"] == "unix":
        raise CommandError(f"{args.config}: board is 'unix'; set \"board\" to esp32 or pico_w")
    board = Transport(args.port)
    board.check_port()
    board.copy([(Path(args.config), "/config.json")])
    print(f"{args.config} -> {args.port}:/config.json (validated; reset the board to apply)")
    return 0


# --- flash ------------------------------------------------------------------------------------

UF2_MAGIC = (0x0A324655, 0x9E5D5157, 0x0AB16F30)  # start 0, start 1, end (UF2 spec)


def _esptool() -> list[str]:
    return [sys.executable, "-m", "esptool"]


def image_hint(bd: dict, name: str) -> str:
    mp = bd.get("micropython") or {}
    if not mp:
        return f"boards/{name}.json names no MicroPython image"
    return (f"boards/{name}.json wants MicroPython {mp['release']}, variant {mp['variant']}: "
            f"download {mp['image']} from {mp['download']}")


def esp32_plan(bd: dict, fw: Path, work: Path, port: str, baud: int, erase: bool
               ) -> list[list[str]]:
    """The esptool command lines that flash an ESP32 as MicroPython's instructions do (erase,
    then the image at the chip's offset), with otlink's partition table placed inside the
    image (a merged image built here, written to work/), so one write covers every address
    once and the table can never overlap the image. Checks the image against the board."""
    from otlink_tools.partitions import TABLE_OFFSET, TABLE_SIZE, PartitionError, build, parse

    mp = bd.get("micropython") or {}
    chip = mp.get("chip", "esp32")
    base = mp.get("image_offset", 0x1000)
    fl = bd["flash"]
    try:
        table = build(fl["partition_table"], fl["size"])
    except PartitionError as e:
        raise CommandError(f"boards/{bd['name']}.json: {e}") from None
    img = bytearray(fw.read_bytes())
    if len(img) < 1024 or img[0] != 0xE9:
        raise CommandError(f"{fw.name}: not an ESP32 firmware image (no 0xE9 image header at "
                           f"its start); {image_hint(bd, bd['name'])}")
    at = TABLE_OFFSET - base  # where the image carries its own partition table
    app = [r for r in fl["partition_table"] if r[1] == "app"][0]
    if len(img) > at + TABLE_SIZE:
        try:
            theirs = parse(bytes(img[at:at + TABLE_SIZE]))
        except (PartitionError, KeyError) as e:
            raise CommandError(f"{fw.name}: no valid partition table at {TABLE_OFFSET:#x} "
                               f"inside the image ({e}): is it a MicroPython {chip} image "
                               f"for offset {base:#x}? {image_hint(bd, bd['name'])}") from None
        their_app = [r for r in theirs if r[1] == "app"]
        if not their_app or their_app[0][3] != app[3]:
            raise CommandError(f"{fw.name}: its app partition starts at "
                               f"{their_app[0][3] if their_app else 0:#x}, otlink's layout at "
                               f"{app[3]:#x}: a different image variant")
        img[at:at + TABLE_SIZE] = table
    else:
        raise CommandError(f"{fw.name} is {len(img)} bytes: too small for a MicroPython image "
                           f"(it holds bootloader, partition table and app from {base:#x})")
    app_bytes = base + len(img) - app[3]
    if app_bytes > app[4]:
        raise CommandError(f"{fw.name}: its app is {app_bytes} bytes, larger than the "
                           f"{app[4]}-byte app partition")
    end = base + len(img)
    if end > fl["size"]:
        raise CommandError(f"{fw.name} ends at {end:#x}, past the {fl['size'] >> 20} MiB flash")
    merged = work / f"{fw.stem}-otlink.bin"
    merged.write_bytes(bytes(img))
    head = _esptool() + ["--chip", chip, "--port", port, "--baud", str(baud)]
    cmds = []
    if erase:
        cmds.append(head + ["erase-flash"])
    cmds.append(head + ["write-flash", hex(base), str(merged)])
    return cmds


def uf2_check(fw: Path, family: int | None) -> int:
    """Blocks of a UF2 file, checked (magic numbers, and the family when the board names
    one); CommandError otherwise."""
    import struct

    data = fw.read_bytes()
    if not data or len(data) % 512:
        raise CommandError(f"{fw.name}: not a UF2 file (size {len(data)} is not a multiple of "
                           "512 bytes)")
    for i in range(0, len(data), 512):
        m0, m1, flags, _addr, _size, _no, _n, fam = struct.unpack_from("<8I", data, i)
        if (m0, m1) != UF2_MAGIC[:2] or struct.unpack_from("<I", data, i + 508)[0] \
                != UF2_MAGIC[2]:
            raise CommandError(f"{fw.name}: block {i // 512} is not a UF2 block")
        # RP2350 images may open with a block of the "absolute" family (0xe48bff57, the
        # RP2350-E10 erratum workaround picotool writes): part of a valid image
        if family is not None and flags & 0x2000 and fam != family and fam != 0xE48BFF57:
            raise CommandError(f"{fw.name}: UF2 family {fam:#x}, the board wants "
                               f"{family:#x} (another chip's image)")
    return len(data) // 512


def copy_with_progress(src: Path, dst: Path, chunk: int = 64 * 1024) -> None:
    from otlink_tools.progress import Bar

    bar = Bar(f"copy {src.name}", src.stat().st_size)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while True:
            b = fi.read(chunk)
            if not b:
                break
            fo.write(b)
            bar.advance(len(b))
        fo.flush()
        os.fsync(fo.fileno())
    bar.finish()


def cmd_flash(args: argparse.Namespace) -> int:
    bd = board_def(args.board)
    if not args.firmware:
        raise CommandError(f"no firmware image given: {image_hint(bd, args.board)}")
    fw = Path(args.firmware)
    if not fw.exists():
        raise CommandError(f"firmware image {fw} not found; {image_hint(bd, args.board)}")
    mp = bd.get("micropython") or {}
    if mp and (mp["variant"] not in fw.name or mp["release"] not in fw.name):
        print(f"otlink: note: {fw.name} does not look like {mp['image']} "
              f"({image_hint(bd, args.board)})", file=sys.stderr)
    if bd["hal"] == "esp32":
        with tempfile.TemporaryDirectory(prefix="otlink-flash-") as tmp:
            cmds = esp32_plan(bd, fw, Path(tmp), args.port, args.baud, args.erase)
            for cmd in cmds:
                if args.dry_run:
                    print(" ".join(cmd))
                    continue
                rc = subprocess.call(cmd)
                if rc:
                    raise CommandError(f"esptool {cmd[cmd.index('--baud') + 2]} failed (exit "
                                       f"status {rc}): see its messages above")
            if args.dry_run:
                print("(the merged image: the firmware with otlink's partition table at 0x8000, "
                      "built in a temporary folder that is removed now)")
        return 0
    if bd["hal"] == "rp2":
        fam = int(mp["uf2_family"], 16) if mp.get("uf2_family") else None
        blocks = uf2_check(fw, fam)
        if args.port == "picotool":
            cmd = ["picotool", "load", "-v", "-x", str(fw)]
            if args.dry_run:
                print(" ".join(cmd))
                return 0
            if not shutil.which("picotool"):
                raise CommandError("picotool is not installed: give the board's boot drive "
                                   "as --port instead (hold BOOTSEL while plugging it in)")
            rc = subprocess.call(cmd)
            if rc:
                raise CommandError(f"picotool failed (exit status {rc})")
            return 0
        mount = Path(args.port)
        info = mount / "INFO_UF2.TXT"
        if not info.exists():
            raise CommandError(f"{mount} is not an RP2 boot drive (no INFO_UF2.TXT: hold "
                               "BOOTSEL while plugging the board in, then give the drive "
                               "RPI-RP2 or RP2350 as --port, or --port picotool)")
        text = info.read_text(errors="replace")
        if "RP2" not in text:
            raise CommandError(f"{mount}: INFO_UF2.TXT names no RP2 board: {text[:80]!r}")
        if args.dry_run:
            print(f"copy {fw} -> {mount / fw.name} ({blocks} UF2 blocks)")
            return 0
        copy_with_progress(fw, mount / fw.name)
        print(f"copied {fw.name} to {mount}: the board reboots into it")
        return 0
    raise CommandError(f"board {args.board} cannot be flashed")
