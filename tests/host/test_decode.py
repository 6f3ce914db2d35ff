"""Host decoder: exact decoding, clear PayloadError on every kind of bad input, fuzz."""

from __future__ import annotations

import random
import struct

import cbor2
import pytest

from otlink_tools.decode import (PayloadError, apply_scale, decode_message, encode_ack,
                                 error_name, format_source, parse_source, parse_topic, topic)

T0 = 1795000000000
DATA_T = "otlink/site1/node1/data"


def data(**over) -> dict:
    m = {"v": 1, "b": 3, "s": 10, "e": 14, "f": 0, "t": T0,
         "r": [1, 230.5, 2, 1000, -1000, 1, 231.0, 2, -3, -5, 3, cbor2.CBORSimpleValue(0x82)]}
    m.update(over)
    return m


def dec(m, t: str = DATA_T) -> dict:
    return decode_message(t, cbor2.dumps(m))


def test_data_exact():
    d = dec(data())
    assert d["kind"] == "data" and d["v"] == 1 and d["boot"] == 3
    assert (d["seq_first"], d["seq_last"], d["historical"]) == (10, 14, False)
    rs = [(r["seq"], r["pid"], r["t_ms"], r["value"], r["err"]) for r in d["readings"]]
    assert rs == [(10, 1, T0, 230.5, None), (11, 2, T0, 1000, None),
                  (12, 1, T0 + 1000, 231.0, None), (13, 2, T0 + 1000, 997, None),
                  (14, 3, T0 + 1005, None, 0x82)]
    assert d["site"] == "site1" and d["node"] == "node1"
    assert not any(r["untimed"] for r in d["readings"])


def test_flags_and_wrap():
    d = dec(data(s=2**32 - 2, e=2, f=3))
    assert d["historical"] and all(r["untimed"] for r in d["readings"])
    assert [r["seq"] for r in d["readings"]] == [2**32 - 2, 2**32 - 1, 0, 1, 2]


@pytest.mark.parametrize("over,needle", [
    ({"v": 2}, "unsupported version 2"),
    ({"v": None}, "version field 'v' missing"),
    ({"v": 1.0}, "unsupported version"),
    ({"b": -1}, "field 'b'"),
    ({"b": 2**32}, "field 'b'"),
    ({"s": "x"}, "field 's'"),
    ({"e": 11}, "sequence range 10..11 covers 2 readings but the batch holds 5"),
    ({"f": 4}, "unknown flags"),
    ({"t": 1.5}, "base time"),
    ({"r": {}}, "readings 'r' must be an array"),
    ({"r": []}, "no readings"),
    ({"r": [1]}, "point 1 has no value"),
    ({"r": [1, 2, -5]}, "time advance at the end"),
    ({"r": [-5, -5, 1, 2]}, "two time advances"),
    ({"r": [70000, 1]}, "point id"),
    ({"r": [1.5, 1]}, "point id"),
    ({"r": [1, None]}, "unsupported type NoneType"),
    ({"r": [1, True]}, "unsupported type bool"),
    ({"r": [1, b"x"]}, "unsupported type bytes"),
])
def test_data_errors(over, needle):
    m = data()
    m.update(over)
    if m["v"] is None:
        del m["v"]
    with pytest.raises(PayloadError) as ei:
        dec(m)
    assert needle in str(ei.value), str(ei.value)


def test_missing_fields():
    for key in ("b", "s", "e", "f", "t"):
        m = data()
        del m[key]
        with pytest.raises(PayloadError) as ei:
            dec(m)
        assert repr(key) in str(ei.value) or key in str(ei.value)


