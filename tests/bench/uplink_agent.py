# The agent pipeline for uplink tests and benchmarks, run by the MicroPython Unix port:
# synthetic source -> queue (flash on an emulated NOR file, or RAM) -> Publisher (CBOR) ->
# Uplink (umqtt.simple) -> broker. Usage: micropython uplink_agent.py <options.json>
# (or a short inline '{...}'). Options go through a file because the MicroPython 1.29 Unix
# port dies with "FATAL: uncaught NLR" before running any code when one command-line
# argument is 256 bytes or longer (argv items become qstrs, whose length is one byte).
# Prints one JSON line of results at the end ("RESULT {...}").
#
# options: host, port, node, site, ack (broker|consumer), qos, queue (ram|flash), flash (path),
#   total (readings to produce, 0: none), rate (readings/s, 0: as fast as possible),
#   backlog (readings queued before the first connect), seconds (run limit),
#   batch_max, linger_ms, replay_rate, until_acked (stop when everything is acknowledged),
#   untimed (readings start untimed; the clock is set after clock_after_ms),
#   connect_after_clock (the publisher starts only once the clock is set),
#   rate_connected (readings/s once the first session is up: an outage runs at `rate`),
#   after_drain_ms (stop this long after the first session's backlog is replayed).
import asyncio
import gc
import json
import sys
import time

from otlink.core import reading
from otlink.core.config import parse_mqtt
from otlink.hal.clock import Clock
from otlink.publisher import Publisher
from otlink.uplink import Uplink

_arg = sys.argv[1]
if _arg[:1] != "{":
    with open(_arg) as _f:
        _arg = _f.read()
o = json.loads(_arg)
clock = Clock(synced=not o.get("untimed"))
NPTS = 10

if o.get("queue", "ram") == "flash":
    from otlink.core.queue import Queue
    from otlink.hal.unix.norflash import NorFlash

    # flash_timing "typ"/"max": the W25Q part's busy times waited out for real
    nor = NorFlash(o["flash"], o.get("flash_size", 1 << 20), timing=o.get("flash_timing"),
                   sleep=bool(o.get("flash_timing")))
    q = Queue(nor.region(0, o.get("flash_size", 1 << 20)), clock,
              commit_count=o.get("commit_count", 64), commit_ms=o.get("commit_ms", 1000))
else:
    from ramqueue import RamQueue  # a test helper (tests/firmware): imported only when used

    # the synthetic source writes numeric records only: reading.SIZE slots
    q = RamQueue(clock, capacity=o.get("capacity", 4096), boot=o.get("boot", 1),
                 slot=o.get("slot", reading.SIZE))

mqtt = {"host": o.get("host", "127.0.0.1"), "port": o["port"], "ack": o.get("ack", "broker"),
        "qos": o.get("qos", 1), "keepalive_s": o.get("keepalive_s", 30),
        "batch_max": o.get("batch_max", 50), "batch_bytes": o.get("batch_bytes", 1024),
        "linger_ms": o.get("linger_ms", 50), "replay_rate": o.get("replay_rate", 20),
        "state_interval_s": o.get("state_interval_s", 60),
        "backoff_ms": o.get("backoff_ms", [100, 1000])}
if o.get("tls"):
    mqtt["tls"] = o["tls"]
if mqtt["ack"] == "consumer":  # signed acks (the default), or said out loud
    if o.get("ack_key"):
        mqtt["ack_key"] = o["ack_key"]
    else:
        mqtt["insecure_unsigned_acks"] = True
mqtt = parse_mqtt(mqtt, o.get("node", "n1"), o.get("site", "s1"))  # the schema fills the rest
node = {"id": o.get("node", "n1"), "site": o.get("site", "s1")}
points = [{"id": i, "name": "p%d" % i, "unit": "V", "type": "int32" if i % 2 else "float32",
           "scale": 0.1 if i % 2 else 1.0, "offset": 0, "source": "synthetic"}
          for i in range(1, NPTS + 1)]
gc.collect()  # as App does: the long-lived uplink buffers go into a collected heap
up = Uplink(mqtt, node, clock)
birth = {"node": node["id"], "fw": "bench", "config_hash": "0" * 8, "boot": q.boot,
         "points": points}
pub = Publisher(q, up, clock, mqtt, birth, lambda: {"free_heap": 0, "reset_cause": "power"},
                ack_timeout_ms=o.get("ack_timeout_ms", 3000))

buf = bytearray(reading.SIZE)
produced = 0


