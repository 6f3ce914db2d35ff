# heapsize: 24K 32:16K
# HMAC-SHA256 (core/auth.py) against the test vectors of RFC 4231 §4.2-4.8, on both builds;
# tags in parts equal the tag of the whole; a wrong tag in any byte, in hex or raw, is refused;
# config keys parsed from hex without ever being repeated in an error.
import binascii

import mptest
from otlink.core import auth

# (key, data, HMAC-SHA256) of RFC 4231 test cases 1-4, 6, 7 (case 5: truncated, below)
LONG_KEY = b"\xaa" * 131
VECTORS = (
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (LONG_KEY, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (LONG_KEY, b"This is a test using a larger than block-size key and a larger than "
     b"block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_rfc4231_vectors():
    for i, (key, data, want) in enumerate(VECTORS):
        h = auth.Hmac(key)
        mptest.eq(bytes(h.hexdigest(data)), want.encode(), "RFC 4231 vector %d" % i)
        mptest.eq(binascii.hexlify(h.digest(data)), want.encode(), "raw tag %d" % i)
        mptest.true(h.verify(binascii.unhexlify(want), data), "verify raw %d" % i)
        mptest.true(h.verify(want.upper().encode(), data), "verify hex upper %d" % i)


def test_rfc4231_truncated_case_5():
    h = auth.Hmac(b"\x0c" * 20)
    mptest.eq(bytes(h.hexdigest(b"Test With Truncation"))[:32],
              b"a3b6167473100ee06e0c796c2955552b", "RFC 4231 4.6 (128-bit truncation)")


def test_parts_equal_whole_and_key_reuse():
    key, data, want = VECTORS[5]
    h = auth.Hmac(key)
    mv = memoryview(bytearray(data))
    got = bytes(h.hexdigest(mv[:7], b"", mv[7:60], mv[60:]))
    mptest.eq(got, want.encode(), "in parts")
    # the same object again: no state carried over between tags
    mptest.eq(bytes(h.hexdigest(data)), want.encode(), "second tag")


def test_wrong_tags_refused():
    key, data, want = VECTORS[1]
    h = auth.Hmac(key)
    raw = bytearray(binascii.unhexlify(want))
    for i in range(32):
        raw[i] ^= 1
        mptest.true(not h.verify(raw, data), "raw tag with byte %d flipped" % i)
        raw[i] ^= 1
    hx = bytearray(want.encode())
    for i in range(64):
        c = hx[i]
        hx[i] = 0x30 if c != 0x30 else 0x31
        mptest.true(not h.verify(hx, data), "hex tag with digit %d changed" % i)
        hx[i] = c
    mptest.true(not h.verify(raw[:31], data), "short tag")
    mptest.true(not h.verify(b"", data), "empty tag")
    mptest.true(not h.verify(hx + b"0", data), "long tag")
    mptest.true(not h.verify(raw, data + b"!"), "other message")
    mptest.true(not auth.Hmac(b"Jefe!").verify(raw, data), "other key")


def test_parse_key():
    k = auth.parse_key("000102030405060708090a0b0c0d0e0F")
    mptest.eq(k, bytes(range(16)), "16-byte key, mixed case")
    secret = "zz" + "ab" * 15
    for bad in (secret, "ab" * 7, "abc" * 11, "ab" * 65, 1234, None, "00" * 16, "7f" * 32):
        e = mptest.raises(ValueError, auth.parse_key, bad)
        if isinstance(bad, str):
            mptest.true(bad not in str(e), "error repeats the key: %s" % e)


mptest.main(globals())
