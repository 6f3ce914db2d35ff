"""A broker at a 3 s round trip (a TCP proxy delaying each direction 1.5 s, in front of a real
mosquitto) must not stall the node's event loop: the uplink connects in steps of one round
trip each, the loop turns between them, and the simulated watchdog (hal/unix/wdt.py, fed from
the loop as app.py feeds the board's, at the Pico W's 8.3 s limit) never fires. One
connect() used to block for 4 round trips (12 s measured), past that limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from mp import MICROPYTHON, ROOT, env  # noqa: E402
from slow_proxy import SlowProxy  # noqa: E402

SCRIPT = HERE / "slow_broker_mp.py"
WATCHDOG_MS = 8300  # RP2040: the hardware's longest period (8.388 s, rounded down)


def test_slow_broker_never_starves_the_watchdog(broker, tmp_path):
    cause = tmp_path / "reset_cause"
    with SlowProxy(broker.port, one_way_s=1.5) as proxy:
        res = subprocess.run(
            [MICROPYTHON, "-X", "heapsize=512K", str(SCRIPT), str(proxy.port), "25",
             str(WATCHDOG_MS), str(cause)],
            capture_output=True, text=True, timeout=60, cwd=str(ROOT),
            env=env(ROOT / "tests" / "firmware"))
    assert not cause.exists(), "watchdog reset:\n" + res.stdout + res.stderr
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(next(ln[7:] for ln in res.stdout.splitlines() if ln.startswith("RESULT ")))
    assert out["connected"] and out["connects"] == 1, out
    # five round trips (CONNACK, two SUBACKs, the birth's PUBACK...) took >= 12 s in all,
    # but the loop never stood still for more than about one of them
    assert out["connect_ms"] >= 4 * 3000, out
    assert out["longest_step_ms"] < 4500 and out["max_stall_ms"] < 4500, out
    print(f"\nconnect through a 3 s round trip: {out['connect_ms']} ms in all, longest "
          f"step {out['longest_step_ms']} ms, longest loop stall {out['max_stall_ms']} ms")


def test_starved_watchdog_resets_the_process(tmp_path):
    """The simulated watchdog does reset: a loop that stops feeding it is killed."""
    cause = tmp_path / "reset_cause"
    code = ("import time\nfrom otlink.hal.unix.wdt import SimWdt\n"
            f"w = SimWdt(300, {str(cause)!r})\n"
            "for i in range(5):\n    time.sleep_ms(100)\n    w.feed()\n"
            "print('fed')\ntime.sleep_ms(3000)\nprint('survived')\n")
    res = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                         timeout=20, env=env(), cwd=str(ROOT))
    assert "fed" in res.stdout and "survived" not in res.stdout, res.stdout + res.stderr
    assert res.returncode == -9
    assert cause.read_text().strip() == "watchdog"
