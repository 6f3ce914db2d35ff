"""Fetch umqtt.simple from its sdist through pip's configured package index.

umqtt.simple is published only as an sdist without setup.py, so pip refuses to
install it. This script asks the index pip is configured with (PIP_INDEX_URL,
pip's own config, else pip's built-in default) for the sdist, checks the pinned
sha256 and unpacks only `umqtt/simple.py` into the build folder that goes on
MICROPYPATH. Nothing of umqtt is ever committed to this repository.

Usage: python tools/fetch_umqtt.py DEST_DIR
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.request

PROJECT = "micropython-umqtt-simple"
FILENAME = "micropython-umqtt.simple-1.3.4.tar.gz"
SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"
MEMBER = "micropython-umqtt.simple-1.3.4/umqtt/simple.py"


def index_url() -> str:
    """The simple-API root pip itself would use."""
    url = os.environ.get("PIP_INDEX_URL")
    if url:
        return url
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True, text=True, check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    from pip._internal.models.index import PyPI  # pip's built-in default

    return PyPI.simple_url


def find_sdist(root: str) -> str:
    req = urllib.request.Request(
        root.rstrip("/") + "/" + PROJECT + "/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        data = json.load(resp)
    for f in data.get("files", []):
        if f.get("filename") == FILENAME:
            return f["url"]
    raise SystemExit(f"fetch_umqtt: {FILENAME} is not listed by the package index")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    dest = sys.argv[1]
    target = os.path.join(dest, "umqtt", "simple.py")
    stamp = os.path.join(dest, "umqtt", ".sha256")
    if os.path.exists(target) and os.path.exists(stamp):
        with open(stamp) as fh:
            if fh.read().strip() == SHA256:
                return 0  # already fetched and verified: nothing re-downloaded
    url = find_sdist(index_url())
    with urllib.request.urlopen(url, timeout=120) as resp:
        blob = resp.read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SHA256:
        print(f"fetch_umqtt: sha256 mismatch for {FILENAME}: got {digest}, want {SHA256}",
              file=sys.stderr)
        return 1
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        src = tar.extractfile(MEMBER)
        if src is None:
            print(f"fetch_umqtt: {MEMBER} missing from sdist", file=sys.stderr)
            return 1
        code = src.read()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(os.path.join(dest, "umqtt", "__init__.py"), "w"):
        pass
    with open(target, "wb") as fh:
        fh.write(code)
    with open(stamp, "w") as fh:
        fh.write(SHA256 + "\n")
    print(f"fetch_umqtt: {target} (sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
