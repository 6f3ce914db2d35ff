"""ESP32 partition table: from the board file's rows to the 3 KiB binary the bootloader reads.

Format (ESP-IDF partition tables): 32-byte entries `<2sBBII16sI` = magic AA 50, type,
subtype, offset, size, label (NUL padded), flags; then an MD5 entry (EB EB, 14 x FF, the MD5
of all entries before it); the rest of the 0xC00-byte area is FF. The table lives at 0x8000.
"""

from __future__ import annotations

import hashlib
import struct

TABLE_OFFSET = 0x8000
TABLE_SIZE = 0xC00
_MAGIC = b"\xaa\x50"
_MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {
    "app": {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    "data": {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
             "efuse": 0x05, "undefined": 0x06, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83},
}


class PartitionError(ValueError):
    pass


def build(rows: list, flash_size: int) -> bytes:
    """rows: [name, type, subtype, offset, size]. Checks alignment, overlap and bounds."""
    out = bytearray()
    seen = set()
    end_prev = TABLE_OFFSET + 0x1000
    for i, row in enumerate(rows):
        if len(row) != 5:
            raise PartitionError(f"partition_table[{i}]: want [name, type, subtype, offset, size]")
        name, typ, sub, off, size = row
        where = f"partition_table[{i}] ({name})"
        if typ not in TYPES:
            raise PartitionError(f"{where}: type {typ!r} is not one of {', '.join(TYPES)}")
        if sub not in SUBTYPES[typ]:
            raise PartitionError(f"{where}: subtype {sub!r} unknown for type {typ}")
        if len(name.encode()) > 15 or name in seen:
            raise PartitionError(f"{where}: label must be unique and at most 15 bytes")
        align = 0x10000 if typ == "app" else 0x1000
        if off % align or size % 0x1000 or size <= 0:
            raise PartitionError(f"{where}: offset must be {align:#x}-aligned, size 4 KiB multiple")
        if off < end_prev:
            raise PartitionError(f"{where}: overlaps the previous partition or the table")
        if off + size > flash_size:
            raise PartitionError(f"{where}: ends past the {flash_size // 1048576} MiB flash")
        seen.add(name)
        end_prev = off + size
        out += struct.pack("<2sBBII16sI", _MAGIC, TYPES[typ], SUBTYPES[typ][sub], off, size,
                           name.encode(), 0)
    out += _MD5_MAGIC + hashlib.md5(bytes(out)).digest()
    if len(out) > TABLE_SIZE:
        raise PartitionError("too many partitions for the 3 KiB table")
    return bytes(out) + b"\xff" * (TABLE_SIZE - len(out))


def parse(blob: bytes) -> list[list]:
    """The inverse of build(), checking the MD5 entry; used by tests and `otlink flash`."""
    rows = []
    rev_t = {v: k for k, v in TYPES.items()}
    for i in range(0, TABLE_SIZE, 32):
        ent = blob[i:i + 32]
        if ent[:2] == _MAGIC:
            _, t, s, off, size, label, _flags = struct.unpack("<2sBBII16sI", ent)
            typ = rev_t[t]
            sub = {v: k for k, v in SUBTYPES[typ].items()}[s]
            rows.append([label.rstrip(b"\0").decode(), typ, sub, off, size])
        elif ent[:16] == _MD5_MAGIC:
            if hashlib.md5(blob[:i]).digest() != ent[16:]:
                raise PartitionError("partition table MD5 does not match its entries")
            return rows
        else:
            break
    raise PartitionError("partition table has no MD5 entry")