def test_bad_cbor():
    good = cbor2.dumps(data())
    cases = {
        b"": "empty",
        good[:-1]: "truncated",
        good + b"\x00": "1 trailing bytes",
        b"\xff": "not valid CBOR",
        b"\xf8\x18": "not valid CBOR",
        b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff": "truncated",
        b"\x1c": "not valid CBOR",
        cbor2.dumps([1, 2]): "CBOR map wanted",
        cbor2.dumps({1: 2}): "keys must be text",
    }
    for payload, needle in cases.items():
        with pytest.raises(PayloadError) as ei:
            decode_message(DATA_T, payload)
        assert needle in str(ei.value), (payload, str(ei.value))
    with pytest.raises(PayloadError, match="bytes wanted"):
        decode_message(DATA_T, "text")  # type: ignore[arg-type]


def test_topics():
    assert topic("otlink", "s", "n", "birth") == "otlink/s/n/birth"
    assert parse_topic("otlink/s/n/state") == ("otlink", "s", "n", "state")
    assert parse_topic("plant/a/otlink/s/n/ack") == ("plant/a/otlink", "s", "n", "ack")
    for bad in ("otlink/s/n", "otlink/s/n/foo", "otlink//n/data", "/s/n/data", 5):
        with pytest.raises(PayloadError):
            parse_topic(bad)  # type: ignore[arg-type]
    for args in (("otlink", "a/b", "n", "data"), ("otlink", "s", "#", "data"),
                 ("otlink", "s", "n", "nope"), ("/x", "s", "n", "data")):
        with pytest.raises(PayloadError):
            topic(*args)


def test_birth_state_ack():
    b = {"v": 1, "node": "n1", "fw": "0.1.0", "cfg": bytes.fromhex("ab12"), "boot": 9,
         "pts": [[1, "voltage", "V", "f32", 1, 0, "mb:1:h:0"],
                 [2, "freq", "Hz", "i16", 0.1, 0, None]]}
    d = decode_message("otlink/s/n1/birth", cbor2.dumps(b))
    assert d["config_hash"] == "ab12" and d["boot"] == 9
    assert d["points"][1] == {"id": 2, "name": "freq", "unit": "Hz", "type": "i16",
                              "scale": 0.1, "offset": 0, "source": None}
    for bad, needle in [({"pts": [[1, "x"]]}, "array of 7"),
                        ({"pts": [[1, "a", None, "u16", 1, 0, None]] * 2}, "appears twice"),
                        ({"pts": [[1, "a", None, "u16", "1", 0, None]]}, "scale"),
                        ({"node": 5}, "'node'"), ({"cfg": 5}, "config hash")]:
        with pytest.raises(PayloadError) as ei:
            decode_message("otlink/s/n1/birth", cbor2.dumps({**b, **bad}))
        assert needle in str(ei.value)
    s = decode_message("otlink/s/n1/state",
                       cbor2.dumps({"v": 1, "queue_depth": 4, "slave_errors": {1: 3},
                                    "online": False, "new_field": 1}))
    assert s["queue_depth"] == 4 and s["slave_errors"] == {1: 3} and s["online"] is False
    assert s["new_field"] == 1
    with pytest.raises(PayloadError, match="'drops' must be int"):
        decode_message("otlink/s/n1/state", cbor2.dumps({"v": 1, "drops": "7"}))
    a = decode_message("otlink/s/n1/ack", encode_ack(9, 2**32 - 1))
    assert (a["boot"], a["seq"]) == (9, 2**32 - 1)
    with pytest.raises(PayloadError, match="field 's'"):
        decode_message("otlink/s/n1/ack", cbor2.dumps({"v": 1, "b": 1}))


def test_apply_scale_and_error_names():
    assert apply_scale({"value": 2301, "err": None}, {"scale": 0.1, "offset": 0}) == \
        pytest.approx(230.1)
    assert apply_scale({"value": 5, "err": None}, {"scale": 1, "offset": -2}) == 3
    assert apply_scale({"value": None, "err": 1}, {"scale": 2, "offset": 0}) is None
    assert apply_scale({"value": "on", "err": None}, {"scale": 2, "offset": 0}) == "on"
    assert error_name(0x82) == "Modbus exception 2: illegal data address"


