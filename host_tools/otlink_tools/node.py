"""`otlink node run|validate`: run the agent on the Unix port, check a config file."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from otlink_tools import paths
from otlink_tools.errors import CommandError


def validate_file(path: str) -> dict:
    """Validate a node config with the firmware's own schema; CommandError names the field."""
    paths.firmware_import_path()
    from otlink.core import config  # the firmware module, run on CPython
    from otlink.core.errors import ConfigError

    try:
        return config.load(path, board_buses(path))
    except ConfigError as e:
        errs = config.errors_of(e)  # every wrong field of the file, each with its path
        if len(errs) == 1:
            raise CommandError(f"{path}: {errs[0]}") from None
        lines = "\n".join(f"  {x.field}: {x.problem}" for x in errs)
        raise CommandError(f"{path}: {len(errs)} config errors:\n{lines}") from None


def board_buses(path: str) -> dict[str, tuple[str, ...]] | None:
    """Sensor bus names of the board the config names (boards/<board>.json) by kind: I2C
    buses, and the 1-Wire pins, ADC inputs and input pins its file lists, so a sensor on a
    bus the board does not have is refused here rather than at boot. None when unknown."""
    try:
        board = json.loads(Path(path).read_text()).get("board", "unix")
        defn = json.loads((paths.BOARDS / f"{board}.json").read_text())
        out = {"i2c": tuple(defn.get("i2c", {}))}
        for kind, section in (("onewire", "onewire"), ("adc", "adc"), ("pin", "inputs")):
            if section in defn:
                out[kind] = tuple(defn[section])
        return out
    except (OSError, ValueError, AttributeError, TypeError):
        return None  # the schema names what is wrong with the file itself


def agent_command(config: str, state: str, heap: str = "256K",
                  board: str = "unix", mpy_dir: str | None = None) -> tuple[list[str], dict]:
    """The command line and environment that run the agent on the Unix port."""
    env = dict(os.environ)
    first = [mpy_dir] if mpy_dir else []
    env["MICROPYPATH"] = paths.micropypath(*first)
    # The script's folder comes first on the module path: main.py beside the .mpy tree, so the
    # agent's modules load from there and not from the sources beside firmware/main.py.
    main = Path(mpy_dir) / "main.py" if mpy_dir and (Path(mpy_dir) / "main.py").exists() \
        else paths.FIRMWARE / "main.py"
    cmd = [paths.micropython(), "-X", f"heapsize={heap}", str(main),
           "--config", str(config), "--state", str(state), "--board", board,
           "--boards", str(paths.BOARDS)]
    for a in cmd:
        # The MicroPython 1.29 Unix port crashes ("FATAL: uncaught NLR") on an argument of
        # 256 bytes or more; refuse with a clear message instead.
        if len(a.encode()) >= 256:
            raise CommandError(f"path too long for the MicroPython Unix port (max 255 bytes): {a}")
    return cmd, env


def firmware_mpy() -> str | None:
    """The firmware compiled to .mpy in build/mpy-node (recompiled where a source is newer),
    loaded as a board loads it. Compiling the sources at import instead takes a share of the
    heap the agent needs (the agent then runs out at the default --heap). None when mpy-cross
    is missing: the agent then runs from source."""
    from otlink_tools import mpy

    out = paths.BUILD / "mpy-node"
    try:
        mpy.compile_tree(mpy.tree(paths.FIRMWARE, "otlink/**/*.py"), out, incremental=True)
        main = out / "main.py"
        src = paths.FIRMWARE / "main.py"
        if not main.exists() or main.stat().st_mtime < src.stat().st_mtime:
            part = out / f"main.py.{os.getpid()}.part"
            shutil.copyfile(src, part)
            os.replace(part, main)
    except (CommandError, OSError):
        return None
    return str(out)


