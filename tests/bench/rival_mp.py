# The simple rivals of the uplink benchmarks, run by the same MicroPython Unix port as the
# agent: plain umqtt.simple at QoS 1 (each publish waits for its PUBACK), no queue, nothing
# kept through an outage. Same synthetic readings as tests/bench/uplink_agent.py (10 points,
# odd ones an integer counter with scale 0.1, even ones floats), engineering values in JSON.
#
# Usage: micropython rival_mp.py <port> <mode> <readings> <rate> <topic>
#   mode "typed":   one JSON message per reading, client used as a newcomer types it
#                   (default socket options: Nagle + delayed ACK);
#   mode "nodelay": the same plus one line, TCP_NODELAY on the client's socket;
#   mode "grouped": one JSON message per poll cycle holding all 10 values of the device, as
#                   Tasmota's SENSOR telemetry does, with TCP_NODELAY.
#   rate: readings/s (0: as fast as the client goes).
# Every message carries "t", the reading's wall-clock ms, for the delivery latency.
# Prints one line: RESULT {...}.
import json
import sys
import time

from umqtt.simple import MQTTClient

port, mode, n, rate, topic = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                              int(sys.argv[4]), sys.argv[5].encode())
NPTS = 10
NAMES = ("Voltage", "Current", "Power", "ApparentPower", "ReactivePower", "Factor",
         "Frequency", "Total", "Today", "Yesterday")

c = MQTTClient(b"rival" + str(time.ticks_ms()).encode(), "127.0.0.1", port)
c.connect()
if mode != "typed":
    c.sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: the one line


def value(i):
    pid = 1 + i % NPTS
    return round((1000 + i) * 0.1, 1) if pid % 2 else i * 0.5


sent = 0
nbytes = 0
t0 = time.ticks_ms()
while sent < n:
    if rate:
        due = rate * time.ticks_diff(time.ticks_ms(), t0) // 1000
        if sent >= due:
            time.sleep_ms(1)
            continue
    t = time.time_ns() // 1000000
    if mode == "grouped":
        iso = "%04d-%02d-%02dT%02d:%02d:%02d" % time.gmtime(t // 1000)[:6]
        vals = {}
        for k in range(NPTS):
            vals[NAMES[k]] = value(sent + k)
        msg = json.dumps({"Time": iso, "t": t, "ENERGY": vals})
        sent += NPTS
    else:
        msg = json.dumps({"id": 1 + sent % NPTS, "t": t, "v": value(sent)})
        sent += 1
    nbytes += len(msg)
    c.publish(topic, msg, qos=1)
dt = time.ticks_diff(time.ticks_ms(), t0)
c.disconnect()
print("RESULT " + json.dumps({"readings": sent, "elapsed_ms": dt, "bytes": nbytes}))