def test_scaled_values_carry_the_digits_the_data_has():
    def eng(v, scale=1, offset=0, typ="int16"):
        return apply_scale({"value": v, "err": None},
                           {"scale": scale, "offset": offset, "type": typ})

    # exact equality: what an IT tool gets in JSON lines / CSV / Influx
    assert eng(944, 0.001) == 0.944  # not 0.9440000000000001
    assert eng(2301, 0.1) == 230.1
    assert eng(5, 0.5, 273.15) == 275.65  # the offset's decimals count too
    assert eng(25278, 175 / 65535, -45) == 22.5006  # step 0.00267: one digit below it
    assert eng(7, 2.0) == 14.0
    # float32 registers: the shortest decimal that is the same float32 (what the device shows)
    f32 = struct.unpack(">f", struct.pack(">f", 230.1))[0]
    assert f32 != 230.1 and eng(f32, typ="float32") == 230.1
    assert eng(f32, 0.5, typ="float32") == 115.05
    # float64 registers: every digit is data
    assert eng(f32, typ="float64") == f32
    assert eng(0.1 + 0.2, typ="float64") == 0.1 + 0.2
    assert error_name(0x8F) == "Modbus exception 15"


def _mutate(rng: random.Random, b: bytes) -> bytes:
    a = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and a:
            a[rng.randrange(len(a))] = rng.randrange(256)
        elif op == 1 and a:
            del a[rng.randrange(len(a)):][: rng.randint(1, 8)]
        elif op == 2:
            a.insert(rng.randrange(len(a) + 1), rng.randrange(256))
        elif a:
            i = rng.randrange(len(a))
            a[i] ^= 1 << rng.randrange(8)
    return bytes(a)


def test_fuzz_never_crashes():
    rng = random.Random(6)
    seeds = [cbor2.dumps(data()), cbor2.dumps(data(s=2**32 - 2, e=2, f=3)),
             encode_ack(1, 2),
             cbor2.dumps({"v": 1, "node": "n", "fw": "1", "cfg": "x", "boot": 1,
                          "pts": [[1, "a", "V", "f32", 1, 0, "s"]]}),
             cbor2.dumps({"v": 1, "queue_depth": 1, "slave_errors": {1: 2}})]
    kinds = ["data", "birth", "state", "ack", "cmd"]
    ok = bad = 0
    for i in range(6000):
        if i % 3 == 0:
            payload = rng.randbytes(rng.randint(0, 64))
        else:
            payload = _mutate(rng, rng.choice(seeds))
        t = f"otlink/s/n/{rng.choice(kinds)}"
        try:
            decode_message(t, payload)
            ok += 1
        except PayloadError as e:
            assert str(e)
            bad += 1
    assert bad > 3000 and ok > 100, (ok, bad)


def test_cmd_and_reply_are_json_and_checked():
    from otlink_tools.decode import PayloadError, decode_message

    m = decode_message("otlink/s1/n1/reply", b'{"id": "r1", "ok": true}')
    assert m == {"kind": "reply", "site": "s1", "node": "n1", "body": {"id": "r1", "ok": True}}
    m = decode_message("otlink/s1/n1/cmd", b'{"op": "write", "point": 6, "value": 1}')
    assert m["body"]["point"] == 6
    for bad in (b"\xa1ab\x01", b"[1, 2]", b""):
        with pytest.raises(PayloadError, match="cmd"):
            decode_message("otlink/s1/n1/cmd", bad)


def test_host_names_every_firmware_error_code():
    """One table: every code the firmware can put in a reading has a name on the host."""
    from otlink_tools import paths
    from otlink_tools.decode import ERROR_CODES

    paths.firmware_import_path()
    from otlink.core import errors, modbus

    fw = {v for k, v in vars(errors).items() if k.startswith("ERR_") and k != "ERR_EXCEPTION"}
    fw |= {v for k, v in vars(modbus).items() if k.startswith("EX_")}
    assert fw <= set(ERROR_CODES), sorted(fw - set(ERROR_CODES))
    assert all(c < 20 or 31 < c < 256 for c in fw)  # fits a CBOR simple value


