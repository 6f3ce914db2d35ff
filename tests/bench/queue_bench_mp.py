# MicroPython side of tests/bench/bench_queue.py: the flash queue against the naive littlefs
# append-and-flush-per-reading baseline, on the same emulated NOR flash, same workload.
# Workload: 10 points polled together once a second (10 readings/s, one timestamp per poll,
# slowly changing integers, one float), group commit window 1 s, one ack per second.
# Prints "K name value" lines.
# argv: readings for the main run, readings for littlefs; or "life <readings> <seed>": only
# the write-amplification / life matrix (workloads x rates), one run with that seed.
import gc
import sys
import time

import micropython
import vfs
from otlink.core import reading
from otlink.core.queue import Queue
from otlink.hal.unix.norflash import NorFlash

from queue_helpers import T0, Clock  # noqa: F401  (tests/firmware: the tests' fake clock)

LIFE = len(sys.argv) > 1 and sys.argv[1] == "life"
N = int(sys.argv[1 + LIFE]) if len(sys.argv) > 1 + LIFE else 200000
NB = int(sys.argv[2]) if len(sys.argv) > 2 and not LIFE else 1500
SEED = int(sys.argv[3]) if LIFE and len(sys.argv) > 3 else 1
REGION = 128 * 1024  # 32 sectors: the ring wraps several times, so wear spread is steady


