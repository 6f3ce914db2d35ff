# heapsize: 80K
# Queue.peek_from(start_seq, max_n) seeks instead of rescanning (the per-sector first-seq
# mirror picks the sector, a read hint the group); after drop_oldest drops and a damaged
# group it returns what peek() returns from each start.
# Results across sectors, wraps, acks and recovery: test_queue_peek.py.
import gc

import mptest
import otlink.hal.unix.norflash  # noqa: F401 (compiled before the queue: smaller peak)
from otlink.core.queue import Queue
from otlink.core.queue.fmt import M32
from otlink.core.reading import unpack
from queue_helpers import Clock, flash, put


class Counting:
    """A region that counts the bytes read through it."""

    def __init__(self, dev):
        self.dev = dev
        self.read = 0

    def readblocks(self, n, buf, off=0):
        self.read += len(buf)
        self.dev.readblocks(n, buf, off)

    def writeblocks(self, n, buf, off=0):
        self.dev.writeblocks(n, buf, off)

    def ioctl(self, op, arg):
        return self.dev.ioctl(op, arg)


def test_seeks_instead_of_rescanning():
    nor = flash("pf4", 8)
    cdev = Counting(nor.region(0, nor.size))
    q = Queue(cdev, Clock(), commit_count=10)
    for i in range(1000):
        put(q, i)
    q.commit()
    first = 1
    cdev.read = 0
    n_all = 0
    for _s, _b, _r, _n in q.peek(100000):
        n_all += 1
    full = cdev.read
    mptest.eq(n_all, 1000, "backlog")
    cdev.read = 0
    got = [s for s, _b, _r, _n in q.peek_from(first + 900, 10)]
    mptest.eq(got, list(range(first + 900, first + 910)), "deep start")
    deep = cdev.read
    mptest.true(deep * 3 < full, "deep start read %d bytes, full scan %d" % (deep, full))
    # a consumer reading on from its last batch: about one group per call, not the sector
    cdev.read = 0
    start = first + 910
    for _ in range(8):
        got = [s for s, _b, _r, _n in q.peek_from(start, 10)]
        mptest.eq(got[0], start, "batch start")
        start = got[-1] + 1
    mptest.true(cdev.read < 8 * 700, "8 follow-on batches read %d bytes" % cdev.read)
    nor.close()


def same_as_peek(q, what):
    """For every queued seq: peek_from(seq, 6) == the next 6 of peek(). Returns the count."""
    gc.collect()
    s0 = None
    have = bytearray((q.stats()["next_seq"] - q.stats()["acked"]) & M32)  # 1: seq queued
    for s, _b, r, m in q.peek(100000):
        if s0 is None:
            s0 = s
        have[(s - s0) & M32] = 1
        mptest.eq(unpack(r, m)[0], (s - 1) & 0xFFFF, what + ": record of seq")
    n = 0
    for k in range(len(have)):
        if not have[k]:
            continue
        n += 1
        j = k
        got = 0
        for s, _b, _r, _m in q.peek_from(s0 + k, 6):
            while not have[j]:
                j += 1
            if s != s0 + j:
                raise mptest.Fail("%s: from +%d, item %d is seq %d" % (what, k, got, s))
            j += 1
            got += 1
        want = 0
        j = k
        while want < 6 and j < len(have):
            want += have[j]
            j += 1
        mptest.eq(got, want, what + ": count")
    return n, s0


def test_dropped_and_damaged_are_skipped():
    nor = flash("pf3", 4)
    dev = nor.region(0, nor.size)
    q = Queue(dev, Clock(), commit_count=10)
    for i in range(1500):  # more than 4 sectors: drop_oldest drops the oldest sector(s)
        put(q, i)
    q.commit()
    st = q.stats()
    mptest.true(st["drops"] > 0, "drops happened")
    n0, s0 = same_as_peek(q, "after drops")
    mptest.eq(s0, (st["acked"] + 1) & M32, "oldest after drops")
    mptest.eq([s for s, _b, _r, _n in q.peek_from(1, 2)], [s0, s0 + 1], "clamped")
    # clear bits in a group in the middle of the oldest full sector: recovery skips it
    s = (q._head + 2) % 4
    b = bytearray(1)
    nor.read(s * 4096 + 1500, b)
    nor.program(s * 4096 + 1500, bytes([b[0] & 0x0F]) if b[0] & 0xF0 else b"\x00")
    q2 = Queue(dev, Clock(), commit_count=10)
    n, _s0 = same_as_peek(q2, "after damage")
    mptest.true(n < n0, "damaged readings skipped")
    mptest.eq(n + q2.stats()["corrupt_skipped"], n0, "counted")
    nor.close()


mptest.main(globals())
