"""What a consumer holds of one node's sequence, and how far it may acknowledge it.

Shared by `otlink monitor --ack` and `otlink store --ack` (docs/historian.md "First contact"): an
ack of seq s tells the node that everything of that boot up to s is stored, and the node
drops it from its queue. So the ack must never pass a hole, and a consumer must know where
the node's unacknowledged range starts before its first ack.

A node configured with `mqtt.ack_key` takes only signed acks (docs/security.md): the ack's
CBOR map with a fourth key "m", 32 bytes of HMAC-SHA256(key, ack topic + LF + the three-key
map). `sign_ack` makes one, `ack_key` reads the key (--ack-key-file or OTLINK_ACK_KEY).
"""

from __future__ import annotations

import bisect
import hmac
import os
import time
from hashlib import sha256

__all__ = ["ACK_KEY_ENV", "ACK_WAIT_S", "Seen", "Track", "ack_key", "key_warning",
           "sign_ack"]

ACK_KEY_ENV = "OTLINK_ACK_KEY"

ACK_WAIT_S = 15.0  # first contact: wait past the node's ack timeout (10 s) for its resends


class Seen:
    """Sequence numbers stored for one (node, boot): sorted disjoint [first, last] runs."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def has(self, seq: int) -> bool:
        i = bisect.bisect_right(self.starts, seq) - 1
        return i >= 0 and seq <= self.ends[i]

    def add(self, seq: int) -> None:
        """Record seq (must not be present): extend or merge neighbouring runs."""
        i = bisect.bisect_right(self.starts, seq) - 1
        left = i >= 0 and self.ends[i] == seq - 1
        right = i + 1 < len(self.starts) and self.starts[i + 1] == seq + 1
        if left and right:
            self.ends[i] = self.ends[i + 1]
            del self.starts[i + 1], self.ends[i + 1]
        elif left:
            self.ends[i] = seq
        elif right:
            self.starts[i + 1] = seq
        else:
            self.starts.insert(i + 1, seq)
            self.ends.insert(i + 1, seq)

    def contiguous(self) -> int | None:
        """Highest seq of the run that starts at the lowest seq seen."""
        return self.ends[0] if self.ends else None

    def holes(self) -> list[tuple[int, int]]:
        return [(self.ends[i] + 1, self.starts[i + 1] - 1) for i in range(len(self.starts) - 1)]


class Track:
    """What a consumer holds of one (site, node, boot): `floor`, below which everything is
    stored or was acknowledged already (a saved position, or the retained ack on the
    broker), and the runs of seqs stored above it. The ack is the top of the run that
    continues the floor: never past a hole, whatever order batches arrive in.

    With no floor known (first contact with this node and boot), the first batch seen need
    not be the node's oldest unacknowledged one: batches published before the consumer
    subscribed went nowhere. A consumer that saw the node connect (its birth, live, on the
    same connection) sets the floor below the first batch of the boot itself. Otherwise:
    the node resends from its oldest unacknowledged batch when no ack comes within its ack
    timeout (10 s), so the floor is set only after `grace` seconds of first contact, below
    the lowest seq seen by then."""

    def __init__(self, floor: int | None = None, grace: float = 0.0) -> None:
        self.floor = floor
        self.grace = grace
        self.born = time.monotonic()
        self.seen = Seen()

    def add(self, first: int, last: int) -> None:
        lo = first if self.floor is None else max(first, self.floor + 1)
        for s in range(lo, last + 1):
            if not self.seen.has(s):
                self.seen.add(s)

    def raise_floor(self, seq: int) -> None:
        if self.floor is None or seq > self.floor:
            self.floor = seq

    def top(self, now: float | None = None) -> int | None:
        """The seq to acknowledge: None while the first-contact wait runs."""
        s = self.seen
        if self.floor is None:
            now = time.monotonic() if now is None else now
            if not s.starts or now - self.born < self.grace:
                return None
            self.floor = s.starts[0] - 1
        i = bisect.bisect_right(s.starts, self.floor + 1) - 1
        if i >= 0 and s.ends[i] > self.floor:
            return s.ends[i]
        return self.floor


def key_warning(birth: dict, acking: bool, have_key: bool) -> str | None:
    """What to tell the operator when this consumer's acks will not count at the node that
    sent this birth (its `sec.ack`, docs/payload.md), None when they will."""
    want = (birth.get("sec") or {}).get("ack")
    if not acking:
        return None
    if want == "signed" and not have_key:
        return (f"node {birth.get('node')} takes only signed acks (mqtt.ack_key): ours are "
                "unsigned and will be refused, so its queue will not drain; give "
                "--ack-key-file (or OTLINK_ACK_KEY) with the node's ack key, or --no-ack "
                "beside the consumer that holds it")
    if want == "unsigned" and have_key:
        return (f"node {birth.get('node')} has no ack key (mqtt.insecure_unsigned_acks) and "
                "cannot read our signed acks: it refuses them (bad_acks), so its queue will "
                "not drain; give the node this consumer's key as mqtt.ack_key")
    return None


def sign_ack(key: bytes, topic: str, ack: bytes) -> bytes:
    """The signed form of an encoded ack (decode.encode_ack: a CBOR map of 3 keys)."""
    if not ack or ack[0] != 0xA3:
        raise ValueError("an encoded ack (a CBOR map of 3 keys) wanted")
    tag = hmac.new(key, topic.encode() + b"\n" + ack, sha256).digest()
    return b"\xa4" + ack[1:] + b"\x61m\x58\x20" + tag


def ack_key(key_file: str | None, env: dict | None = None) -> bytes | None:
    """The consumer's ack key from a file (hex) or $OTLINK_ACK_KEY; None when neither is
    given. ValueError names the source, never the key."""
    from otlink_tools.errors import CommandError
    from otlink_tools.write import parse_hex_key, read_key_file

    env = os.environ if env is None else env
    try:
        if key_file:
            return read_key_file(key_file, "--ack-key-file")
        if env.get(ACK_KEY_ENV):
            return parse_hex_key(env[ACK_KEY_ENV], f"${ACK_KEY_ENV}")
    except CommandError as e:
        raise ValueError(str(e)) from None
    return None
