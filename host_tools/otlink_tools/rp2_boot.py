"""The frozen `_boot.py` of an RP2 board's otlink MicroPython build, from its board file.

boards/rp2_boot.py is the one source of that boot for every RP2 board; what differs between
boards is only the littlefs length (`flash.regions.fs.size`) and program size
(`flash.prog_size`) of the board file. This writes a board's copy with those two values in
place of the template's, ready to freeze (docs/boards.md, "Boards"):

    python -m otlink_tools.rp2_boot pico_w -o <micropython>/ports/rp2/modules/_boot.py
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from otlink_tools import paths
from otlink_tools.device import board_def
from otlink_tools.errors import CommandError

TEMPLATE = "rp2_boot.py"  # in the boards folder
# the template lines a board's values replace: `NAME = <int>  # comment`
_VALUE = re.compile(r"^(FS_LEN|PROG_SIZE) = (\d+)(  # .*)?$", re.M)


def board_values(board: dict) -> dict[str, int]:
    """FS_LEN and PROG_SIZE of an RP2 board file; CommandError for any other board."""
    name = board.get("name", "?")
    if board.get("hal") != "rp2":
        raise CommandError(f"boards/{name}.json is not an RP2 board (hal {board.get('hal')!r}):"
                           " only the RP2 boards' image takes otlink's _boot.py")
    fl = board["flash"]
    return {"FS_LEN": fl["regions"]["fs"]["size"], "PROG_SIZE": fl["prog_size"]}


def render(board: dict, template: str) -> str:
    """The template's text with the board's FS_LEN and PROG_SIZE, under a header naming the
    board and its image; every other line as the template has it."""
    values = board_values(board)
    seen = []

    def line(m: re.Match) -> str:
        seen.append(m.group(1))
        n = values[m.group(1)]
        what = "flash.regions.fs.size" if m.group(1) == "FS_LEN" else "flash.prog_size"
        sector = board["flash"]["sector"]
        blocks = (f" ({n // sector} blocks of {sector // 1024} KiB)" if m.group(1) == "FS_LEN"
                  else "")
        return f"{m.group(1)} = {n}  # bytes: boards/{board['name']}.json {what}{blocks}"

    body = _VALUE.sub(line, template)
    if sorted(seen) != ["FS_LEN", "PROG_SIZE"]:
        raise CommandError(f"boards/{TEMPLATE}: want one FS_LEN and one PROG_SIZE line "
                           f"(`NAME = <int>`), found {sorted(seen) or 'none'}")
    variant = board["micropython"]["variant"]
    head = (f"# _boot.py of the otlink build of {variant}, written by otlink_tools.rp2_boot from\n"
            f"# boards/{TEMPLATE} and boards/{board['name']}.json: edit those, not this copy.\n")
    return head + body


def boot_source(name: str) -> str:
    """The frozen _boot.py of board `name` (boards/<name>.json)."""
    return render(board_def(name), (paths.BOARDS / TEMPLATE).read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m otlink_tools.rp2_boot",
                                description="write an RP2 board's frozen _boot.py")
    p.add_argument("board", help="board name (boards/<board>.json), an RP2 board")
    p.add_argument("-o", "--out", help="file to write (default: stdout)")
    args = p.parse_args(argv)
    try:
        text = boot_source(args.board)
    except CommandError as e:
        print(f"otlink: {e}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
