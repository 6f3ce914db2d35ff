"""The board on a USB serial port: the one class every board command of the CLI goes through.

`Transport` owns the serial plumbing. Underneath it runs mpremote (MicroPython's own tool,
installed with the host tools), one process per operation, with every copy of an operation
chained into that one process (`... + ...`), so the board is connected to and reset once.
A board that never answers (a program holding the REPL, the wrong port) is given up on after
a deadline that grows with the bytes to send, instead of waiting forever as mpremote does.

`dry_run=True` runs nothing: `sent` still records the command lines that would have run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from otlink_tools.errors import CommandError

TIMEOUT_S = 30.0  # connecting, entering the raw REPL, a soft reset: the fixed part
MIN_RATE = 1000  # bytes/s: the slowest copy rate waited for (115200 baud gives ~5x that)


def _mpremote() -> str:
    """mpremote beside this Python (a virtualenv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "mpremote"
    return str(beside) if beside.exists() else (shutil.which("mpremote") or str(beside))


class Transport:
    """A MicroPython board on `port` (a device path, or an mpremote name such as auto)."""

    def __init__(self, port: str, *, mpremote: str | None = None, timeout_s: float = TIMEOUT_S,
                 min_rate: int = MIN_RATE, dry_run: bool = False) -> None:
        self.port = port
        self.exe = mpremote or _mpremote()
        self.timeout_s = timeout_s
        self.min_rate = min_rate
        self.dry_run = dry_run
        self.sent: list[list[str]] = []  # every command line run (or, dry, that would run)

    def check_port(self) -> None:
        """A port given as a device path must exist (mpremote would blame 'another program');
        mpremote's own names (auto, a0, u0, id:...) are left to it."""
        if "/" in self.port and not Path(self.port).exists():
            raise CommandError(f"--port {self.port}: no such device (is the board plugged in? "
                               "`mpremote devs` lists the ports it sees)")

    def copy(self, pairs: Iterable[tuple[Path, str]]) -> None:
        """Copy (local, remote) pairs to the board in one connection. A local folder copies
        its contents, recursively, into the remote folder (made where missing); a file
        copies to that remote path. Remote paths are absolute or relative to the board's /."""
        args: list[str] = []
        size = 0
        for local, remote in pairs:
            if args:
                args.append("+")
            if local.is_dir():
                args += ["fs", "cp", "-r", f"{local}/.", f":{remote}"]
                size += sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
            else:
                args += ["fs", "cp", str(local), f":{remote}"]
                size += local.stat().st_size
        if args:
            self._run(args, self.timeout_s + size / self.min_rate)

    def _run(self, args: list[str], timeout: float) -> None:
        cmd = [self.exe, "connect", self.port, *args]
        self.sent.append(cmd)
        if self.dry_run:
            return
        what = f"mpremote {' '.join(args[:2])}"
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise CommandError(f"{self.exe}: not found (mpremote comes with the host tools: "
                               "run 'make setup')") from None
        except subprocess.TimeoutExpired:
            raise CommandError(f"{what}: no answer from the board on {self.port} within "
                               f"{timeout:.0f} s (is it the right port? is a program holding "
                               "the REPL? press reset and try again)") from None
        if res.returncode:
            why = res.stderr.strip() or res.stdout.strip() or f"exit status {res.returncode}"
            raise CommandError(f"{what}: {why}")
