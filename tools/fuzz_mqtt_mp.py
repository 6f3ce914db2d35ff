# The node's MQTT side (otlink.uplink.Uplink over umqtt.simple, driven by the real
# otlink.publisher.Publisher in consumer-ack mode with a signed-ack key, as the agent runs it)
# against the hostile broker of tools/fuzz_mqtt.py (docs/reliability.md, "Fuzzing").
# Loops connect / poll / publish until the broker has served `sessions` connections, then
# prints one RESULT line: counts, the heap (after a collection) at the first and last
# quarter, the distinct errors seen, and the queue as it stands. Whatever the broker sends,
# nothing may raise out of the uplink or the publisher (connect never raises; poll, step and
# publish raise OSError only), the heap may not grow, and the queue keeps every reading:
# the broker does not hold the ack key, so every ack it sends is forged and must be refused
# (counted in acks_forged), never drop a reading.
# Usage: micropython fuzz_mqtt_mp.py PORT SESSIONS
import gc
import json
import sys
import time

from otlink.core import reading
from otlink.core.config import parse_mqtt
from otlink.hal.clock import Clock
from otlink.publisher import Publisher
from otlink.uplink import Uplink
from ramqueue import RamQueue

port = int(sys.argv[1])
sessions = int(sys.argv[2])
# a key the broker never sees (fuzz_mqtt.py forges acks without it)
KEY = "5f1e0c3a9b7d2e4f60718293a4b5c6d7e8f9011223344556677889900aabbccd"
cfg = parse_mqtt({"host": "127.0.0.1", "port": port, "keepalive_s": 2, "backoff_ms": [1, 2],
                  "ack": "consumer", "ack_key": KEY, "qos": 1, "batch_max": 16,
                  "linger_ms": 0, "state_interval_s": 1}, "n1", "s1")
N_QUEUED = 40  # readings in the queue: resent over and over, never acknowledged
BOOT = 3
got = {"ack": 0, "cmd": 0, "bad_cmd": 0}


def on_cmd(msg):
    got["cmd"] += 1
    if len(msg) > 2048:
        got["bad_cmd"] += 1  # over max_in: must have been discarded, never handed in


clock = Clock(synced=False)
clock.set_epoch_ms(1700000000000)
up = Uplink(cfg, {"id": "n1", "site": "s1"}, clock, on_cmd=on_cmd,
            op_timeout_ms=2000, connect_timeout_ms=300)
q = RamQueue(clock, capacity=64, boot=BOOT, slot=reading.MAX_SIZE)
rec = bytearray(reading.MAX_SIZE)
for i in range(N_QUEUED):
    q.append(rec, reading.pack_int(rec, 1 + i % 4, 1700000000000 + 1000 * i, 1000 + i))
first0 = None
for s, _b, _r, _n in q.peek(1):
    first0 = s
pub = Publisher(q, up, clock, cfg, b"\xa1\x61v\x01", ack_timeout_ms=40)
pub_on_ack = up.on_ack  # the publisher's own handler (its constructor installed it)


def on_ack(msg):
    got["ack"] += 1
    pub_on_ack(msg)


up.on_ack = on_ack
errors = {}
other = []  # exceptions that are not OSError out of poll/step/publish
heap = []
sess = 0  # sessions the node went through: connected, or a connect that failed
batches_q = 0  # data batches sent when the heap was first sampled
t_end = time.ticks_add(time.ticks_ms(), 3600000)

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
        batches_q = pub.batches
    if not up.connected:
        f0 = up.failures
        if up.connect(pub.birth, pub.will):
            sess += 1
            try:
                pub._session_start()  # as Publisher.run(): the state message, the backlog
            except OSError:
                note()
            continue
        if up.failures > f0:
            sess += 1
            note()
        time.sleep_ms(1)
        continue
    sent = False
    try:
        up.poll()
        sent = pub.step()
        if pub.state_due():
            pub._publish_state()
    except OSError:
        note()
        pub._inflight = []  # as Publisher.run() does when the session drops
    except Exception as ex:  # the finding
        if len(other) < 5:
            other.append("%s: %s" % (type(ex).__name__, ex))
    if not sent and (up.sock is None or not up.sock.readable()):
        time.sleep_ms(1)  # idle (the agent's loop naps 20 ms; the harness turns faster)
up.close()
gc.collect()
heap.append(gc.mem_free())
first = None
for s, _b, _r, _n in q.peek(1):
    first = s
print("RESULT " + json.dumps({
    "sessions": sess, "connects": up.connects, "failures": up.failures,
    "disconnects": up.disconnects, "batches": pub.batches,
    "batches_last_3q": pub.batches - batches_q, "refused_in": up.refused_in,
    "acks_in": got["ack"], "acks_forged": pub.acks_forged, "acks_taken": pub.acks,
    "bad_acks": pub.bad_acks, "stale_acks": pub.stale_acks, "queue_depth": q.depth(),
    "queue_depth0": N_QUEUED, "queue_first": first, "queue_first0": first0,
    "cmds_in": got["cmd"], "oversized_handed_in": got["bad_cmd"], "other_exceptions": other,
    "heap_free": heap, "errors": errors, "errors_late": [e for e in late if e],
    "longest_step_ms": up.longest_step_ms}))
