# heapsize: 96K
# Boot of the queue with a long history behind it: the heap the agent has left after opening
# the queue must not depend on how much the region holds (an agent that boots on a fresh image
# must boot after months of restarts), and a start that writes nothing spends no boot number.
import gc

import mptest
import otlink.hal.unix.norflash  # noqa: F401 (compiled before the queue: smaller peak)
from otlink.core.queue import Queue
from otlink.hal.unix.norflash import NorFlash
from queue_helpers import DIR, Clock, flash, put

SECT = 32  # 128 KiB: the history below wraps the ring several times


def largest_block():
    """Largest allocatable block, found by bisection after a collection."""
    gc.collect()
    lo, hi = 16, 1 << 20
    while hi - lo > 16:
        m = (lo + hi) // 2
        try:
            bytearray(m)
            lo = m
        except MemoryError:
            hi = m
    gc.collect()
    return lo


def history(name, boots, per_boot):
    """SIGKILL-and-restart cycles: each run appends, reads back and acks in batches of 50,
    and dies with readings still staged."""
    nor = flash(name, SECT)
    dev = nor.region(0, nor.size)
    c = Clock()
    i = 0
    for _ in range(boots):
        q = Queue(dev, c, commit_count=64)
        for k in range(per_boot):
            put(q, i)
            i += 1
            c.t += 43  # ~23 readings/s
            q.tick(c.t)
            if k % 50 == 49:
                last = None
                for s, _b, _r, _n in q.peek(50):
                    last = s
                if last is not None:
                    q.ack(last)
        q = None  # killed: the staged readings are lost
        gc.collect()
    erases = sum(nor.erases)
    nor.close()
    return erases


def heap_after_open(name):
    """Largest free block once the queue is open and the agent has imported what comes next
    (long-lived objects allocated after the open, as module imports are)."""
    gc.collect()
    nor = NorFlash(DIR + "/" + name, SECT * 4096, cache=False, create=False)
    q = Queue(nor.region(0, nor.size), Clock(), commit_count=64)
    boot = q.boot
    after = [bytearray(48) for _ in range(120)]  # the next modules' objects
    free = largest_block()
    del after
    q = None
    nor.close()
    return free, boot


def test_boot_heap_independent_of_history():
    erases = history("bh_hist", 40, 1200)
    mptest.true(erases > 3 * SECT, "the history wrapped the ring (%d erases)" % erases)
    history("bh_fresh", 1, 10)
    fresh1, _ = heap_after_open("bh_fresh")
    hist1, boot = heap_after_open("bh_hist")
    fresh2, _ = heap_after_open("bh_fresh")
    hist2, _ = heap_after_open("bh_hist")
    fresh = min(fresh1, fresh2)
    hist = min(hist1, hist2)
    mptest.true(boot >= 40, "history of %d boots" % boot)
    print("largest free block after open: %d B with history, %d B fresh" % (hist, fresh))
    # bound: 1 KiB below a fresh image's largest free block
    mptest.true(hist >= fresh - 1024,
                "largest free block after open: %d B with history, %d B fresh" % (hist, fresh))


def test_start_that_writes_nothing_spends_no_boot_number():
    nor = flash("bh_boot", 4)
    dev = nor.region(0, nor.size)
    c = Clock()
    q = Queue(dev, c)
    mptest.eq(q.boot, 1, "first boot")
    ops = nor.ops
    q = Queue(dev, c)  # a start that fails (out of memory) before writing anything
    mptest.eq(nor.ops, ops, "opening writes nothing")
    mptest.eq(q.boot, 1, "boot number not spent by starts that wrote nothing")
    put(q, 1)
    q.commit()
    q = Queue(dev, c)
    mptest.eq(q.boot, 2, "a start that committed spent its boot number")
    q.ack(q.last_seq)  # an ack alone also persists the boot number (in the sector header
    q = Queue(dev, c)  # once it advances, or in the next group's header)
    mptest.true(q.boot >= 2, "boot does not go back")
    nor.close()


mptest.main(globals())
