# heapsize: 90K
# The store-and-forward flash queue (issue 4), on a file-backed
# emulated NOR flash (no flash image in the heap): append/peek/ack, group commit by count and
# time, boot counter and sequence numbers across reboots, capacity policies, corruption.
import mptest
from otlink.core import reading
import otlink.hal.unix.norflash  # noqa: F401 (compiled before the queue: smaller peak)
from otlink.core.queue import Queue
from otlink.core.queue.fmt import sdiff, M32
from queue_helpers import T0, Clock, flash

BUF = bytearray(reading.MAX_SIZE)


def put(q, i):
    q.append(BUF, reading.pack_int(BUF, i % 10, T0 + i * 100, i))
    return q.last_seq


def values(q, n=100000):
    return [reading.unpack(rec, k)[4] for seq, boot, rec, k in q.peek(n)]



def test_stats_of_a_record_that_is_no_reading():
    # the queue stores opaque records: stats() must not fail on one that is not a reading
    nor = flash("qraw")
    q = Queue(nor.region(0, nor.size), Clock(), commit_count=1)
    raw = bytearray(b"\xff" * reading.SIZE)  # kind 0xFF: no reading kind
    q.append(raw, len(raw))
    st = q.stats()
    mptest.eq((st["depth"], st["oldest_t_ms"]), (1, None), "depth counted, no time")

def test_append_commit_peek_ack_reboot():
    nor = flash("q1")
    dev = nor.region(0, nor.size)
    c = Clock()
    q = Queue(dev, c, commit_count=8, commit_ms=1000)
    mptest.eq(q.boot, 1, "first boot")
    seqs = [put(q, i) for i in range(20)]
    mptest.eq(seqs, list(range(1, 21)), "sequence numbers")
    mptest.eq(q.staged, 4, "two groups of 8 committed by count, 4 staged")
    mptest.eq(values(q), list(range(16)), "peek shows committed readings only")
    c.t = 999
    q.tick(c.t)
    mptest.eq(q.staged, 4, "not yet: the window is 1000 ms")
    c.t = 1000
    q.tick(c.t)
    mptest.eq(q.staged, 0, "time window commit")
    mptest.eq([s for s, b, r, n in q.peek(3)], [1, 2, 3], "peek is idempotent and bounded")
    q.ack(5)
    mptest.eq(values(q, 2), [5, 6], "after ack 5")
    mptest.raises(ValueError, q.ack, 21)  # nothing beyond the last committed reading
    put(q, 20)  # staged, lost at the reboot below
    q2 = Queue(dev, c)
    mptest.eq(q2.boot, 2, "boot counter bumped and persisted")
    mptest.eq(values(q2), list(range(5, 20)), "resumes at the first unacknowledged")
    mptest.eq([b for s, b, r, n in q2.peek(1)], [1], "boot of the stored readings")
    mptest.eq(put(q2, 21), 21, "seq continues after the last committed (20 was lost)")
    q2.commit()
    st = q2.stats()
    mptest.eq(st["depth"], 16, "depth")
    mptest.eq(st["oldest_t_ms"], T0 + 500, "oldest reading time")
    mptest.eq(st["boot"], 2, "stats boot")
    mptest.eq(st["drops"], 0, "drops")
    nor.close()


def test_append_does_not_allocate():
    nor = flash("q2")
    q = Queue(nor.region(0, nor.size), Clock(), commit_count=200, commit_ms=60000)
    n = reading.pack_int(BUF, 7, T0, 123456)
    q.append(BUF, n)

    def many():
        for _ in range(10):
            q.append(BUF, n)
    mptest.no_alloc(many)
    nor.close()


def test_append_does_not_allocate_past_2_30():
    # sequence numbers >= 2**30 are heap ints on a 32-bit port: append must not touch them
    nor = flash("q2b")
    q = Queue(nor.region(0, nor.size), Clock(), commit_count=200, commit_ms=60000)
    q._wseq = 0xC0000000  # white-box: as if 3.2e9 readings had gone by
    q._ack = 0xBFFFFFFF
    n = reading.pack_int(BUF, 7, T0, 123456)
    q.append(BUF, n)

    def many():
        for _ in range(10):
            q.append(BUF, n)
    mptest.no_alloc(many)
    mptest.eq(q.last_seq, 0xC000000A, "last_seq")
    nor.close()


class _NullDev:
    """A blank 8-sector region that keeps nothing: its writes cost no heap, so what a commit
    allocates is the queue's own."""

    def readblocks(self, b, buf, off=0):
        for i in range(len(buf)):
            buf[i] = 0xFF

    def writeblocks(self, b, buf, off=0):
        pass

    def ioctl(self, op, arg):
        return 8 if op == 4 else 4096 if op == 5 else 0


def _allocated(fn, arg=None):
    import gc
    import micropython

    gc.collect()
    t = micropython.mem_total()
    if arg is None:
        fn()
    else:
        fn(arg)
    return micropython.mem_total() - t


def test_commit_and_ack_allocation_bounds():
    # A commit or an ack allocates a few small objects: memoryview slices for the write, the
    # CRC (a heap int on 32-bit ports when >= 2**30) and, past seq 2**30, the seq arithmetic.
    # Measured (bytes, 32-bit / 64-bit): commit 256 / 256, ack 80 / 80; with seqs >= 2**30
    # commit 398 / 256, ack 304 / 80. Bound: 512 B each, whatever the seq.
    import micropython

    if not hasattr(micropython, "mem_total"):
        return
    for base in (1, 0x7FFFFF00, 0xFFFFFF00):
        q = Queue(_NullDev(), Clock(), commit_count=200, commit_ms=60000)
        q._wseq = base
        q._ack = base - 1
        n = reading.pack_int(BUF, 7, T0, 123456)
        q.append(BUF, n)
        q.commit()
        q.append(BUF, n)
        c = _allocated(q.commit)
        q.append(BUF, n)
        q.commit()
        a = _allocated(q.ack, q.last_seq)
        mptest.true(c <= 512, "commit at seq 0x%x allocated %d B" % (base, c))
        mptest.true(a <= 512, "ack at seq 0x%x allocated %d B" % (base, a))


