"""Board commands over USB serial: flash MicroPython, deploy the firmware, push a config.

`flash` wraps esptool (ESP32) or copies a UF2 (Pico W); `deploy` compiles the firmware to
.mpy with mpy-cross for the board's architecture and copies it with mpremote; `config push`
validates a node config on the laptop first, then copies it to /config.json on the board.
Nothing is sent to a board before the local checks pass.
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


def check_port(port: str) -> None:
    """A port given as a device path must exist (mpremote would blame 'another program');
    mpremote's own names (auto, a0, u0, id:...) are left to it."""
    if "/" in port and not Path(port).exists():
        raise CommandError(f"--port {port}: no such device (is the board plugged in? "
                           "`mpremote devs` lists the ports it sees)")


def _mpremote(port: str, *args: str) -> None:
    cmd = [str(Path(sys.executable).parent / "mpremote"), "connect", port, *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        why = res.stderr.strip() or res.stdout.strip()
        raise CommandError(f"mpremote {' '.join(args[:2])}: {why}")


def cmd_deploy(args: argparse.Namespace) -> int:
    bd = board_def(args.board)
    arch = MPY_ARCH[bd["arch"]]
    if not args.dry_run:
        check_port(args.port)
    lib = paths.BUILD_LIB / "umqtt" / "simple.py"
    if not lib.exists():
        raise CommandError("umqtt.simple is not fetched: run 'make setup'")
    if args.out:
        return _deploy(args, arch, Path(args.out), lib)
    # No --out: build in a temporary folder, removed when the command ends.
    with tempfile.TemporaryDirectory(prefix="otlink-mpy-") as tmp:
        return _deploy(args, arch, Path(tmp), lib)


def _deploy(args: argparse.Namespace, arch: str, out: Path, lib: Path) -> int:
    try:
        files = compile_firmware(out, arch, args.board)
    except OSError as e:
        raise CommandError(f"--out {out}: cannot write the compiled firmware there: "
                           f"{e.strerror or e}") from None
    where = str(out) if args.out else "a temporary folder (removed; --out DIR keeps the files)"
    print(f"compiled {len(files)} modules for {arch} into {where}")
    if args.dry_run:
        return 0
    _mpremote(args.port, "fs", "cp", "-r", str(out) + "/.", ":")
    try:
        _mpremote(args.port, "fs", "mkdir", ":umqtt")
    except CommandError:
        pass  # already there from an earlier deploy
    _mpremote(args.port, "fs", "cp", str(lib), ":umqtt/simple.py")
    print(f"deployed to {args.port}")
    return 0


def cmd_config_push(args: argparse.Namespace) -> int:
    from otlink_tools.node import validate_file

    cfg = validate_file(args.config)
    if cfg["board"] == "unix":
        raise CommandError(f"{args.config}: board is 'unix'; set \"board\" to esp32 or pico_w")
    check_port(args.port)
    _mpremote(args.port, "fs", "cp", args.config, ":/config.json")
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
            return subprocess.call(cmd)
    if bd["hal"] == "rp2":
        mount = Path(args.port)
        if not (mount / "INFO_UF2.TXT").exists():
            raise CommandError(f"{mount} is not an RP2 boot drive (hold BOOTSEL while plugging in)")
        if not args.dry_run:
            shutil.copy(fw, mount / fw.name)
        print(f"copied {fw.name} to {mount}")
        return 0
    raise CommandError(f"board {args.board} cannot be flashed")
