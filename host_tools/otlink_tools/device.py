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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from otlink_tools import mpy, paths
from otlink_tools.errors import CommandError
from otlink_tools.manifest import board_modules
from otlink_tools.transport import Transport

MPY_ARCH = {"xtensawin": "xtensawin", "armv6m": "armv6m", "x64": "x64"}


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
    if not args.dry_run:
        board.check_port()
    deploy(board, args.board, Path(args.out) if args.out else None)
    if not args.dry_run:
        print(f"deployed to {args.port}")
    return 0


def deploy(board: Transport, board_name: str, out: Path | None = None) -> list[Path]:
    """Compile the firmware for `board_name` into `out` (None: a temporary folder, removed
    at the end) and copy it, with umqtt.simple, to the board in one connection."""
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
        board.copy([(where, ""), (stage, "")])
    return files


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


def cmd_flash(args: argparse.Namespace) -> int:
    bd = board_def(args.board)
    fw = Path(args.firmware)
    if not fw.exists():
        raise CommandError(f"firmware image {fw} not found")
    if bd["hal"] == "esp32":
        # The image at 0x1000, then otlink's partition table at 0x8000: it shrinks "vfs" and
        # adds the queue's own "otq" partition (docs/queue.md, Board layout).
        from otlink_tools.partitions import TABLE_OFFSET, PartitionError, build

        fl = bd["flash"]
        try:
            table = build(fl["partition_table"], fl["size"])
        except PartitionError as e:
            raise CommandError(f"boards/{args.board}.json: {e}") from None
        app = [r for r in fl["partition_table"] if r[1] == "app"][0]
        if fw.stat().st_size > app[4]:
            raise CommandError(f"{fw.name} is {fw.stat().st_size} bytes: larger than the "
                               f"{app[4]}-byte app partition")
        with tempfile.TemporaryDirectory(prefix="otlink-pt-") as tmp:
            tpath = Path(tmp) / "partitions.bin"
            tpath.write_bytes(table)
            cmd = [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", args.port,
                   "write_flash", "-z", "0x1000", str(fw), hex(TABLE_OFFSET), str(tpath)]
            if args.dry_run:
                print(" ".join(cmd))
                print(f"({tpath.name}: otlink's partition table for {args.board}, written to "
                      "a temporary folder that is removed now)")
                return 0
            rc = subprocess.call(cmd)
            if rc:
                raise CommandError(f"esptool failed (exit status {rc}): see its messages above")
            return 0
    if bd["hal"] == "rp2":
        mount = Path(args.port)
        if not (mount / "INFO_UF2.TXT").exists():
            raise CommandError(f"{mount} is not an RP2 boot drive (hold BOOTSEL while plugging in)")
        if not args.dry_run:
            shutil.copy(fw, mount / fw.name)
        print(f"copied {fw.name} to {mount}")
        return 0
    raise CommandError(f"board {args.board} cannot be flashed")
