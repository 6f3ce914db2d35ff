"""The firmware CBOR and payload encoders, run inside the MicroPython Unix port, checked by
decoding every produced byte with cbor2 (and otlink's decoder) on the host."""

from __future__ import annotations

import json
import re
import math
import random
import struct

import cbor2
import pytest

from mp import ROOT, run
from otlink_tools.decode import decode_message

# Runs in MicroPython: reads cases from argv[1], writes one hex payload per line to argv[2].
MP_ENCODE = r'''
import sys, json, struct, binascii
from otlink.core.cbor import Writer
from otlink.core import reading
from otlink.core.payload import DataEncoder

cases = json.load(open(sys.argv[1]))
out = open(sys.argv[2], "w")
buf = bytearray(512)
w = Writer(buf)

def put(x):
    # JSON cannot carry every float: floats travel as ["f", hex of the 8 big-endian bytes].
    if isinstance(x, list) and len(x) == 2 and x[0] == "f":
        w.float(struct.unpack(">d", binascii.unhexlify(x[1]))[0])
    elif isinstance(x, list) and len(x) == 2 and x[0] == "b":
        w.bytes(binascii.unhexlify(x[1]))
    elif isinstance(x, list):
        w.array_head(len(x))
        for y in x:
            put(y)
    elif isinstance(x, dict):
        w.map_head(len(x))
        for k in x:
            put(k)
            put(x[k])
    else:
        w.obj(x)

for c in cases["items"]:
    w.reset()
    put(c)
    out.write(binascii.hexlify(buf[:w.n]).decode() + "\n")

rec = bytearray(reading.MAX_SIZE)
for b in cases["batches"]:
    enc = DataEncoder(b["capacity"])
    enc.start(b["boot"], b["historical"])
    seq = b["seq"]
    for kind, pid, t, v, flags in b["readings"]:
        if kind == "i":
            n = reading.pack_int(rec, pid, t, v, flags)
        elif kind == "f":
            n = reading.pack_float(rec, pid, t, struct.unpack(">d", binascii.unhexlify(v))[0],
                                   flags)
        elif kind == "e":
            n = reading.pack_err(rec, pid, t, v, flags)
        else:
            n = reading.pack_text(rec, pid, t, v.encode(), flags)
        if not enc.add(seq, rec, n):
            out.write(binascii.hexlify(enc.finish()).decode() + "\n")
            enc.start(b["boot"], b["historical"])
            if not enc.add(seq, rec, n):
                raise SystemExit("reading refused by an empty batch")
        seq = (seq + 1) & 0xFFFFFFFF
    out.write(binascii.hexlify(enc.finish()).decode() + "\n")
    out.write("--\n")
out.close()
print("done")
'''



DOC = ROOT / "docs" / "payload.md"
VECTORS = ROOT / "tests" / "data" / "cbor_appendix_a.json"  # RFC 8949 Appendix A


def appendix_a() -> list[dict]:
    """The Appendix A vectors a preferred-serialization encoder must reproduce and JSON can
    hold (the rest are written through specific Writer calls in tests/firmware/test_cbor.py)."""
    return [v for v in json.loads(VECTORS.read_text()) if v["roundtrip"] and "decoded" in v]


def as_item(x):
    """A vector value as an MP_ENCODE item: floats as their exact bits."""
    if isinstance(x, float):
        return fhex(x)
    if isinstance(x, list):
        return [as_item(y) for y in x]
    if isinstance(x, dict):
        return {k: as_item(y) for k, y in x.items()}
    return x


def fhex(x: float) -> list:
    return ["f", struct.pack(">d", x).hex()]


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


WIDE = [2**29 - 1, 2**29, -2**29, -2**29 - 1, 2**63 - 1, -2**63, 5, 2**63 - 1, 2**30,
        -2**63, 2**62, 3_000_000_000, 3_000_000_007, -1]


def edge_ints() -> list[int]:
    vals = []
    for b in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**62, 2**63, 2**64 - 1):
        vals += [b, -b - 1]
    vals += [2**64, -(2**64) - 1, 2**70 + 5]
    return vals


