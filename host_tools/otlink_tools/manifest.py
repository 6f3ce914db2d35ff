"""What a board runs, read from firmware/manifest.py: the one list of the agent's modules.

The manifest is MicroPython's own format (a Python file calling package()/module()/include()),
used as it is by a frozen firmware build. `deploy` executes it here with the same calls
collecting (source, target) pairs instead of freezing them, so the modules copied to a board
with stock firmware are exactly those a frozen image would hold.
"""

from __future__ import annotations

import os
from pathlib import Path

from otlink_tools.errors import CommandError


class _Options:
    def __init__(self, given: dict) -> None:
        self.__dict__.update(given)

    def defaults(self, **kw) -> None:
        for k, v in kw.items():
            self.__dict__.setdefault(k, v)


def board_modules(manifest: Path, **options) -> list[tuple[Path, Path]]:
    """(source file, path on the board) of every module the manifest freezes."""
    found: list[tuple[Path, Path]] = []
    here = manifest.parent

    def _walk(base: Path, pkg: str, files) -> None:
        root = base / pkg
        names = files if files is not None else [
            str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))]
        for f in names:
            src = root / f
            if not src.exists():
                raise CommandError(f"{manifest}: {src} is listed but does not exist "
                                   "(run 'make setup' to fetch umqtt)")
            found.append((src, Path(pkg) / f))

    def package(name, files=None, base_path="."):
        _walk((here / base_path).resolve(), name, files)

    def module(name, base_path="."):
        src = (here / base_path / name).resolve()
        found.append((src, Path(name)))

    def include(path, **kw):
        if "$(" not in path:  # port-provided manifests ($(MPY_DIR)...) are the port's concern
            found.extend(board_modules((here / path).resolve(), **kw))

    code = manifest.read_text()
    prev = os.getcwd()
    os.chdir(here)  # as MicroPython's tools do: paths are relative to the manifest
    try:
        exec(compile(code, str(manifest), "exec"),  # noqa: S102 - our own manifest
             {"package": package, "module": module, "include": include,
              "options": _Options(options), "require": lambda *a, **k: None,
              "metadata": lambda **k: None})
    finally:
        os.chdir(prev)
    return found
