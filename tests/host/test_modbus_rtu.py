"""The MicroPython Modbus master against a real peer: pymodbus RTU server on a pty, through the
baud-paced relay. Covers every function code, type, order, exception, the write path, faults,
a dead slave, DE timing, echo and the heap-locked poll loop."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from mp import run  # noqa: E402
from relay import Relay  # noqa: E402

from otlink_tools.sim_meter import REFERENCE_POINTS, start_meter  # noqa: E402

AGENT = HERE / "modbus_agent_mp.py"
ERR = {"timeout": 1, "crc": 2, "frame": 3, "wrong_slave": 4, "offline": 32}  # core/errors.py
_DE_SLACK_US = 20000  # host scheduling on top of a DE pulse's wire time (see the DE tests)


def agent(tmp_path: Path, job: dict, heap: str = "256K", timeout: float = 120,
          build: str = "64") -> dict:
    jp, op = tmp_path / "job.json", tmp_path / "out.json"
    jp.write_text(json.dumps(job))
    res = run(AGENT, str(jp), str(op), heap=heap, timeout=timeout, build=build)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(op.read_text())


def serial(port: str, baud: int, **kw) -> dict:
    # The peer is pymodbus behind a Python relay on a machine that may be busy: tests that are
    # not about timeouts give it time (a timeout costs only when it fires). Tests of timeouts
    # and truncation set their own.
    s = {"port": port, "baud": baud, "timeout_ms": 500, "char_timeout_ms": 50,
         "groups": {"fast": {"interval_ms": 0}}}
    s.update(kw)
    return s


@pytest.fixture
def line(request):
    """(relay, meter) for the reference map at 115200 baud."""
    params = getattr(request, "param", {})
    relay = Relay(params.get("baud", 115200), params.get("faults", {}), seed=7)
    try:
        meter = start_meter(reference_map=True, device_port=relay.device_port)
    except BaseException:
        relay.close()
        raise
    try:
        yield relay, meter
    finally:
        try:
            meter.stop()
        finally:
            relay.close()


def _expected(meter, p):
    return meter.expected(p["slave"], p["table"], p["address"], p["type"], p["order"],
                          p.get("length"), p.get("bit"))


def test_reference_map_every_type_order_and_fc(line, tmp_path):
    relay, meter = line
    out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200),
                           "points": REFERENCE_POINTS, "cycles": 3, "warmup": 1})
    types = set()
    for p in REFERENCE_POINTS:
        kind, got = out["last"][str(p["id"])]
        want = _expected(meter, p)
        if p["type"] == "float32":
            want = struct.unpack(">f", struct.pack(">f", want))[0]
        assert got == want, (p, got, want)
        types.add((p["type"], p["order"], p["table"]))
    assert {t for t, _, _ in types} >= {"int16", "uint16", "int32", "uint32", "int64", "uint64",
                                        "float32", "float64", "string", "bit", "bool"}
    assert {o for _, o, _ in types} == {"ABCD", "CDAB", "BADC", "DCBA"}
    assert {tb for _, _, tb in types} == {"coil", "discrete", "holding", "input"}
    for s in ("1", "2", "3"):
        st = out["stats"][s]
        assert st["ok"] > 0 and st["timeouts"] == st["crc"] == st["frame"] == 0, st
    # merged: the 60 points cost far fewer requests than points per cycle
    assert relay.stats()["requests"] <= 4 * 12


def test_write_path_every_fc_and_exception(line, tmp_path):
    relay, meter = line
    writes = [[1, "holding", 300, [1234]],  # FC06
              [1, "holding", 301, [1, 2, 65535, -2]],  # FC16
              [2, "coil", 10, [True]],  # FC05
              [2, "coil", 20, [1, 0, 1, 1, 0, 0, 1, 1, 1]],  # FC15
              [1, "holding", 5000, [1]],  # beyond the device: illegal address
              [0, "holding", 310, [77]]]  # broadcast: everyone, no answer
    out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200, turnaround_ms=5),
                           "points": REFERENCE_POINTS[:1], "writes": writes, "cycles": 1})
    assert out["write_codes"] == [0, 0, 0, 0, 0x82, 0]  # 0x80 | illegal data address
    assert meter.registers(1, "holding", 300, 5) == [1234, 1, 2, 65535, 65534]
    assert meter.registers(2, "coil", 10, 1) == [1]
    assert meter.registers(2, "coil", 20, 9) == [1, 0, 1, 1, 0, 0, 1, 1, 1]
    assert meter.registers(3, "holding", 310, 1) == [77]  # the broadcast reached slave 3


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5, 6, 8, 10, 11])
def test_exception_becomes_point_error(line, tmp_path, code):
    relay, meter = line
    meter.fail(2, 12, code)
    out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200),
                           "points": REFERENCE_POINTS, "cycles": 2, "warmup": 0})
    for p in REFERENCE_POINTS:
        kind, got = out["last"][str(p["id"])]
        in_block = p["slave"] == 2 and p["table"] == "holding" and p["address"] < 30
        if in_block:
            assert (kind, got) == (2, 0x80 | code), p  # KIND_ERR, 0x80 | exception code
        else:
            assert kind != 2, (p, got, out["stats"])
    assert out["stats"]["2"]["exceptions"] > 0
    assert out["stats"]["2"]["online"]  # an exception is an answer: not offline


@pytest.mark.parametrize("fault, code", [("drop", "timeout"), ("truncate", "frame"),
                                         ("garbage", "frame"), ("wrong_slave", "wrong_slave")])
def test_each_fault_is_counted_under_its_code(tmp_path, fault, code):
    relay = Relay(115200, {fault: 0.3}, seed=3)
    # generous timeouts: the host may be busy; a late answer must not pass for a fault
    meter = start_meter(reference_map=True, device_port=relay.device_port)
    try:
        pts = [p for p in REFERENCE_POINTS if p["slave"] == 1]
        expect = {p["id"]: meter.expected(p["slave"], p["table"], p["address"], p["type"],
                                          p["order"]) for p in pts
                  if p["type"] in ("uint32", "int16", "uint16", "int32", "float64")}
        out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200, timeout_ms=100,
                                                char_timeout_ms=30, offline_after=1000000),
                               "points": pts, "expect": expect, "cycles": 25, "warmup": 0,
                               "keep": False})
    finally:
        meter.stop()
        st = relay.close()
    assert st[fault] > 5
    assert out["wrong"] == 0
    want = st[fault] + (st["requests"] - st["responses"] if code == "timeout" else 0)
    assert out["stats"]["codes"].get(code, 0) == want, (out["stats"], st)
    assert sum(out["stats"]["codes"].values()) == want, (out["stats"], st)


def test_corruption_never_yields_a_wrong_value(tmp_path):
    relay = Relay(115200, {"corrupt": 0.02}, seed=11)
    meter = start_meter(reference_map=True, device_port=relay.device_port)
    try:
        pts = [p for p in REFERENCE_POINTS if p["type"] in ("uint32", "int32", "int16", "uint16",
                                                            "float64", "uint64", "int64")]
        expect = {p["id"]: _expected(meter, p) for p in pts}
        out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200, timeout_ms=100,
                                                char_timeout_ms=30, offline_after=1000000),
                               "points": pts, "expect": expect, "cycles": 40, "warmup": 0,
                               "keep": False})
    finally:
        meter.stop()
        st = relay.close()
    assert st["resp_corrupted"] > 5 and st["req_corrupted"] > 5
    assert out["wrong"] == 0
    codes = out["stats"]["codes"]
    assert codes.get("crc", 0) == st["resp_corrupted"], (codes, st)
    # a corrupted request goes unanswered (the slave drops it; pymodbus sometimes loses the
    # next one while it resynchronises): every unanswered request is a timeout, nothing else
    unanswered = st["requests"] - st["responses"]
    assert unanswered >= st["req_corrupted"]
    assert codes.get("timeout", 0) == unanswered, (codes, st)


def test_dead_slave_goes_offline_with_backoff(tmp_path):
    relay = Relay(115200, {"dead": [3]}, seed=1)
    meter = start_meter(reference_map=True, device_port=relay.device_port)
    try:
        out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200, timeout_ms=50,
                                                offline_after=1, backoff_ms=[300, 300]),
                               "points": REFERENCE_POINTS, "cycles": 1, "warmup": 0,
                               "run_ms": 1500})
    finally:
        meter.stop()
        st = relay.close()
    s3, s1 = out["stats"]["3"], out["stats"]["1"]
    assert not s3["online"] and s3["offline"] == 1
    # one timeout to find out, then at most one probe per 300 ms backoff period
    assert 1 <= s3["timeouts"] <= 1 + 1 + 1500 // 300, s3
    assert s3["skipped"] > s3["timeouts"]
    assert s1["ok"] > 50 and s1["timeouts"] == 0
    for p in REFERENCE_POINTS:
        kind, got = out["last"][str(p["id"])]
        if p["slave"] == 3:
            assert (kind, got) in ((2, ERR["timeout"]), (2, ERR["offline"])), p
    # the relay saw every probe; the last one may still be in flight when the run is cancelled
    assert s3["timeouts"] <= st["silenced"] <= s3["timeouts"] + 1


@pytest.mark.parametrize("build", ["64", "32"])
def test_heap_locked_polling_and_de_timing(line, tmp_path, build):
    """The whole reference map (uint64 beyond 2**63 included) polled with the heap locked, on
    the 32-bit build too: there an int >= 2**30 or a float would raise MemoryError."""
    relay, meter = line
    pts = REFERENCE_POINTS
    out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200), "points": pts,
                           "cycles": 20, "warmup": 3, "heap_lock": True,
                           "keep": False},  # the sink only counts: every poll is reported
                build=build)
    assert out["heap_locked_cycles"] == 19
    assert out["stats"]["1"]["ok"] >= 20
    de = out["de"]
    assert de and de[0][1] == 1
    # DE pulses: raised, then dropped once 8 chars (a read request) have left. The pin
    # records the drop when the code makes it (not back-dated): the upper bound allows for
    # the busy host preempting the agent; test_de_timing.py checks the release exactly
    for (t1, v1), (t2, v2) in zip(de[::2], de[1::2]):
        assert (v1, v2) == (1, 0)
        assert t2 - t1 >= 8 * out["char_us"]
        assert t2 - t1 <= 8 * out["char_us"] + _DE_SLACK_US


def test_polling_across_the_tick_wrap(line, tmp_path):
    """The agent's clock on the boards' period (2**30), started 1.5 s before the us ticks wrap
    and 1.5 s before the ms ticks wrap: the map polls through both wraps with every value
    right, no line error, the heap locked, and DE pulses of the right length across the wrap."""
    relay, meter = line
    period = 1 << 30
    pts = [p for p in REFERENCE_POINTS if p["type"] != "uint64"]
    out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200), "points": pts,
                           "cycles": 70, "warmup": 2, "heap_lock": True,
                           "ticks": {"ms": period - 1500, "us": period - 1500000}})
    assert out["heap_locked_cycles"] == 69
    assert out["cycle_us"] * 70 > 2.5e6, "the run crosses both wraps"
    for p in pts:
        kind, got = out["last"][str(p["id"])]
        want = _expected(meter, p)
        if p["type"] == "float32":
            want = struct.unpack(">f", struct.pack(">f", want))[0]
        assert got == want, (p, got, want)
    for s in ("1", "2", "3"):
        st = out["stats"][s]
        assert st["ok"] >= 70 and st["errors"] == 0, st
    de = out["de"]
    for (t1, v1), (t2, v2) in zip(de[::2], de[1::2]):
        assert (v1, v2) == (1, 0)
        assert 8 * out["char_us"] <= (t2 - t1) % period <= 8 * out["char_us"] + _DE_SLACK_US


@pytest.mark.parametrize("line", [{"faults": {"echo": True}}], indirect=True)
def test_echo_tolerance(line, tmp_path):
    relay, meter = line
    pts = REFERENCE_POINTS[:14]
    out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200, echo=True),
                           "points": pts, "cycles": 3})
    assert out["stats"]["1"]["ok"] > 0 and out["stats"]["1"]["frame"] == 0, out["stats"]
    for p in pts:
        assert out["last"][str(p["id"])][0] != 2, p
    assert relay.stats()["echo_chars"] > 0


def test_writes_queue_into_the_running_poll_loop(line, tmp_path):
    relay, meter = line
    out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200), "points": REFERENCE_POINTS,
                           "cycles": 1, "run_ms": 400,
                           "run_writes": [[1, "holding", 400, [7, 8, 9]], [3, "coil", 5, [True]]]})
    assert out["run_write_codes"] == [0, 0]
    assert meter.registers(1, "holding", 400, 3) == [7, 8, 9]
    assert meter.registers(3, "coil", 5, 1) == [1]
    assert out["stats"]["1"]["ok"] > 10  # polling went on around the writes


def test_retries_recover_dropped_answers(tmp_path):
    relay = Relay(115200, {"drop": 0.3}, seed=4)
    meter = start_meter(reference_map=True, device_port=relay.device_port)
    try:
        pts = [p for p in REFERENCE_POINTS if p["slave"] == 1]
        out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200, timeout_ms=100,
                                                retries=2, offline_after=1000000),
                               "points": pts, "cycles": 15, "warmup": 0})
    finally:
        meter.stop()
        st = relay.close()
    s1 = out["stats"]["1"]
    assert s1["timeouts"] == st["drop"] + st["requests"] - st["responses"]
    # every timed-out attempt is either retried or is the last of three for its request
    failed = s1["timeouts"] - s1["retries"]
    assert s1["retries"] > 5 and 0 <= failed < s1["retries"]
    assert s1["ok"] + failed == 15 * 3  # 3 requests per cycle for slave 1


@pytest.mark.parametrize("line", [{"baud": 9600}], indirect=True)
def test_poll_loop_never_holds_the_event_loop(line, tmp_path):
    relay, meter = line
    pts = [p for p in REFERENCE_POINTS if p["slave"] == 1]
    out = agent(tmp_path, {"serial": serial(relay.agent_port, 9600, timeout_ms=200),
                           "points": pts, "cycles": 1, "warmup": 0, "run_ms": 1500})
    assert out["stats"]["1"]["ok"] >= 6
    # 1 ms poll slices + at most ~1.1 ms of busy wait before a deadline, and the request's
    # own wire time (8 chars at 9600: 9.2 ms, held so DE drops right after the last stop
    # bit, hal/rs485.py flush); a blocking read of a 53-byte answer at 9600 would hold the
    # loop for ~60 ms. The bound leaves room for a busy 2-core CI host's scheduling jitter
    # while still telling the two apart.
    assert out["max_block_us"] < 35000, out["max_block_us"]


def test_delayed_answers_within_the_timeout_are_fine(tmp_path):
    relay = Relay(115200, {"delay": [0.4, 30]}, seed=2)  # 40 % of answers 30 ms late
    meter = start_meter(reference_map=True, device_port=relay.device_port)
    try:
        pts = [p for p in REFERENCE_POINTS if p["slave"] == 3]
        out = agent(tmp_path, {"serial": serial(relay.agent_port, 115200, timeout_ms=150),
                               "points": pts, "cycles": 10, "warmup": 0})
    finally:
        meter.stop()
        st = relay.close()
    assert st["delay"] > 5
    s3 = out["stats"]["3"]
    assert s3["ok"] == st["requests"] and not out["stats"]["codes"], out["stats"]
