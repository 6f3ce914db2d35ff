"""Fuzzing the host decoder (tools/fuzz_cbor.py; 10^6 cases in `make fuzz`): whatever
arrives, decode_message raises PayloadError only, and the monitor's row path (make_row,
apply_scale) takes every batch the decoder accepted. The named cases are what the fuzzer
found; a short seeded run keeps the whole generator honest."""

from __future__ import annotations

import sys

import pytest

from mp import ROOT
from otlink_tools.decode import PayloadError, decode_message
from otlink_tools.monitor_formats import make_row

sys.path.insert(0, str(ROOT / "tools"))
import fuzz_cbor  # noqa: E402


@pytest.mark.parametrize("kind", ["cmd", "reply"])
@pytest.mark.parametrize("body", [b"[" * 100000, b'{"a":' * 50000])
def test_deeply_nested_json_is_a_payload_error(kind, body):
    with pytest.raises(PayloadError, match=f"{kind}: not JSON"):
        decode_message(f"otlink/s/n/{kind}", body)


@pytest.mark.parametrize("depth", [1000, 100000])
def test_deeply_nested_cbor_is_a_payload_error(depth):
    with pytest.raises(PayloadError):
        decode_message("otlink/s/n/data", b"\x81" * depth + b"\x00")


@pytest.mark.parametrize("t_ms", [2 ** 63, -(2 ** 62), 10 ** 16])
def test_a_time_no_calendar_holds_still_makes_a_row(t_ms):
    import cbor2

    m = decode_message("otlink/s/n/data", cbor2.dumps(
        {"v": 1, "b": 1, "s": 5, "e": 5, "f": 0, "t": t_ms, "r": [1, 7]}))
    row = make_row(("s", "n"), m, m["readings"][0], None)
    assert row["time"] is None and row["t_ms"] == t_ms and row["value"] == 7


def test_short_fuzz_run_raises_payload_errors_only():
    res = fuzz_cbor.run(30000, seed=7)
    assert res["cases"] == 30000
    assert res["other_exceptions"] == 0, res["examples"]
    # the generator reaches both sides: accepted messages (rows made) and refused ones
    assert res["rows"] > 3000 and res["payload_errors"] > 10000, res


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf"), 1e300, 2 ** 100])
def test_a_birth_scale_no_node_sends_is_a_payload_error(scale):
    import cbor2

    birth = {"v": 1, "node": "n", "fw": "1", "cfg": "ab", "boot": 1,
             "pts": [[1, "p", "V", "int32", scale, 0.0, None]]}
    with pytest.raises(PayloadError, match=r"pts\[0\]\.scale: a finite number"):
        decode_message("otlink/s/n/birth", cbor2.dumps(birth))
    birth["pts"][0][4:6] = [1.0, scale]
    with pytest.raises(PayloadError, match=r"pts\[0\]\.offset: a finite number"):
        decode_message("otlink/s/n/birth", cbor2.dumps(birth))


def test_a_float32_point_with_a_value_beyond_float32_makes_a_row():
    import cbor2

    b = decode_message("otlink/s/n/birth", cbor2.dumps(
        {"v": 1, "node": "n", "fw": "1", "cfg": "ab", "boot": 1,
         "pts": [[1, "p", "V", "float32", 2.0, 0.0, None]]}))
    m = decode_message("otlink/s/n/data", cbor2.dumps(
        {"v": 1, "b": 1, "s": 5, "e": 5, "f": 0, "t": 1700000000000, "r": [1, 1e300]}))
    row = make_row(("s", "n"), m, m["readings"][0], b)
    assert row["raw"] == 1e300