def test_ack_rides_in_the_staged_group():
    nor = flash("q9")
    dev = nor.region(0, nor.size)
    c = Clock()
    q = Queue(dev, c, commit_count=8, commit_ms=1000)
    for i in range(8):
        put(q, i)  # one group of 8, committed by count
    put(q, 8)  # staged
    ops = nor.ops
    q.ack(4)
    mptest.eq(nor.ops, ops, "no ack entry while readings are staged")
    mptest.true(q.ack_pending, "the ack waits for the staged group")
    q2 = Queue(dev, c)  # power cut before the commit: the ack is re-delivered, nothing lost
    mptest.eq(values(q2), list(range(8)), "readings of an ack not yet persisted come back")
    q.commit()  # (the first queue goes on: its commit carries the ack)
    mptest.eq(q.ack_pending, False, "persisted with the group")
    q3 = Queue(dev, c)
    mptest.eq(values(q3), [4, 5, 6, 7, 8], "ack of seq 4 persisted by the group header")
    q3.ack(6)  # nothing staged: an ack entry at once
    mptest.eq(q3.ack_pending, False, "written at once")
    mptest.eq(values(Queue(dev, c)), [6, 7, 8], "after reboot")
    nor.close()


def test_reads_groups_of_earlier_images():
    # a 'G' group (whole boot counter in its header, no ack) as earlier firmware wrote it
    from binascii import crc32
    from otlink.core.queue.fmt import SHDR, put32

    nor = flash("q10")
    dev = nor.region(0, nor.size)
    c = Clock()
    q = Queue(dev, c, commit_count=4)
    for i in range(4):
        put(q, i)
    g = bytearray(512)
    dev.readblocks(0, g, SHDR)
    size = 16 + (g[2] | (g[3] & 0x7F) << 8)
    g[0] = 0x47
    put32(g, 8, 7)  # boot 7
    put32(g, 12, crc32(memoryview(g)[16:size], crc32(memoryview(g)[0:12])))
    hdr = bytearray(SHDR)
    dev.readblocks(0, hdr, 0)
    dev.ioctl(6, 0)
    dev.writeblocks(0, hdr, 0)
    dev.writeblocks(0, memoryview(g)[0:size], SHDR)
    q = Queue(dev, c)
    got = [(s, b) for s, b, r, n in q.peek(10)]
    mptest.eq(got, [(1, 7), (2, 7), (3, 7), (4, 7)], "seq and boot of a 'G' group")
    mptest.eq(q.boot, 8, "boot counter follows the group's")
    nor.close()


def test_text_and_float_round_trip():
    nor = flash("q3")
    q = Queue(nor.region(0, nor.size), Clock())
    b = bytearray(reading.MAX_SIZE)
    recs = []
    for i in range(30):
        if i % 3 == 0:
            n = reading.pack_text(b, i, T0 + i, b"x" * (i * 2 % 65))
        elif i % 3 == 1:
            n = reading.pack_float(b, i, T0 + i, i / 7)
        else:
            n = reading.pack_err(b, i, T0, -i)
        recs.append(bytes(b[0:n]))
        q.append(b, n)
    q.commit()
    got = [bytes(r[0:n]) for s, bt, r, n in q.peek(100)]
    mptest.eq(got, recs, "records byte for byte")
    nor.close()


def test_bad_arguments_are_named():
    nor = flash("q4")
    dev = nor.region(0, nor.size)
    e = mptest.raises(ValueError, Queue, dev, Clock(), policy="drop_random")
    mptest.true("policy" in str(e), str(e))
    e = mptest.raises(ValueError, Queue, dev, Clock(), capacity=4096)
    mptest.true("capacity" in str(e), str(e))
    q = Queue(dev, Clock())
    e = mptest.raises(ValueError, q.append, BUF, 90)
    mptest.true("length" in str(e), str(e))
    # n past the end of the buffer: refused (the native encoder would read past it)
    e = mptest.raises(ValueError, q.append, bytearray(12), 20)
    mptest.true("len(rec) 12" in str(e), str(e))
    mptest.eq(q.staged, 0, "nothing staged by refused appends")
    nor.close()


def test_serial_arithmetic_wraps():
    mptest.eq(sdiff(1, M32), 2, "1 is after 0xffffffff")
    mptest.eq(sdiff(M32, 1), -2, "0xffffffff is before 1")
    nor = flash("q8")
    dev = nor.region(0, nor.size)
    q = Queue(dev, Clock(), commit_count=4)
    q._wseq = M32 - 5  # as if 4 billion readings had gone by (white-box: no faster way)
    q._ack = M32 - 6
    seqs = [put(q, i) for i in range(12)]
    mptest.eq(seqs[6], 0, "wraps to 0")
    q.ack(seqs[7])
    mptest.eq(values(q), [8, 9, 10, 11], "ack across the wrap")
    q2 = Queue(dev, Clock())
    mptest.eq(values(q2), [8, 9, 10, 11], "after reboot")
    mptest.eq(put(q2, 12), 6, "next seq after the wrap")
    nor.close()


mptest.main(globals())
