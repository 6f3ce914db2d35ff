"""One rule, one place per side: the firmware's and the host's implementations agree.

Each rule the node and the host tools both need is written once in the firmware and once on
the host, on purpose (the host decoder is an independent reading of docs/payload.md, not an
import of firmware code). This test generates cases, has the firmware's implementation
answer them inside MicroPython (tests/host/one_rule_mp.py, on the 64-bit port and on the
32-bit build with the boards' object model) and compares with the host's:

- CRC-16/MODBUS over random frames: core/modbus.crc16 vs modbus_probe.crc16 (and pymodbus);
- CRC-8 of the SHT3x (drivers/sht3x.crc8): the datasheet's example 0xBEEF -> 0x92 and the
  catalogue check value; a frame with its CRC appended leaves remainder 0 (no host side:
  no host tool reads the sensor);
- word orders on random 32/64-bit values: registers written by the command path
  (commands.encode_registers) and value words read by the decoder (points.order_word) vs
  modbus_probe.encode/decode;
- sequence arithmetic across the 2**32 wrap: queue/fmt.sdiff/wrap vs decode.seq_diff/seq_add;
- the state-field tables: core/payload.STATE_FIELDS vs decode.STATE_FIELDS.

The reading record's layout has one owner, core/reading.py; the const() copies
core/payload.py keeps for its hot path are checked against it (on CPython) here too.
"""

from __future__ import annotations

import json
import random
import struct

import pytest

from mp import BUILDS, ROOT, run
from otlink_tools import decode, modbus_probe

SEED = 20261125
M32 = 1 << 32
WORD_TYPES = {"int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, M32 - 1),
              "int64": (-(1 << 63), (1 << 63) - 1),
              # the decoder rounds uint64 values of 2**63 and more on limbs (a float)
              "uint64": (0, (1 << 63) - 1)}


def make_cases() -> dict:
    rnd = random.Random(SEED)
    crc16 = [b"123456789", b"", bytes([1, 3, 0, 0, 0, 10])]
    crc16 += [rnd.randbytes(rnd.randint(1, 256)) for _ in range(300)]
    crc8 = [b"\xbe\xef", b"123456789"] + [rnd.randbytes(rnd.choice((1, 2, 2, 2, 7)))
                                          for _ in range(200)]
    words = []
    for typ, (lo, hi) in WORD_TYPES.items():
        edges = [lo, hi, 0, 1, -1, (1 << 30) - 1, 1 << 30, (1 << 31) - 1, 0x12345678]
        vals = [v for v in edges if lo <= v <= hi] + [rnd.randint(lo, hi) for _ in range(40)]
        fmt = modbus_probe._FMT[typ]
        for v in vals:
            for order in modbus_probe.ORDERS:
                words.append([typ, order, v, struct.pack(fmt, v).hex()])
    sdiff = [[0, M32 - 1], [M32 - 1, 0], [0, 0], [5, 5], [(1 << 31), 0], [0, 1 << 31],
             [(1 << 31) - 1, 0], [0, (1 << 31) - 1], [(1 << 31) + 1, 0], [1, M32 - 1],
             [(1 << 30) - 1, (1 << 30)], [(1 << 30), (1 << 30) - 1]]
    for _ in range(300):
        a = rnd.randrange(M32)
        d = rnd.choice((rnd.randint(-5, 5), rnd.randint(-(1 << 31), (1 << 31) - 1)))
        sdiff.append([a, (a - d) % M32])
        sdiff.append([rnd.randrange(M32), rnd.randrange(M32)])
    add = [[M32 - 1, 1], [0, -1], [M32 - 1, M32 - 1], [0, -(M32 - 1)], [5, 7]]
    for _ in range(300):
        a = rnd.choice((rnd.randrange(M32), rnd.randint(M32 - 10, M32 - 1), rnd.randint(0, 9)))
        add.append([a, rnd.randint(-(M32 - 1), M32 - 1)])
    return {"crc16": [b.hex() for b in crc16], "crc8": [b.hex() for b in crc8],
            "words": words, "sdiff": sdiff, "add": add}


@pytest.fixture(scope="module", params=BUILDS)
def firmware(request, tmp_path_factory):
    """(cases, what the firmware's implementations answered) on one build."""
    cases = make_cases()
    path = tmp_path_factory.mktemp("one_rule") / "cases.json"
    path.write_text(json.dumps(cases))
    res = run(ROOT / "tests" / "host" / "one_rule_mp.py", str(path), heap="16M",
              build=request.param)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and lines, res.stdout + res.stderr
    return cases, json.loads(lines[-1][7:])


