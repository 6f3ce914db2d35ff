# The simple rivals of the skeleton benchmark, run by the MicroPython Unix port: the same
# Modbus poller and meter as the agent, but no queue (nothing survives an outage) and plain
# umqtt.simple at QoS 1 (each publish waits for its PUBACK), JSON engineering values.
# Usage: micropython naive_agent_mp.py node.json <mode>
#   typed:   one JSON message per reading, the client as a newcomer types it (default
#            socket options: Nagle + delayed ACK);
#   nodelay: the same plus one line, TCP_NODELAY;
#   grouped: one JSON message per poll cycle with every value of the device (as Tasmota's
#            telemetry), TCP_NODELAY.
# Every message carries "t", the reading's wall-clock ms, for the delivery latency.
import asyncio
import json
import sys

from umqtt.simple import MQTTClient

from otlink.core import config as config_mod
from otlink.core import reading
from otlink.hal.clock import Clock
from otlink.hal.unix.uart import open_uart
from otlink.modbus_poller import Poller

cfg = config_mod.load(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "typed"
clock = Clock()
client = MQTTClient(b"naive-" + cfg["node"]["id"].encode(), cfg["mqtt"]["host"],
                    cfg["mqtt"]["port"])
client.connect()
if mode != "typed":
    client.sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: the one line
topic = ("naive/%s/data" % cfg["node"]["id"]).encode()
names = {p.id: p.name for p in cfg["points"]}
group = {}  # point name -> value of the poll cycle being gathered
group_t = None


def sink(rec, n):
    global group_t
    pid, kind, flags, t, v = reading.unpack(rec, n)
    if mode != "grouped":
        client.publish(topic, json.dumps({"id": pid, "t": t, "v": v}), qos=1)
        return
    name = names.get(pid, str(pid))
    if name in group:  # the next poll cycle began: send the last one's values together
        client.publish(topic, json.dumps({"t": group_t, "ENERGY": group}), qos=1)
        group.clear()
    if not group:
        group_t = t  # the cycle's first reading time: latency counts from there
    group[name] = v


poller = Poller(open_uart(cfg["serial"], clock), clock, cfg["serial"], cfg["points"], sink)
print("naive agent polling", mode)
asyncio.run(poller.run())
