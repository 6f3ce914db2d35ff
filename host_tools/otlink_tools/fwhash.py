"""The agent's firmware hash as a node reports it in its birth (`sec.fw`, otlink/posture.py):
SHA-256 over the otlink package's .py/.mpy files sorted by path, each contributing its path
(relative to the package folder, `/`-separated), a NUL, its length as 4 bytes big-endian and
its bytes. Compare a node's `sec.fw` with `tree_hash` of the release's deploy tree to know
which agent it runs (docs/security.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["tree_hash"]


def tree_hash(package: str | Path) -> str:
    """Hex SHA-256 of the otlink package folder `package` (e.g. <deploy out>/lib/otlink)."""
    root = Path(package)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix in (".py", ".mpy"))
    h = hashlib.sha256()
    for rel in files:
        data = (root / rel).read_bytes()
        h.update(rel.encode() + b"\0" + len(data).to_bytes(4, "big"))
        h.update(data)
    return h.hexdigest()
