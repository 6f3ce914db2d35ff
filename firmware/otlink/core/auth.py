# Message authentication for what the node accepts from the broker: commands (cmd topic) and
# consumer acknowledgements (ack topic). HMAC-SHA256 (RFC 2104 with SHA-256, FIPS 180-4; the
# test vectors are RFC 4231's) over MicroPython's hashlib.sha256, the one hash every port has.
#
#   HMAC(K, m) = H((K0 ^ opad) || H((K0 ^ ipad) || m))      RFC 2104 §2
#   K0: the key padded with zeros to the block size B = 64 bytes; a key longer than B is
#   first hashed to 32 bytes. ipad = 0x36 * B, opad = 0x5C * B.
#
# Allocation: the two padded key blocks and the tag buffer are allocated once per key (the
# key is fixed for the agent's life); a tag costs two hashlib objects and their 32-byte
# digests (hashlib on MicroPython has no copy() to start from a saved inner state). Commands
# and acks are rare: this is not a hot path.
#
# A tag is compared in time independent of where the first differing byte is (a timing
# side channel would let a forger find the tag byte by byte).
import hashlib

from otlink.core.compat import const

_BLOCK = const(64)  # SHA-256 block size, bytes (FIPS 180-4 §1)
DIGEST = const(32)  # SHA-256 output, bytes
KEY_MIN = const(16)  # shortest key accepted: 128 bits (RFC 2104 §3: not below L/2 = 16 bytes)
_HEX = b"0123456789abcdef"


class Hmac:
    """HMAC-SHA256 under one key. digest(*parts) MACs the concatenation of the parts (bytes,
    bytearray or memoryview) without joining them."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        self._ipad = bytearray(_BLOCK)
        self._opad = bytearray(_BLOCK)
        for i in range(_BLOCK):
            k = key[i] if i < len(key) else 0
            self._ipad[i] = k ^ 0x36
            self._opad[i] = k ^ 0x5C
        self._tag = bytearray(DIGEST)
        self._hex = bytearray(2 * DIGEST)

    def digest(self, *parts):
        """The 32-byte tag; a buffer owned by this object, clobbered by the next call."""
        h = hashlib.sha256(self._ipad)
        for p in parts:
            h.update(p)
        inner = h.digest()
        h = hashlib.sha256(self._opad)
        h.update(inner)
        self._tag[:] = h.digest()
        return self._tag

    def hexdigest(self, *parts):
        """The tag as 64 lowercase hex characters (a bytearray, clobbered by the next call)."""
        t = self.digest(*parts)
        out = self._hex
        for i in range(DIGEST):
            out[2 * i] = _HEX[t[i] >> 4]
            out[2 * i + 1] = _HEX[t[i] & 15]
        return out

    def verify(self, tag, *parts):
        """True when tag (32 raw bytes, or 64 hex characters in either case) is the tag of the
        parts. Runs the same work whatever the tag's content."""
        if len(tag) == 2 * DIGEST:
            want = self.hexdigest(*parts)
            diff = 0
            for i in range(2 * DIGEST):
                c = tag[i]
                if 0x41 <= c <= 0x46:  # 'A'..'F': compare as lower case
                    c += 0x20
                diff |= c ^ want[i]
            return diff == 0
        if len(tag) != DIGEST:
            return False
        want = self.digest(*parts)
        diff = 0
        for i in range(DIGEST):
            diff |= tag[i] ^ want[i]
        return diff == 0


def parse_key(text):
    """A key written in the config as hex (at least 2 * KEY_MIN digits, whole bytes): its
    bytes. ValueError with a message that never repeats the key."""
    if not isinstance(text, str):
        raise ValueError("must be a string of hex digits")
    n = len(text)
    if n % 2 or n < 2 * KEY_MIN or n > 2 * _BLOCK:
        raise ValueError("must be %d..%d hex digits (%d..%d bytes), an even count; got %d "
                         "characters" % (2 * KEY_MIN, 2 * _BLOCK, KEY_MIN, _BLOCK, n))
    out = bytearray(n // 2)
    for i in range(n):
        c = ord(text[i])
        if 0x30 <= c <= 0x39:
            v = c - 0x30
        elif 0x61 <= c <= 0x66:
            v = c - 0x57
        elif 0x41 <= c <= 0x46:
            v = c - 0x37
        else:
            raise ValueError("must be hex digits only (character %d is not)" % (i + 1))
        if i & 1:
            out[i >> 1] |= v
        else:
            out[i >> 1] = v << 4
    key = bytes(out)
    if key == bytes(len(key)) or key.count(key[0:1]) == len(key):
        raise ValueError("is one byte repeated: generate a random key (docs/security.md)")
    return key
