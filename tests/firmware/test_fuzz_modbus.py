# heapsize: 256K 32:160K
# Fuzzing the Modbus core with generated response frames (docs/reliability.md, "Fuzzing").
# The core path of every answer the poller judges: Rtu.check() on the bytes received, then
# pack_reading() for each point of the request (or pack_error()), the record unpacked again.
# Frames: the valid answer with random register data (every bit pattern: NaN, inf, strings
# of any bytes, bits), and the same broken every way a line breaks it - a flipped bit, cut
# short, run on, the byte count or slave or function wrong with a valid CRC, an exception
# with any code, random bytes with and without a valid CRC, lengths 0..256.
# The judging and decoding run under micropython.heap_lock(): no frame may allocate (so the
# heap cannot grow), raise, or give a code outside the poller's set; a reading is decoded
# only from a frame check() accepted, and every point of an accepted frame gets its record.
# The whole poller (its receive state machine, framing by silence, retries, offline logic)
# then meets the same generator on a simulated line with noise between frames.
# Counts: FUZZ_MODBUS_N / FUZZ_MODBUS_POLL_N (environment), small here; `make fuzz` runs 10^6.
import asyncio
import gc
import os
import random

import micropython
import mptest
from modbus_sim import SimLine, sim_clock
from mptest import eq, true

from otlink.core import modbus, reading
from otlink.core.config import parse_points, parse_serial
from otlink.core.planner import NQ, Q_COUNT, Q_END, Q_FC, Q_FIRST, Q_SLAVE, Q_START
from otlink.core.points import pack_error, pack_reading
from otlink.modbus_poller import Poller

N_CORE = int(os.getenv("FUZZ_MODBUS_N") or "10000")
N_POLL = int(os.getenv("FUZZ_MODBUS_POLL_N") or "800")
SEED = int(os.getenv("FUZZ_SEED") or "1")

SER = {"baud": 19200, "timeout_ms": 50, "offline_after": 3, "backoff_ms": [100, 400],
       "retries": 1, "groups": {"fast": {"interval_ms": 0}}}


def _pt(pid, table, address, typ, **kw):
    d = {"id": pid, "slave": 1, "table": table, "address": address, "type": typ,
         "group": "fast"}
    d.update(kw)
    return d


# every type and order, scaled and ranged points, bits, strings, coils and discretes
POINTS = [
    _pt(1, "holding", 0, "int16"), _pt(2, "holding", 1, "uint16", scale=0.1),
    _pt(3, "holding", 2, "int32", order="CDAB"), _pt(4, "holding", 4, "uint32", order="BADC"),
    _pt(5, "holding", 6, "float32", order="DCBA"), _pt(6, "holding", 8, "float64"),
    _pt(7, "holding", 12, "int64", order="CDAB"), _pt(8, "holding", 16, "uint64"),
    _pt(9, "holding", 20, "string", length=7), _pt(10, "holding", 24, "bit", bit=3),
    _pt(11, "input", 0, "float32", range=[-100, 100]), _pt(12, "input", 2, "int16",
                                                           range=[0, 50], scale=2.0),
    _pt(13, "coil", 0, "bool"), _pt(14, "coil", 9, "bool"), _pt(15, "discrete", 3, "bool"),
    _pt(16, "input", 10, "uint16"),
]
CODES = set(modbus.ERROR_NAMES)


class Gen:
    """Response frames for the request in rtu (slave, fc, addr, count), into rtu.rx."""

    def __init__(self, seed):
        random.seed(seed)
        self.kinds = [0] * 10

    def r8(self):
        return random.getrandbits(8)

    def crc(self, b, n):
        c = modbus.crc16(b, n)
        b[n] = c & 0xFF
        b[n + 1] = c >> 8
        return n + 2

    def valid(self, rtu):
        b = rtu.rx
        fc = rtu.fc
        b[0] = rtu.slave
        b[1] = fc
        nb = (rtu.count + 7) // 8 if fc <= 2 else 2 * rtu.count
        b[2] = nb
        for i in range(3, 3 + nb):
            b[i] = random.getrandbits(8)
        return self.crc(b, 3 + nb)

    def frame(self, rtu):
        """Fill rtu.rx, return the length received (0..MAX_ADU)."""
        b = rtu.rx
        k = random.getrandbits(4)
        if k > 9:
            k = 0  # the valid answer most often: its data is where decoding is fuzzed
        self.kinds[k] += 1
        if k == 0:
            return self.valid(rtu)
        n = self.valid(rtu)
        if k == 1:  # a flipped bit anywhere
            i = random.getrandbits(8) % n
            b[i] ^= 1 << random.getrandbits(3)
            return n
        if k == 2:  # cut short
            return random.getrandbits(8) % n
        if k == 3:  # runs on: extra bytes (noise after the frame)
            m = n + 1 + random.getrandbits(4)
            m = m if m <= modbus.MAX_ADU else modbus.MAX_ADU
            for i in range(n, m):
                b[i] = self.r8()
            return m
        if k == 4:  # byte count wrong, CRC valid
            b[2] = self.r8()
            return self.crc(b, n - 2)
        if k == 5:  # another slave or function, CRC valid
            if random.getrandbits(1):
                b[0] = self.r8()
            else:
                b[1] = self.r8()
            return self.crc(b, n - 2)
        if k == 6:  # an exception response with any code, CRC valid (or not)
            b[1] = rtu.fc | 0x80 if random.getrandbits(2) else self.r8()
            b[2] = self.r8()
            m = self.crc(b, 3)
            if not random.getrandbits(3):
                b[4] ^= 1
            return m
        if k == 7:  # random bytes, random length, CRC valid half the time
            m = random.getrandbits(8) % (modbus.MAX_ADU + 1)
            for i in range(m):
                b[i] = self.r8()
            if m >= 4 and random.getrandbits(1):
                self.crc(b, m - 2)
            return m
        if k == 8:  # the right length, random content with a valid CRC
            for i in range(n - 2):
                b[i] = self.r8()
            return self.crc(b, n - 2)
        return 0  # silence


