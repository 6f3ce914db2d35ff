"""The `otlink` command: a table of subcommands, each a module with register(subparsers).

Every failure becomes one CommandError printed as `otlink: <message>` with exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from otlink_tools import __version__
from otlink_tools.errors import CommandError

# (module, command group or None), in the order `otlink --help` lists them
COMMANDS = [
    ("otlink_tools.node", None),            # node run | node validate
    ("otlink_tools.monitor", None),         # monitor: decode what nodes send
    ("otlink_tools.modbus_probe", "modbus"),  # modbus probe: find slaves and word orders
    ("otlink_tools.device", None),          # flash | deploy | config push/get over USB
    ("otlink_tools.demo", None),            # demo: meter + sensor + agent + broker + monitor
]
GROUP_HELP = {"modbus": "Modbus RTU tools for commissioning (USB RS-485 adapter)"}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="otlink", description="otlink edge agent host tools")
    ap.add_argument("--version", action="version", version=f"otlink {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    groups: dict = {}
    for name, group in COMMANDS:
        mod = importlib.import_module(name)
        target = sub
        if group:
            if group not in groups:
                gp = sub.add_parser(group, help=GROUP_HELP.get(group))
                groups[group] = gp.add_subparsers(dest=group + "_cmd", required=True)
            target = groups[group]
        mod.register(target)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"otlink: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
