"""How many Modbus points boot in a heap: the table of docs/config.md, "How many points fit".

    .venv/bin/python tools/points_fit.py [--node] [heap_KiB ...]   (default: 64 80 96 128)

For each heap, bisects the largest count of float32 input points (slaves of 100 points each,
plus an SHT3x's two points, batch_bytes 1024) for which the agent, main.py on the 32-bit Unix
build with the firmware frozen in (the boards' object model), logs the end of its boot
(`--trace heap`: "heap boot"). Only the boot is judged: the broker and serial port are not
there, so the running agent's own needs (about 3 KiB: tasks, MQTT session) are excluded.
--node runs what `otlink node run` runs instead: the 64-bit build, the firmware as .mpy.
"""

import json
import shutil
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "host_tools"))

import mp  # noqa: E402
from otlink_tools import node, paths  # noqa: E402


def config(n: int, port: str) -> dict:
    pts = [{"id": i + 1, "name": "point_%d" % i, "slave": 1 + i // 100, "table": "input",
            "address": 2 * (i % 100), "type": "float32", "unit": "V"} for i in range(n)]
    return {"version": 1, "node": {"id": "fit", "site": "lab"},
            "mqtt": {"host": "127.0.0.1", "port": 9, "batch_bytes": 1024,
                     "ack_key": secrets.token_hex(32)},  # nothing connects: any key
            "serial": {"port": port, "baud": 115200},
            "points": pts,
            "sensors": [{"name": "cab", "driver": "sht3x", "bus": "i2c0", "group": "default",
                         "points": [{"id": 9001, "name": "t", "channel": "temperature"},
                                    {"id": 9002, "name": "rh", "channel": "humidity"}]}]}


def boots(n: int, heap_k: int, node_run: bool = False, mpy_dir: Path | None = None) -> bool:
    """Does the agent with n points log the end of its boot in heap_k KiB? mpy_dir: the
    32-bit build loading the agent from that .mpy tree (stock firmware, deployed) instead of
    its frozen modules."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "state").mkdir()
        port = tmp / "tty"
        port.write_bytes(b"")  # opened, never answers: the boot does not poll
        (tmp / "node.json").write_text(json.dumps(config(n, str(port))))
        shutil.copy(paths.FIRMWARE / "main.py", tmp / "main.py")
        cmd = [mp.interpreter("32"), "-X", "heapsize=%dK" % heap_k, str(tmp / "main.py"),
               "--config", str(tmp / "node.json"), "--state", str(tmp / "state"),
               "--board", "unix", "--boards", str(paths.BOARDS), "--trace", "heap"]
        env = mp.env(build="32")
        if mpy_dir is not None:
            env["MICROPYPATH"] = f"{mpy_dir}:.frozen"
        if node_run:
            cmd, env = node.agent_command(str(tmp / "node.json"), str(tmp / "state"),
                                          "%dK" % heap_k, mpy_dir=node.firmware_mpy())
            cmd += ["--trace", "heap"]
        log = tmp / "log"
        with open(log, "wb") as f:
            p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
            end = time.monotonic() + 20
            while p.poll() is None and time.monotonic() < end:
                if b"heap boot:" in log.read_bytes():
                    break
                time.sleep(0.1)
            p.kill()
            p.wait()
        text = log.read_bytes()
        return b"heap boot:" in text and b"MemoryError" not in text


def largest(heap_k: int, **kw) -> int:
    """The largest point count that boots in heap_k KiB (0: not even the sensor alone)."""
    if not boots(0, heap_k, **kw):
        return 0
    lo, hi = 0, 64  # lo boots, hi to be found
    while boots(hi, heap_k, **kw):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if boots(mid, heap_k, **kw):
            lo = mid
        else:
            hi = mid
    return lo


def main(argv: list[str]) -> None:
    node_run = "--node" in argv
    heaps = [int(a) for a in argv if a != "--node"] or [64, 80, 96, 128]
    print("| heap | Modbus points that boot |\n|---|---|")
    for h in heaps:
        print("| %d KiB | %d |" % (h, largest(h, node_run=node_run)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
