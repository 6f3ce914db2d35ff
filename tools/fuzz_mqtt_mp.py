# The node's MQTT session (otlink.uplink.Uplink over umqtt.simple, as the agent runs it)
# against the hostile broker of tools/fuzz_mqtt.py (docs/reliability.md, "Fuzzing").
# Loops connect / poll / publish until the broker has served `sessions` connections, then
# prints one RESULT line: counts, the heap (after a collection) at the first and last
# quarter, the distinct errors seen. Whatever the broker sends, nothing may raise out of
# the uplink (connect never raises; poll and publish raise OSError only) and the heap may not
# grow. Usage: micropython fuzz_mqtt_mp.py PORT SESSIONS
import gc
import json
import sys
import time

from otlink.core.config import parse_mqtt
from otlink.hal.clock import Clock
from otlink.uplink import Uplink

port = int(sys.argv[1])
sessions = int(sys.argv[2])
cfg = parse_mqtt({"host": "127.0.0.1", "port": port, "keepalive_s": 2,
                  "backoff_ms": [1, 2]}, "n1", "s1")
got = {"ack": 0, "cmd": 0, "bad_cmd": 0}


def on_ack(msg):
    got["ack"] += 1


def on_cmd(msg):
    got["cmd"] += 1
    if len(msg) > 2048:
        got["bad_cmd"] += 1  # over max_in: must have been discarded, never handed in


clock = Clock(synced=False)
up = Uplink(cfg, {"id": "n1", "site": "s1"}, clock, on_ack=on_ack, on_cmd=on_cmd,
            op_timeout_ms=300, connect_timeout_ms=300)
birth = b"\xa1\x61v\x01"
will = b"\xa2\x61v\x01\x66online\xf4"
payload = bytes(range(200))
errors = {}
other = []  # exceptions that are not OSError out of poll/publish
heap = []
sess = 0  # sessions the node went through: connected, or a connect that failed
publishes = 0
t_end = time.ticks_add(time.ticks_ms(), 1800000)

late = [None] * 8  # errors first seen after the first heap sample (slots: no allocation)


def note():
    e = up.last_error
    if e is None:
        return
    if e in errors:
        errors[e] += 1
    elif not heap:
        errors[e] = 1
    else:
        for i in range(8):
            if late[i] is None or late[i] == e:
                late[i] = e
                break


while sess < sessions and time.ticks_diff(t_end, time.ticks_ms()) > 0:
    if sess >= sessions // 4 and not heap:
        gc.collect()
        heap.append(gc.mem_free())
    if not up.connected:
        f0 = up.failures
        if up.connect(birth, will):
            sess += 1
            continue
        if up.failures > f0:
            sess += 1
            note()
        time.sleep_ms(1)
        continue
    try:
        up.poll()
        if up.connected:
            up.publish(up.t_data, payload, 1, False)
            publishes += 1
            up.poll()
    except OSError:
        note()
    except Exception as ex:  # the finding
        if len(other) < 5:
            other.append("%s: %s" % (type(ex).__name__, ex))
up.close()
gc.collect()
heap.append(gc.mem_free())
print("RESULT " + json.dumps({
    "sessions": sess, "connects": up.connects, "failures": up.failures,
    "publishes": publishes, "refused_in": up.refused_in, "acks_in": got["ack"],
    "cmds_in": got["cmd"], "oversized_handed_in": got["bad_cmd"], "other_exceptions": other,
    "heap_free": heap, "errors": errors, "errors_late": [e for e in late if e],
    "longest_step_ms": up.longest_step_ms}))
