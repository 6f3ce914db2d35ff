# Payload benchmark body, run by the MicroPython Unix port (tests/bench/bench_payload.py).
# Reference workload: an energy meter polled every second (voltage, current, power as float32
# registers; an energy counter u32 that increments; three int16 registers with scale 0.1) and a
# temperature sensor read every 2 s. Prints one line: RESULT <json>.
import gc
import json
import struct
import sys
import time

import micropython
from otlink.core import reading
from otlink.core.payload import DataEncoder

BATCH = 50
NBATCH = int(sys.argv[1]) if len(sys.argv) > 1 else 40
T0 = 1795000000000


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# (pid, Tasmota-style JSON section and key, decimals shown, scale) of each point
POINTS = {1: ("ENERGY", "Voltage", 1, 1), 2: ("ENERGY", "Current", 3, 1),
          3: ("ENERGY", "Power", 1, 1), 4: ("ENERGY", "Total", 3, 0.001),
          5: ("ENERGY", "Frequency", 1, 0.1), 6: ("ENERGY", "Factor", 2, 0.01),
          7: ("ENERGY", "Temperature", 1, 0.1), 8: ("DS18B20", "Temperature", 1, 0.1)}


def workload(n):
    out = []
    k = 0
    e = 1234567
    while len(out) < n:
        t = T0 + k * 1000 + (k * 7) % 13  # poll jitter of a few ms
        out.append((reading.KIND_FLOAT, 1, t, f32(230.1 + (k % 5) * 0.1)))
        out.append((reading.KIND_FLOAT, 2, t, f32(5.234 + (k % 3) * 0.01)))
        out.append((reading.KIND_FLOAT, 3, t, f32(1204.3 + (k % 11))))
        e += 1 if k % 3 == 0 else 0
        out.append((reading.KIND_INT, 4, t, e))
        out.append((reading.KIND_INT, 5, t, 500 + (k % 3) - 1))
        out.append((reading.KIND_INT, 6, t, 97 + (k % 2)))
        out.append((reading.KIND_INT, 7, t, 412 + k // 4))
        if k % 2 == 0:
            out.append((reading.KIND_INT, 8, t + 500, 215 + (k // 2) % 2))
        k += 1
    return out[:n]


rows = workload(BATCH * NBATCH)
recs = []
for kind, pid, t, v in rows:
    r = bytearray(reading.SIZE)
    if kind == reading.KIND_FLOAT:
        reading.pack_float(r, pid, t, v)
    else:
        reading.pack_int(r, pid, t, v)
    recs.append(r)
enc = DataEncoder(1024, max_count=BATCH)


def fill(b):
    enc.start(3, False)
    i = b * BATCH
    end = i + BATCH
    while i < end:
        if not enc.add(i, recs[i], 20):
            raise RuntimeError("batch refused a reading")
        i += 1


def iso(t_ms):
    y, mo, d, h, mi, s = time.gmtime(t_ms // 1000)[:6]
    return "%04d-%02d-%02dT%02d:%02d:%02d" % (y, mo, d, h, mi, s)


def tasmota_json(row):
    kind, pid, t, v = row
    sec, key, dec, scale = POINTS[pid]
    val = round(v * scale, dec)
    return json.dumps({"Time": iso(t), sec: {key: val}})


def tasmota_grouped(rows):
    # Tasmota's telemetry: one SENSOR message per poll with every value of the device,
    # grouped by section ({"Time": ..., "ENERGY": {...}}); rows of one timestamp share it
    out = []
    i = 0
    n = len(rows)
    while i < n:
        t = rows[i][2]
        msg = {"Time": iso(t)}
        while i < n and rows[i][2] == t:
            kind, pid, _t, v = rows[i]
            sec, key, dec, scale = POINTS[pid]
            msg.setdefault(sec, {})[key] = round(v * scale, dec)
            i += 1
        out.append(json.dumps(msg))
    return out


def naive_batch(b):
    # micropython-lib style: build dicts, serialise with json.dumps
    items = []
    for i in range(b * BATCH, (b + 1) * BATCH):
        kind, pid, t, v = rows[i]
        items.append({"seq": i, "pid": pid, "t": t, "v": v})
    return json.dumps({"v": 1, "boot": 3, "readings": items})


# sizes
total = 0
for b in range(NBATCH):
    fill(b)
    total += len(enc.finish())
json_total = 0
for row in rows:
    json_total += len(tasmota_json(row))
grouped_total = 0
for m in tasmota_grouped(rows):
    grouped_total += len(m)
naive_total = 0
for b in range(NBATCH):
    naive_total += len(naive_batch(b))

# allocation per batch: add() under a locked heap, then bytes allocated with gc disabled
micropython.heap_lock()
try:
    fill(0)
    locked = True
except MemoryError:
    locked = False
micropython.heap_unlock()
gc.collect()
gc.disable()
a0 = gc.mem_alloc()
fill(1)
enc.finish()
alloc_ours = gc.mem_alloc() - a0
gc.collect()
a0 = gc.mem_alloc()
naive_batch(1)
alloc_naive = gc.mem_alloc() - a0
gc.enable()
gc.collect()

# time
t0 = time.ticks_us()
for b in range(NBATCH):
    fill(b)
    enc.finish()
us_ours = time.ticks_diff(time.ticks_us(), t0) / (NBATCH * BATCH)
t0 = time.ticks_us()
for b in range(NBATCH):
    naive_batch(b)
us_naive = time.ticks_diff(time.ticks_us(), t0) / (NBATCH * BATCH)
t0 = time.ticks_us()
for row in rows:
    tasmota_json(row)
us_tasmota = time.ticks_diff(time.ticks_us(), t0) / len(rows)

print("RESULT " + json.dumps({
    "readings": len(rows), "bytes_per_reading": total / len(rows),
    "json_bytes_per_reading": json_total / len(rows),
    "naive_bytes_per_reading": naive_total / len(rows),
    "grouped_bytes_per_reading": grouped_total / len(rows),
    "heap_locked_ok": locked, "alloc_ours": alloc_ours, "alloc_naive": alloc_naive,
    "us_ours": us_ours, "us_naive": us_naive, "us_tasmota": us_tasmota}))
