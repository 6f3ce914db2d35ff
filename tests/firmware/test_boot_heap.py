# What keeps the agent's boot small in the heap: the config read from the stream and hashed in
# chunks, raw points dropped as validated, the birth streamed from the point table into a
# buffer of a known bound, the points as a table of fixed-size rows (no object per point).
# heapsize: 384K 32:64K
import json
import sys

import mptest
from otlink import app
from otlink.core import config
from otlink.core.cbor import BufferFull
from otlink.core.payload import birth_bound, encode_birth, encode_birth_rows


def _cfg(n):
    pts = []
    for i in range(n):
        p = {"id": i + 1, "name": "pt_%d_\u00b5" % i, "slave": 1 + i % 3, "table": "holding",
             "address": 4 * (i // 3), "type": ("float32", "int16", "uint64", "string")[i % 4],
             "scale": (1, 0.1, 1e-3, 7)[i % 4], "offset": (0, -40.5)[i % 2], "unit": "V"}
        if p["type"] == "string":
            p["length"] = 4  # characters (2 registers)
        pts.append(p)
    pts.append({"id": 900, "name": "b", "slave": 1, "table": "holding", "address": 1000,
                "type": "bit", "bit": 3, "deadband": 1})
    return {"node": {"id": "n-1", "site": "s"},
            "mqtt": {"host": "127.0.0.1", "ack_key": mptest.ACK_KEY},
            "serial": {"port": "/dev/null"}, "points": pts,
            "sensors": [{"name": "cab", "driver": "sht3x", "bus": "i2c0", "group": "default",
                         "points": [{"id": 70, "name": "t", "channel": "temperature"}]}]}


def _path(name):
    return (sys.argv[1] if len(sys.argv) > 1 else "/tmp") + "/" + name


def test_config_from_stream_and_hash_in_chunks():
    text = json.dumps(_cfg(30))
    path = _path("node.json")
    with open(path, "w") as f:
        f.write(text)
    with open(path, "rb") as f:
        mptest.eq(config.config_hash(f), config.config_hash(text), "hash of the file by chunks")
    with open(path) as f:
        a = config.load_stream(f)
    b = config.loads(text)
    mptest.eq([p.name for p in a["points"]], [p.name for p in b["points"]], "same points")
    mptest.eq(a["mqtt"], b["mqtt"], "same mqtt section")
    with open(path, "w") as f:
        f.write("{\"node\": ")
    with open(path) as f:
        e = mptest.raises(config.ConfigError, config.load_stream, f)
    mptest.true("not valid JSON" in str(e), "a syntax error is named: %s" % e)


def test_validate_consume_drops_raw_points():
    raw = _cfg(5)
    kept = config.validate(raw)
    mptest.true(all(p is not None for p in raw["points"]), "default: the caller's dict intact")
    out = config.validate(raw, consume=True)
    mptest.eq(raw["points"], [None] * 6, "consume: every raw point dropped")
    mptest.eq(len(out["points"]), len(kept["points"]), "the same points validated")


def test_birth_rows_bound_and_bytes():
    cfg = config.validate(_cfg(12))
    n = 12 + 1 + 1
    mptest.eq(len(list(app.birth_rows(cfg))), n, "one row per point")
    rows = {r[0]: r for r in app.birth_rows(cfg)}
    mptest.eq(rows[900][6], "modbus:1:holding:1000.3", "a bit point's source names its bit")
    mptest.eq(rows[1][6], "modbus:1:holding:0", "a number point's source")
    bound = birth_bound("n-1", "0.1.0", "abcd", app.birth_rows(cfg))
    buf = bytearray(bound)
    k = encode_birth_rows(buf, "n-1", "0.1.0", "abcd", 7, n, app.birth_rows(cfg))
    mptest.true(0 < k <= bound, "the bound holds: %d <= %d" % (k, bound))
    # the same bytes as the dict form (tools and tests) of the same table
    buf2 = bytearray(bound)
    k2 = encode_birth(buf2, "n-1", "0.1.0", "abcd", 7, app.birth_points(cfg))
    mptest.eq(bytes(buf2[:k2]), bytes(buf[:k]), "rows and dicts encode alike")
    mptest.raises(BufferFull, encode_birth_rows, bytearray(k - 1), "n-1", "0.1.0", "abcd", 7,
                  n, app.birth_rows(cfg))
    mptest.raises(ValueError, encode_birth_rows, buf2, "n-1", "0.1.0", "abcd", 7, n + 1,
                  app.birth_rows(cfg))
    b, count = app.encode_birth(cfg, "abcd", 7)
    mptest.eq((b, count), (bytes(buf[:k]), n), "app.encode_birth: exact bytes, point count")


def test_point_table_rows():
    pts = config.validate(_cfg(4))["points"]
    plain = pts[1]  # int16, no deadband, no bit
    mptest.eq((plain.bit, plain.onchange, plain.db_raw), (0, False, 0), "a plain row")
    mptest.eq((plain.name, plain.unit, plain.table, plain.scale, plain.offset),
              ("pt_1_\u00b5", "V", "holding", 0.1, -40.5), "cold fields read back")
    # last-value bytes: uint64 (row 2) 8 bytes, string of 2 registers (row 3) 4
    mptest.eq(len(pts.text), 8 + 4, "text slots of the 64-bit and string points only")
    b = pts[-1]
    mptest.eq((b.bit, b.onchange, b.db_raw), (3, True, 1), "a bit point with a deadband")
    mptest.eq((pts.find(900), pts.find(901)), (4, -1), "find by id")


def test_point_table_limits():
    from otlink.core.points import Points

    # units and groups are one-byte indices: the 256th distinct unit is refused (config.py
    # names the point), not stored as a wrapped index
    pts = Points(256)
    for i in range(255):
        pts.add(i, "p", 1, "input", i, 0, 0, 0, 1, 1, 0, "u%d" % i, "default", None)
    mptest.raises(ValueError, pts.add, 255, "p", 1, "input", 255, 0, 0, 0, 1, 1, 0, "u255",
                  "default", None)
    mptest.eq((len(pts), pts.seal()[254].unit), (255, "u254"), "no row taken by the refusal")
    if sys.maxsize < 2 ** 32:
        return  # names past 64 KiB do not fit this build's 64K heap cap
    # names (and texts) past 64 KiB keep their offsets (32-bit offsets)
    pts = Points(2)
    pts.add(1, "x" * 65600, 1, "input", 0, 0, 0, 0, 1, 1, 0, None, "default", None)
    pts.add(2, "second", 1, "input", 1, 0, 0, 0, 1, 1, 0, None, "default", None)
    mptest.eq(pts.seal().name(1), "second", "a name after 64 KiB of names")


def test_point_table_bytes_per_point():
    # What a point costs once validated: the table grown from 20 to 60 points (the raw config
    # list exists before and after, so only the table is counted).
    import gc

    ser = config.parse_serial({"port": "/dev/null"})
    used = []
    for n in (20, 60):
        raw = _cfg(n)["points"][:-1]
        gc.collect()
        m0 = gc.mem_alloc()
        pts = config.parse_points(raw, ser)
        gc.collect()
        used.append(gc.mem_alloc() - m0)
        del pts
    per = (used[1] - used[0]) // 40
    print("point table: %d bytes for 20 points, %d for 60: %d per point" % (used[0], used[1],
                                                                           per))
    # 32-bit: rows 34 B + scale/offset/db_raw slots 12 B + the name (~9 B) + a share of the
    # 64-bit/string last-value bytes, measured 54 B; an object per point took ~157 B
    mptest.true(per <= (64 if sys.maxsize < 2 ** 32 else 96), "%d B per point" % per)


mptest.main(globals())
