# The firmware's side of tests/host/test_one_rule.py, run by a MicroPython Unix port (64-bit
# or the 32-bit build with the boards' object model): reads the generated cases (JSON) from
# argv[1] and prints "RESULT <json>" with what the firmware's one implementation of each rule
# makes of them: CRC-16/MODBUS, SHT3x CRC-8, word orders (written by the command path, read
# back by the point decoder), serial arithmetic and the state-field table.
import json
import sys

from otlink import commands
from otlink.core import modbus, reading
from otlink.core.config import parse_points
from otlink.core.payload import STATE_FIELDS
from otlink.core.points import ORDERS, order_word, pack_reading
from otlink.core.queue.fmt import sdiff, wrap
from otlink.drivers.sht3x import crc8

with open(sys.argv[1]) as f:
    cases = json.load(f)

SERIAL = {"port": "/dev/null", "baud": 9600, "groups": {"fast": {"interval_ms": 1000}}}


def point(typ, order):
    return parse_points([{"id": 7, "slave": 1, "table": "holding", "address": 10,
                          "type": typ, "order": order}], SERIAL)[0]


def read_back(p, regs):
    # a read reply (slave, fc, count, data..., crc) holding regs, through the point decoder
    data = bytearray(3 + 2 * len(regs) + 2)
    for i, r in enumerate(regs):
        data[3 + 2 * i] = r >> 8
        data[4 + 2 * i] = r & 0xFF
    rec = bytearray(reading.MAX_SIZE)
    n = pack_reading(p, data, 3, rec, 0, 0)
    return reading.unpack(rec, n)[4]


out = {"crc16": [modbus.crc16(bytes.fromhex(h), len(h) // 2) for h in cases["crc16"]],
       "orders": list(ORDERS)}
crcs = []  # (CRC-8 of the bytes, CRC-8 of the bytes with that CRC appended)
for h in cases["crc8"]:
    b = bytearray(bytes.fromhex(h) + b"\0")
    n = len(b) - 1
    b[n] = crc8(b, 0, n)
    crcs.append([b[n], crc8(b, 0, n + 1)])
out["crc8"] = crcs

words = []  # (registers written, value read back, order_word of the value bytes)
for typ, order, v, hexbytes in cases["words"]:
    p = point(typ, order)
    regs = commands.encode_registers(p, v)
    vb = bytes.fromhex(hexbytes)
    n = len(vb) // 2
    words.append([regs, read_back(p, regs),
                  [order_word(vb, 0, w, n, ORDERS.index(order)) for w in range(n)]])
out["words"] = words
out["sdiff"] = [sdiff(a, b) for a, b in cases["sdiff"]]
out["wrap"] = [wrap(a + k) for a, k in cases["add"]]
out["state_fields"] = {k: STATE_FIELDS[k].__name__ for k in STATE_FIELDS}
print("RESULT " + json.dumps(out))
