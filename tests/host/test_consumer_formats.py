"""What `otlink monitor` writes is what real consumers accept, whatever the meter sends.

A birth as a node sends it (every scale and offset a float: 1.0, 0.0, and a board's single
float 0.1) and batches holding NaN and both infinities, an int64 above 2**53, a counter, a
string register with a byte that is not UTF-8, an error and a string point beside number
points. JSON lines must pass a strict parser (no NaN/Infinity), CSV must leave such values
empty with a flag, and the Influx lines must be accepted by a real InfluxDB (Debian's influxd,
started here on a free port) with every field of the type it should have.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import struct

import cbor2
import pytest

from otlink_tools.monitor import Monitor

T = "otlink/plant/meter-9/"
T0 = 1795000000000
BIG = (1 << 60) + 1  # int64 above 2**53: a float would make it 1152921504606846976
F32_TENTH = struct.unpack(">f", struct.pack(">f", 0.1))[0]  # a board's scale 0.1
NAN, INF = float("nan"), float("inf")


def birth() -> bytes:
    pts = [[1, "voltage", "V", "float32", 1.0, 0.0, "modbus:1:input:0"],
           [2, "energy", "Wh", "uint32", 1.0, 0.0, "modbus:1:input:100"],
           [3, "counter64", "", "int64", 1.0, 0.0, "modbus:1:input:108"],
           [4, "frequency", "Hz", "int16", F32_TENTH, 0.0, "modbus:1:holding:70"],
           [5, "serial", "", "string", 1.0, 0.0, "modbus:1:holding:210"],
           [6, "pf", "", "int16", 0.001, 0.0, "modbus:1:holding:200"],
           [7, "seq", "", "uint16", 1.0, 0.0, "modbus:1:holding:201"]]  # named like a field
    return cbor2.dumps({"v": 1, "node": "meter-9", "fw": "1", "cfg": "c", "boot": 4,
                        "pts": pts})


def batch(seq: int, t: int, readings: list, flags: int = 0) -> bytes:
    """A data batch, one reading every 10 ms (InfluxDB keeps one point per series and
    time); a text value b"..." goes out as a CBOR text string of those raw bytes (UTF-8 or
    not, as a meter's registers may hold)."""
    r, raw = [], {}
    for pid, v in readings:
        if isinstance(v, bytes):
            mark = f"@{len(raw)}@".ljust(len(v), "@")
            raw[mark] = v
            v = mark
        r += ([-10] if r else []) + [pid, v]
    out = cbor2.dumps({"v": 1, "b": 4, "s": seq, "e": seq + len(readings) - 1, "f": flags,
                       "t": t, "r": r})
    for mark, v in raw.items():
        head = cbor2.dumps(mark)[:-len(mark)]
        out = out.replace(head + mark.encode(), head + v)
    return out


READINGS = [(1, 230.25), (2, 1234567), (3, BIG), (4, 2301), (5, b"SN-\xff42"),
            (6, 944), (7, 65535), (1, NAN), (1, INF), (1, -INF),
            (6, cbor2.CBORSimpleValue(0x82)), (5, b"ok \"q\" \\ end")]


def run_monitor(fmt: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    mon = Monitor(fmt=fmt, out=out, err=err, live=False, ack=False)
    mon.handle(T + "birth", birth())
    mon.handle(T + "data", batch(100, T0, READINGS))
    mon.handle(T + "data", batch(200, T0 + 5000, [(1, 1.5), (3, -BIG)], flags=1))
    assert mon.bad == 0, err.getvalue()
    assert mon.written == len(READINGS) + 2
    return out.getvalue()


def _refuse_constant(name: str):
    raise ValueError(f"not JSON: {name}")


def test_jsonl_passes_a_strict_parser_with_exact_integers():
    rows = [json.loads(line, parse_constant=_refuse_constant)
            for line in run_monitor("jsonl").splitlines()]
    by = [(r["point"], r["value"], r["flag"]) for r in rows]
    assert by[:7] == [("voltage", 230.25, None), ("energy", 1234567, None),
                      ("counter64", BIG, None), ("frequency", 230.1, None),
                      ("serial", "SN-\ufffd42", None), ("pf", 0.944, None), ("seq", 65535, None)]
    # integers are JSON integers (1234567, not 1234567.0), the int64 one exact
    assert type(rows[1]["value"]) is int and type(rows[2]["value"]) is int
    assert rows[2]["raw"] == BIG and rows[-1]["value"] == -BIG
    # NaN and the infinities: null with a flag, raw too
    assert [(r["value"], r["raw"], r["flag"]) for r in rows[7:10]] == \
        [(None, None, "nan"), (None, None, "inf"), (None, None, "-inf")]
    # a text register that is not UTF-8 is flagged on its own reading; the batch goes on
    assert rows[4]["note"] == "text value is not UTF-8: bytes 534e2dff3432"
    assert rows[11]["value"] == 'ok "q" \\ end' and rows[11]["note"] is None
    err = rows[10]
    assert (err["value"], err["err"], err["error"]) == \
        (None, 0x82, "Modbus exception 2: illegal data address")


def test_csv_leaves_what_it_cannot_write_empty_with_a_flag():
    rows = list(csv.DictReader(io.StringIO(run_monitor("csv"))))
    assert [(r["value"], r["raw"], r["flag"]) for r in rows[7:10]] == \
        [("", "", "nan"), ("", "", "inf"), ("", "", "-inf")]
    assert rows[2]["value"] == str(BIG) and rows[1]["value"] == "1234567"
    assert rows[4]["note"].startswith("text value is not UTF-8")
    assert rows[10]["error"] == "Modbus exception 2: illegal data address"


def test_influx_lines_hold_no_nan_and_name_fields_after_points():
    lines = run_monitor("influx").splitlines()
    assert len(lines) == len(READINGS) + 2
    assert not any("nan" in x.split(" ")[1].lower().replace('flag="nan"', "") for x in lines)
    assert " voltage=230.25," in lines[0] and " energy=1234567i," in lines[1]
    assert f" counter64={BIG}i," in lines[2] and ' serial="SN-\ufffd42",' in lines[4]
    assert " seq_value=65535i," in lines[6]  # a point named seq: not the seq field
    assert " flag=\"nan\",seq=107i," in lines[7]  # no value field, the flag instead


@pytest.fixture(scope="module")
def influxdb():
    if not shutil.which("influxd"):
        pytest.skip("influxd missing: make debs installs Debian's influxdb")
    from influx_server import InfluxServer

    srv = InfluxServer().start()
    srv.query("", "CREATE DATABASE otlink")
    yield srv
    srv.stop()


def test_real_influxdb_accepts_every_line_with_stable_types(influxdb):
    text = run_monitor("influx")
    status, body = influxdb.write("otlink", text)
    assert status == 204, body
    res = influxdb.query("otlink", "SHOW FIELD KEYS FROM otlink")
    types = dict(tuple(v) for v in res["results"][0]["series"][0]["values"])
    assert types == {"boot": "integer", "counter64": "integer", "energy": "integer",
                     "err": "integer", "error": "string", "flag": "string",
                     "frequency": "float", "historical": "boolean", "note": "string",
                     "pf": "float", "seq": "integer", "seq_value": "integer",
                     "serial": "string", "voltage": "float"}
    # a string point beside number points: each has its own field, nothing conflicts
    res = influxdb.query("otlink", 'SELECT "counter64", "serial", "flag" FROM otlink '
                                   "WHERE node = 'meter-9' ORDER BY time")
    vals = res["results"][0]["series"][0]["values"]
    assert [v[1] for v in vals if v[1] is not None] == [BIG, -BIG]  # exact through the DB
    assert [v[2] for v in vals if v[2] is not None] == ["SN-\ufffd42", 'ok "q" \\ end']
    assert [v[3] for v in vals if v[3] is not None] == ["nan", "inf", "-inf"]
    # the same lines again (a replay): same series and times, so points are replaced, and a
    # second write is accepted as well
    assert influxdb.write("otlink", text)[0] == 204
    res = influxdb.query("otlink", 'SELECT count("seq") FROM otlink')
    assert res["results"][0]["series"][0]["values"][0][1] == len(READINGS) + 2


def test_awkward_names_and_units_reach_influxdb_as_they_are(influxdb):
    out = io.StringIO()
    mon = Monitor(fmt="influx", out=out, live=False, ack=False)
    node = "line 2, cell=3"
    names = ["temp, inlet=A", 'say "hi"', "back\\slash", "trailing\\", "time"]
    pts = [[i + 1, n, "°C" if i == 0 else "m³/h", "int16", 1.0, 0.0, None]
           for i, n in enumerate(names)]
    mon.handle(f"otlink/plant/{node}/birth",
               cbor2.dumps({"v": 1, "node": node, "fw": "1", "cfg": "c", "boot": 1,
                            "pts": pts}))
    mon.handle(f"otlink/plant/{node}/data",
               batch(1, T0, [(i + 1, 10 + i) for i in range(len(names))]).replace(
                   b"\x61b\x04", b"\x61b\x01"))
    status, body = influxdb.write("otlink", out.getvalue())
    assert status == 204, (body, out.getvalue())
    res = influxdb.query("otlink", "SHOW TAG VALUES FROM otlink WITH KEY = \"point\" "
                                   f"WHERE node = '{node}'")
    got = sorted(v[1] for v in res["results"][0]["series"][0]["values"])
    # a backslash before nothing cannot be written in a 1.x tag: it becomes "/"
    assert got == sorted(["temp, inlet=A", 'say "hi"', "back\\slash", "trailing/", "time"])
    res = influxdb.query("otlink", "SHOW FIELD KEYS FROM otlink")
    keys = {v[0] for v in res["results"][0]["series"][0]["values"]}
    assert {"temp, inlet=A", 'say "hi"', "time_value"} <= keys