def edge_floats(rng: random.Random) -> list[float]:
    vals = [0.0, -0.0, 1.0, -1.5, 65504.0, 65505.0, 2.0**-24, 2.0**-25, 2.0**-14, 2.0**-149,
            2.0**-150, 2.0**-126, 3.4028234663852886e38, 2.0**128, 5e-324, 1e300, 0.1, 230.1,
            f32(230.1), f32(5.234), 21.5625, math.inf, -math.inf, math.nan]
    for _ in range(300):
        vals.append(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])
        vals.append(f32(rng.uniform(-1e6, 1e6)))
        vals.append(rng.randint(-2048, 2048) / 16.0)
        e = rng.randint(-30, 20)
        vals.append(rng.randint(0, 1023) * 2.0**e)  # in or near half range, incl. subnormals
    return vals


def shortest_width(x: float) -> int:
    """Expected encoded size: the narrowest IEEE width that holds x exactly."""
    if math.isnan(x) or math.isinf(x):
        return 3
    try:
        if struct.unpack("<e", struct.pack("<e", x))[0] == x:
            return 3
    except OverflowError:
        pass
    try:
        if struct.unpack("<f", struct.pack("<f", x))[0] == x:
            return 5
    except OverflowError:
        pass
    return 9


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    rng = random.Random(8949)
    ints = edge_ints() + [rng.randint(-(2**64), 2**64 - 1) for _ in range(200)]
    floats = edge_floats(rng)
    texts = ["", "a", "IETF", "\"\\", "\u00fc", "\u6c34", "\U00010151", "x" * 300]
    nested = [[1, [2, 3], {"a": 1}], {"k": [True, False, None]}, ["b", "00ff"]]
    vectors = appendix_a()
    items = ints + [fhex(x) for x in floats] + texts + nested + [as_item(v["decoded"])
                                                                 for v in vectors]
    t0 = 1795000000000
    batches = []
    # reference-like batch across a sequence wrap, with every record kind
    readings = []
    for k in range(60):
        t = t0 + k * 1000 + (k % 7)
        readings += [["f", 1, t, struct.pack(">d", f32(230.1 + k / 10)).hex(), 0],
                     ["i", 2, t, 1234567 + k // 3, 0],
                     ["i", 3, t, -40 + (k % 5), 0],
                     ["i", 4, t, 2**40 * (1 if k % 2 else -1) + k, 0],
                     ["e", 5, t, [1, 2, 3, 4, 16, 17, 32, 0x81, 0x84, 0x86][k % 10], 0]]
        if k % 2 == 0:
            readings.append(["t", 6, t + 500, "state-%d" % k, 0])
        # across the +-2**29 line where the firmware switches to byte-wise differences
        readings.append(["i", 7, t + 500, WIDE[k % len(WIDE)], 0])
    batches.append({"capacity": 512, "boot": 4294967295, "historical": True,
                    "seq": 2**32 - 100, "readings": readings})
    untimed = [["i", 9, 1000 + 250 * k, k * k, 1] for k in range(30)]
    batches.append({"capacity": 256, "boot": 0, "historical": False, "seq": 0,
                    "readings": untimed})
    cases = tmp_path_factory.mktemp("interop")
    (cases / "cases.json").write_text(
        json.dumps({"items": items, "batches": batches}, ensure_ascii=False), encoding="utf-8")
    script = cases / "enc.py"
    script.write_text(MP_ENCODE)
    res = run(script, str(cases / "cases.json"), str(cases / "out.txt"), heap="2M")
    assert res.returncode == 0 and "done" in res.stdout, res.stdout + res.stderr
    lines = (cases / "out.txt").read_text().split("\n")
    n_items = len(items)
    return {"ints": ints, "floats": floats, "texts": texts, "nested": nested,
            "vectors": vectors, "item_hex": lines[:n_items], "batch_lines": lines[n_items:],
            "batches": batches}


def test_ints_exact(encoded):
    for v, h in zip(encoded["ints"], encoded["item_hex"]):
        assert cbor2.loads(bytes.fromhex(h)) == v, h
        if -(2**64) <= v < 2**64:  # preferred serialization: same bytes as cbor2's encoder
            assert h == cbor2.dumps(v).hex(), v


def test_floats_exact_and_shortest(encoded):
    n = len(encoded["ints"])
    for x, h in zip(encoded["floats"], encoded["item_hex"][n:]):
        got = cbor2.loads(bytes.fromhex(h))
        if math.isnan(x):
            assert h == "f97e00"
            continue
        assert got == x and math.copysign(1, got) == math.copysign(1, x), (x, h)
        assert len(h) // 2 == shortest_width(x), (x, h)


def test_texts_and_nested(encoded):
    n = len(encoded["ints"]) + len(encoded["floats"])
    hexes = encoded["item_hex"][n:]
    for s, h in zip(encoded["texts"], hexes):
        assert cbor2.loads(bytes.fromhex(h)) == s
    got = [cbor2.loads(bytes.fromhex(h)) for h in hexes[len(encoded["texts"]):][:3]]
    assert got[0] == [1, [2, 3], {"a": 1}]
    assert got[1] == {"k": [True, False, None]}
    assert got[2] == b"\x00\xff"


def test_appendix_a_vectors(encoded):
    vectors = encoded["vectors"]
    assert len(vectors) >= 45
    hexes = encoded["item_hex"][len(encoded["item_hex"]) - len(vectors):]
    for v, h in zip(vectors, hexes):
        want = bytes.fromhex(v["hex"])
        assert cbor2.loads(want) == v["decoded"], v["hex"]
        if "{" in json.dumps(v["decoded"]):
            # MicroPython's json does not keep key order: same map, maybe another key order
            assert cbor2.loads(bytes.fromhex(h)) == v["decoded"], (v["hex"], h)
        else:
            assert h == v["hex"], (v["decoded"], h)


def _batches(encoded) -> list[list[dict]]:
    out, cur = [], []
    for line in encoded["batch_lines"]:
        if line == "--":
            out.append(cur)
            cur = []
        elif line:
            cur.append(decode_message("otlink/s/n/data", bytes.fromhex(line)))
    return out


def test_batches_decode_to_exact_readings(encoded):
    decoded = _batches(encoded)
    assert len(decoded) == len(encoded["batches"])
    for spec, msgs in zip(encoded["batches"], decoded):
        got = [r for m in msgs for r in m["readings"]]
        assert len(got) == len(spec["readings"])
        seq = spec["seq"]
        for m in msgs:
            assert m["boot"] == spec["boot"] and m["historical"] == spec["historical"]
            assert m["seq_first"] == m["readings"][0]["seq"]
            assert m["seq_last"] == m["readings"][-1]["seq"]
        for (kind, pid, t, v, flags), r in zip(spec["readings"], got):
            assert r["seq"] == seq and r["pid"] == pid and r["t_ms"] == t
            assert r["untimed"] == bool(flags)
            if kind == "f":
                assert r["value"] == struct.unpack(">d", bytes.fromhex(v))[0]
                assert isinstance(r["value"], float) and r["err"] is None
            elif kind == "e":
                assert r["err"] == v and r["value"] is None
            else:
                assert r["value"] == v and r["err"] is None
            seq = (seq + 1) % 2**32
    first = decoded[0]
    assert len(first) > 1, "the wrapped batch spans several messages (512-byte buffer)"
    assert any(m["seq_first"] > m["seq_last"] for m in first), "one message spans the wrap"


def _doc_blocks() -> list[tuple[str, bytes]]:
    text = DOC.read_text()
    out = []
    for topic_, body in re.findall(r"```cbor (\S+)\n(.*?)```", text, re.S):
        hexes = "".join(line.split("#")[0] for line in body.splitlines())
        out.append((topic_, bytes.fromhex(hexes.replace(" ", ""))))
    return out


def test_doc_examples_are_encoder_output_and_decode():
    res = run(ROOT / "tests" / "host" / "payload_examples_mp.py", heap="128K")
    assert res.returncode == 0, res.stdout + res.stderr
    made = [bytes.fromhex(line.split()[1]) for line in res.stdout.splitlines() if line.strip()]
    blocks = _doc_blocks()
    assert len(blocks) == len(made) == 5
    for (topic_, payload), fresh in zip(blocks, made):
        assert payload == fresh, f"docs/payload.md example for {topic_} is stale"
        d = decode_message(topic_, payload)
        assert d["kind"] == topic_.rsplit("/", 1)[1]
    data = decode_message(*blocks[0])
    assert [r["value"] for r in data["readings"]][-2:] == [1234568, 499]
    assert data["readings"][4]["err"] == 0x82
    assert data["readings"][5]["t_ms"] == 1795000000480
