# heapsize: 72K
# Payload encoder tests (docs/payload.md): data batches, birth/state/ack, topics, no allocation.
import mptest
from otlink.core import reading
from otlink.core.payload import (DataEncoder, decode_ack, encode_ack, encode_birth,
                                 encode_state)

T0 = 1795000000000  # ms since the epoch (2026-11-17)


def hx(b, n=None):
    if n is None:
        n = len(b)
    return "".join("%02x" % b[i] for i in range(n))


def rec_int(pid, t, v, flags=0):
    r = bytearray(reading.SIZE)
    reading.pack_int(r, pid, t, v, flags)
    return r


def rec_float(pid, t, v, flags=0):
    r = bytearray(reading.SIZE)
    reading.pack_float(r, pid, t, v, flags)
    return r


def test_known_batch_bytes():
    e = DataEncoder(256)
    e.start(1, False)
    mptest.true(e.add(5, rec_int(1, T0, 230), 20), "add 1")
    mptest.true(e.add(6, rec_float(2, T0, 1.5), 20), "add 2")
    mptest.true(e.add(7, rec_int(1, T0 + 1000, 231), 20), "add 3")
    mv = e.finish()
    t = "1b%016x" % T0
    want = ("a7" "617601" "616201" "617305" "616507" "616600" "6174" + t +
            "6172" "87" "01" "18e6" "02" "f93e00" "3903e7" "01" "01")
    mptest.eq(hx(mv), want, "batch bytes")
    mptest.eq((e.first_seq, e.last_seq, e.count), (5, 7, 3), "range")


def test_flags_and_text_and_errors():
    e = DataEncoder(256)
    e.start(2, True)
    r = bytearray(reading.MAX_SIZE)
    n = reading.pack_text(r, 9, 5000, b"ok", reading.FLAG_UNTIMED)
    mptest.true(e.add(0, r, n), "text")
    mptest.true(e.add(1, rec_int(3, 5000, 0x84, reading.FLAG_UNTIMED), 20), "int")
    er = bytearray(reading.SIZE)
    reading.pack_err(er, 4, 5000, 0x82, reading.FLAG_UNTIMED)
    mptest.true(e.add(2, er, 20), "err")
    reading.pack_err(er, 4, 5000, 1, reading.FLAG_UNTIMED)
    mptest.true(e.add(3, er, 20), "err 1")
    mv = e.finish()
    s = hx(mv)
    mptest.true("616603" in s, "flags historical|untimed: " + s)
    mptest.true(s.endswith("88" "09" "626f6b" "03" "1884" "04" "f882" "04" "e1"), s)
    reading.pack_err(er, 4, 5000, 21)
    e.start(2)
    mptest.raises(ValueError, e.add, 0, er, 20)  # 21 would decode as true


def test_refusals_write_nothing():
    e = DataEncoder(128, max_count=3, int_points=2)
    e.start(1)
    mptest.true(e.add(10, rec_int(1, T0, 1), 20), "first")
    pos = e._w.pos
    mptest.eq(e.add(12, rec_int(1, T0, 1), 20), False, "seq gap")
    mptest.eq(e.add(11, rec_int(1, T0 - 1, 1), 20), False, "time backwards")
    mptest.eq(e.add(11, rec_int(1, T0, 1, reading.FLAG_UNTIMED), 20), False, "untimed mix")
    mptest.true(e.add(11, rec_int(2, T0, 1), 20), "second point")
    mptest.eq(e.add(12, rec_int(3, T0, 1), 20), False, "integer point table full")
    mptest.true(e.add(12, rec_float(3, T0, 1.0), 20), "a float needs no slot")
    mptest.eq(e.add(13, rec_float(3, T0, 1.0), 20), False, "max_count")
    mptest.eq((e.count, e.last_seq), (3, 12), "count")
    mptest.true(e._w.pos > pos, "progress")
    e.start(1)
    mptest.raises(ValueError, e.finish)
    small = DataEncoder(69)
    small.start(1)
    i = 0
    while small.add(i, rec_float(1, T0 + i, 0.1), 20):
        i += 1
    mptest.true(small._w.pos <= 69, "never past the buffer")
    mptest.true(i >= 1, "at least one reading")


def test_seq_wraps():
    e = DataEncoder(128)
    e.start(3)
    mptest.true(e.add(0xFFFFFFFF, rec_int(1, T0, 1), 20), "last u32")
    mptest.true(e.add(0, rec_int(1, T0, 2), 20), "wraps to 0")
    mptest.eq((e.first_seq, e.last_seq), (0xFFFFFFFF, 0), "range")


def _fill(e, recs):
    e.start(7, False)
    i = 0
    for r in recs:
        e.add(100 + i, r, len(r))
        i += 1
    return e.count


def test_add_does_not_allocate():
    recs = []
    for k in range(10):
        t = T0 + k * 1000
        recs.append(rec_float(1, t, 230.1 + k))
        recs.append(rec_int(4, t, 1234567 + k))
        recs.append(rec_int(5, t, -5 - k))
        recs.append(rec_float(6, t, 21.5))
        recs.append(rec_int(7, t + 1, 0x7FFFFFFFFFFF))
    er = bytearray(reading.SIZE)
    reading.pack_err(er, 9, T0 + 20000, 0x84)
    tx = bytearray(reading.HEADER + 5)
    reading.pack_text(tx, 10, T0 + 20000, b"fault")
    recs.append(er)
    recs.append(tx)
    e = DataEncoder(1024)
    n = mptest.no_alloc(_fill, e, recs)
    mptest.eq(n, 52, "all added")