def test_crc16_over_random_frames(firmware):
    from pymodbus.framer.rtu import FramerRTU

    cases, fw = firmware
    frames = [bytes.fromhex(h) for h in cases["crc16"]]
    assert fw["crc16"][0] == 0x4B37  # CRC-16/MODBUS check value of "123456789"
    assert fw["crc16"][1] == 0xFFFF  # the initial value, nothing shifted in
    assert fw["crc16"][2] == 0xCDC5  # 01 03 0000 000A: the CRC bytes on the wire are C5 CD
    assert fw["crc16"] == [modbus_probe.crc16(f) for f in frames]
    # a third implementation: pymodbus returns it with its bytes in wire order
    assert [((c & 0xFF) << 8) | (c >> 8) for c in fw["crc16"]] == \
        [FramerRTU.compute_CRC(f) for f in frames]


def test_crc8_datasheet_example_and_residue(firmware):
    cases, fw = firmware
    assert fw["crc8"][0][0] == 0x92  # SHT3x datasheet section 4.12: CRC(0xBEEF) = 0x92
    assert fw["crc8"][1][0] == 0xF7  # CRC-8/NRSC-5 (poly 0x31, init 0xFF) check value
    # no reflection and no final XOR: the bytes with their CRC appended leave remainder 0
    assert [r for _, r in fw["crc8"]] == [0] * len(cases["crc8"])
    assert len({c for c, _ in fw["crc8"]}) > 100  # and the CRCs themselves are spread


def test_word_orders_on_random_values(firmware):
    cases, fw = firmware
    assert tuple(fw["orders"]) == modbus_probe.ORDERS
    for (typ, order, v, vb), (regs, words) in zip(cases["words"], fw["words"]):
        what = f"{typ} {order} {v}"
        assert regs == modbus_probe.encode(v, typ, order), what  # both write the same
        assert modbus_probe.decode(regs, typ, order) == v, what
        value = bytes.fromhex(vb)  # and both read the same value back
        assert words == [int.from_bytes(value[i:i + 2], "big") for i in range(0, len(value), 2)]
        wswap, bswap = modbus_probe.swaps(order)
        assert modbus_probe.ORDERS.index(order) == wswap | bswap << 1
    assert len(fw["words"]) == len(cases["words"]) > 600


def test_sequence_arithmetic_across_the_wrap(firmware):
    cases, fw = firmware
    assert fw["sdiff"] == [decode.seq_diff(a, b) for a, b in cases["sdiff"]]
    assert fw["sdiff"][:3] == [1, -1, 0]  # 0 comes one after 2**32 - 1
    assert all(-(1 << 31) <= d < (1 << 31) for d in fw["sdiff"])
    assert fw["wrap"] == [decode.seq_add(a, k) for a, k in cases["add"]]
    assert fw["wrap"][:2] == [0, M32 - 1]


def test_state_field_tables_equal(firmware):
    _, fw = firmware
    assert fw["state_fields"] == {k: t.__name__ for k, t in decode.STATE_FIELDS.items()}


def test_reading_record_layout_has_one_owner():
    from otlink_tools import paths

    paths.firmware_import_path()
    from otlink.core import payload, reading
    from otlink.core.queue import fmt

    # the offsets are those of the packed fields: pid u16, kind u8, flags u8, t i64, value
    assert (reading.OFF_KIND, reading.OFF_FLAGS, reading.OFF_T, reading.HEADER, reading.SIZE) \
        == tuple(struct.calcsize(f) for f in ("<H", "<HB", "<HBB", "<HBBq", "<HBBqq"))
    assert reading.MAX_SIZE == reading.HEADER + reading.MAX_TEXT
    assert (fmt.CMP, fmt.MAX_REC, fmt.MAX_ENC) == (reading.SIZE, reading.MAX_SIZE,
                                                    reading.MAX_SIZE + 1)
    # payload.py's const() copies (folded into its add() loop) are reading.py's values
    assert (payload._KIND_INT, payload._KIND_FLOAT, payload._KIND_ERR, payload._KIND_TEXT,
            payload._REC_UNTIMED, payload._REC_HEADER, payload._REC_SIZE,
            payload._REC_MAX_TEXT) == (
        reading.KIND_INT, reading.KIND_FLOAT, reading.KIND_ERR, reading.KIND_TEXT,
        reading.FLAG_UNTIMED, reading.HEADER, reading.SIZE, reading.MAX_TEXT)
