"""`otlink deploy` on a board: copy a tree over the raw REPL with a progress bar, verify every
file by its SHA-256 computed on the board, and reset the board.

mpremote's transport is used as a library (one connection for the whole deploy), so the
progress of every byte is known and the hashes are the board's own. A file whose hash on the
board already matches is not sent again (a redeploy after a small change takes seconds).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from otlink_tools.errors import CommandError
from otlink_tools.progress import Bar


def plan(pairs: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """(local file, remote path) of every file under the (local folder or file, remote folder
    or path) pairs, remote paths absolute, in a stable order."""
    out = []
    for local, remote in pairs:
        if local.is_dir():
            base = "/" + remote.strip("/") if remote.strip("/") else ""
            for f in sorted(p for p in local.rglob("*") if p.is_file()):
                out.append((f, f"{base}/{f.relative_to(local).as_posix()}"))
        else:
            out.append((local, remote if remote.startswith("/") else "/" + remote))
    return out


def _dirs(remote_files: list[str]) -> list[str]:
    seen = []
    for r in remote_files:
        parts = r.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in seen:
                seen.append(d)
    return seen


def connect(port: str, baud: int = 115200, wait_s: float = 8):
    try:
        from mpremote.transport_serial import SerialTransport
    except ImportError:
        raise CommandError("mpremote is not installed (it comes with the host tools: "
                           "run 'make setup')") from None
    try:
        t = SerialTransport(port, baudrate=baud, timeout=1)  # reads return: deadlines hold
    except Exception as e:  # mpremote raises its own TransportError with the OS's words
        raise CommandError(f"cannot open {port}: {e}") from None
    try:
        # A running agent owns the line with its console: CR ends whatever was typed, Ctrl-C
        # on the empty line stops it (it commits its queue first), then the REPL is there.
        t.serial.write(b"\r\x03")
        time.sleep(0.5)
        t.enter_raw_repl(soft_reset=False, timeout_overall=wait_s)
    except Exception as e:
        t.close()
        raise CommandError(f"no MicroPython raw REPL on {port}: {e} (is it the right port? "
                           "press reset and try again)") from None
    return t


def install(port: str, pairs: list[tuple[Path, str]], baud: int = 115200, reset: bool = True,
            root: str = "", stream=None, wait_s: float = 8) -> dict:
    """Copy, verify, reset. root: prefix of every remote path (a board: "", its / ; the Unix
    port stand-in: its working folder). Returns {"sent", "skipped", "bytes", "verified"}."""
    files = plan(pairs)
    t = connect(port, baud, wait_s)
    sent = skipped = nbytes = 0
    try:
        for d in _dirs([r for _, r in files]):
            if not t.fs_exists(root + d):
                t.fs_mkdir(root + d)
        todo = []
        for local, remote in files:
            data = local.read_bytes()
            want = hashlib.sha256(data).digest()
            if t.fs_exists(root + remote) and t.fs_hashfile(root + remote, "sha256") == want:
                skipped += 1
            else:
                todo.append((remote, data, want))
        bar = Bar("copy", sum(len(d) for _, d, _ in todo), stream) if todo else None
        for remote, data, _ in todo:
            base = bar.done
            t.fs_writefile(root + remote, data, chunk_size=512,
                           progress_callback=lambda n, total, b=base: bar.update(b + n))
            sent += 1
            nbytes += len(data)
        if bar is not None:
            bar.finish()
        for remote, _data, want in todo:
            got = t.fs_hashfile(root + remote, "sha256")
            if got != want:
                raise CommandError(f"{remote}: SHA-256 on the board {got.hex()[:16]} is not "
                                   f"the file's {want.hex()[:16]}: copy it again (deploy)")
        if reset:
            t.exec_raw_no_follow("import machine\nmachine.reset()")
    finally:
        try:
            t.close()
        except Exception:
            pass
    return {"sent": sent, "skipped": skipped, "bytes": nbytes, "verified": sent + skipped}
