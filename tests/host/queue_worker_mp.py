# MicroPython worker for tests/host/test_queue_sigkill.py: opens the queue on a file-backed
# emulated NOR flash, prints what it recovered, then appends and acknowledges until killed.
# Lines: "R seq boot value" (recovered), "S start boot", "C v" (all appended up to v are
# committed), "a v" (ack of v about to be written), "A v" (ack of v persisted: at once, or
# with the next group when readings were staged).
import sys

from otlink.core import reading
from otlink.core.queue import Queue
from otlink.hal.unix.norflash import NorFlash

from queue_helpers import T0, Clock  # noqa: F401  (tests/firmware: the tests' fake clock)


nor = NorFlash(sys.argv[1], 128 * 1024, cache=True)
clock = Clock()
q = Queue(nor.region(0, nor.size), clock, commit_ms=1000)
start = int(sys.argv[2])
for seq, boot, rec, n in q.peek(100000):
    pid, kind, flags, t, v = reading.unpack(rec, n)
    if pid != v % 1000 or t != T0 + v:
        print("GARBLED", seq, boot, pid, t, v)
    print("R", seq, boot, v)
    if v + 1 > start:
        start = v + 1
print("S", start, q.boot, q.stats()["drops"], q.stats()["corrupt_skipped"])
buf = bytearray(reading.MAX_SIZE)
i = start
done = start - 1  # last value known committed
pend = None  # value of an ack still in RAM (it rides in the staged group's header)
while True:
    q.append(buf, reading.pack_int(buf, i % 1000, T0 + i, i))
    clock.t += 100
    q.tick(clock.t)
    if i - q.staged > done:  # a group may commit before the reading that did not fit it
        done = i - q.staged
        print("C", done)
    if pend is not None and not q.ack_pending:
        print("A", pend)
        pend = None
    i += 1
    if i % 15 == 0 and (i // 600) % 3:  # every third stretch of 600: uplink down
        last = -1
        for seq, _boot, rec, n in q.peek(40):
            last = seq
            v = reading.unpack(rec, n)[4]
        if last >= 0:
            print("a", v)
            q.ack(last)
            if q.ack_pending:
                pend = v  # persisted with the next group: until then, in flight
            else:
                print("A", v)
                pend = None
