"""Where things live: the firmware tree, the fetched libraries, the Unix-port interpreter."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = Path(os.environ.get("OTLINK_FIRMWARE", ROOT / "firmware"))
BOARDS = Path(os.environ.get("OTLINK_BOARDS", ROOT / "boards"))
BUILD = ROOT / "build"
BUILD_LIB = BUILD / "lib"


def micropython() -> str:
    """The Unix-port interpreter installed in this environment."""
    cand = Path(sys.executable).parent / "micropython"
    if cand.exists():
        return str(cand)
    found = shutil.which("micropython")
    if found:
        return found
    raise FileNotFoundError("micropython (Unix port) not found: run 'make setup'")


def micropypath(*first: Path | str) -> str:
    return ":".join([str(p) for p in first] + [str(FIRMWARE), str(BUILD_LIB), ".frozen"])


def firmware_import_path() -> None:
    """Make the firmware's pure core importable from CPython (one config schema for both)."""
    if str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