def make(i):
    # Reading i: point 1 + i % NPTS; odd points integers (a counter), even points floats.
    # Readings of one "poll cycle" (NPTS readings) share one timestamp.
    pid = 1 + i % NPTS
    flags = 0 if clock.is_set() else reading.FLAG_UNTIMED
    t = clock.now_ms()
    if pid % 2:
        reading.pack_int(buf, pid, t, 1000 + i, flags)
    else:
        reading.pack_float(buf, pid, t, i * 0.5, flags)
    q.append(buf, reading.SIZE)


for _ in range(o.get("backlog", 0)):
    make(produced)
    produced += 1
q.commit()

t_start = time.ticks_ms()
t_first_live = None
done = False


async def source():
    global produced, done
    total = o.get("total", 0) + o.get("backlog", 0)
    rate = o.get("rate", 0)
    t0 = time.ticks_ms()
    base = produced
    switch = o.get("rate_connected")
    while produced < total:
        if switch is not None and up.connects:
            rate, switch, t0, base = switch, None, time.ticks_ms(), produced
        if rate:
            due = base + rate * time.ticks_diff(time.ticks_ms(), t0) // 1000
            while produced < due and produced < total:
                make(produced)
                produced += 1
            await asyncio.sleep_ms(5)
        else:
            k = 0
            if q.depth() > o.get("capacity", 4096) // 2:  # backpressure: measure capacity
                await asyncio.sleep_ms(1)
                continue
            while k < 200 and produced < total:
                make(produced)
                produced += 1
                k += 1
            await asyncio.sleep_ms(0)
    done = True


async def ticker():
    while True:
        q.tick(clock.ticks_ms())
        if o.get("untimed") and not clock.is_set():
            if time.ticks_diff(time.ticks_ms(), t_start) >= o.get("clock_after_ms", 500):
                clock.sync()
        await asyncio.sleep_ms(10)


failed = None


async def guard(coro):
    # A task that dies (MemoryError under a small heap cap, say) ends the run with its
    # error in the result instead of leaving the agent idle until the time limit.
    global failed
    try:
        await coro
    except Exception as e:  # noqa: BLE001 - reported in the RESULT line
        failed = "%s: %s" % (type(e).__name__, e)
        sys.print_exception(e)  # where it failed, in the agent's output


async def publish_when_ready():
    # connect_after_clock: like a board, where MQTT starts only once WiFi and NTP are up, so
    # everything stamped before NTP is still queued (and re-timed) when publishing starts.
    while o.get("connect_after_clock") and not clock.is_set():
        await asyncio.sleep_ms(10)
    await pub.run()


t_connect = None  # ms after start: first session up
t_drained = None  # ms after start: its backlog replayed


async def main():
    global t_connect, t_drained
    asyncio.create_task(guard(publish_when_ready()))
    asyncio.create_task(guard(source()))
    asyncio.create_task(guard(ticker()))
    limit = o.get("seconds", 30) * 1000
    fail_limit = o.get("connect_fail_limit", 0)
    while time.ticks_diff(time.ticks_ms(), t_start) < limit:
        await asyncio.sleep_ms(10)
        if failed is not None or (fail_limit and not up.connects and up.failures >= fail_limit):
            break
        if t_connect is None and up.connects:
            t_connect = time.ticks_diff(time.ticks_ms(), t_start)
        if t_connect is not None and t_drained is None and not pub._has_backlog:
            t_drained = time.ticks_diff(time.ticks_ms(), t_start)
        if (t_drained is not None and o.get("after_drain_ms") is not None
                and time.ticks_diff(time.ticks_ms(), t_start) - t_drained >= o["after_drain_ms"]):
            break
        if o.get("until_acked") and produced >= o.get("total", 0) + o.get("backlog", 0):
            q.commit()
            if q.depth() == 0:
                break


asyncio.run(main())
elapsed = time.ticks_diff(time.ticks_ms(), t_start)
pub.stop()
import gc  # noqa: E402

gc.collect()
print("RESULT " + json.dumps({
    "produced": produced, "depth": q.depth(), "elapsed_ms": elapsed, "batches": pub.batches,
    "readings": pub.readings, "hist_batches": pub.hist_batches, "acks": pub.acks,
    "ack_timeouts": pub.ack_timeouts, "connects": up.connects, "failures": up.failures,
    "last_error": up.last_error, "retimed": pub.retimed, "boot": q.boot,
    "nodelay": True, "mem_free": gc.mem_free(), "drops": q.stats().get("drops", 0),
    "t_connect": t_connect, "t_drained": t_drained, "failed": failed}))
