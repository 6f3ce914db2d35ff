"""`otlink console`, `otlink config get|set|unset|diff|validate|commit|rollback|pull|push`,
`otlink logs`: a running node's service console over a serial port (pyserial).

The node's console (firmware/otlink/console.py) answers a line that starts with "@" with one
line "@" + JSON, {"ok": true, "data": ...} or {"ok": false, "error": "..."}; everything else
on the line (log lines, a person's prompt) is passed by. A board's USB serial port and the
pty of `otlink node run --console` are the same to this module.

Exit status: 0 done; 1 the node refused (its message is printed: a wrong value, a config
that does not validate, a locked console) or could not be reached; 2 usage error; 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from otlink_tools.errors import CommandError

LINE_MAX = 256  # the node's line buffer (console.LINE_MAX), "@" included
TIMEOUT_S = 10.0


class NodeConsole:
    """One node's console on a serial port."""

    def __init__(self, port: str, baud: int = 115200, timeout: float = TIMEOUT_S,
                 pin: str | None = None, on_log=None) -> None:
        import serial

        if "/" in port and not Path(port).exists():
            raise CommandError(f"--port {port}: no such device (is the board plugged in? "
                               "`ls /dev/ttyUSB* /dev/ttyACM*` lists the ports)")
        try:
            self.ser = serial.Serial(port, baud, timeout=0.05)
        except (serial.SerialException, OSError) as e:
            raise CommandError(f"--port {port}: {e}") from None
        self.port = port
        self.timeout = timeout
        self.on_log = on_log  # lines that are not replies (the node's log), or None
        self._buf = b""
        self.ser.write(b"\x15")  # Ctrl-U: drop whatever a person left typed on the line
        if pin:
            self.call(f"unlock {pin}")

    def close(self) -> None:
        self.ser.close()

    def __enter__(self) -> NodeConsole:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _lines(self):
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            yield line.rstrip(b"\r").decode(errors="replace")

    def call(self, line: str, timeout: float | None = None):
        """Send one command; return its data, or raise CommandError with the node's words."""
        raw = ("@" + line).encode()
        if len(raw) >= LINE_MAX:
            raise CommandError(f"command line of {len(raw)} bytes: the node takes at most "
                               f"{LINE_MAX - 1}")
        self.ser.write(raw + b"\r")
        return self.reply(timeout)

    def reply(self, timeout: float | None = None):
        """The next reply on the line (of a line sent by call(), or written raw)."""
        end = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < end:
            self._buf += self.ser.read(4096)
            for ln in self._lines():
                i = ln.find("@{")
                if i < 0:
                    if ln.strip() and self.on_log:
                        self.on_log(ln)
                    continue
                try:
                    rep = json.loads(ln[i + 1:])
                except ValueError:
                    continue
                if rep.get("ok"):
                    return rep.get("data")
                raise CommandError(f"node: {rep.get('error')}")
        raise CommandError(f"no answer from the node's console on {self.port} within "
                           f"{timeout or self.timeout:.0f} s (is the agent running? is it "
                           "the right port?)")

    def follow(self, seconds: float | None, out) -> None:
        """Pass the node's log lines to out until seconds pass (None: until interrupted)."""
        end = None if seconds is None else time.monotonic() + seconds
        while end is None or time.monotonic() < end:
            self._buf += self.ser.read(4096)
            for ln in self._lines():
                if ln.strip() and "@{" not in ln:
                    out(ln)


def render(data) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}"
                         for k, v in sorted(data.items()))
    if isinstance(data, list):
        return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in data)
    return json.dumps(data)


def _show(args, data) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render(data))


def _open(args) -> NodeConsole:
    pin = getattr(args, "pin", None) or os.environ.get("OTLINK_CONSOLE_PIN")
    return NodeConsole(args.port, args.baud, args.timeout, pin)


def add_port_args(p: argparse.ArgumentParser, json_out: bool = True) -> None:
    p.add_argument("--port", required=True, help="the node's serial port (a board's "
                   "/dev/ttyUSB0 or /dev/ttyACM0; the pty `otlink node run --console` prints)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds to wait for each "
                   "answer (default 10)")
    p.add_argument("--pin", help="unlock a console with console.pin set (or set "
                   "OTLINK_CONSOLE_PIN, preferred: not in the shell history)")
    if json_out:
        p.add_argument("--json", action="store_true", help="the answer as JSON")


# --- commands ---------------------------------------------------------------------------------

