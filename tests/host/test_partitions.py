"""The ESP32 partition table `otlink flash` writes: the board's layout, byte-exact format."""

import hashlib
import json
import struct

import pytest

from otlink_tools import paths
from otlink_tools.partitions import TABLE_SIZE, PartitionError, build, parse


def board():
    return json.loads((paths.BOARDS / "esp32.json").read_text())["flash"]


def test_board_table_round_trips_and_places_the_queue():
    fl = board()
    blob = build(fl["partition_table"], fl["size"])
    assert len(blob) == TABLE_SIZE
    rows = parse(blob)
    assert rows == [list(r) for r in fl["partition_table"]]
    otq = [r for r in rows if r[0] == "otq"][0]
    q = fl["regions"]["queue"]
    assert otq[3] == q["offset"] and otq[4] == q["size"]
    vfs = [r for r in rows if r[0] == "vfs"][0]
    assert vfs[3] + vfs[4] <= otq[3]


def test_bytes_follow_the_idf_layout():
    blob = build([["nvs", "data", "nvs", 0x9000, 0x6000]], 0x400000)
    magic, t, s, off, size, label, flags = struct.unpack_from("<2sBBII16sI", blob, 0)
    assert (magic, t, s, off, size, flags) == (b"\xaa\x50", 1, 2, 0x9000, 0x6000, 0)
    assert label.rstrip(b"\0") == b"nvs"
    assert blob[32:48] == b"\xeb\xeb" + b"\xff" * 14
    assert blob[48:64] == hashlib.md5(blob[:32]).digest()
    assert set(blob[64:]) == {0xFF}


@pytest.mark.parametrize("rows, what", [
    ([["a", "data", "nvs", 0x9000, 0x1000], ["b", "data", "nvs", 0x9000, 0x1000]], "overlaps"),
    ([["app", "app", "factory", 0x11000, 0x1000]], "aligned"),
    ([["q", "data", "undefined", 0x3F0000, 0x20000]], "past the 4 MiB"),
    ([["q", "data", "bogus", 0x9000, 0x1000]], "subtype"),
    ([["q", "dta", "nvs", 0x9000, 0x1000]], "type"),
])
def test_bad_rows_are_named(rows, what):
    with pytest.raises(PartitionError, match=what):
        build(rows, 0x400000)


def test_corrupt_table_is_detected():
    fl = board()
    blob = bytearray(build(fl["partition_table"], fl["size"]))
    blob[40] ^= 1
    with pytest.raises(PartitionError, match="MD5"):
        parse(bytes(blob))