def start_agent(config: str, state: str, heap: str = "256K", log=None,
                mpy_dir: str | None = None) -> subprocess.Popen:
    cmd, env = agent_command(config, state, heap, mpy_dir=mpy_dir or firmware_mpy())
    Path(state).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, env=env, stdout=log or subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = validate_file(args.config)
    npts = len(cfg["points"]) + sum(len(s["points"]) for s in cfg["sensors"])
    print(f"{args.config}: ok (node {cfg['node']['site']}/{cfg['node']['id']}, "
          f"{npts} points, broker {cfg['mqtt']['host']}:{cfg['mqtt']['port']}"
          f"{' TLS' if cfg['mqtt']['tls'] else ''})")
    return 0


def heap_size(text: str) -> str:
    """argparse type of --heap: bytes, or a number with K or M (MicroPython's -X heapsize)."""
    m = re.fullmatch(r"(\d+)([KkMm]?)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: want bytes or a size like 256K or 1M")
    n = int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20}[m.group(2).lower()]
    if not 16 * 1024 <= n <= 1 << 30:
        raise argparse.ArgumentTypeError(f"{text!r}: want 16K..1024M")
    return text


def cmd_run(args: argparse.Namespace) -> int:
    cfg = validate_file(args.config)  # fail on the laptop with a clear message, before starting
    port = cfg["serial"]["port"] if cfg["serial"] else None
    if cfg["points"] and port and not os.path.exists(port):
        raise CommandError(f"{args.config}: serial.port {port}: no such device (is the "
                           "adapter plugged in? `ls /dev/ttyUSB* /dev/ttyACM*` lists them)")
    state = Path(args.state)
    if state.exists() and not state.is_dir():
        raise CommandError(f"--state {args.state}: exists and is not a folder (the agent keeps "
                           "its emulated flash image there)")
    heap = args.heap or ("512K" if getattr(args, "console", False) else "256K")
    cmd, env = agent_command(args.config, args.state, heap, mpy_dir=firmware_mpy())
    state.mkdir(parents=True, exist_ok=True)
    if getattr(args, "console", False):  # the service console on a pty (console_pty.py)
        from otlink_tools import console_pty

        return console_pty.run(cmd, env, announce=lambda s: print(s, flush=True),
                               link=getattr(args, "console_link", None), state=args.state)
    while True:
        # Its own session: a Ctrl-C at the terminal reaches only this process, which then
        # asks the agent to stop (ask_to_stop). Exit status 75: the agent asks to be started
        # again (a commit or rollback of its config, docs/config.md), as a board resets.
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        rc = supervise(proc, state)
        if rc != 75:
            return rc


# Signals that stop `otlink node run`: Ctrl-C, kill/systemd/timeout, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_SECONDS = 10.0  # the agent commits its queue and says goodbye; then it is killed


class _Stop(Exception):
    pass


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def ask_to_stop(proc: subprocess.Popen, state: str | Path) -> None:
    """Ask the agent running with --state to stop cleanly: it looks for <state>/stop at every
    commit tick (Board.stop_requested, hal/unix/board.py), commits its queue, publishes its
    stopped state and exits 0. Not SIGINT: the desktop MicroPython raises KeyboardInterrupt
    from inside its signal handler, in the middle of any C function, and one landing in a
    garbage collection leaves the heap locked for good (the agent then cannot even log)."""
    if proc.poll() is None:
        (Path(state) / "stop").touch()


def supervise(proc: subprocess.Popen, state: str | Path,
              stop_seconds: float = STOP_SECONDS) -> int:
    """Wait for the agent; on SIGINT, SIGTERM or SIGHUP ask it to stop (ask_to_stop), kill it
    after stop_seconds, and return its exit status."""
    def on_second(signum, frame):  # a second stop signal while waiting: do not wait longer
        proc.kill()

    def on_stop(signum, frame):
        for s in STOP_SIGNALS:
            signal.signal(s, on_second)
        raise _Stop(signum)

    old = {s: signal.signal(s, on_stop) for s in STOP_SIGNALS}
    try:
        try:
            return exit_status(proc.wait())
        except _Stop:
            pass
        ask_to_stop(proc, state)
        try:
            return exit_status(proc.wait(stop_seconds))
        except subprocess.TimeoutExpired:
            proc.kill()
            return exit_status(proc.wait())
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


if __name__ == "__main__":
    sys.exit(0)