def cmd_console(args) -> int:
    """Interactive: line editing and history on this side (readline), each line sent to the
    node, its answer shown; the node's log lines shown as they arrive."""
    try:
        import readline
    except ImportError:  # not on every platform; the console works without history
        readline = None
    hist = Path(os.path.expanduser("~/.otlink_console_history"))
    if readline is not None:
        try:
            readline.read_history_file(hist)
        except OSError:
            pass
    with NodeConsole(args.port, args.baud, args.timeout,
                     args.pin or os.environ.get("OTLINK_CONSOLE_PIN"),
                     on_log=lambda s: print(s)) as con:
        print(f"otlink console on {args.port}: type help; Ctrl-D leaves (the node runs on)")
        try:
            while True:
                try:
                    line = input("otlink> ").strip()
                except EOFError:
                    print()
                    return 0
                if not line:
                    continue
                try:
                    print(render(con.call(line)))
                except CommandError as e:
                    print(f"error: {str(e).removeprefix('node: ')}")
        finally:
            if readline is not None:
                try:
                    readline.write_history_file(hist)
                except OSError:
                    pass


def cmd_status(args) -> int:
    if not args.wait:
        with _open(args) as con:
            _show(args, con.call("status"))
        return 0
    # --wait: until the node answers (after a commit or a reset it boots first)
    end = time.monotonic() + args.wait
    while True:
        try:
            with NodeConsole(args.port, args.baud, min(args.timeout, 2.0),
                             args.pin or os.environ.get("OTLINK_CONSOLE_PIN")) as con:
                _show(args, con.call("status"))
                return 0
        except CommandError as e:
            if time.monotonic() >= end or "no answer" not in str(e) and "--port" not in str(e):
                raise
        time.sleep(0.3)


def build_status(p):
    """the node at a glance: config state and hash, uplink, queue, bus"""
    add_port_args(p)
    p.add_argument("--wait", type=float, default=0, metavar="S",
                   help="wait up to S seconds for the node to answer (it may be booting)")


def cmd_get(args) -> int:
    with _open(args) as con:
        _show(args, con.call(f"get {args.path}"))
    return 0


def cmd_set(args) -> int:
    with _open(args) as con:
        print(con.call(f"set {args.path} {args.value}"))
        if args.commit:
            print(con.call("commit"))
    return 0


def cmd_unset(args) -> int:
    with _open(args) as con:
        print(con.call(f"unset {args.path}"))
    return 0


def cmd_diff(args) -> int:
    with _open(args) as con:
        _show(args, con.call("diff"))
    return 0


def cmd_validate(args) -> int:
    if args.file:  # a file on the laptop: the same validator, no node needed
        from otlink_tools.node import validate_file

        validate_file(args.file)
        print(f"{args.file}: ok")
        return 0
    if not args.port:
        raise CommandError("config validate: give a FILE, or --port to check the node's "
                           "staged config")
    with _open(args) as con:
        print(con.call("validate"))
    return 0


def cmd_commit(args) -> int:
    with _open(args) as con:
        print(con.call("commit"))
    return 0


def cmd_rollback(args) -> int:
    with _open(args) as con:
        print(con.call("rollback"))
    return 0


# the config's top-level sections (core/config.py _TOP), asked one by one when the whole
# config does not fit the node's heap as one reply
SECTIONS = ("version", "node", "board", "wifi", "mqtt", "serial", "groups", "points", "sensors",
            "queue", "flash", "commands", "console", "analytics")


def fetch_config(con) -> dict:
    """The node's running (or staged) config: in one reply, or, when a board's heap cannot
    hold that reply (a config of hundreds of points), section by section and list item by
    list item."""
    try:
        return con.call("show config")
    except CommandError as e:
        if "out of memory" not in str(e):
            raise
    cfg: dict = {}
    for k in SECTIONS:
        try:
            cfg[k] = con.call(f"get {k}")
            continue
        except CommandError as e:
            if "not set in the config" in str(e):
                continue
            if "out of memory" not in str(e):
                raise
        items = []
        while True:
            try:
                items.append(con.call(f"get {k}[{len(items)}]"))
            except CommandError as e:
                if "no such item" in str(e):
                    break
                raise
        cfg[k] = items
    return cfg


