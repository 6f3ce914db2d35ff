# MicroPython side of tests/bench/bench_boards.py: bytes of flash one reading takes in the
# queue (records, group and sector headers included), on an emulated NOR region, for the
# workload: 60 points polled together every 10 s of simulated time (an energy meter's map),
# values as a meter gives them (counters creeping up, floats moving in the last digits).
# Prints "K name value" lines. argv: readings (default 20000).
import sys

from otlink.core import reading
from otlink.core.queue import Queue
from otlink.hal.unix.norflash import NorFlash

from queue_helpers import T0, Clock  # noqa: F401  (tests/firmware: the tests' fake clock)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
REGION = 512 * 1024
NPTS = 60


def make(buf, i):
    poll = i // NPTS
    p = i % NPTS
    t = T0 + poll * 10000
    if p % 3 == 0:  # float32 measurements: voltage, current, power ...
        return reading.pack_float(buf, p, t, 230.0 + p + ((poll * 7 + p) % 13) * 0.1)
    if p % 3 == 1:  # energy counters: creep up
        return reading.pack_int(buf, p, t, 1000000 + poll * (p + 1))
    return reading.pack_int(buf, p, t, 500 + (poll + p) % 20)  # status words, small ints


def main():
    nor = NorFlash(None, REGION)
    q = Queue(nor.region(0, REGION), Clock(), commit_count=64, commit_ms=1000)
    buf = bytearray(reading.MAX_SIZE)
    for i in range(N):
        q.append(buf, make(buf, i))
    q.commit()
    st = q.stats()
    print("K depth", st["depth"])
    print("K bytes_used", st["bytes_used"])
    print("K bytes_total", st["bytes_total"])
    print("K sector", nor.sector)


main()