def setup():
    ser = parse_serial(SER)
    pts = parse_points(POINTS, ser)

    class NoLine:
        t35_us = 2000

    ticks, clock = sim_clock()
    p = Poller(NoLine(), clock, ser, pts, lambda rec, n: None)
    return p, pts


def core(n, seed):
    """n frames through check() + pack_reading/pack_error; returns the counters."""
    p, tab = setup()
    plan = p.plan
    q = plan.q
    idx = plan.idx
    offs = plan.offs
    nreq = len(q) // NQ
    rtu = modbus.Rtu()
    rec = bytearray(reading.MAX_SIZE)
    g = Gen(seed)
    got = {"frames": 0, "accepted": 0, "records": 0, "errors": 0}
    codes = [0] * 256  # outcomes seen, by code (preallocated: the loop allocates nothing kept)
    gc.collect()
    free0 = gc.mem_free()
    for f in range(n):
        req = f % nreq
        k = req * NQ
        rtu.slave = q[k + Q_SLAVE]
        rtu.fc = q[k + Q_FC]
        rtu.addr = q[k + Q_START]
        rtu.count = q[k + Q_COUNT]
        m = g.frame(rtu)
        first = q[k + Q_FIRST]
        end = q[k + Q_END]
        micropython.heap_lock()
        try:
            code = rtu.check(m)
            recs = 0
            for j in range(first, end):
                if code:
                    r = pack_error(tab, idx[j], code, rec, 1000, 0)
                else:
                    r = pack_reading(tab, idx[j], rtu.rx, offs[j], rec, 1000, 0)
                if r:
                    recs += 1
        finally:
            micropython.heap_unlock()
        if code and code not in CODES and not (code & modbus.ERR_EXCEPTION
                                               and 0 < code & 0x7F < 0x80):
            raise mptest.Fail("frame %d: code %d is not one of the poller's" % (f, code))
        if code == 0:
            got["accepted"] += 1
            # an accepted frame is exactly the answer the request asked for
            eq(m, modbus.response_len(rtu.fc, rtu.count), "accepted length")
            eq(rtu.rx[0], rtu.slave, "accepted slave")
        else:
            got["errors"] += 1
        codes[code & 0xFF] += 1
        # at most one record per point (a repeated error, or a value outside a point's
        # range after the same range error, is reported once)
        true(recs <= end - first, "records for frame %d: %d" % (f, recs))
        got["records"] += recs
        got["frames"] += 1
    gc.collect()
    got["heap_delta"] = free0 - gc.mem_free()
    got["kinds"] = g.kinds
    got["codes"] = len([c for c in codes if c])
    return got