def cmd_pull(args) -> int:
    """The node's config as JSON (secrets come back masked: ******)."""
    with _open(args) as con:
        cfg = fetch_config(con)
    text = json.dumps(cfg, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"{args.port} -> {args.output} (secrets masked)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


MASK = "******"


def plan_sets(old, new, path: str = "", budget: int = 200) -> list[tuple[str, str, object]]:
    """The console commands that turn config old into new: ("set", path, value) with each
    line within the node's buffer (a big object is set field by field), ("unset", path)."""
    out: list = []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in new:
            p = f"{path}.{k}" if path else k
            if k in old:
                if new[k] == MASK:
                    continue  # a pulled file's masked secret: leave the node's as it is
                if old[k] != new[k] or (old[k] == MASK):
                    out += plan_sets(old[k], new[k], p, budget)
            else:
                out += _set_whole(p, new[k], budget)
        for k in old:
            if k not in new:
                out.append(("unset", f"{path}.{k}" if path else k, None))
        return out
    if isinstance(old, list) and isinstance(new, list):
        n = min(len(old), len(new))
        for i in range(n):
            if old[i] != new[i]:
                out += plan_sets(old[i], new[i], f"{path}[{i}]", budget)
        for i in range(n, len(new)):
            out += _set_whole(f"{path}[{i}]", new[i], budget)
        for i in range(len(old) - 1, n - 1, -1):
            out.append(("unset", f"{path}[{i}]", None))
        return out
    return _set_whole(path, new, budget)


def _set_whole(path: str, value, budget: int) -> list:
    text = json.dumps(value, separators=(",", ":"))
    if len(path) + len(text) + 8 <= budget or not isinstance(value, (dict, list)):
        return [("set", path, value)]
    if isinstance(value, dict):  # too long for one line: an empty object, then its fields
        out: list = [("set", path, {})]
        for k, v in value.items():
            out += _set_whole(f"{path}.{k}", v, budget)
        return out
    out = [("set", path, [])]
    for i, v in enumerate(value):
        out += _set_whole(f"{path}[{i}]", v, budget)
    return out


def cmd_push(args) -> int:
    """Validate a config file here, stage it on the node as changes to its running config,
    validate there, then commit (unless --no-commit). The raw copy with mpremote (--raw)
    is for a board whose agent does not run yet (no config at all)."""
    from otlink_tools.node import validate_file

    validate_file(args.config)  # nothing is sent before the laptop's check passes
    if args.raw:
        from otlink_tools.device import cmd_config_push

        return cmd_config_push(args)
    new = json.loads(Path(args.config).read_text())
    with _open(args) as con:
        con.call("rollback") if con.call("status").get("staged_changes") else None
        old = fetch_config(con)
        steps = plan_sets(old, new)
        if not steps:
            print("the node already runs this config: nothing to push")
            return 0
        for op, path, value in steps:
            if op == "set":
                con.call(f"set -f {path} {json.dumps(value, separators=(',', ':'))}")
            else:
                con.call(f"unset -f {path}")
        print(f"staged {len(steps)} changes")
        print(con.call("validate"))
        if args.no_commit:
            print("not committed (--no-commit): `otlink config commit` applies them")
            return 0
        print(con.call("commit"))
    return 0


def cmd_logs(args) -> int:
    with NodeConsole(args.port, args.baud, args.timeout,
                     args.pin or os.environ.get("OTLINK_CONSOLE_PIN")) as con:
        lines = con.call("show log")
        if args.json:
            print(json.dumps(lines if isinstance(lines, list) else [], indent=2))
        else:
            print(render(lines))
        if args.follow:
            con.follow(args.seconds, lambda s: print(s, flush=True))
    return 0


# --- argparse builders (cli.py's table) ------------------------------------------------------

def build_console(p: argparse.ArgumentParser) -> None:
    """interactive service console of a running node (history, the node's log shown)"""
    add_port_args(p, json_out=False)


def build_get(p):
    """one value of the node's config (secrets masked)"""
    add_port_args(p)
    p.add_argument("path", help="e.g. mqtt.port, points[0].address")


def build_set(p):
    """stage a change on the node (commit applies it)"""
    add_port_args(p, json_out=False)
    p.add_argument("path")
    p.add_argument("value", help="JSON (numbers, true, \"text\", [..], {..}) or a bare word")
    p.add_argument("--commit", action="store_true", help="commit at once")


def build_unset(p):
    """stage removing a field (back to its default)"""
    add_port_args(p, json_out=False)
    p.add_argument("path")


def build_diff(p):
    """the node's staged changes"""
    add_port_args(p)


def build_validate(p):
    """check a config file here, or the node's staged config (--port)"""
    p.add_argument("file", nargs="?", help="a config file on this machine")
    p.add_argument("--port")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S)
    p.add_argument("--pin")


def build_commit(p):
    """commit the staged config (the node reboots into it; rolled back if not healthy)"""
    add_port_args(p, json_out=False)


def build_rollback(p):
    """drop staged changes, or go back to the previous config"""
    add_port_args(p, json_out=False)


def build_pull(p):
    """the node's config as JSON (secrets masked)"""
    add_port_args(p, json_out=False)
    p.add_argument("-o", "--output", help="write it to this file (default stdout)")


def build_push(p):
    """validate a config here, stage it on the node, commit"""
    p.add_argument("config")
    p.add_argument("--port", required=True)
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S)
    p.add_argument("--pin")
    p.add_argument("--no-commit", action="store_true", help="stage and validate only")
    p.add_argument("--raw", action="store_true", help="copy the file with mpremote instead "
                   "(a board whose agent does not run yet); reset the board afterwards")


def build_logs(p):
    """the node's recent log lines (--follow: and new ones as they come)"""
    add_port_args(p)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--seconds", type=float, help="with --follow: stop after S seconds")
