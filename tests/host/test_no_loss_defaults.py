"""No loss with the defaults: the real agent (`otlink node run` path, demo meter, flash
queue) with the default mqtt config, `otlink monitor` as a user runs it (CLI defaults, rows to
a file), and a real mosquitto (default: no persistence). Each test disrupts one part while
the node streams, then counts the readings the monitor never wrote: seqs are numbered by
the node's queue across boots, so a hole in 1..newest is a reading lost for good.

- broker restart: mosquitto stopped for 12 s, then started again, empty;
- consumer restart: the monitor SIGKILLed, started again 3 s later;
- node power cut: the agent SIGKILLed, started again 2 s later (readings not yet committed
  to flash when the power goes never got a seq: the queue's commit window, docs/queue.md).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otlink_tools import node
from otlink_tools.broker import Broker, free_port
from otlink_tools.demo import demo_config
from ackkey import ACK_KEY_HEX

OTLINK = str(Path(sys.executable).parent / "otlink")


class Rig:
    def __init__(self, tmp_path: Path, meter) -> None:
        self.dir = tmp_path
        self.port = free_port()
        cfg = demo_config(meter.agent_port, self.port, ack_key=ACK_KEY_HEX)
        cfg["groups"]["fast"]["interval_ms"] = 100  # 6 points: 60 readings/s
        cfg["queue"] = {"commit_ms": 200}
        # delivery: the defaults (consumer acks, signed with the node's key)
        assert set(cfg["mqtt"]) == {"host", "port", "linger_ms", "ack_key"}
        self.key_file = tmp_path / "ack.key"
        self.key_file.write_text(ACK_KEY_HEX)
        self.config = tmp_path / "node.json"
        self.config.write_text(json.dumps(cfg))
        self.state = str(tmp_path / "state")
        self.out = tmp_path / "rows.jsonl"
        self.log = open(tmp_path / "agent.log", "ab")
        (tmp_path / "broker").mkdir()
        self.broker: Broker | None = None
        self.agent: subprocess.Popen | None = None
        self.mon: subprocess.Popen | None = None

    def start_broker(self) -> None:
        self.broker = Broker(port=self.port, workdir=str(self.dir / "broker")).start()

    def start_monitor(self) -> None:
        self.mon = subprocess.Popen([OTLINK, "monitor", "--port", str(self.port), "--format",
                                     "jsonl", "-o", str(self.out), "--ack-key-file",
                                     str(self.key_file)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start_agent(self) -> None:
        self.agent = node.start_agent(str(self.config), self.state, log=self.log)

    def seqs(self) -> set[int]:
        got = set()
        if self.out.exists():
            for line in self.out.read_text().splitlines():
                try:
                    got.add(json.loads(line)["seq"])
                except ValueError:
                    pass  # a line cut by SIGKILL: its reading was not acknowledged
        return got

    def lost(self) -> tuple[int, int]:
        got = self.seqs()
        top = max(got, default=0)
        return top - len(got), top

    def wait_rows(self, n: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if len(self.seqs()) >= n:
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        for p in (self.agent, self.mon):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if self.broker:
            self.broker.stop()
        self.log.close()


@pytest.mark.parametrize("what", ["broker restart", "consumer restart", "node power cut"])
def test_no_loss_with_the_defaults(tmp_path, demo_meter, what):
    rig = Rig(tmp_path, demo_meter)
    try:
        rig.start_broker()
        rig.start_monitor()
        time.sleep(1.0)  # subscribed: the monitor sees the node connect
        rig.start_agent()
        assert rig.wait_rows(200, 30), (tmp_path / "agent.log").read_text()[-2000:]
        if what == "broker restart":
            rig.broker.stop()
            time.sleep(12)
            rig.start_broker()
        elif what == "consumer restart":
            rig.mon.send_signal(signal.SIGKILL)
            rig.mon.wait()
            time.sleep(3)
            rig.start_monitor()
        else:
            rig.agent.send_signal(signal.SIGKILL)
            rig.agent.wait()
            time.sleep(2)
            rig.start_agent()
        after = max(rig.seqs(), default=0)
        # settle: the node resends what its consumer has not stored (up to its 10 s ack
        # timeout, plus the reconnect backoffs); then count the holes below the newest
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            lost, top = rig.lost()
            if lost == 0 and top > after + 300:
                break
            time.sleep(0.5)
        lost, top = rig.lost()
        print(f"\n{what}: {lost} of {top} readings lost")
        assert top > after + 300, "the stream did not resume"
        assert lost == 0, f"{what}: {lost} of {top} readings lost"
    finally:
        rig.stop()