class NoisyLine(SimLine):
    """The simulated line answering with generated frames, and noise bytes on the line
    right after them (run on, or a frame of their own when noise follows a cut answer).

    Faster than SimLine for 10^6 frames, judging the same: a look at the clock costs 50 us
    (SimLine: 5 us; a board's loop takes tens of us, and the busy-poll of the last 1.1 ms
    before a deadline then takes 22 looks instead of 220), and wait() is a UART FIFO that
    the poller reads once per slice (the whole slice passes; bytes that arrived meanwhile
    wait in the FIFO), not a wake-up on the next byte. Every outcome of the poller (ok,
    timeouts, crc, frame, exceptions, wrong, retries) comes out the same as on SimLine for
    the same frames; only the number of event-loop turns per frame drops."""

    LOOK_US = 50

    def __init__(self, ticks, gen, rtu_view):
        SimLine.__init__(self, ticks, baud=19200, turnaround_us=500)
        self.gen = gen
        self.view = rtu_view
        self.regs[1] = []
        self.noise = 0
        self.wait_budget = 1 << 29  # long runs: the generated silences add up

    def now_us(self):
        self.t.advance(self.LOOK_US)
        return self.t.us

    def wait(self, timeout_ms):
        self.waits += 1
        if self.waits > self.wait_budget:
            raise RuntimeError("the poller waited too long on a silent line")
        self.t.advance(timeout_ms * 1000)
        return self._arrived()

    def write(self, req, n):
        SimLine.write(self, req, n)
        v = self.view
        v.slave = req[0]
        v.fc = req[1]
        v.addr = (req[2] << 8) | req[3]
        v.count = (req[4] << 8) | req[5]
        m = self.gen.frame(v)
        a = self.ans
        for i in range(m):
            a[i] = v.rx[i]
        # noise after the frame, before the next request: the poller must drop it
        extra = random.getrandbits(2) if random.getrandbits(2) == 0 else 0
        for i in range(m, m + extra):
            a[i] = random.getrandbits(8)
        self.noise += extra
        self.n = m + extra
        self.head = 0
        self.t_first = self._tx_end + self.t35_us + self.turn + self.char_us


def whole_poller(n, seed):
    """Poll until n requests have gone out on the line; returns the counters."""
    ticks, clock = sim_clock()
    g = Gen(seed)
    view = modbus.Rtu()
    line = NoisyLine(ticks, g, view)
    seen = [0, 0]  # value records, error records

    def sink(rec, n):
        pid, kind, flags, t, v = reading.unpack(rec, n)
        seen[1 if kind == reading.KIND_ERR else 0] += 1

    ser = parse_serial(SER)
    p = Poller(line, clock, ser, parse_points(POINTS, ser), sink)
    # an exception code the poller has not counted yet gets its dict entry once (bounded:
    # 127 codes); made here so the measured window shows growth that is not bounded
    for x in range(1, 0x80):
        p.codes.setdefault(modbus.ERR_EXCEPTION | x, 0)

    def cycle(_p):
        # a cycle takes time on a board whatever the line does: with the slave offline
        # (three timeouts in a row) every request is skipped and the line never looks at
        # the clock, so without this the simulated time stood still and the slave was never
        # probed again (a run of 166,664 cycles sent 71,839 requests)
        ticks.advance(1000)

    p.on_cycle = cycle
    gc.collect()
    asyncio.run(p.run(cycles=8))  # warm up: everything the loop keeps is made
    gc.collect()
    free0 = gc.mem_free()
    while line.requests < n:
        asyncio.run(p.run(cycles=8))
    gc.collect()
    return {"requests": line.requests, "noise_bytes": line.noise, "values": seen[0],
            "errors": seen[1], "heap_delta": free0 - gc.mem_free(), "stats": p.stats()}


def test_core_judges_and_decodes_any_frame_without_allocating():
    got = core(N_CORE, SEED)
    print("FUZZ_MODBUS_CORE frames=%d accepted=%d errors=%d records=%d heap_delta=%d codes=%d"
          % (got["frames"], got["accepted"], got["errors"], got["records"], got["heap_delta"],
             got["codes"]))
    eq(got["frames"], N_CORE, "frames")
    # both sides reached: the decoders saw random data, the judge every kind of damage
    true(got["accepted"] > N_CORE // 3, "accepted %d" % got["accepted"])
    true(got["errors"] > N_CORE // 5, "refused %d" % got["errors"])
    true(got["codes"] >= 8, "distinct outcomes %d" % got["codes"])
    true(got["heap_delta"] <= 0, "heap grew by %d bytes" % got["heap_delta"])


def test_whole_poller_survives_generated_answers_and_noise():
    got = whole_poller(N_POLL, SEED + 1)
    st = got["stats"][1]
    print("FUZZ_MODBUS_POLL requests=%d noise=%d values=%d errors=%d heap_delta=%d "
          "offline=%d skipped=%d retries=%d"
          % (got["requests"], got["noise_bytes"], got["values"], got["errors"],
             got["heap_delta"], st["offline"], st["skipped"], st["retries"]))
    true(got["requests"] >= N_POLL, "requests %d" % got["requests"])
    # every request sent was judged: answered, or failed and counted (retries included)
    eq(st["ok"] + st["errors"], got["requests"], "requests judged")
    true(got["values"] > 0 and got["errors"] > 0, "values and errors both seen")
    true(got["noise_bytes"] > 0, "noise injected")
    # no growth from one cycle batch to the next (a few words of slack for the allocator)
    true(got["heap_delta"] <= 256, "heap grew by %d bytes" % got["heap_delta"])


mptest.main(globals())
