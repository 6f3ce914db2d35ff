# heapsize: 192K 32:128K
# Publisher logic against a RamQueue and a fake uplink (records what would go to the broker):
# batching, boot split, queue advance only on PUBACK / consumer ack, historical flag and
# rate-capped replay, re-timing of untimed readings; RamQueue hot paths under heap_lock.
import gc

from otlink.core import reading
from otlink.core.config import parse_mqtt
from otlink.core.payload import encode_ack
gc.collect()
from otlink.publisher import Publisher  # noqa: E402
from fake_clock import EPOCH, FakeClock  # noqa: E402
from ramqueue import RamQueue  # noqa: E402
gc.collect()
import mptest  # noqa: E402


class FakeUplink:
    """What the Publisher needs of otlink.uplink.Uplink. publish() stands for a completed
    QoS1 publish (PUBACK received) unless fail is set (the session dropped)."""

    def __init__(self):
        self.t_data = b"otlink/s/n/data"
        self.t_state = b"otlink/s/n/state"
        self.connected = True
        self.connects = 1
        self.sent = []  # (topic, payload bytes, qos, retain)
        self.fail = False
        self.on_ack = None
        self.on_cmd = None

    def publish(self, topic, payload, qos=1, retain=False):
        if self.fail:
            raise OSError(104)
        self.sent.append((topic, bytes(payload), qos, retain))

    def data(self):
        return [decode(p) for t, p, q, r in self.sent if t == self.t_data]

    def close(self):
        self.connected = False


# --- a small CBOR decoder (RFC 8949 major types 0-5, 7) to check what was published --------
def _arg(b, o):
    ai = b[o] & 0x1F
    if ai < 24:
        return ai, o + 1
    n = 1 << (ai - 24)
    v = 0
    for i in range(n):
        v = (v << 8) | b[o + 1 + i]
    return v, o + 1 + n


def _item(b, o):
    mt = b[o] >> 5
    if mt == 7:
        ai = b[o] & 0x1F
        if ai == 25:
            h = (b[o + 1] << 8) | b[o + 2]
            e = (h >> 10) & 0x1F
            f = h & 0x3FF
            v = (f / 1024) * 2.0 ** -14 if e == 0 else (1 + f / 1024) * 2.0 ** (e - 15)
            return (-v if h & 0x8000 else v), o + 3
        if ai == 26:
            import struct
            return struct.unpack(">f", bytes(b[o + 1:o + 5]))[0], o + 5
        if ai == 27:
            import struct
            return struct.unpack(">d", bytes(b[o + 1:o + 9]))[0], o + 9
        return ("simple", ai if ai < 24 else b[o + 1]), o + (1 if ai < 24 else 2)
    v, p = _arg(b, o)
    if mt == 0:
        return v, p
    if mt == 1:
        return -1 - v, p
    if mt == 3:
        return bytes(b[p:p + v]).decode(), p + v
    if mt == 4:
        out = []
        for _ in range(v):
            x, p = _item(b, p)
            out.append(x)
        return out, p
    if mt == 5:
        out = {}
        for _ in range(v):
            k, p = _item(b, p)
            x, p = _item(b, p)
            out[k] = x
        return out, p
    raise ValueError("major type %d not used here" % mt)


def decode(b):
    m, o = _item(b, 0)
    mptest.eq(o, len(b), "whole payload decoded")
    return m


def readings(m):
    """[(seq, t, pid, value)] of a data batch (payload spec: time advances are negatives)."""
    out = []
    r = m["r"]
    t = m["t"]
    seq = m["s"]
    last = {}
    i = 0
    while i < len(r):
        if isinstance(r[i], int) and r[i] < 0:
            t += -r[i]
            i += 1
            continue
        pid = r[i]
        v = r[i + 1]
        if isinstance(v, int) and not isinstance(v, bool):
            if pid in last:
                v += last[pid]
            last[pid] = v
        out.append((seq, t, pid, v))
        seq += 1
        i += 2
    mptest.eq(seq - 1, m["e"], "readings s..e")
    return out


# --- setup ------------------------------------------------------------------------------
BIRTH = {"node": "n", "fw": "t", "config_hash": "0" * 8, "boot": 1,
         "points": [{"id": 1, "name": "p1", "unit": "V", "type": "int32", "scale": 1.0,
                     "offset": 0, "source": "test"}]}
REC = bytearray(reading.SIZE)


def put(q, clock, n, value0=100, untimed=False):
    for i in range(n):
        reading.pack_int(REC, 1, clock.uptime_ms() if untimed else clock.now_ms(), value0 + i,
                         reading.FLAG_UNTIMED if untimed else 0)
        q.append(REC, reading.SIZE)
        clock.t += 1


