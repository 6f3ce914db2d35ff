# MicroPython side of tests/host/test_slow_broker.py (not a pytest module): the Publisher and
# Uplink connecting through a slow TCP proxy while a neighbour task measures the longest time
# the event loop did not turn, and a watchdog fed from the loop (as app.py does) resets the
# process when starved (hal/unix/wdt.py).
#   micropython slow_broker_mp.py PORT SECONDS WATCHDOG_MS CAUSE_FILE  (SECONDS: the limit)
# Prints: RESULT {"connected": bool, "max_stall_ms": n, "longest_step_ms": n, ...}
import asyncio
import json
import sys
import time

from otlink.core.config import parse_mqtt
from otlink.hal.clock import Clock
from otlink.hal.unix.wdt import SimWdt
from otlink.publisher import Publisher
from otlink.uplink import Uplink
from ramqueue import RamQueue

port, seconds, wdt_ms, cause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
clock = Clock()
mqtt = parse_mqtt({"host": "127.0.0.1", "port": port, "ack": "broker", "keepalive_s": 60},
                  "slow", "lab")
up = Uplink(mqtt, {"id": "slow", "site": "lab"}, clock)
birth = {"node": "slow", "fw": "test", "config_hash": "0" * 8, "boot": 1, "points": []}
pub = Publisher(RamQueue(clock, capacity=16), up, clock, mqtt, birth,
                lambda: {"free_heap": 0, "reset_cause": "power-on"})
stall = [0]
t_conn = [None]


async def neighbour(wdt):
    t = time.ticks_ms()
    t0 = t
    while True:
        await asyncio.sleep_ms(10)
        now = time.ticks_ms()
        d = time.ticks_diff(now, t) - 10
        if d > stall[0]:
            stall[0] = d
        t = now
        wdt.feed()
        if up.connected and t_conn[0] is None:
            t_conn[0] = time.ticks_diff(now, t0)


async def main():
    wdt = SimWdt(wdt_ms, cause)
    asyncio.create_task(neighbour(wdt))
    task = asyncio.create_task(pub.run())
    t0 = time.ticks_ms()
    # until connected and one more round trip (the first state publish), or SECONDS
    while time.ticks_diff(time.ticks_ms(), t0) < seconds * 1000:
        if t_conn[0] is not None and time.ticks_diff(time.ticks_ms(), t0) > t_conn[0] + 3500:
            break
        await asyncio.sleep_ms(50)
    task.cancel()


asyncio.run(main())
print("RESULT " + json.dumps({"connected": up.connected, "connects": up.connects,
                              "max_stall_ms": stall[0], "longest_step_ms": up.longest_step_ms,
                              "connect_ms": t_conn[0], "last_error": up.last_error}))
