# heapsize: 80K
# Page-programmed flash (rp2: flash_range_program takes whole, aligned 256-byte pages): the
# emulator refuses any other program, and the queue with prog_size=256 issues only whole
# pages, across commits, acks, sector changes and reboots mid-page. Power cuts in page mode:
# test_queue_sweep.py.

import mptest
from otlink.core.reading import unpack
from queue_helpers import BUF, Clock, flash, pack  # compiled before the queue: smaller peak
from otlink.core.queue import Queue
from otlink.hal.unix.norflash import NorFlash, FlashError


def put(q, i):
    # an int reading record (queue_helpers.pack)
    q.append(BUF, pack(i, i * 7919, 100))
    return q.last_seq


def test_emulator_enforces_pages():
    nor = flash("pg0", 2, page=256)
    e = mptest.raises(FlashError, nor.program, 0, b"\x00" * 16)
    mptest.true("page" in str(e), "partial page refused: %s" % e)
    mptest.raises(FlashError, nor.program, 128, b"\x00" * 256)  # unaligned
    mptest.raises(FlashError, nor.program, 0, b"\x00" * 512)  # two pages in one program
    nor.program(256, b"\x00" * 16 + b"\xff" * 240)
    nor.program(256, b"\x00" * 32 + b"\xff" * 224)  # a page again: only clears more bits
    mptest.raises(ValueError, NorFlash, None, 4096, page=3000)
    nor.close()


def test_queue_programs_whole_pages():
    nor = flash("pg1", 4, page=256)
    dev = nor.region(0, nor.size)
    c = Clock()
    mptest.raises(ValueError, Queue, dev, c, prog_size=100)
    q = Queue(dev, c, commit_count=7, prog_size=256)
    n = 0
    for i in range(2500):  # several sectors, wraps the 4-sector ring with acks
        put(q, i)
        if i % 50 == 49:
            last = None
            for s, _b, _r, _n in q.peek(40):
                last = s
            q.ack(last)
        if i == 1250:
            q.commit()
            q = Queue(dev, c, commit_count=7, prog_size=256)  # reboot mid-page
            n += 1
    q.commit()
    mptest.eq(nor.bytes_programmed % 256, 0, "only whole pages programmed")
    st = q.stats()
    mptest.eq(st["drops"], 0, "drops")
    mptest.true(sum(nor.erases) >= 5, "the ring wrapped (%d erases)" % sum(nor.erases))
    want = st["depth"]
    got = 0
    prev = None
    for s, _b, r, n in q.peek(10000):
        u = unpack(r, n)
        pid = u[0]
        mptest.true(prev is None or s == prev + 1, "contiguous")
        mptest.eq(u[4], pid * 7919, "value of reading %d" % pid)
        prev = s
        got += 1
    mptest.eq(got, want, "every unacknowledged reading back")
    q = None  # the reboot: the old queue is gone
    q2 = Queue(dev, c, prog_size=256)
    mptest.eq(q2.depth(), want, "after reboot")
    nor.close()


mptest.main(globals())
