"""`otlink demo` / `make demo`: the whole chain on this machine, live.

Starts a private mosquitto on a free loopback port, a simulated RS-485 energy meter
(pymodbus RTU server on a pty), the agent on the MicroPython Unix port (with its simulated
local sensors, one of each kind: SHT3x and BME280 on I2C, DS18B20 on 1-Wire, a 4-20 mA
transmitter, an S0 pulse meter, a run/stop contact; and its emulated NOR flash), and the
monitor, which prints the decoded readings as a table. Ctrl-C stops everything and frees
the ports.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import tempfile
from pathlib import Path

from otlink_tools import node, write
from otlink_tools.broker import Broker
from otlink_tools.errors import CommandError


# ROM codes of the three DS18B20 the Unix board simulates on every 1-Wire pin
# (firmware/otlink/hal/unix/sim_onewire.py, DEMO_ROMS), as the node's boot log lists them.
DEMO_ROMS = ("28d4c3b2a10000a1", "28d5c3b2a1000096", "28efbe00000000fe")


def demo_sensors() -> list[dict]:
    """One local sensor of each kind (docs/sensors.md), on the Unix board's simulated buses:
    SHT3x and BME280 on I2C, three DS18B20 on 1-Wire, a 4-20 mA level transmitter on the ADC,
    an S0 energy meter and a run/stop contact on input pins."""
    def pts(first: int, *chans: tuple[str, str]) -> list[dict]:
        return [{"id": first + i, "name": n, "channel": c} for i, (n, c) in enumerate(chans)]

    return [
        {"name": "cabinet", "driver": "sht3x", "bus": "i2c0", "address": 0x44, "group": "slow",
         "points": pts(20, ("cabinet_temp", "temperature"), ("cabinet_rh", "humidity"))},
        {"name": "ambient", "driver": "bme280", "bus": "i2c0", "address": 0x76,
         "group": "slow", "points": pts(22, ("ambient_temp", "temperature"),
                                        ("ambient_pressure", "pressure"),
                                        ("ambient_rh", "humidity"))},
        {"name": "motors", "driver": "ds18b20", "bus": "ow0", "resolution": 11,
         "group": "slow", "points": pts(30, *[(f"motor{i + 1}_temp", r)
                                              for i, r in enumerate(DEMO_ROMS)])},
        {"name": "tank", "driver": "loop420", "bus": "ai0", "range": [0, 100], "unit": "%",
         "shunt_ohm": 150, "samples": 16, "group": "fast",
         "points": pts(40, ("tank_level", "value"), ("tank_loop_ma", "current"))},
        {"name": "meter_s0", "driver": "pulse", "bus": "s0", "pulses_per_unit": 1000,
         "unit": "kWh", "group": "slow",
         "points": pts(50, ("s0_energy", "total"), ("s0_power", "rate"))},
        {"name": "press_run", "driver": "digital", "bus": "di0", "group": "slow",
         "points": pts(60, ("press_running", "state"), ("press_starts", "changes"))},
    ]


def demo_config(meter_port: str, broker_port: int, baud: int = 19200,
                every_sensor: bool = False, ack_key: str | None = None) -> dict:
    """Node config for the demo meter (docs/modbus.md, demo map) plus the SHT3x, or with
    every_sensor one local sensor of each kind (demo_sensors; the agent then needs a 384K
    heap on the Unix port, see Stack). Consumer acks are signed with ack_key (hex), a fresh
    random one when not given: the consumer needs cfg["mqtt"]["ack_key"]."""
    def pt(pid, name, addr, typ, unit, table="input", **kw):
        d = {"id": pid, "name": name, "slave": 1, "table": table, "address": addr,
             "type": typ, "order": "ABCD", "unit": unit, "group": "fast"}
        d.update(kw)
        return d

    return {
        "version": 1,
        "node": {"id": "demo-press-01", "site": "demo-plant"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "linger_ms": 200,
                 "ack_key": ack_key or secrets.token_hex(32)},
        "serial": {"port": meter_port, "baud": baud, "parity": "N", "stop_bits": 2,
                   "timeout_ms": 200},
        "groups": {"fast": {"interval_ms": 1000}, "slow": {"interval_ms": 2000}},
        "points": [
            pt(1, "voltage_l1", 0, "float32", "V", deadband=0),
            pt(2, "current_l1", 2, "float32", "A"),
            pt(3, "active_power", 4, "float32", "W"),
            pt(4, "frequency", 6, "float32", "Hz"),
            pt(5, "energy_total", 100, "uint32", "Wh"),
            pt(6, "power_factor", 200, "int16", "", table="holding", scale=0.001),
        ],
        "sensors": demo_sensors() if every_sensor else demo_sensors()[:1],
        "queue": {"commit_ms": 1000},
    }


def demo_analytics() -> dict:
    """The node's own analytics in the demo (docs/analytics.md): 10 s windows of the active
    power, an over-voltage alarm, the press's machine state from its run/stop contact with a
    start counter, and vibration features from a simulated ADXL345 (a pump with a bearing
    fault) on the I2C bus."""
    return {
        "windows": [{"point": 3, "every_ms": 10000,
                     "stats": {"mean": 100, "max": 101, "std": 102}}],
        "alarms": [{"id": 200, "name": "voltage_high", "point": 1, "high": 231.5,
                    "hysteresis": 0.5, "on_delay_ms": 2000, "off_delay_ms": 2000}],
        "machines": [{"id": 300, "name": "press_state", "point": 60, "running": 1,
                      "micro_stop_ms": 3000}],
        "counters": [{"id": 400, "name": "press_cycles", "point": 61, "mode": "delta",
                      "machine": 300}],
        "vibration": [{"name": "pump", "bus": "i2c0", "samples": 512, "every_ms": 5000,
                       "bands": [[500, 1500]],
                       "points": {"velocity": 500, "zone": 501, "rms_z": 502,
                                  "kurtosis_z": 503, "band0": 504}}],
    }


class Stack:
    """Broker + meter + agent, started in order and stopped in reverse."""

    # 448K: the Unix port holds the bytecode of six drivers and of their simulated devices
    # in the heap (about 46 KiB with the demo's sensors, `--trace heap`), and the analytics'
    # (windows, events, the accelerometer's 512-sample burst); a board freezes the bytecode
    def __init__(self, workdir: Path, heap: str = "448K") -> None:
        self.dir = workdir
        self.heap = heap
        self.broker: Broker | None = None
        self.meter = None
        self.agent = None
        self.agent_log = None

    def start(self) -> dict:
        from otlink_tools.sim_meter import start_meter

        (self.dir / "broker").mkdir(parents=True, exist_ok=True)
        self.broker = Broker(workdir=str(self.dir / "broker")).start()
        self.meter = start_meter(slaves=(1,))
        # the node honours only acks signed with this run's key, which the monitor holds
        self.ack_key_file = self.dir / "demo.ack.key"  # not ack.key: a user's own may be there
        self.ack_key_file.unlink(missing_ok=True)  # a kept --workdir: a new key each run
        write.new_key_file(str(self.ack_key_file))
        cfg = demo_config(self.meter.agent_port, self.broker.port, every_sensor=True,
                          ack_key=self.ack_key_file.read_text().strip())
        cfg["analytics"] = demo_analytics()  # derived points, events, machine state
        self.config_path = self.dir / "node.json"
        self.config_path.unlink(missing_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:  # it holds the ack key: its owner's only
            f.write(json.dumps(cfg, indent=2))
        self.agent_log = open(self.dir / "agent.log", "wb")
        self.agent = node.start_agent(str(self.config_path), str(self.dir / "state"),
                                      heap=self.heap, log=self.agent_log)
        return cfg

    def stop(self) -> None:
        if self.agent and self.agent.poll() is None:
            node.ask_to_stop(self.agent, self.dir / "state")
            try:
                self.agent.wait(3)
            except Exception:
                self.agent.kill()
                self.agent.wait()
        if self.meter:
            self.meter.stop()
        if self.broker:
            self.broker.stop()
        if self.agent_log:
            self.agent_log.close()
        self.agent = self.meter = self.broker = self.agent_log = None


def cmd_demo(args: argparse.Namespace) -> int:
    # Without --workdir the config, logs and flash image go to a temporary folder that is
    # removed when the demo stops (about 2 MB a run would otherwise pile up in /tmp).
    keep = bool(args.workdir)
    work = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="otlink-demo-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"--workdir {work}: cannot use it as a folder: {e.strerror or e}"
                           ) from None
    stack = Stack(work)
    # SIGTERM (e.g. from a supervisor) cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        try:
            stack.start()
        except (RuntimeError, OSError, ImportError) as e:
            # mosquitto or pymodbus missing, no pty, ...: one line, and whatever did start
            # is stopped below
            raise CommandError(f"demo: cannot start the stack: {e}") from None
        where = "" if keep else " (temporary, removed at exit; --workdir DIR keeps it)"
        print(f"otlink demo: broker 127.0.0.1:{stack.broker.port}, meter on "
              f"{stack.meter.agent_port}, agent log {work / 'agent.log'}{where}; Ctrl-C stops")
        from otlink_tools.cli import main as cli_main

        argv = ["monitor", "--host", "127.0.0.1", "--port", str(stack.broker.port),
                "--format", args.format, "--ack-key-file", str(stack.ack_key_file)]
        if args.seconds:
            argv += ["--seconds", str(args.seconds)]
        return cli_main(argv)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        print("otlink demo: stopped broker, meter and agent")

