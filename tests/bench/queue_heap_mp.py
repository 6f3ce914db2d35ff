# Smallest-heap workload of the flash queue (bench_queue.py runs it under shrinking heap caps,
# from .mpy as on a board): the agent's pattern on a file-backed emulated NOR flash (no
# image in the heap). 10,000 readings appended with group commits by count and by time,
# read back by peek_from in batches of 50 and acknowledged, the queue rebuilt from flash
# (a reboot) every 2,500 readings. Every value read back is checked; prints
# "QHEAP ok <n> <native|bytecode>" (which record codec the import could compile).
# argv: scratch folder.
import gc

from otlink.core import reading
from otlink.core.queue import Queue
from queue_helpers import Clock, flash  # the firmware queue tests' clock and flash

N = 10000


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


def main():
    nor = flash("qheap.img", sectors=16)  # in the scratch folder, argv[1]
    dev = nor.region(0, nor.size)
    clock = Clock()
    rec = bytearray(reading.MAX_SIZE)
    gc.collect()
    q = Queue(dev, clock, commit_count=64, commit_ms=1000)
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
            q = None
            gc.collect()
            q = Queue(dev, clock, commit_count=64, commit_ms=1000)
    q.commit()
    got = 1
    while got:
        nxt, want, got = read_batch(q, nxt, want)
    if want != N * 7:
        raise AssertionError("read back %d readings of %d" % (want // 7, N))
    nor.close()
    from otlink.core import queue_codec
    print("QHEAP ok", N, "native" if queue_codec.NATIVE else "bytecode")


main()
