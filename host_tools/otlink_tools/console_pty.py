"""`otlink node run --console`: the agent's service console on a pty, as a board's USB serial.

The agent reads its console from stdin and writes it, with its log lines, to stdout (as a
board does on its USB REPL stream). This process holds the master side of a pty and relays:
what a terminal program or `otlink console` writes to the pty's path goes to the agent's
stdin, what the agent prints goes to the pty and to this terminal. The pty stays open while
the agent restarts (exit status 75: a commit, a rollback, the console's `reboot`), as a
board's USB port stays while the board resets.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import tty

from otlink_tools.node import STOP_SECONDS, STOP_SIGNALS, ask_to_stop, exit_status

REBOOT = 75  # app.REBOOT: the agent asks to be started again


def open_pty() -> tuple[int, int, str]:
    """(master fd, slave fd, slave path): the slave in raw mode, so bytes pass unchanged (the
    agent's console echoes and edits lines itself, as on a board)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def run(cmd: list[str], env: dict, announce=print, out=None, link: str | None = None,
        state: str | None = None) -> int:
    """Run the agent (cmd, without --console) with its console on a pty until it stops for
    good; restart it on exit status 75. Returns the exit status as a shell reports it.
    link: also make this path a symlink to the pty (a stable name for scripts). state: the
    agent's --state folder, where a stop request is left (node.ask_to_stop)."""
    out = out or sys.stdout.buffer
    master, slave, path = open_pty()
    if link:
        try:
            os.unlink(link)
        except FileNotFoundError:
            pass
        os.symlink(path, link)
    announce(f"otlink: console on {path} (otlink console --port {path}, or any terminal "
             "program at any baud rate)")
    stop = []

    def on_stop(signum, frame):
        stop.append(signum)

    old = {s: signal.signal(s, on_stop) for s in STOP_SIGNALS}
    try:
        while True:
            proc = subprocess.Popen(cmd + ["--console", "stdio"], env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            rc = _relay(proc, master, out, stop, state)
            if rc != REBOOT or stop:
                return exit_status(rc)
            announce("otlink: agent restarting (console stays on the same pty)")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if link:
            try:
                os.unlink(link)
            except OSError:
                pass
        os.close(master)
        os.close(slave)


def _relay(proc: subprocess.Popen, master: int, out, stop: list, state: str | None) -> int:
    agent_out = proc.stdout.fileno()
    agent_in = proc.stdin.fileno()
    os.set_blocking(agent_out, False)
    asked = None
    import time

    while True:
        if stop and asked is None:
            asked = time.monotonic()
            if state is not None:
                ask_to_stop(proc, state)  # the agent stops at a safe point (node.py)
            elif proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        if asked is not None and time.monotonic() - asked > STOP_SECONDS:
            proc.kill()
        try:
            ready, _, _ = select.select([master, agent_out], [], [], 0.2)
        except InterruptedError:
            continue
        if agent_out in ready:
            try:
                data = os.read(agent_out, 4096)
            except BlockingIOError:
                data = None
            if data == b"":
                proc.stdout.close()
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                return proc.wait()
            if data:
                out.write(data)
                out.flush()
                try:
                    os.write(master, data)
                except (BlockingIOError, OSError):
                    pass  # nobody reads the pty and its buffer is full: the line drops it
        if master in ready:
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, OSError):
                data = b""
            if data:
                try:
                    os.write(agent_in, data)
                except (BrokenPipeError, OSError):
                    pass
        if proc.poll() is not None and agent_out not in ready:
            # drain what is left, then report
            try:
                rest = os.read(agent_out, 65536)
            except (BlockingIOError, OSError):
                rest = b""
            if rest:
                out.write(rest)
                out.flush()
                try:
                    os.write(master, rest)
                except OSError:
                    pass
                continue
            return proc.wait()
