# MicroPython side of tests/host/test_dns.py (not a pytest module): dns.resolve against the
# test's UDP DNS server, and the Uplink connecting to a broker named by host name through it.
#   micropython dns_mp.py DNS_PORT BROKER_PORT
import json
import sys
import time

from otlink import dns
from otlink.core.config import parse_mqtt
from otlink.hal.clock import Clock
from otlink.uplink import Uplink

dport, bport = int(sys.argv[1]), int(sys.argv[2])
out = {}


def timed(name, fn):
    t = time.ticks_ms()
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = "OSError %d" % e.args[0]
    out[name + "_ms"] = time.ticks_diff(time.ticks_ms(), t)


timed("found", lambda: dns.resolve("broker.plant.test", "127.0.0.1", 1000, dport))
timed("literal", lambda: dns.resolve("10.1.2.3", "127.0.0.1", 1000, dport))
timed("nxdomain", lambda: dns.resolve("nobody.plant.test", "127.0.0.1", 1000, dport))
timed("silent", lambda: dns.resolve("silent.plant.test", "127.0.0.1", 700, dport))
mqtt = parse_mqtt({"host": "broker.plant.test", "port": bport, "ack": "broker"}, "n", "s")
up = Uplink(mqtt, {"id": "n", "site": "s"}, Clock(),
            resolver=lambda h: dns.resolve(h, "127.0.0.1", 1000, dport))
for _ in range(50):
    if up.connect():
        break
    time.sleep_ms(20)
out["connected"] = up.connected
out["last_error"] = up.last_error
print("RESULT " + json.dumps(out))
