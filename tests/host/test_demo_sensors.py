"""The demo's local sensors end to end: one of each kind (SHT3x, BME280, three DS18B20 on one
1-Wire pin, a 4-20 mA transmitter, an S0 meter, a run/stop contact) on the Unix board's
simulated buses -> agent -> mosquitto -> monitor, each value decoded in its unit by the birth's
scale and offset and inside what its simulated device produces."""

from __future__ import annotations

import io
import json

from otlink_tools import node
from otlink_tools.demo import demo_config
from otlink_tools.monitor import Monitor
from ackkey import ACK_KEY, ACK_KEY_HEX

# point id -> (unit, low, high): the simulated devices' ranges (firmware/otlink/hal/unix/sim_*)
EXPECT = {
    20: ("degC", 18.9, 25.1), 21: ("%RH", 34.9, 55.1),
    22: ("degC", 18.9, 25.1), 23: ("Pa", 101000, 101650), 24: ("%RH", 34.9, 55.1),
    30: ("degC", 24.9, 55.1), 31: ("degC", 24.9, 55.1), 32: ("degC", 24.9, 55.1),
    40: ("%", 0.0, 100.0), 41: ("mA", 4.0, 20.0),
    50: ("kWh", 0.0, 1.0), 51: ("kW", 0.0, 3.7),
    60: ("", 0, 1), 61: ("", 0, 100),
}


def test_one_sensor_of_each_kind_arrives_in_its_unit(fresh_broker, demo_meter, tmp_path):
    cfg = demo_config(demo_meter.agent_port, fresh_broker.port, every_sensor=True,
                      ack_key=ACK_KEY_HEX)
    assert {s["driver"] for s in cfg["sensors"]} == {"sht3x", "bme280", "ds18b20", "loop420",
                                                    "pulse", "digital"}
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    out = io.StringIO()
    mon = Monitor(port=fresh_broker.port, fmt="jsonl", out=out, err=io.StringIO(),
                  ack_key=ACK_KEY).start()
    log = open(tmp_path / "agent.log", "wb")
    agent = node.start_agent(str(tmp_path / "node.json"), str(tmp_path / "state"), heap="384K",
                             log=log)

    def rows():
        return [json.loads(x) for x in out.getvalue().splitlines() if x.strip()]

    try:
        # the S0 meter pulses every 2 s: its rate is known from the second sample on
        ok = mon.wait(cond=lambda m: set(EXPECT) <= {r["pid"] for r in rows()}
                      and len([r for r in rows() if r["pid"] == 51]) >= 3, seconds=40)
    finally:
        mon.stop()
        agent.kill()
        agent.wait()
        log.close()
    assert ok, (tmp_path / "agent.log").read_text()[-3000:]
    for r in rows():
        if r["pid"] not in EXPECT:
            continue
        unit, lo, hi = EXPECT[r["pid"]]
        assert r["err"] is None, r
        assert r["unit"] == unit and lo <= r["value"] <= hi, r
    # 1.8 kW: one 1000 imp/kWh pulse every 2 s; an interval may catch 0 or 2 of them, the
    # mean over the intervals after the first does not
    power = [r["value"] for r in rows() if r["pid"] == 51][1:]
    assert 0.9 < sum(power) / len(power) < 2.7, power
    energy = [r["value"] for r in rows() if r["pid"] == 50]
    assert energy[-1] > energy[0], energy
    text = (tmp_path / "agent.log").read_text()
    assert "ds18b20: 3 on the pin" in text, text[-2000:]


def test_validate_checks_every_sensor_bus_against_the_board_file(tmp_path):
    """`otlink node validate` knows each board's I2C buses, 1-Wire pins, ADC inputs and input
    pins (boards/<board>.json): the demo's sensors fit the ESP32 and Pico W files, a name
    the board lacks is refused naming the ones it has."""
    import pytest

    from otlink_tools.errors import CommandError

    for board in ("esp32", "pico_w"):
        cfg = demo_config("/dev/ttyUSB0", 1883, every_sensor=True)
        cfg["board"] = board
        cfg["wifi"] = {"ssid": "plant", "password": "plant-7-Qx93kz"}
        f = tmp_path / f"{board}.json"
        f.write_text(json.dumps(cfg))
        node.validate_file(str(f))
        cfg["sensors"][3]["bus"] = "ai9"
        cfg["sensors"][5]["bus"] = "in7"
        f.write_text(json.dumps(cfg))
        with pytest.raises(CommandError) as e:
            node.validate_file(str(f))
        msg = str(e.value)
        assert "sensors[3].bus: the board has no ADC input 'ai9' (its board file names: ai0" \
            in msg and "sensors[5].bus: the board has no input pin 'in7'" in msg, msg
