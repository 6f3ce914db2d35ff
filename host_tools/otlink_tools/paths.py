"""Where things live: the otlink checkout (firmware/, boards/, build/lib/) and the interpreters.

The host tools may be installed anywhere (a virtualenv, pipx, a wheel), so the checkout they
work on is found at run time, first match wins:

1. OTLINK_HOME, when set (it must then be a checkout: a clear error otherwise);
2. the current folder or one of its parents (`cd` into a checkout and run otlink);
3. the checkout the package itself sits in (an editable install, `pip install -e host_tools`).

OTLINK_FIRMWARE and OTLINK_BOARDS still override those two folders one by one. ROOT, FIRMWARE,
BOARDS, BUILD and BUILD_LIB are looked up when first used, so commands that need no checkout
(`monitor`, `modbus probe`, `--help`) run anywhere; a command that needs one and finds none
stops with one CommandError saying how to point otlink at it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from otlink_tools.errors import CommandError

_MARKS = ("firmware/main.py", "firmware/manifest.py", "boards")


def is_checkout(folder: Path) -> bool:
    """True when folder holds an otlink tree: firmware/main.py, firmware/manifest.py, boards/."""
    return all((folder / m).exists() for m in _MARKS)


def find_home(env: dict | None = None, cwd: Path | None = None) -> Path:
    """The otlink checkout to work on (see the module doc); CommandError when there is none."""
    env = os.environ if env is None else env
    given = env.get("OTLINK_HOME")
    if given:
        home = Path(given).expanduser().resolve()
        if not is_checkout(home):
            raise CommandError(f"OTLINK_HOME={given}: not an otlink checkout (it needs "
                               "firmware/main.py, firmware/manifest.py and boards/)")
        return home
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_checkout(folder):
            return folder
    package_tree = Path(__file__).resolve().parents[2]
    if is_checkout(package_tree):
        return package_tree
    raise CommandError(f"no otlink checkout here ({here}) or above it: this command needs "
                       "the firmware/ and boards/ folders; run it inside the checkout or set "
                       "OTLINK_HOME=/path/to/otlink")


_found: dict[str, Path] = {}


def __getattr__(name: str) -> Path:
    """ROOT, FIRMWARE, BOARDS, BUILD, BUILD_LIB: found at first use (PEP 562)."""
    if name not in ("ROOT", "FIRMWARE", "BOARDS", "BUILD", "BUILD_LIB"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _found:
        if name == "FIRMWARE" and os.environ.get("OTLINK_FIRMWARE"):
            _found[name] = Path(os.environ["OTLINK_FIRMWARE"])
        elif name == "BOARDS" and os.environ.get("OTLINK_BOARDS"):
            _found[name] = Path(os.environ["OTLINK_BOARDS"])
        else:
            root = _found.setdefault("ROOT", find_home())
            _found[name] = {"ROOT": root, "FIRMWARE": root / "firmware",
                            "BOARDS": root / "boards", "BUILD": root / "build",
                            "BUILD_LIB": root / "build" / "lib"}[name]
    return _found[name]


def micropython() -> str:
    """The Unix-port interpreter installed in this environment."""
    cand = Path(sys.executable).parent / "micropython"
    if cand.exists():
        return str(cand)
    found = shutil.which("micropython")
    if found:
        return found
    raise CommandError("micropython (Unix port) not found: run 'make setup'")


def micropypath(*first: Path | str) -> str:
    mod = sys.modules[__name__]
    return ":".join([str(p) for p in first] + [str(mod.FIRMWARE), str(mod.BUILD_LIB), ".frozen"])


def firmware_import_path() -> None:
    """Make the firmware's pure core importable from CPython (one config schema for both)."""
    firmware = str(sys.modules[__name__].FIRMWARE)
    if firmware not in sys.path:
        sys.path.insert(0, firmware)
