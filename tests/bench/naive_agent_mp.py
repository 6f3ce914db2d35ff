# The naive baseline of the skeleton benchmark, run by the MicroPython Unix port: the same
# Modbus poller and meter, but every reading is published as its own JSON message with
# plain umqtt.simple at QoS 1 (waiting for each PUBACK, default socket options), as a
# Tasmota-style agent would. No queue: nothing survives an outage.
# Usage: micropython naive_agent_mp.py node.json
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
clock = Clock()
client = MQTTClient(b"naive-" + cfg["node"]["id"].encode(), cfg["mqtt"]["host"],
                    cfg["mqtt"]["port"])
client.connect()
topic = ("naive/%s/data" % cfg["node"]["id"]).encode()


def sink(rec, n):
    pid, kind, flags, t, v = reading.unpack(rec, n)
    client.publish(topic, json.dumps({"id": pid, "t": t, "v": v}), qos=1)


poller = Poller(open_uart(cfg["serial"], clock), clock, cfg["serial"], cfg["points"], sink)
print("naive agent polling")
asyncio.run(poller.run())
