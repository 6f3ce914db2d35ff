# heapsize: 92K
# Queue.peek_from(start_seq, max_n) (issue 4 follow-up): reading committed, unacknowledged
# readings from a given sequence number, as the publisher does to replay backlog beside live
# data with several batches in flight. Checked against peek() across sector boundaries, ring
# and serial-number wraps, after acks, after recovery, with a start before the oldest
# (clamped) or after the newest (empty), and no more allocation than peek(). Seeking, drops
# and damage: test_queue_peek_seek.py.
import gc
from array import array

import micropython

import mptest
import otlink.hal.unix.norflash  # noqa: F401 (compiled before the queue: smaller peak)
from otlink.core.queue import Queue
from otlink.core.queue.fmt import M32, sdiff, wrap
from otlink.core.reading import unpack
from queue_helpers import Clock, flash, put, value


class Ref:
    """What peek() returns: the reading indexes in order (2 bytes each, to keep the heap small).

    Readings are appended without loss in these tests, so seq = index + a constant.
    """

    def __init__(self, q):
        gc.collect()
        self.idx = array("H")
        self.off = None
        self.boot = q.boot - 1 if q.boot > 1 else 1
        for s, b, r, n in q.peek(100000):
            i = self.check(s, b, r, n, "peek")
            if self.off is None:
                self.off = (s - i) & M32
            elif s != self.seq(len(self.idx), i):
                raise mptest.Fail("peek: seq %d for reading %d" % (s, i))
            self.idx.append(i)

    def __len__(self):
        return len(self.idx)

    def seq(self, k, i=None):
        return ((self.idx[k] if i is None else i) + self.off) & M32

    def check(self, s, b, r, n, what):
        u = unpack(r, n)
        if b != self.boot or u[4] != value(u[0]):
            raise mptest.Fail("%s: seq %d garbled (boot %d, pid %d)" % (what, s, b, u[0]))
        return u[0]

    def same(self, gen, k, span, what):
        """gen yields exactly the references k..k+span-1 (clipped at the end)."""
        j = k
        end = min(len(self.idx), k + span)
        for s, b, r, n in gen:
            if j >= end:
                raise mptest.Fail("%s: extra reading seq %d" % (what, s))
            i = self.check(s, b, r, n, what)
            if i != self.idx[j] or s != self.seq(j):
                raise mptest.Fail("%s: got seq %d #%d, want seq %d #%d"
                                  % (what, s, i, self.seq(j), self.idx[j]))
            j += 1
        if j != end:
            raise mptest.Fail("%s: %d readings, want %d" % (what, j - k, end - k))


def check_all_starts(q, what, span=20):
    """peek_from(start, span) == the matching slice of peek() for every start."""
    ref = Ref(q)
    for k in range(len(ref)):
        ref.same(q.peek_from(ref.seq(k), span), k, span, what)
    n = len(ref)
    first = ref.seq(0)
    last = ref.seq(n - 1)
    ref.same(q.peek_from((first - 5) & M32, 3), 0, 3, what + ": clamped start")
    ref.same(q.peek_from((first - 0x7FFFFFFF) & M32, 3), 0, 3, what + ": far before")
    ref.same(q.peek_from((last + 1) & M32, 5), n, 5, what + ": start after newest")
    ref.same(q.peek_from(last, 5), n - 1, 5, what + ": start at newest")
    ref.same(q.peek_from(first, 0), 0, 0, what + ": max_n 0")
    return ref


def test_across_sectors_acks_and_recovery():
    nor = flash("pf1", 8)
    dev = nor.region(0, nor.size)
    c = Clock()
    q = Queue(dev, c, commit_count=10)
    for i in range(1000):  # ~5 sectors of backlog
        put(q, i)
    q.commit()
    ref = check_all_starts(q, "backlog")
    mptest.eq(len(ref), 1000, "backlog size")
    mptest.true(q.stats()["bytes_used"] > 4 * 4096, "backlog spans sectors")
    q.ack(ref.seq(437))
    ref = check_all_starts(q, "after ack")
    mptest.eq(ref.idx[0], 438, "first after ack")
    # staged readings are not visible
    put(q, 1000)
    ref.same(q.peek_from(ref.seq(len(ref) - 1) + 1, 5), len(ref), 5, "staged not returned")
    q2 = Queue(dev, c, commit_count=10)
    ref2 = check_all_starts(q2, "after recovery")
    mptest.true(ref2.off == ref.off and ref2.idx == ref.idx, "same readings after reboot")
    nor.close()


def test_ring_and_serial_wrap():
    nor = flash("pf2", 4)
    dev = nor.region(0, nor.size)
    q = Queue(dev, Clock(), commit_count=7)
    q._wseq = (M32 - 300) & M32  # white-box: as if 4 billion readings had gone by
    q._ack = (M32 - 301) & M32
    i = 0
    for rnd in range(6):  # the 4-sector ring wraps several times
        for _ in range(300):
            put(q, i)
            i += 1
        q.commit()
        ref = Ref(q)
        mptest.true(len(ref) > 0, "backlog in round %d" % rnd)
        q.ack(ref.seq(len(ref) // 2))
        ref = None
    mptest.eq(q.stats()["drops"], 0, "no drops")
    ref = check_all_starts(q, "after wraps")
    mptest.true(sdiff(ref.seq(0), M32) > 0, "sequence numbers wrapped past 0")
    nor.close()


def test_allocation_like_peek():
    nor = flash("pf5", 4)
    q = Queue(nor.region(0, nor.size), Clock(), commit_count=10)
    for i in range(300):
        put(q, i)
    q.commit()

    def drain(gen):
        k = 0
        for _s, _b, _r, _n in gen:
            k += 1
        return k

    gc.collect()
    a = micropython.mem_total() if hasattr(micropython, "mem_total") else 0
    drain(q.peek(50))
    peek_bytes = (micropython.mem_total() - a) if a else 0
    q._h_s = -1  # no hint: the same starting point as peek
    a = micropython.mem_total() if a else 0
    drain(q.peek_from(1, 50))
    pf_bytes = (micropython.mem_total() - a) if a else 0
    mptest.true(pf_bytes <= peek_bytes + 32,
                "peek_from allocated %d B, peek %d B" % (pf_bytes, peek_bytes))
    nor.close()


def test_serial_arithmetic_does_not_allocate():
    # operands below 2**30 are small ints on the 32-bit build: sdiff and wrap build no heap
    # int, whichever way the difference goes (a `-0x80000000` bound held in a global and
    # negated at each call allocated on every call where a < b)
    for a, b, d in ((5, 10, -5), (10, 5, 5), (0, 0, 0), (0x3FFFFFFF, 0, 0x3FFFFFFF),
                    (0, 0x3FFFFFFF, -0x3FFFFFFF)):
        mptest.eq(mptest.no_alloc(sdiff, a, b), d, "sdiff(%d, %d)" % (a, b))
    mptest.eq(mptest.no_alloc(wrap, 12), 12, "wrap")


mptest.main(globals())