def make(mode="broker", synced=True, capacity=256, first_seq=1, **cfg):
    gc.collect()
    clock = FakeClock(synced)
    q = RamQueue(clock, capacity=capacity, slot=reading.SIZE, first_seq=first_seq)
    up = FakeUplink()
    c = {"host": "127.0.0.1", "ack": mode, "qos": 1, "batch_max": 50, "linger_ms": 0,
         "replay_rate": 0}
    kw = {}
    for k in ("ack_timeout_ms", "inflight_max"):  # constructor parameters, not config
        if k in cfg:
            kw[k] = cfg.pop(k)
    c.update(cfg)
    if c["ack"] == "consumer":  # plain acks here: signed ones are test_hmac_acks'
        c["insecure_unsigned_acks"] = True
    p = Publisher(q, up, clock, parse_mqtt(c), BIRTH, **kw)
    return p, q, up, clock


def drain(p, limit=100):
    n = 0
    while n < limit and p.step():
        n += 1
    return n


_ACK = bytearray(32)


def send_ack(up, boot, seq):
    """The consumer's ack for (boot, seq), as it arrives from the broker."""
    n = encode_ack(_ACK, boot, seq)
    up.on_ack(bytes(_ACK[:n]))


# --- tests ------------------------------------------------------------------------------
def test_batches_of_batch_max_in_order_exact_values():
    p, q, up, clock = make()
    p._session_start()
    put(q, clock, 120)
    # backlog? no: the session started before these were queued, so they are live
    mptest.eq(drain(p), 3, "batches sent")
    ms = up.data()
    mptest.eq([(m["s"], m["e"]) for m in ms], [(1, 50), (51, 100), (101, 120)], "seq ranges")
    got = []
    for m in ms:
        mptest.eq(m["b"], 1, "boot")
        mptest.eq(m["f"] & 1, 0, "live, not historical")
        got += readings(m)
    mptest.eq([g[3] for g in got], list(range(100, 220)), "exact values")
    mptest.eq([g[1] for g in got], [EPOCH + 1000 + i for i in range(120)], "exact times")
    mptest.eq(q.depth(), 0, "broker mode: all acknowledged by PUBACK")


def test_linger_holds_a_partial_batch():
    p, q, up, clock = make(linger_ms=200)
    p._session_start()
    put(q, clock, 10)
    mptest.eq(p.step(), False, "partial batch held for linger")
    clock.t += 199
    mptest.eq(p.step(), False, "still lingering")
    clock.t += 1
    mptest.eq(p.step(), True, "sent when linger ran out")
    mptest.eq(len(up.data()[0]["r"]) >= 20, True, "10 readings in it")


def test_boot_change_splits_batches():
    p, q, up, clock = make()
    p._session_start()
    put(q, clock, 30)
    q.boot = 2
    put(q, clock, 30, value0=500)
    drain(p)
    ms = up.data()
    mptest.eq([(m["b"], m["s"], m["e"]) for m in ms], [(1, 1, 30), (2, 31, 60)], "split")


def test_broker_mode_no_advance_without_puback():
    p, q, up, clock = make()
    p._session_start()
    put(q, clock, 60)
    up.fail = True  # the publish raised: no PUBACK
    mptest.raises(OSError, p.step)
    mptest.eq(q.depth(), 60, "queue did not advance")
    up.fail = False
    p._session_start()  # the next session replays from the oldest unacknowledged
    drain(p)
    ms = up.data()
    mptest.eq(ms[0]["s"], 1, "resent from the first")
    mptest.eq(q.depth(), 0, "advanced after PUBACK")


def test_consumer_mode_advances_only_on_consumer_ack():
    p, q, up, clock = make("consumer")
    p._session_start()
    put(q, clock, 150)
    mptest.eq(drain(p), 3, "three batches in flight")
    mptest.eq(q.depth(), 150, "PUBACK alone does not advance the queue")
    send_ack(up, 1, 50)
    mptest.eq((q.depth(), q.first_seq), (100, 51), "first batch confirmed")
    send_ack(up, 2, 150)
    mptest.eq(q.depth(), 100, "an ack for another boot is ignored")
    up.on_ack(b"\xa1\x61")
    mptest.eq(p.bad_acks, 1, "bad ack counted")
    send_ack(up, 1, 150)
    mptest.eq(q.depth(), 0, "all confirmed")


