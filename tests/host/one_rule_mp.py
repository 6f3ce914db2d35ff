# The firmware's side of tests/host/test_one_rule.py, run by a MicroPython Unix port (64-bit
# or the 32-bit build with the boards' object model): reads the generated cases (JSON) from
# argv[1] and prints "RESULT <json>" with what the firmware's one implementation of each rule
# makes of them: CRC-16/MODBUS, SHT3x CRC-8, word orders (registers written by the command
# path, value words read by the point decoder's order_word; tests/firmware/test_commands.py
# reads every type and order back through the whole decoder), serial arithmetic and the
# state-field table.
import json
import sys

from otlink import commands
from otlink.core import modbus
from otlink.core.config import parse_points
from otlink.core.payload import STATE_FIELDS
from otlink.core.points import ORDERS, order_word
from otlink.core.queue.fmt import sdiff, wrap
from otlink.drivers.sht3x import crc8

with open(sys.argv[1]) as f:
    cases = json.load(f)

SERIAL = {"port": "/dev/null", "baud": 9600, "groups": {"fast": {"interval_ms": 1000}}}


def point(typ, order):
    return parse_points([{"id": 7, "slave": 1, "table": "holding", "address": 10,
                          "type": typ, "order": order}], SERIAL)[0]


out = {"crc16": [modbus.crc16(bytes.fromhex(h), len(h) // 2) for h in cases["crc16"]],
       "orders": list(ORDERS)}
crcs = []  # (CRC-8 of the bytes, CRC-8 of the bytes with that CRC appended)
for h in cases["crc8"]:
    b = bytearray(bytes.fromhex(h) + b"\0")
    n = len(b) - 1
    b[n] = crc8(b, 0, n)
    crcs.append([b[n], crc8(b, 0, n + 1)])
out["crc8"] = crcs

words = []  # (registers the command path writes, value words the decoder reads from them)
for typ, order, v, _value_hex in cases["words"]:
    regs = commands.encode_registers(point(typ, order), v)
    wire = bytearray(2 * len(regs))  # the registers as they arrive, big endian each
    for i, r in enumerate(regs):
        wire[2 * i] = r >> 8
        wire[2 * i + 1] = r & 0xFF
    n = len(regs)
    words.append([regs, [order_word(wire, 0, w, n, ORDERS.index(order)) for w in range(n)]])
out["words"] = words
out["sdiff"] = [sdiff(a, b) for a, b in cases["sdiff"]]
out["wrap"] = [wrap(a + k) for a, k in cases["add"]]
out["state_fields"] = {k: STATE_FIELDS[k].__name__ for k in STATE_FIELDS}
print("RESULT " + json.dumps(out))
