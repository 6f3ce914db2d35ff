"""The `otlink` command: every subcommand in one table, `_COMMANDS`, as mpremote has it.

`_COMMANDS` maps a command name ("monitor", or "group name" such as "node run") to
(handler, argparse builder). The builder adds the command's arguments to its parser and its
docstring's first line is the command's help; the handler gets the parsed arguments and
returns the exit status. Every failure is one CommandError, printed as `otlink: <message>`
with exit status 1; argparse's own usage errors keep its exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from otlink_tools import __version__, demo, device, modbus_probe, monitor, node, store, write
from otlink_tools import bridge, health
from otlink_tools.broker_args import add_broker_args
from otlink_tools import console_client
from otlink_tools.errors import CommandError
from otlink_tools import oee


# --- argument builders, one per command -------------------------------------------------------

def _argparse_node_run(p: argparse.ArgumentParser) -> None:
    """run the agent on the MicroPython Unix port"""
    p.add_argument("--config", required=True, help="node config file (JSON, docs/config.md)")
    p.add_argument("--state", default="state", help="folder for the emulated flash image")
    p.add_argument("--heap", default=None, type=node.heap_size,
                   help="MicroPython heap cap (default 256K; 512K with --console, whose "
                        "bytecode the Unix port holds in the heap)")
    p.add_argument("--console", action="store_true",
                   help="the service console on a pty, as a board's USB serial (its path is "
                        "printed first: otlink console --port PATH)")
    p.add_argument("--console-link", metavar="PATH",
                   help="with --console: also a symlink PATH to the pty (a fixed name)")


def _argparse_node_validate(p: argparse.ArgumentParser) -> None:
    """check a node config file"""
    p.add_argument("config")


def _argparse_monitor(p: argparse.ArgumentParser) -> None:
    """decode what nodes publish (table, JSON lines, CSV, Influx)"""
    p.description = monitor.__doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_broker_args(p)  # --host --port --cafile --cert --key --user --password --client-id
    p.add_argument("--prefix", default="otlink")
    p.add_argument("--site", default="+", help="site to follow (default all)")
    p.add_argument("--node", default="+", help="node to follow (default all)")
    p.add_argument("--format", choices=monitor.FORMATS, default="table")
    p.add_argument("--group", help="join shared subscription group NAME ($share/NAME/...)")
    p.add_argument("--ack", action=argparse.BooleanOptionalAction, default=True,
                   help="consumer acknowledgement (default on): ack to the node what has been "
                        "written out; --no-ack for a viewer beside another acking consumer")
    p.add_argument("--fsync", action="store_true", help="fsync the output before each ack")
    p.add_argument("--ack-key-file", help="sign acks with this key (hex; or set "
                   "OTLINK_ACK_KEY): for nodes with mqtt.ack_key (docs/security.md)")
    p.add_argument("--ack-wait", type=float, default=monitor.ACK_WAIT_S, metavar="S",
                   help="--ack, first contact with a node and boot: wait S seconds for the "
                        "node's resends before the first ack (default 15)")
    p.add_argument("--count", type=int,
                   help="exit after writing exactly N readings (--ack covers only those)")
    p.add_argument("--seconds", type=float, help="exit after S seconds")
    p.add_argument("-o", "--output", help="write rows to this file (default stdout)")


def _argparse_modbus_probe(p: argparse.ArgumentParser) -> None:
    """scan slaves/registers, show every word order"""
    p.description = modbus_probe.__doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    modbus_probe.build_parser(p)  # shared with `python -m otlink_tools.modbus_probe`


def _argparse_deploy(p: argparse.ArgumentParser) -> None:
    """compile the firmware to .mpy and copy it to a board"""
    p.add_argument("--board", required=True, help="board name (boards/*.json)")
    p.add_argument("--port", default="auto", help="serial port (mpremote syntax)")
    p.add_argument("--out", help="keep the compiled tree in this folder (default: a "
                   "temporary folder, removed when the command ends)")
    p.add_argument("--dry-run", action="store_true", help="compile only")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--no-reset", dest="reset", action="store_false",
                   help="leave the board running after the copy (default: reset it)")


def _argparse_flash(p: argparse.ArgumentParser) -> None:
    """write a MicroPython firmware image to a board"""
    p.add_argument("--board", required=True)
    p.add_argument("--port", required=True, help="serial port (ESP32); boot drive or "
                   "'picotool' (Pico W)")
    p.add_argument("firmware", nargs="?", help="MicroPython .bin (ESP32) or .uf2 (Pico W): "
                   "the board file names the release and variant (without it, the file to "
                   "download is named)")
    p.add_argument("--baud", type=int, default=460800, help="esptool baud (default 460800)")
    p.add_argument("--erase", action=argparse.BooleanOptionalAction, default=True,
                   help="erase the whole flash first, as MicroPython's instructions do "
                        "(default; --no-erase keeps the filesystem and the queue)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")


def _argparse_config_push(p: argparse.ArgumentParser) -> None:
    """validate a config here, stage it on the node through its console, commit"""
    console_client.build_push(p)


def _argparse_demo(p: argparse.ArgumentParser) -> None:
    """run broker + simulated meter + agent + monitor live"""
    p.description = ("A private mosquitto, a simulated RS-485 energy meter and local sensors, "
                     "the agent under MicroPython and the monitor, on this machine; Ctrl-C "
                     "stops them all.")
    p.add_argument("--format", default="table", choices=monitor.FORMATS,
                   help="the monitor's output (default table)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--workdir", help="keep config (node.json), ack key (demo.ack.key), logs "
                   "and flash image here, replaced at each run (default: a temporary "
                   "folder, removed when the demo stops)")


# --- the command table: every command, in the order `otlink --help` lists them ----------------

_COMMANDS = {
    "node run": (node.cmd_run, _argparse_node_run),
    "node validate": (node.cmd_validate, _argparse_node_validate),
    "monitor": (monitor.run, _argparse_monitor),
    "store": (store.run, store.build_parser),
    "health": (health.run, health.build_parser),
    "bridge": (bridge.run, bridge.build_parser),
    "write": (write.run, write.build_parser),
    "key new": (write.cmd_key_new, write.build_key_new),
    "modbus probe": (modbus_probe.run, _argparse_modbus_probe),
    "deploy": (device.cmd_deploy, _argparse_deploy),
    "flash": (device.cmd_flash, _argparse_flash),
    "console": (console_client.cmd_console, console_client.build_console),
    "status": (console_client.cmd_status, console_client.build_status),
    "config get": (console_client.cmd_get, console_client.build_get),
    "config set": (console_client.cmd_set, console_client.build_set),
    "config unset": (console_client.cmd_unset, console_client.build_unset),
    "config diff": (console_client.cmd_diff, console_client.build_diff),
    "config validate": (console_client.cmd_validate, console_client.build_validate),
    "config commit": (console_client.cmd_commit, console_client.build_commit),
    "config rollback": (console_client.cmd_rollback, console_client.build_rollback),
    "config pull": (console_client.cmd_pull, console_client.build_pull),
    "config push": (console_client.cmd_push, _argparse_config_push),
    "logs": (console_client.cmd_logs, console_client.build_logs),
    "demo": (demo.cmd_demo, _argparse_demo),
    "oee": (oee.run, oee.build_parser),
}
# help of the command groups (the first word of a two-word command)
_GROUPS = {
    "node": "run the agent on this machine, or check a node config",
    "modbus": "Modbus RTU tools for commissioning (USB RS-485 adapter)",
    "config": "node configuration on a board",
    "key": "keys that sign acks and commands",
}


def _help(builder) -> str:
    return (builder.__doc__ or "").strip().splitlines()[0]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="otlink", description="otlink edge agent host tools")
    ap.add_argument("--version", action="version", version=f"otlink {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    groups: dict = {}
    for name, (handler, builder) in _COMMANDS.items():
        target = sub
        group, _, leaf = name.rpartition(" ")
        if group:
            if group not in groups:
                gp = sub.add_parser(group, help=_GROUPS[group])
                # "required: COMMAND" (not the internal dest name) when it is left out
                groups[group] = gp.add_subparsers(dest=group + "_cmd", required=True,
                                                  metavar="COMMAND")
            target = groups[group]
        p = target.add_parser(leaf, help=_help(builder))
        builder(p)
        p.set_defaults(func=handler)
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
