"""Write the firmware encoders' example payloads, annotated item by item, into docs/payload.md.

    .venv/bin/python tools/payload_doc.py

Runs tests/host/payload_examples_mp.py in the MicroPython Unix port and replaces each
```cbor <topic>``` block of the doc, in order, with the annotated bytes. The test
test_doc_examples_are_encoder_output_and_decode fails when the doc and the encoders disagree.
"""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mp import run  # noqa: E402

DOC = ROOT / "docs" / "payload.md"
COL = 41  # the comment column


class Annotator:
    """RFC 8949 items (the subset otlink sends: no tags, no indefinite lengths) as lines of
    `<hex of the item's head and content>  # <what it is>`, nested items indented."""

    def __init__(self, b: bytes) -> None:
        self.b = b
        self.o = 0
        self.lines: list[str] = []

    def _line(self, depth: int, start: int, end: int, what: str) -> None:
        hexes = " ".join(f"{x:02x}" for x in self.b[start:end])
        head = "  " * depth + hexes
        self.lines.append(f"{head.ljust(COL - 1)} # {what}" if len(head) < COL - 1
                          else f"{head} # {what}")

    def _arg(self, ai: int) -> int:
        if ai < 24:
            return ai
        n = 1 << (ai - 24)
        v = int.from_bytes(self.b[self.o:self.o + n], "big")
        self.o += n
        return v

    def item(self, depth: int = 0) -> None:
        start = self.o
        ib = self.b[self.o]
        self.o += 1
        mt, ai = ib >> 5, ib & 0x1F
        if mt == 7:
            if ai in (25, 26, 27):
                n = {25: 2, 26: 4, 27: 8}[ai]
                raw = self.b[self.o:self.o + n]
                self.o += n
                v = struct.unpack({2: ">e", 4: ">f", 8: ">d"}[n], raw)[0]
                self._line(depth, start, self.o, f"float{n * 8} {v!r}")
                return
            names = {20: "false", 21: "true", 22: "null", 23: "undefined"}
            v = self._arg(ai)
            self._line(depth, start, self.o, names.get(v, f"simple({v})"))
            return
        v = self._arg(ai)
        if mt == 0:
            self._line(depth, start, self.o, f"uint {v}")
        elif mt == 1:
            self._line(depth, start, self.o, f"nint {-1 - v}")
        elif mt in (2, 3):
            content = self.b[self.o:self.o + v]
            self.o += v
            what = (f"text({v}) {content.decode()!r}" if mt == 3
                    else f"bytes({v}) h'{content.hex()}'")
            self._line(depth, start, self.o, what)
        elif mt == 4:
            self._line(depth, start, self.o, f"array({v})")
            for _ in range(v):
                self.item(depth + 1)
        elif mt == 5:
            self._line(depth, start, self.o, f"map({v})")
            for _ in range(2 * v):
                self.item(depth + 1)
        else:
            raise ValueError(f"major type {mt} (tag) is not used by otlink")


def annotate(b: bytes) -> str:
    a = Annotator(b)
    a.item()
    if a.o != len(b):
        raise ValueError(f"{len(b) - a.o} bytes after the item")
    return "\n".join(a.lines) + "\n"


def main() -> int:
    res = run(ROOT / "tests" / "host" / "payload_examples_mp.py", heap="128K")
    if res.returncode:
        print(res.stdout + res.stderr, file=sys.stderr)
        return 1
    made = [bytes.fromhex(line.split()[1]) for line in res.stdout.splitlines() if line.strip()]
    text = DOC.read_text()
    blocks = list(re.finditer(r"```cbor (\S+)\n(.*?)```", text, re.S))
    if len(blocks) != len(made):
        print(f"{DOC}: {len(blocks)} cbor blocks, {len(made)} examples", file=sys.stderr)
        return 1
    for m, b in reversed(list(zip(blocks, made))):
        text = text[:m.start(2)] + annotate(b) + text[m.end(2):]
    DOC.write_text(text)
    print(f"{DOC.relative_to(ROOT)}: {len(made)} examples written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