def _raw_data_with_text(text: bytes) -> bytes:
    """A data batch whose reading stream is [1, 5, 7, <text>, 2, 6] with `text` written as
    a CBOR text string byte for byte (cbor2 would refuse to encode invalid UTF-8)."""
    head = cbor2.dumps({"v": 1, "b": 3, "s": 10, "e": 12, "f": 0, "t": T0})
    head = bytes([head[0] + 1]) + head[1:]  # map(6) -> map(7): 'r' follows
    body = cbor2.dumps("r") + b"\x86" + cbor2.dumps(1) + cbor2.dumps(5) + cbor2.dumps(7)
    body += bytes([0x60 + len(text)]) + text + cbor2.dumps(2) + cbor2.dumps(6)
    return head + body


def test_text_not_utf8_flags_only_that_reading():
    """A string register holding non-UTF-8 bytes used to make the whole batch invalid (and,
    with consumer acks, wedge the node's queue on a batch resent and refused forever)."""
    d = decode_message(DATA_T, _raw_data_with_text(b"ab\xffc"))
    rs = d["readings"]
    assert [(r["seq"], r["pid"], r["value"]) for r in rs] == [
        (10, 1, 5), (11, 7, "ab\ufffdc"), (12, 2, 6)]
    assert rs[1]["note"] == "text value is not UTF-8: bytes 6162ff63"
    assert "note" not in rs[0] and "note" not in rs[2]
    ok = decode_message(DATA_T, _raw_data_with_text("é".encode()))
    assert ok["readings"][1]["value"] == "é" and "note" not in ok["readings"][1]


def test_text_not_utf8_outside_data_still_refused():
    birth = cbor2.dumps({"v": 1, "node": "XX", "fw": "1", "cfg": "0", "boot": 1, "pts": []})
    bad = birth.replace(b"bXX", b"b\xff\xfe")
    with pytest.raises(PayloadError, match="not valid CBOR"):
        decode_message("otlink/site1/node1/birth", bad)


def test_birth_source_names_the_bit_of_a_bit_point():
    b = {"v": 1, "node": "n1", "fw": "0.1.0", "cfg": "ab12", "boot": 1,
         "pts": [[1, "alarm", "", "bit", 1, 0, "modbus:1:holding:100.3"],
                 [2, "status", "", "uint16", 1, 0, "modbus:1:holding:100"],
                 [3, "t", "degC", "uint16", 0.01, -45, "sht3x:i2c0:0x44:temperature"]]}
    d = decode_message("otlink/s/n1/birth", cbor2.dumps(b))
    assert d["points"][0]["bit"] == 3 and d["points"][0]["source"] == "modbus:1:holding:100.3"
    assert "bit" not in d["points"][1] and "bit" not in d["points"][2]
    assert parse_source("modbus:1:holding:100.3") == {"slave": 1, "table": "holding",
                                                      "address": 100, "bit": 3}
    assert parse_source("modbus:2:input:7")["bit"] is None
    assert parse_source("sht3x:i2c0:0x44:temperature") is None and parse_source(None) is None
    assert format_source("modbus:1:holding:100.3") == "slave 1 holding 100 bit 3"
    assert format_source("modbus:1:coil:4") == "slave 1 coil 4"
    for bad in ("modbus:1:holding:100.16", "modbus:1:coil:4.1", "modbus:1:holdng:1",
                "modbus:1:holding", "modbus:x:holding:1", "modbus:1:holding:70000"):
        b["pts"][0][6] = bad
        with pytest.raises(PayloadError, match="pts\\[0\\]: source"):
            decode_message("otlink/s/n1/birth", cbor2.dumps(b))