# Integer values across the +-2**29 line (byte-wise differences beyond it), sequence numbers
# above 2**31 and times 10**9 ms apart: bytes checked with cbor2 on the host.
WIDE = [2**29 - 1, 2**29, -2**29, -2**29 - 1, 2**63 - 1, -2**63, 5, 2**63 - 1, 2**30,
        3000000000, 3000000007, -1]
WIDE_HEX = ("a761760161620161731a7ffffffd61651a8000000861660061741b000001a1ee565e006172981a071a1fff"
            "ffff0701073a3fffffff07203903e7071b8000000020000000073bfffffffffffffffe071b800000000000"
            "0005071b7ffffffffffffffa3a3b9ac9ff073b7fffffffbffffffe071a72d05e000707073ab2d05e07")


def _wide_recs():
    recs = []
    for i in range(len(WIDE)):
        t = T0 + (0 if i < 4 else 1000 if i < 8 else 1000 + 1000000000)
        recs.append(rec_int(7, t, WIDE[i]))
    return recs


def _add_all(e, recs, seq):
    for r in recs:
        if not e.add(seq, r, 20):
            return False
        seq += 1
    return True


def _add_seqs(e, recs, seqs):
    i = 0
    while i < len(recs):
        if not e.add(seqs[i], recs[i], 20):
            return False
        i += 1
    return True


def test_wide_values_exact():
    e = DataEncoder(256)
    e.start(1)
    mptest.true(_add_all(e, _wide_recs(), 2**31 - 3), "all in one batch")
    mptest.eq(hx(e.finish()), WIDE_HEX, "batch bytes")


def test_wide_values_and_times_do_not_allocate():
    recs = _wide_recs()
    e = DataEncoder(256)
    e.start(1)
    mptest.true(mptest.no_alloc(_add_all, e, recs, 100), "added under heap_lock")
    mptest.eq(e.count, len(WIDE), "count")


def test_time_gap_and_range():
    e = DataEncoder(256)
    e.start(1)
    mptest.true(e.add(1, rec_int(1, T0, 1), 20), "first")
    mptest.eq(e.add(2, rec_int(1, T0 + 2**30, 1), 20), False, "12 days later: a new batch")
    mptest.eq(e.add(2, rec_int(1, T0 - 1, 1), 20), False, "backwards: a new batch")
    e.start(1)
    err = mptest.raises(ValueError, e.add, 1, rec_int(1, 2**54, 1), 20)
    mptest.true("time" in str(err), "names the time")
    mptest.true(e.add(1, rec_int(1, -2**53, 1), 20), "negative times within range")


def test_high_sequences_allocation_bound():
    # Sequences of 2**30 and more are heap ints on 32-bit ports (the queue hands them over as
    # such): the contiguity check makes one more per reading. Measured bound, 0 on 64-bit.
    import gc
    import sys
    recs = []
    seqs = []
    for i in range(40):
        recs.append(rec_int(1, T0 + i, i))
        seqs.append(2**31 + i)  # made before the measurement, as the queue makes them
    e = DataEncoder(1024)
    e.start(1)
    gc.collect()
    a = gc.mem_alloc()
    ok = _add_seqs(e, recs, seqs)
    used = gc.mem_alloc() - a
    mptest.true(ok, "added")
    bound = 0 if sys.maxsize > 2**32 else 40 * 32  # one long int (32 B) per reading
    mptest.true(used <= bound, "allocated %d B for 40 readings, bound %d" % (used, bound))


_TEXT = b"x" * 80  # longer than MAX_TEXT: truncated


def _pack_all(r, t):
    reading.pack_int(r, 1, t, -(2 ** 40))
    reading.pack_float(r, 2, t, 21.5)
    reading.pack_err(r, 3, t, 0x84)
    reading.pack_text(r, 4, t, b"fault")
    return reading.pack_text(r, 4, t, _TEXT)


def test_reading_pack_does_not_allocate():
    r = bytearray(reading.MAX_SIZE)
    n = mptest.no_alloc(_pack_all, r, T0)  # T0 is a heap int on 32-bit ports: passed in
    mptest.eq(n, reading.MAX_SIZE, "text truncated to MAX_TEXT")
    mptest.eq(reading.unpack(r, n)[3:], (T0, b"x" * reading.MAX_TEXT), "time and text")


def test_birth_state_ack():
    buf = bytearray(256)
    pts = [{"id": 1, "name": "voltage", "unit": "V", "type": "f32", "scale": 1, "offset": 0,
            "source": "mb:1:h:0"}]
    n = encode_birth(buf, "n1", "0.1.0", "ab12", 4, pts)
    mptest.true(hx(buf, n).startswith("a661760164"), hx(buf, n))
    mptest.raises(ValueError, encode_birth, buf, "n1", "0.1.0", "ab", 4, [{"id": -1}])
    n = encode_state(buf, {"queue_depth": 3, "slave_errors": {1: 2}, "online": True})
    mptest.eq(hx(buf, n), "a46176016b71756575655f6465707468036c736c6176655f6572726f7273"
              "a10102666f6e6c696e65f5", "state")
    mptest.raises(ValueError, encode_state, buf, {"queue_dpeth": 3})
    mptest.raises(ValueError, encode_state, buf, {"drops": "3"})
    n = encode_ack(buf, 7, 0xFFFFFFFF)
    mptest.eq(decode_ack(buf[:n]), (7, 0xFFFFFFFF), "ack round trip")
    for bad in (b"", b"\xa2\x61v\x01\x61b\x07", b"\xa3\x61v\x02\x61b\x07\x61s\x01",
                b"\xa2\x61v\x01\x61b\x07\x00", b"\x83\x01\x02\x03"):
        mptest.raises(ValueError, decode_ack, bad)


mptest.main(globals())