def test_consumer_ack_timeout_resends_oldest():
    p, q, up, clock = make("consumer", ack_timeout_ms=1000)
    p._session_start()
    put(q, clock, 60)
    drain(p)
    mptest.eq([(m["s"], m["e"]) for m in up.data()], [(1, 50), (51, 60)], "first pass")
    clock.t += 1001
    mptest.eq(p.step(), False, "timeout noticed")
    mptest.eq(p.ack_timeouts, 1, "counted")
    drain(p)
    mptest.eq([m["s"] for m in up.data()][2:], [1, 51], "resent from the oldest unacked")


def test_consumer_resend_of_the_backlog_stays_historical():
    # The backlog (queued before the session) went out flagged, then live readings; the
    # consumer confirmed nothing in time: the resend from the oldest unacknowledged is the
    # backlog again and carries its flag (before the fix it went out as live readings).
    p, q, up, clock = make("consumer", ack_timeout_ms=1000, inflight_max=8)
    put(q, clock, 60)  # queued during the outage
    p._session_start()
    put(q, clock, 20, value0=900)  # live
    drain(p)
    mptest.eq([(m["f"] & 1, m["s"], m["e"]) for m in up.data()],
              [(1, 1, 50), (1, 51, 60), (0, 61, 80)], "first pass")
    clock.t += 1001
    mptest.eq(p.step(), False, "timeout noticed")
    drain(p)
    mptest.eq([(m["f"] & 1, m["s"], m["e"]) for m in up.data()][3:],
              [(1, 1, 50), (1, 51, 60), (0, 61, 80)], "resent with the same flags")


def _ack_past_the_backlog(first, resend_began):
    # The backlog went out, the ack timeout fired (the resend re-flags the backlog), and the
    # consumer's ack then covered the backlog and the live readings: sending goes on from the
    # first unacknowledged reading, live. Two orders: the ack before the resend began, and
    # after its first batch went out (a consumer re-acks when resent duplicates reach it).
    # Before the fixes the publisher kept waiting for a backlog that was already
    # acknowledged and sent nothing more, ever (the NATS scale-out stall).
    p, q, up, clock = make("consumer", ack_timeout_ms=1000, batch_max=10, first_seq=first)
    put(q, clock, 30)  # queued before the session
    p._session_start()
    put(q, clock, 40, value0=900)  # live
    drain(p)
    clock.t += 1001
    mptest.eq(p.step(), False, "timeout noticed")
    if resend_began:
        mptest.eq(p.step(), True, "the first backlog batch resent")
    send_ack(up, 1, (first + 69) % 0x100000000)
    mptest.eq(q.depth(), 0, "acknowledged past the backlog")
    put(q, clock, 10, value0=2000)
    clock.t += 2000
    drain(p)
    want = [(0, (first + 70) % 0x100000000, (first + 79) % 0x100000000)]
    mptest.eq([(m["f"] & 1, m["s"], m["e"]) for m in up.data()[-1:]], want,
              "new readings go out, live")


def test_consumer_ack_past_the_backlog_after_a_resend_goes_on():
    _ack_past_the_backlog(1, False)


def test_consumer_ack_past_the_backlog_during_the_resend_goes_on():
    _ack_past_the_backlog(1, True)


def test_consumer_ack_past_the_backlog_across_the_seq_wrap():
    _ack_past_the_backlog(0xFFFFFFF0, False)
    _ack_past_the_backlog(0xFFFFFFF0, True)


def test_consumer_ack_after_timeout_is_honoured():
    # The consumer's ack arrives just after the ack timeout cleared the in-flight list: it
    # still says the consumer stored everything up to its seq, so the queue advances (before
    # the fix it was ignored and the node resent the same batches until acked again).
    p, q, up, clock = make("consumer", ack_timeout_ms=1000)
    p._session_start()
    put(q, clock, 60)
    drain(p)
    clock.t += 1001
    mptest.eq(p.step(), False, "timeout noticed")
    send_ack(up, 1, 50)
    mptest.eq((q.depth(), q.first_seq, p.acks), (10, 51, 1), "late ack honoured")
    drain(p)
    mptest.eq([m["s"] for m in up.data()][2:], [51], "resent from the first unacked only")
    send_ack(up, 1, 60)
    mptest.eq(q.depth(), 0, "all confirmed")
    # an ack past the in-flight list, within the queue: the consumer has stored it all
    put(q, clock, 30)
    p.step()  # 61..90 in flight
    put(q, clock, 10)  # 91..100 queued, not sent
    send_ack(up, 1, 95)
    mptest.eq((q.depth(), q.first_seq, len(p._inflight)), (5, 96, 0), "in-range ack")
    drain(p)
    mptest.eq(up.data()[-1]["s"], 96, "sending goes on from the first unacked")