def make(buf, i):
    t = T0 + (i // 10) * 1000
    if i % 10 == 3:
        return reading.pack_float(buf, 3, t, 20.0 + (i % 97) * 0.01)
    return reading.pack_int(buf, i % 10, t, 1000 + (i // 10) % 50 + i % 10)


def out(k, v):
    print("K", k, v)


def spread(er):
    mean = sum(er) / len(er)
    return max(er) / mean if mean else 0


def bench_queue():
    nor = NorFlash(None, REGION)
    clock = Clock()
    dev = nor.region(0, REGION)
    gc.collect()
    m0 = gc.mem_alloc()
    q = Queue(dev, clock, commit_ms=1000)
    gc.collect()
    out("queue_ram_bytes", gc.mem_alloc() - m0)
    nor.reset_counters()
    buf = bytearray(reading.MAX_SIZE)
    used = 0
    t_app = 0
    alloc = 0
    for i in range(N):
        n = make(buf, i)
        used += n
        a = micropython.mem_total()
        t = time.ticks_us()
        q.append(buf, n)
        clock.t += 100
        q.tick(clock.t)
        t_app += time.ticks_diff(time.ticks_us(), t)
        alloc += micropython.mem_total() - a
        if i % 10 == 9:  # the uplink delivers and acks each second's batch
            last = -1
            for seq, _boot, _rec, _k in q.peek(64):
                last = seq
            if last >= 0:
                q.ack(last)
    out("queue_appends_per_s", N * 1e6 / t_app)
    out("queue_payload_bytes", used)
    out("queue_bytes_programmed", nor.bytes_programmed)
    out("queue_erases", sum(nor.erases))
    out("queue_spread", spread(nor.erases))
    # allocations: append alone under heap_lock, and amortized append+commit+ack bytes
    q2 = Queue(nor.region(0, REGION), clock, commit_count=200, commit_ms=10 ** 9)
    n = make(buf, 1)
    micropython.heap_lock()
    try:
        for _i in range(50):
            q2.append(buf, n)
        ok = 1
    except MemoryError:
        ok = 0
    micropython.heap_unlock()
    out("queue_append_no_alloc", ok)
    out("queue_alloc_bytes_per_reading", alloc / N)  # append + tick incl. group commits


class RamDev:
    """Minimal allocation-free block device: isolates the queue's own allocations."""

    def __init__(self, blocks):
        self.m = bytearray(b"\xff" * (blocks * 4096))
        self.blocks = blocks

    def readblocks(self, n, buf, off=0):
        a = n * 4096 + off
        buf[0:len(buf)] = memoryview(self.m)[a:a + len(buf)]

    def writeblocks(self, n, buf, off=0):
        a = n * 4096 + off
        self.m[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return 4096
        if op == 6:
            a = arg * 4096
            for i in range(a, a + 4096, 256):
                self.m[i:i + 256] = FF
        return 0


FF = b"\xff" * 256


def bench_alloc():
    clock = Clock()
    q = Queue(RamDev(16), clock, commit_ms=1000)
    buf = bytearray(reading.MAX_SIZE)
    n = make(buf, 0)
    tot = 0
    for _c in range(100):
        for _i in range(10):
            q.append(buf, n)  # append itself is proven allocation-free under heap_lock
        a = micropython.mem_total()
        q.commit()
        tot += micropython.mem_total() - a
    # a commit allocates three memoryview slices (CRC ranges, the write): garbage per group
    out("queue_commit_alloc_bytes", tot / 100)


def bench_littlefs():
    nor = NorFlash(None, REGION)
    dev = nor.region(0, REGION)
    vfs.VfsLfs2.mkfs(dev)
    fs = vfs.VfsLfs2(dev)
    nor.reset_counters()
    buf = bytearray(reading.MAX_SIZE)
    used = 0
    f = fs.open("/q.bin", "ab")
    t0 = time.ticks_us()
    for i in range(NB):
        n = make(buf, i)
        used += n
        f.write(memoryview(buf)[0:n])
        f.flush()  # the reading is on flash: the same durability per reading as naive code
    dt = time.ticks_diff(time.ticks_us(), t0)
    f.close()
    out("lfs_appends_per_s", NB * 1e6 / dt)
    out("lfs_payload_bytes", used)
    out("lfs_bytes_programmed", nor.bytes_programmed)
    out("lfs_erases", sum(nor.erases))
    out("lfs_spread", spread(nor.erases))
    out("lfs_readings", NB)


def _codec(enc, decn, zero):
    # point the queue's modules at one codec implementation (native or bytecode)
    import otlink.core.queue as qm

    qm.enc = enc
    qm.zero = zero
    qm.decn = decn


def bench_codec(tag, n=20000):
    """The uplink's pattern: append n readings (group commits), then read them back with
    peek_from in batches of 50, acking each batch. Rates in readings/s."""
    nor = NorFlash(None, 256 * 1024)
    clock = Clock()
    q = Queue(nor.region(0, 256 * 1024), clock, commit_count=64, commit_ms=100)
    buf = bytearray(reading.MAX_SIZE)
    t = time.ticks_us()
    for i in range(n):
        q.append(buf, make(buf, i))
    q.commit()
    ta = time.ticks_diff(time.ticks_us(), t)
    got = 0
    start = q.stats()["acked"] + 1
    t = time.ticks_us()
    while got < n:
        last = -1
        for seq, _b, _rec, _k in q.peek_from(start, 50):
            last = seq
            got += 1
        if last < 0:
            break
        q.ack(last)
        start = last + 1
    tr = time.ticks_diff(time.ticks_us(), t)
    out("codec_%s_append_per_s" % tag, n * 1e6 / ta)
    out("codec_%s_peek_per_s" % tag, got * 1e6 / tr)


# ---- write amplification and life, per workload and rate ----
# WAF counts what the queue adds to the records it stores, not what its codec saves:
#   compression = records as encoded (group bodies) / raw record bytes
#   WAF(program) = bytes programmed / records as encoded
#   WAF(erase)   = sectors erased * sector size / records as encoded
# WAF(erase) is what wears the flash: it also counts header, group and ack entries and the
# unused tail a sector is left with when the next group does not fit.

# the 60-point reference map (host_tools sim_meter.reference_points, docs/modbus.md):
# F float, I int, T text, per point id 1..60 in order; its values are fixed
REF = "FFFFFFFFFFFF" + "IIFIIIIT" + "IIIIII" + "III" + "IIII" + "FF" + "I" + "IIII" + \
    "IIIIIIII" + "IIIIIIII" + "FF" + "F" + "I"


class Rng:
    # 16-bit-state LCG: small ints only
    def __init__(self, seed):
        self.x = seed & 0xFFFF

    def byte(self):
        self.x = (self.x * 75 + 74) % 65537
        return self.x & 0xFF


def ref_value(k, kind):
    if kind == "F":
        return 100.0 + k * 3.25 - (k % 7) * 11.5
    return -(300 * k + 3) if k % 2 else 1000 * k + 7


def make_ref(buf, i, cycle_t):
    k = i % 60 + 1
    kind = REF[k - 1]
    if kind == "F":
        return reading.pack_float(buf, k, cycle_t, ref_value(k, kind))
    if kind == "T":
        return reading.pack_text(buf, k, cycle_t, b"METER-%02d" % k)
    return reading.pack_int(buf, k, cycle_t, ref_value(k, kind))


def make_random(buf, rng):
    for k in range(reading.SIZE):
        buf[k] = rng.byte()
    return reading.SIZE


ACK_MS = 200


def bench_life(kind, rate, n, seed):
    nor = NorFlash(None, REGION, timing="typ")
    clock = Clock()
    q = Queue(nor.region(0, REGION), clock, commit_ms=1000)
    body = [0]
    commit = q.commit

    def counting_commit():
        # the group body about to be written: records as encoded (a bench-only wrapper)
        if q.staged:
            body[0] += q.staged * q._uni if q._uni else q._blen  # uniform: no length bytes
        return commit()

    q.commit = counting_commit  # the instance attribute shadows the method for append too
    nor.reset_counters()
    rng = Rng(seed)
    buf = bytearray(reading.MAX_SIZE)
    raw = 0
    t_us = 0
    commits = 0
    due = -1  # when the ack of the last committed group arrives
    for i in range(n):
        if kind == "ref60":
            k = make_ref(buf, i, T0 + (i // 60) * 60000 // rate)
        else:
            k = make_random(buf, rng)
        raw += k
        q.append(buf, k)
        t_us += 1000000 // rate
        clock.t = t_us // 1000
        q.tick(clock.t)
        if q.commits != commits and due < 0:
            # the uplink reads the committed readings and their ack comes back ACK_MS later
            # (the publisher's 200 ms linger, then the broker's PUBACK)
            commits = q.commits
            due = clock.t + ACK_MS
        if 0 <= due <= clock.t:
            due = -1
            if q.depth():
                q.ack(q.stats()["next_seq"] - 1)
    tag = "life_%s_%d_" % (kind, rate)
    out(tag + "readings", n)
    out(tag + "raw", raw)
    out(tag + "encoded", body[0])
    out(tag + "programmed", nor.bytes_programmed)
    out(tag + "erases", sum(nor.erases))
    out(tag + "spread", spread(nor.erases))
    out(tag + "busy_us", nor.busy_us)


if LIFE:
    for kind in ("random", "ref60"):
        for rate in (1, 10, 60):
            gc.collect()
            bench_life(kind, rate, N, SEED)
    sys.exit(0)

bench_queue()
gc.collect()
from otlink.core.queue import codec as queue_codec, codec_py as queue_codec_py  # noqa: E402

out("codec_native", 1 if queue_codec.NATIVE else 0)
bench_codec("native")
gc.collect()
_codec(queue_codec_py.enc, queue_codec_py.decn, queue_codec_py.zero)
bench_codec("bytecode")
_codec(queue_codec.enc, queue_codec.decn, queue_codec.zero)
gc.collect()
bench_alloc()
gc.collect()
bench_littlefs()
out("queue_readings", N)
