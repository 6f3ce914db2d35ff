"""Write the firmware encoders' example payloads, annotated item by item, into docs/payload.md.

    .venv/bin/python tools/payload_doc.py

Runs tests/host/payload_examples_mp.py in the MicroPython Unix port and replaces each
```cbor <topic>``` block of the doc, in order, with the annotated bytes. The test
test_doc_examples_are_encoder_output_and_decode fails when the doc and the encoders disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from otlink_tools.decode import annotate  # noqa: E402 (the monitor's --hex dump)

from mp import run  # noqa: E402

DOC = ROOT / "docs" / "payload.md"


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
        text = text[:m.start(2)] + "\n".join(annotate(b)) + "\n" + text[m.end(2):]
    DOC.write_text(text)
    print(f"{DOC.relative_to(ROOT)}: {len(made)} examples written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