def test_consumer_acks_outside_the_queue_ignored_and_counted():
    p, q, up, clock = make("consumer")
    p._session_start()
    put(q, clock, 60)
    drain(p)
    for boot, seq in ((1, 61), (1, 500), (2, 30), (1, 0)):  # past the newest, other boot
        send_ack(up, boot, seq)
    mptest.eq((q.depth(), p.acks, p.stale_acks, p.bad_acks), (60, 0, 4, 0), "ignored")
    send_ack(up, 1, 50)
    send_ack(up, 1, 50)  # the same ack again (retained, or repeated): below the queue now
    mptest.eq((q.depth(), p.acks, p.stale_acks), (10, 1, 5), "repeat counted, harmless")


def test_consumer_inflight_cap():
    p, q, up, clock = make("consumer", inflight_max=2, batch_max=10)
    p._session_start()
    put(q, clock, 100)
    mptest.eq(drain(p), 2, "stops at inflight_max")


def test_backlog_flagged_historical_interleaved_and_rate_capped():
    p, q, up, clock = make(replay_rate=10)  # 10 batches/s: one per 100 ms
    put(q, clock, 200)  # queued during the outage
    p._session_start()
    put(q, clock, 5, value0=900)  # live
    mptest.eq(p.step(), True, "live first")
    mptest.eq(p.step(), True, "one backlog batch")
    mptest.eq(p.step(), False, "replay capped")
    clock.t += 99
    mptest.eq(p.step(), False, "still capped")
    clock.t += 1
    mptest.eq(p.step(), True, "next backlog batch after 100 ms")
    ms = up.data()
    mptest.eq([(m["f"] & 1, m["s"], m["e"]) for m in ms], [(0, 201, 205), (1, 1, 50),
                                                          (1, 51, 100)], "flags and ranges")
    mptest.eq(q.depth(), 105, "acked up to the backlog sent, live kept until it is done")
    for _ in range(4):
        clock.t += 100
        p.step()
    mptest.eq(q.depth(), 0, "backlog done: live acknowledged too")
    mptest.eq(p.hist_batches, 4, "historical batches")


def test_untimed_readings_retimed_once_clock_set():
    p, q, up, clock = make(synced=False)
    p._session_start()
    put(q, clock, 10, untimed=True)
    clock.offset = EPOCH  # NTP answered
    drain(p)
    m = up.data()[0]
    mptest.eq(m["f"] & 2, 0, "no longer untimed")
    mptest.eq([g[1] for g in readings(m)], [EPOCH + 1000 + i for i in range(10)], "re-timed")
    mptest.eq(p.retimed, 10, "counted")


def test_untimed_stay_flagged_while_clock_unset():
    p, q, up, clock = make(synced=False)
    p._session_start()
    put(q, clock, 10, untimed=True)
    drain(p)
    m = up.data()[0]
    mptest.eq(m["f"] & 2, 2, "flagged untimed")
    mptest.eq(m["t"], 1000, "uptime ms, not epoch")


def test_ramqueue_semantics():
    clock = FakeClock()
    q = RamQueue(clock, capacity=4, slot=reading.SIZE)
    put(q, clock, 6)
    mptest.eq((q.depth(), q.drops, q.first_seq), (4, 2, 3), "drop oldest when full")
    mptest.eq([s for s, b, r, n in q.peek_from(1, 10)], [3, 4, 5, 6], "start clamped")
    mptest.eq([s for s, b, r, n in q.peek_from(7, 10)], [], "past the newest")
    q.ack(4)
    mptest.eq([s for s, b, r, n in q.peek(10)], [5, 6], "acked")
    q.ack(2)
    mptest.eq(q.depth(), 2, "old ack ignored")
    mptest.raises(ValueError, q.append, bytearray(reading.MAX_SIZE), reading.MAX_SIZE)


def test_ramqueue_append_and_ack_do_not_allocate():
    clock = FakeClock()
    q = RamQueue(clock, capacity=64, slot=reading.SIZE)
    reading.pack_int(REC, 1, 5, 6)
    for _ in range(100):  # through the wrap and the drop path
        mptest.no_alloc(q.append, REC, reading.SIZE)
    mptest.eq(q.drops, 36, "drops")
    mptest.eq((q.first_seq, q.depth()), (37, 64), "newest 64 kept")
    mptest.no_alloc(q.ack, 84)
    mptest.eq(q.depth(), 16, "acked")
    mptest.no_alloc(q.ack, 200)  # beyond the newest: ignored
    mptest.eq(q.depth(), 16, "ack past the newest ignored")


