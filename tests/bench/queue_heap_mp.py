# Smallest-heap workload of the flash queue (bench_queue.py runs it under shrinking heap caps,
# from .mpy as on a board): the agent's pattern on a file-backed emulated NOR flash (no
# image in the heap). 10,000 readings appended with group commits by count and by time,
# read back by peek_from in batches of 50 and acknowledged, the queue rebuilt from flash
# (a reboot) every 2,500 readings. Every value read back is checked; prints
# "QHEAP ok <n> <native|bytecode>" (which record codec the import could compile).
# argv: scratch folder, then "queue" (otlink's queue) or "littlefs" (the naive baseline: one
# littlefs file per 500 readings, append + flush per reading, the ack offset rewritten in its
# own file at each ack, segments deleted once acknowledged; same workload, same flash).
import gc
import sys

from otlink.core import reading
from queue_helpers import Clock, flash  # the firmware queue tests' clock and flash

N = 10000
SECTORS = 64  # 256 KiB: the naive files need room for the backlog (20 B per reading)
SEG = 500  # readings per littlefs segment file


def read_batch(q, nxt, want):
    """Read up to 50 readings from nxt, check their values, ack them: (nxt, want, count)."""
    last = 0
    n = 0
    for seq, _boot, r, k in q.peek_from(nxt, 50):
        v = reading.unpack(r, k)[4]
        if v != want:
            raise AssertionError("seq %d: value %d, want %d" % (seq, v, want))
        want += 7
        last = seq
        n += 1
    if n:
        q.ack(last)
        nxt = last + 1
    return nxt, want, n


class NaiveQueue:
    """The baseline: what a queue on littlefs files looks like written the obvious way."""

    def __init__(self, dev, mkfs=False):
        import vfs

        if mkfs:
            vfs.VfsLfs2.mkfs(dev)
        self.fs = vfs.VfsLfs2(dev)
        try:
            with self.fs.open("/ack", "rb") as f:
                self._ack = int.from_bytes(f.read(4), "little")
        except OSError:
            self._ack = 0
        segs = [int(name[1:]) for name, *_ in self.fs.ilistdir("/") if name[0] == "s"]
        last = max(segs) if segs else 0
        size = self.fs.stat("/s%d" % last)[6] if segs else 0
        self._wseq = last * SEG + size // reading.SIZE + 1  # next sequence number to write
        self._f = None
        self._buf = bytearray(50 * reading.SIZE)

    def append(self, rec, n):
        seq = self._wseq
        seg = (seq - 1) // SEG
        if self._f is None or (seq - 1) % SEG == 0:
            if self._f:
                self._f.close()
            self._f = self.fs.open("/s%d" % seg, "ab")
        self._f.write(memoryview(rec)[0:n])
        self._f.flush()  # on flash now: the durability of each reading
        self._wseq += 1
        return seq

    def tick(self, now):
        pass

    def commit(self):
        pass

    def peek_from(self, nxt, max_n):
        nxt = max(nxt, self._ack + 1)
        while max_n > 0 and nxt < self._wseq:
            seg, i = (nxt - 1) // SEG, (nxt - 1) % SEG
            k = min(max_n, SEG - i, self._wseq - nxt)
            mv = memoryview(self._buf)[0:k * reading.SIZE]
            with self.fs.open("/s%d" % seg, "rb") as f:
                f.seek(i * reading.SIZE)
                f.readinto(mv)
            for j in range(k):
                yield nxt + j, 1, mv[j * reading.SIZE:(j + 1) * reading.SIZE], reading.SIZE
            nxt += k
            max_n -= k

    def ack(self, seq):
        with self.fs.open("/ack", "wb") as f:
            f.write(seq.to_bytes(4, "little"))
        for seg in range(self._ack // SEG, seq // SEG):  # every reading of seg acknowledged
            if seg != (self._wseq - 1) // SEG:
                self.fs.remove("/s%d" % seg)
        self._ack = seq

    def close(self):
        if self._f:
            self._f.close()
            self._f = None


def main():
    naive = sys.argv[2] == "littlefs"
    nor = flash("qheap.img", sectors=SECTORS)  # in the scratch folder, argv[1]
    dev = nor.region(0, nor.size)
    clock = Clock()
    rec = bytearray(reading.MAX_SIZE)
    gc.collect()

    def mount(first=False):
        if naive:
            return NaiveQueue(dev, mkfs=first)
        from otlink.core.queue import Queue  # imported only here: not in the baseline's heap

        return Queue(dev, clock, commit_count=64, commit_ms=1000)

    q = mount(True)
    gc.collect()
    print("QHEAP code+state", gc.mem_alloc())  # modules imported, queue mounted: the floor's base
    nxt = 1  # next sequence number to read
    want = 0  # value the next reading read back must carry
    for i in range(N):
        n = reading.pack_int(rec, 1 + i % 8, clock.now_ms(), i * 7, 0)
        q.append(rec, n)
        clock.t += 10
        q.tick(clock.ticks_ms())
        if i % 100 == 99:
            q.commit()
            nxt, want, _ = read_batch(q, nxt, want)
        if i % 2500 == 2499:  # reboot: a new Queue recovers from flash
            if naive:
                q.close()
            q = None
            gc.collect()
            q = mount()
    q.commit()
    got = 1
    while got:
        nxt, want, got = read_batch(q, nxt, want)
    if want != N * 7:
        raise AssertionError("read back %d readings of %d" % (want // 7, N))
    nor.close()
    if naive:
        print("QHEAP ok", N, "littlefs")
    else:
        from otlink.core.queue import codec as queue_codec
        print("QHEAP ok", N, "native" if queue_codec.NATIVE else "bytecode")


main()
