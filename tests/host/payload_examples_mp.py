# The docs/payload.md examples, made by the firmware encoders: prints "name hex" lines.
# tests/host/test_cbor_interop.py checks the doc's bytes equal these; tools/payload_doc.py
# writes them, annotated, into the doc. The birth's point table is what app.birth_points()
# sends for such points.
import binascii
import struct
from otlink.core import reading
from otlink.core.payload import DataEncoder, encode_ack, encode_birth, encode_state


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


T = 1795000000000  # 2026-11-18T07:06:40Z
enc = DataEncoder(256)
enc.start(12, False)
rec = bytearray(reading.SIZE)
seq = 1000
rows = [
    ("f", 1, T, f32(230.1)), ("f", 2, T, f32(5.234)), ("i", 4, T, 1234567), ("i", 5, T, 500),
    ("e", 6, T, 0x82), ("i", 8, T + 480, 215),
    ("f", 1, T + 1003, f32(230.2)), ("f", 2, T + 1003, f32(5.25)), ("i", 4, T + 1003, 1234568),
    ("i", 5, T + 1003, 499),
]
for kind, pid, t, v in rows:
    if kind == "f":
        reading.pack_float(rec, pid, t, v)
    elif kind == "i":
        reading.pack_int(rec, pid, t, v)
    else:
        reading.pack_err(rec, pid, t, v)
    enc.add(seq, rec, reading.SIZE)
    seq += 1
print("data", binascii.hexlify(enc.finish()).decode())
buf = bytearray(512)
pts = [
    {"id": 1, "name": "voltage_l1", "unit": "V", "type": "float32", "scale": 1, "offset": 0,
     "source": "modbus:1:input:0"},
    {"id": 4, "name": "energy_import", "unit": "Wh", "type": "uint32", "scale": 1, "offset": 0,
     "source": "modbus:1:holding:72"},
    {"id": 5, "name": "frequency", "unit": "Hz", "type": "int16", "scale": 0.1, "offset": 0,
     "source": "modbus:1:holding:70"},
]
n = encode_birth(buf, "meter-7", "0.3.0", "9f2c51d0", 12, pts)
print("birth", binascii.hexlify(buf[:n]).decode())
n = encode_state(buf, {"online": True, "boot": 12, "uptime_s": 3600, "queue_depth": 42,
                       "oldest_unsent_s": 7, "drops": 0, "free_heap": 61440,
                       "reset_cause": "power-on", "slave_errors": {1: 0, 2: 17}})
print("state", binascii.hexlify(buf[:n]).decode())
n = encode_state(buf, {"online": False, "boot": 12})
print("death", binascii.hexlify(buf[:n]).decode())
n = encode_ack(buf, 12, 1009)
print("ack", binascii.hexlify(buf[:n]).decode())