def _garbage_per_reading(first_seq, n=100, untimed=False):
    """(append, read-and-encode) bytes allocated per reading: RamQueue.append of prepared
    records, then Publisher.step until the queue is empty (peek, DataEncoder, publish)."""
    clock = FakeClock()
    q = RamQueue(clock, capacity=n, slot=reading.SIZE, first_seq=first_seq)
    up = FakeUplink()
    up.publish = lambda t, p, qos=1, retain=False: None  # keep nothing
    p = Publisher(q, up, clock, parse_mqtt({"host": "127.0.0.1", "linger_ms": 0,
                                            "replay_rate": 0, "ack": "broker"}), BIRTH)
    p._session_start()
    recs = []
    t0 = clock.uptime_ms() if untimed else clock.now_ms()
    fl = reading.FLAG_UNTIMED if untimed else 0
    for i in range(n):
        r = bytearray(reading.SIZE)
        if i % 2:
            reading.pack_float(r, 2, t0 + i * 100, 230.5, fl)
        else:
            reading.pack_int(r, 1, t0 + i * 100, 3000000000 + i * 7, fl)
        recs.append(r)
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        for r in recs:
            q.append(r, reading.SIZE)
        b = gc.mem_alloc()
        while p.step():
            pass
        c = gc.mem_alloc()
    finally:
        gc.enable()
    mptest.eq(q.depth(), 0, "all sent")
    mptest.eq(p.retimed, n if untimed else 0, "re-timed")
    return (b - a) / n, (c - b) / n


def test_garbage_per_reading_bound():
    # Measured (docs/uplink.md): per reading, the queue's (seq, boot, view, n) tuple and view
    # from peek; on 32-bit ports one long int more per seq of 2**30 and above, in the queue
    # and in the encoder. No timestamp, value or CBOR head makes heap objects.
    import sys
    wide = sys.maxsize < 2**32
    app, enc = _garbage_per_reading(1)
    mptest.eq(app, 0, "append, small seqs")
    mptest.true(enc <= (56 if wide else 110), "read+encode %.1f B/reading" % enc)
    app, enc = _garbage_per_reading(2**31 - 10)
    mptest.true(app <= (32 if wide else 0), "append, high seqs: %.1f B/reading" % app)
    mptest.true(enc <= (128 if wide else 110), "read+encode, high seqs %.1f B/reading" % enc)
    app, enc = _garbage_per_reading(1, untimed=True)  # re-timed on the way out
    mptest.true(enc <= (56 if wide else 110), "read+retime+encode %.1f B/reading" % enc)


def test_publisher_state_fields():
    p, q, up, clock = make()
    put(q, clock, 3)
    st = p.state_fields()
    mptest.eq((st["online"], st["boot"], st["queue_depth"], st["clock_set"]),
              (True, 1, 3, True), "state")
    mptest.eq(st["queue_corrupt"], 0, "no flash damage")
    up.refused_in = 3  # the uplink discarded three oversized ack/cmd messages
    mptest.eq(p.state_fields()["msgs_refused"], 3, "refused messages reported")


def test_state_carries_app_health_and_per_slave_errors():
    # what App.state() hands the publisher: the poller's per-slave stats among other keys
    health = {"free_heap": 5000, "reset_cause": "watchdog", "task_errors": 2,
              "sensor_errors": 7, "q_depth": 99, "not_a_field": 1,
              "slaves": {1: {"ok": 10, "errors": 3, "timeouts": 3},
                         7: {"ok": 0, "errors": 12, "timeouts": 12},
                         "codes": {"timeout": 15}, "cycles": 4}}
    p, q, up, clock = make()
    p.state_fn = lambda: health
    st = p.state_fields()
    mptest.eq(st["slave_errors"], {1: 3, 7: 12}, "per-slave failed transactions")
    mptest.eq((st["task_errors"], st["sensor_errors"], st["reset_cause"], st["free_heap"]),
              (2, 7, "watchdog", 5000), "health fields")
    mptest.true("q_depth" not in st and "not_a_field" not in st, "only state fields kept")
    p._publish_state()
    t, payload, qos, retain = up.sent[-1]
    mptest.eq((t, qos, retain), (up.t_state, 1, True), "retained QoS1 state")
    m = decode(payload)
    mptest.eq(m["slave_errors"], {1: 3, 7: 12}, "on the wire")
    mptest.eq((m["task_errors"], m["sensor_errors"]), (2, 7), "on the wire")


mptest.main(globals())
