"""Values as the meter meant them and health a person can see, every layer real: the
simulated meter on a pty -> the agent (Unix port) -> mosquitto -> otlink monitor / health.

- an int64 register above 2**53, a float32 register holding NaN and a string register with
  bytes that are not UTF-8 arrive exact, as null plus a flag, and flagged on their own row;
- a point that fails with a Modbus exception is sent once as an error reading; a monitor that
  starts after that (another consumer acknowledged it) still shows it, from the node's state;
- `otlink health` names the point in error (exit 3), and after Ctrl-C on the agent tells a
  cleanly stopped node (exit 4) with the figures it stopped with.
"""

from __future__ import annotations

import io
import json
import struct

from otlink_tools import cli, node
from otlink_tools.demo import demo_config
from otlink_tools.modbus_probe import encode
from otlink_tools.monitor import Monitor
from ackkey import ACK_KEY, ACK_KEY_HEX

BIG = (1 << 60) + 12345
SERIAL = b"SN\xff\xfe42\0\0"  # 8 characters, two bytes not UTF-8, NUL padded
DEAD = 900  # holding register the meter answers with exception 2 (illegal data address)


def health(capsys, port: int, *args: str) -> tuple[int, str]:
    code = cli.main(["health", "--port", str(port), "--site", "demo-plant", "--node",
                     "demo-press-01", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_exact_values_late_errors_and_clean_stop(fresh_broker, demo_meter, tmp_path, capsys):
    m = demo_meter
    m.set(1, "holding", 300, encode(BIG, "int64"))
    m.set(1, "holding", 310, [int.from_bytes(SERIAL[i:i + 2], "big") for i in range(0, 8, 2)])
    nan = struct.unpack(">f", bytes.fromhex("7fc00000"))[0]
    m.set(1, "holding", 320, encode(nan, "float32"))
    m.fail(1, DEAD, 2)
    cfg = demo_config(m.agent_port, fresh_broker.port, ack_key=ACK_KEY_HEX)
    cfg["mqtt"]["state_interval_s"] = 1
    cfg["sensors"] = []

    def pt(pid, name, addr, typ, **kw):
        return {"id": pid, "name": name, "slave": 1, "table": "holding", "address": addr,
                "type": typ, "group": "fast", **kw}

    cfg["points"] += [pt(30, "ticks", 300, "int64", deadband=0),
                      pt(31, "serial", 310, "string", length=8, deadband=0),
                      pt(32, "flow", 320, "float32", unit="m3/h"),
                      pt(33, "dead_reg", DEAD, "uint16")]
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    rows_out = io.StringIO()
    # the acknowledging consumer, there from the start: it gets the one error reading
    first = Monitor(port=fresh_broker.port, fmt="jsonl", out=rows_out, err=io.StringIO(),
                    ack_key=ACK_KEY,
                    ack_wait=0).start()
    log = open(tmp_path / "agent.log", "wb")
    agent = node.start_agent(str(tmp_path / "node.json"), str(tmp_path / "state"), log=log)
    late = None
    try:
        def rows():
            return [json.loads(x) for x in rows_out.getvalue().splitlines()]

        ok = first.wait(cond=lambda _: {30, 31, 32, 33} <= {r["pid"] for r in rows()}
                        and first.acks_sent > 0, seconds=40)
        assert ok, (tmp_path / "agent.log").read_text()[-3000:]
        by = {r["pid"]: r for r in rows()}
        assert by[30]["value"] == BIG and by[30]["raw"] == BIG  # exact, an integer
        assert by[5]["value"] == m.expected(1, "input", 100, "uint32")
        assert isinstance(by[5]["value"], int)  # a uint32 counter: not 1234567.0
        assert (by[31]["value"], by[31]["note"]) == \
            ("SN\ufffd\ufffd42", "text value is not UTF-8: bytes 534efffe3432")
        assert (by[32]["value"], by[32]["flag"]) == (None, "nan")
        assert by[33]["error"] == "Modbus exception 2: illegal data address"

        # a viewer started now: the error reading is long acknowledged and gone
        late = Monitor(port=fresh_broker.port, fmt="table", out=io.StringIO(),
                       err=io.StringIO(), ack=False, live=True).start()
        assert late.wait(cond=lambda mon: mon.states and mon.births, seconds=10)
        line = next(x for x in late.render().splitlines() if x.strip().startswith("dead_reg"))
        assert line.endswith("130: Modbus exception 2: illegal data address (from the node's "
                             "state)"), late.render()

        code, text = health(capsys, fresh_broker.port)
        assert code == 3, text
        assert "problem: 1 point in error: dead_reg (Modbus exception 2: illegal data " \
               "address)" in text
        assert "online  queue" in text.splitlines()[0]

        node.ask_to_stop(agent, tmp_path / "state")  # as `otlink node run` stops it
        assert agent.wait(20) == 0
        assert late.wait(cond=lambda mon: any(s.get("stopped") for s in mon.states.values()),
                         seconds=10)
        assert "STOPPED" in late.render().splitlines()[0]
        code, text = health(capsys, fresh_broker.port, "--json")
        doc = json.loads(text)["nodes"][0]
        assert code == 4 and doc["condition"] == "stopped"
        assert doc["state"]["online"] is False and doc["state"]["uptime_s"] >= 1
    finally:
        for mon in (first, late):
            if mon is not None:
                mon.stop()
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()
