# heapsize: 160K 32:96K
# What a node tells consumers about itself beyond the readings: the state a clean stop leaves
# retained (online false and stopped true, unlike the last will, so a person can tell a node
# that was stopped from one that vanished), and the points in error listed in the state (an
# error reading is sent once; a consumer that starts later learns of it from the state).
import gc

from otlink.core import reading
from otlink.core.config import parse_mqtt
gc.collect()
from otlink.publisher import Publisher  # noqa: E402
from fake_clock import FakeClock  # noqa: E402
from ramqueue import RamQueue  # noqa: E402
gc.collect()
import mptest  # noqa: E402


class Uplink:
    """Records publishes as (topic, payload, qos, retain); close() ends the session."""

    def __init__(self):
        self.t_data = b"otlink/s/n/data"
        self.t_state = b"otlink/s/n/state"
        self.connected = True
        self.connects = 1
        self.sent = []
        self.closed = False
        self.on_ack = None

    def publish(self, topic, payload, qos=1, retain=False):
        if not self.connected:
            raise OSError(107)
        self.sent.append((topic, bytes(payload), qos, retain))

    def close(self):
        self.connected = False
        self.closed = True


# --- just enough CBOR (RFC 8949 major types 0, 1, 3, 5 and simple values) to read a state --
def _item(b, o):
    ib = b[o]
    mt = ib >> 5
    ai = ib & 0x1F
    if mt == 7:
        return {20: False, 21: True, 22: None}[ai], o + 1
    if ai < 24:
        v, o = ai, o + 1
    else:
        n = 1 << (ai - 24)
        v = 0
        for i in range(n):
            v = (v << 8) | b[o + 1 + i]
        o += 1 + n
    if mt == 0:
        return v, o
    if mt == 1:
        return -1 - v, o
    if mt == 3:
        return bytes(b[o:o + v]).decode(), o + v
    if mt == 5:
        m = {}
        for _ in range(v):
            k, o = _item(b, o)
            m[k], o = _item(b, o)
        return m, o
    raise ValueError("major type %d" % mt)


def decode(b):
    m, o = _item(b, 0)
    mptest.eq(o, len(b), "one CBOR item, nothing after it")
    return m


BIRTH = {"node": "n", "fw": "t", "config_hash": "0" * 8, "boot": 3,
         "points": [{"id": 1, "name": "p1", "unit": "V", "type": "int32", "scale": 1.0,
                     "offset": 0.0, "source": "test"}]}


def make(health=None):
    gc.collect()
    clock = FakeClock(t=5000)
    q = RamQueue(clock, capacity=32, boot=3, slot=reading.SIZE)
    up = Uplink()
    cfg = parse_mqtt({"host": "127.0.0.1", "insecure_unsigned_acks": True})
    p = Publisher(q, up, clock, cfg, BIRTH,
                  state_fn=(lambda: health) if health is not None else None)
    return p, q, up, clock


def test_clean_stop_leaves_a_stopped_state_not_the_will():
    p, q, up, clock = make({"free_heap": 1234, "reset_cause": "power-on"})
    rec = bytearray(reading.SIZE)
    for i in range(3):
        reading.pack_int(rec, 1, clock.now_ms(), i)
        q.append(rec, reading.SIZE)
    p.stop()
    mptest.true(up.closed and not p.running, "session closed, publisher stopped")
    mptest.eq(len(up.sent), 1, "one message before the DISCONNECT")
    topic, payload, qos, retain = up.sent[0]
    mptest.eq((topic, qos, retain), (up.t_state, 1, True), "retained QoS 1 state")
    st = decode(payload)
    mptest.eq((st["online"], st["stopped"], st["boot"]), (False, True, 3), "stopped state")
    mptest.eq((st["queue_depth"], st["uptime_s"], st["free_heap"]), (3, 5, 1234),
              "the last figures: what is left unsent, how long it ran")
    will = decode(p.will)
    mptest.eq(will, {"v": 1, "online": False, "boot": 3}, "the last will says only offline")


def test_stop_without_a_session_publishes_nothing():
    p, q, up, clock = make()
    up.connected = False
    p.stop()
    mptest.eq(up.sent, [], "nothing sent")
    mptest.true(up.closed, "closed anyway")


def test_stop_with_a_broken_state_source_still_says_offline():
    p, q, up, clock = make()

    class Bad:
        def stats(self):
            raise RuntimeError("broken")

    p.q = Bad()  # the queue's figures cannot be read: the plain death state goes instead
    p.stop()
    mptest.eq([decode(x[1]) for x in up.sent], [{"v": 1, "online": False, "boot": 3}],
              "the death state")


def test_points_in_error_ride_in_the_state():
    p, q, up, clock = make({"point_errors": {7: 0x82}, "free_heap": 1})
    p._publish_state()
    st = decode(up.sent[-1][1])
    mptest.eq(st["point_errors"], {7: 0x82}, "point 7: Modbus exception 2")
    mptest.true("stopped" not in st and st["online"], "a running node's state")


def test_a_state_too_big_drops_the_point_errors_first():
    many = {}
    for pid in range(1000, 1100):  # 100 points in error: ~500 bytes, past the 512-byte buffer
        many[pid] = 0x84
    p, q, up, clock = make({"point_errors": many, "free_heap": 99, "reset_cause": "soft"})
    p._publish_state()
    st = decode(up.sent[-1][1])
    mptest.true("point_errors" not in st, "point errors left out")
    mptest.eq((st["online"], st["queue_depth"]), (True, 0), "the rest of the state still goes")


mptest.main(globals())
