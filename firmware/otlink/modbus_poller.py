# Modbus RTU master: asyncio scheduler over the planner's requests, with per-slave offline
# detection and backoff, a write path, and a pipelined decode.
#
# Timing (Modbus over Serial Line §2.5.1.1): a request goes out only after t3.5 of silence; a
# response is complete after t3.5 of silence following its last byte (bytes running on past the
# expected length make it a framing error). Apart from sending a request (below), the poller
# never blocks the event loop for more than about one millisecond: it waits in uart.wait()
# slices of at most _SLICE_MS and yields to the loop after each, and busy-polls only the last
# ~1.1 ms of a deadline for sub-ms precision.
#
# Bus direction: the request is written and the poller holds the loop until its last stop bit
# has left (uart.flush(), the frame's wire time: 9.2 ms for 8 bytes at 9600 baud), so DE drops
# within microseconds of the end of the frame, whatever other tasks do.
#
# Pipelining: the response to request k is checked as soon as it is complete; its points are
# decoded and handed to the sink in the t3.5 gap before request k+1 (never between a request
# and its answer: the sink may program or erase flash). Two response buffers alternate.
#
# Time: the ms clock (groups, backoff) is the injected clock; the us timing of the line comes
# from the UART (uart.now_us), so both can be simulated in tests. Both wrap at TICKS_PERIOD
# (2**30 on the boards: us ticks every 17.9 minutes) and every sum and distance goes through the
# clock's ticks_add/ticks_diff. A tick older than 2**29 reads as in the future, so no stored
# tick is trusted past that: the silence before a request is judged as "long enough" whenever
# the last bus activity is not within t3.5 (a line silent for minutes must not look busy).
#
# Allocation contract: after the first cycle, polling allocates nothing (heap-lock tested on
# the 32-bit build too), as long as the sink does not and the points are of the non-allocating
# kinds (core/points.py). Counters never reach 2**30 (a heap int on 32-bit): they carry into a
# second word at _CARRY; the timestamp is stamped by the clock as split fields.
try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from otlink.core import modbus, planner
from otlink.core.planner import (NQ, Q_COUNT, Q_END, Q_FC, Q_FIRST, Q_RESP, Q_SLAVE,
                                 Q_START)
from otlink.core.compat import const
from otlink.core.points import pack_error, pack_reading
from otlink.core.errors import ERR_EXCEPTION
from otlink.core.reading import MAX_SIZE, OFF_T

_SLICE_MS = const(1)  # longest single wait inside a transaction before yielding
_SPIN_US = const(1100)  # below this, busy-poll instead of poll(1) (poll rounds up to >= 1 ms)
_IDLE_MS = const(20)  # longest nap when no group is due
_CARRY = const(0x20000000)  # counters carry at 2**29: small ints on 32-bit boards
_MS_US = const(1000)

# per-slave counters, index into Poller._cnt[slave_index * _NC + k]
_C_OK = const(0)
_C_TIMEOUT = const(1)
_C_CRC = const(2)
_C_FRAME = const(3)
_C_EXC = const(4)
_C_WRONG = const(5)  # wrong slave / wrong function / write mismatch / echo
_C_OFFLINE = const(6)  # times the slave went offline
_C_SKIPPED = const(7)  # requests not sent because the slave was in backoff
_C_RETRY = const(8)
_NC = const(9)
_ST_IDLE = const(0)
_ST_GAP = const(1)
_ST_RX = const(2)
_NAMES = ("ok", "timeouts", "crc", "frame", "exceptions", "wrong", "offline", "skipped", "retries")


def _retry(code):
    """Is a failed transaction worth another attempt (serial.retries)? Line failures are: no
    answer, a garbled or truncated one, or a frame meant for someone else. A slave's exception
    is an answer (asking again gets the same one), an echo mismatch is our own transmitter's
    fault and a write confirmation that disagrees is the slave's, so those are not retried."""
    return (code == modbus.ERR_TIMEOUT or code == modbus.ERR_CRC or code == modbus.ERR_FRAME
            or code == modbus.ERR_WRONG_SLAVE or code == modbus.ERR_WRONG_FUNCTION)


class Poller:
    """Poll the configured points forever; write on request.

    Poller(uart, clock, serial_cfg, points, sink): serial_cfg is the validated "serial" section
    (core/config.py: every field filled in, poll groups in serial_cfg["groups"]), points is
    the Points table from the same validation (core/points.py); sink(rec, n)
    receives every reading record (core/reading.py layout) - values and error readings."""

    def __init__(self, uart, clock, serial_cfg, points, sink, merge=True):
        self.uart = uart
        self.clock = clock
        # tick arithmetic of the clock (ms and us ticks share the period): bound once here
        self._add = clock.ticks_add
        self._diff = clock.ticks_diff
        self.ser = serial_cfg  # validated once, by core/config.py
        self.sink = sink
        self.points = points
        self.plan = planner.plan(points, self.ser, merge)
        self.groups = self.plan.groups
        self._q = self.plan.q
        self._tx = bytearray(8)  # the request being sent, copied from the plan's ADUs
        self.rtu = modbus.Rtu()
        self._rxa = self.rtu.rx
        self._rxb = bytearray(modbus.MAX_ADU)
        self.rec = bytearray(MAX_SIZE)
        self._timeout_us = self.ser["timeout_ms"] * 1000
        self._echo = self.ser["echo"]
        # t3.5 from the baud rate, unless overridden (links with no wire timing, e.g. tests)
        self._t35 = self.ser["frame_gap_us"] or uart.t35_us
        ct = self.ser["char_timeout_ms"] * 1000
        self._char_timeout_us = ct if ct > self._t35 else self._t35
        self._want = 8
        self._retries = self.ser["retries"]
        self._offline_after = self.ser["offline_after"]
        self._bo_first, self._bo_max = self.ser["backoff_ms"]
        slaves = sorted(set([points.slave(i) for i in range(len(points))]))
        self.slaves = slaves
        self._si = {}
        for i, s in enumerate(slaves):
            self._si[s] = i
        n = len(slaves)
        self._cnt = [0] * (n * _NC)
        self._cnt_hi = [0] * (n * _NC)  # carries of _cnt (each unit is _CARRY counts)
        self._bus_us = [0] * n  # bus time per slave: us below one second ...
        self._bus_s = [0] * n  # ... and whole seconds (small ints for 34 years)
        self._fails = [0] * n  # consecutive timeouts
        self._offline = [False] * n
        self._probe_at = [0] * n  # ticks_ms of the next probe while offline
        self._backoff = [self._bo_first] * n
        self.codes = {}
        self._codes_hi = {}
        for c in modbus.ERROR_NAMES:
            self.codes[c] = 0
            self._codes_hi[c] = 0
        self._cycles = [0, 0]  # low, carries
        self.bus_errors = 0  # the port itself failed (OSError from the UART)
        self.last_bus_error = None
        # the transaction in flight (set per request; created here so the instance dict is
        # sized at boot, not grown later when the heap may be fragmented)
        self._adu = None
        self._n = 0
        self._rx = None
        self._bc = False
        self._echo_left = 0
        self._echo_bad = False
        self._first = 0
        # pipelined decode: the last completed request and its result
        self._pend = -1  # request index (planner.Plan), -1: none
        self._pend_code = 0
        self._pend_rx = None
        self._wq = []  # pending writes: [slave, fc, addr, values, count, event, result]
        self._running = False
        # True from a request's first byte to the end of its answer: the app holds queue
        # commits (flash programs and erases) until it is False (app.py _commit_loop)
        self.on_wire = False
        self.on_cycle = None  # on_cycle(poller) after each cycle (tests: heap lock)
        self._st = _ST_IDLE
        self._t0 = 0
        self._got = 0
        self._tries = 0

    # ---- statistics -------------------------------------------------------------------------

    @property
    def cycles(self):
        """Poll cycles run (allocates past 2**30 on 32-bit boards)."""
        return self._cycles[1] * _CARRY + self._cycles[0]

    def stats(self):
        """{slave: {ok, timeouts, crc, frame, exceptions, wrong, offline, skipped, retries,
        errors, online, bus_ms}} plus "codes": {error name: count} and "cycles". errors: the
        failed transactions (timeouts, crc, frame, exceptions, wrong). Allocates."""
        out = {}
        for i, s in enumerate(self.slaves):
            d = {}
            for k, name in enumerate(_NAMES):
                j = i * _NC + k
                d[name] = self._cnt_hi[j] * _CARRY + self._cnt[j]
            d["errors"] = d["timeouts"] + d["crc"] + d["frame"] + d["exceptions"] + d["wrong"]
            d["online"] = not self._offline[i]
            d["bus_ms"] = self._bus_s[i] * 1000 + self._bus_us[i] // _MS_US
            out[s] = d
        out["codes"] = dict((modbus.error_name(c), self._codes_hi.get(c, 0) * _CARRY + v)
                            for c, v in self.codes.items() if v or self._codes_hi.get(c, 0))
        out["cycles"] = self.cycles
        return out

    def _inc(self, j):
        # one count of counter j; carries before 2**30 so no heap int is ever made
        c = self._cnt
        v = c[j] + 1
        if v >= _CARRY:
            v = 0
            self._cnt_hi[j] += 1
        c[j] = v

    def _count(self, si, code):
        b = si * _NC
        if code == 0:
            self._inc(b + _C_OK)
            return
        codes = self.codes
        v = codes.get(code, 0) + 1  # a code outside the table is added once (allocates)
        if v >= _CARRY:
            v = 0
            self._codes_hi[code] = self._codes_hi.get(code, 0) + 1
        codes[code] = v
        if code == modbus.ERR_TIMEOUT:
            self._inc(b + _C_TIMEOUT)
        elif code == modbus.ERR_CRC:
            self._inc(b + _C_CRC)
        elif code == modbus.ERR_FRAME:
            self._inc(b + _C_FRAME)
        elif code & ERR_EXCEPTION:
            self._inc(b + _C_EXC)  # 0x80 | x: the slave answered with exception x
        else:
            # wrong slave, wrong function, echo, write mismatch: a frame that is not the answer
            self._inc(b + _C_WRONG)

    # ---- one transaction: a state machine pumped by one coroutine ----------------------------
    # Calling a coroutine allocates its generator, so the hot path never does: run() calls the
    # plain methods _begin()/_pump() and awaits only asyncio.sleep_ms(0), which does not allocate.

    def _begin(self, adu, n, rx, broadcast, want=8):
        self._want = want  # expected response length (a 5-byte exception is recognised too)
        self._adu = adu
        self._n = n
        self._rx = rx
        self._bc = broadcast
        self._st = _ST_GAP
        self.on_wire = False  # a new transaction: the last one is over, even if it raised
        self._t0 = self.uart.now_us()

    def _pump(self):
        """Advance the transaction; True while it is still running (the caller yields to the
        event loop, then calls again). Blocks at most about one millisecond per call."""
        u = self.uart
        if self._st == _ST_GAP:
            if self._pend >= 0:
                # decode the previous response between transactions: the sink may commit a
                # queue group or erase a sector (45 ms typ, 400 ms max on NOR parts, with
                # interrupts off on rp2), which must not fall between a request and its answer
                self._flush()
            # t3.5 of silence before a request; bytes arriving now are stray and are dropped.
            while u.read_byte() >= 0:
                pass
            # Silence so far. Negative: last_us is more than 2**29 us (537 s) old and reads as
            # the future - the line has been silent for long. (Counting the wrapped distance as
            # a wait held the first request after 540-1,074 s of silence up to 537 s.) Past a
            # whole period a stale tick may read as recent again: that costs at most t3.5.
            quiet = self._diff(u.now_us(), u.last_us)
            rem = self._t35 - quiet if quiet >= 0 else 0
            if rem > 0:
                if rem > _SPIN_US:
                    u.wait(_SLICE_MS)
                return True
            adu = self._adu
            n = self._n
            self.on_wire = True
            u.write(adu, n)
            u.flush()  # DE drops right after the last stop bit (hal/rs485.py)
            self._echo_left = n if self._echo else 0
            self._echo_bad = False
            self._got = 0
            tx_end = u.tx_end_us()
            wait = self.ser["turnaround_ms"] * 1000 if self._bc else self._timeout_us
            self._first = self._add(tx_end, wait)
            self._st = _ST_RX
        adu = self._adu
        n = self._n
        rx = self._rx
        t35 = self._t35
        got = self._got
        last_look = False
        while True:
            u.tx_done()
            b = u.read_byte()
            if b >= 0:
                if self._echo_left:
                    if b != adu[n - self._echo_left]:
                        self._echo_bad = True
                    self._echo_left -= 1
                    if not self._echo_left:
                        self._first = self._add(u.now_us(), self._timeout_us)
                    continue
                if got < modbus.MAX_ADU:
                    rx[got] = b
                got += 1
                continue
            now = u.now_us()
            if got == 0 or self._echo_left:
                rem = self._diff(self._first, now)
            else:
                # Complete: the frame ends after t3.5 of silence. Still short: allow the
                # lenient inter-character timeout (FIFO chunking, a busy host) before calling
                # it truncated - a longer wait only on the error path.
                short = got < self._want and not (got >= 2 and rx[1] & 0x80 and got >= 5)
                gap = self._char_timeout_us if short else t35
                rem = gap - self._diff(now, u.last_us)
            if rem <= 0:
                if not last_look:
                    # one more look before calling it: bytes that arrived while this task
                    # was not running (a busy host, a long GC) are in the FIFO, not missing
                    last_look = True
                    continue
                break
            if rem > _SPIN_US:
                self._got = got
                u.wait(_SLICE_MS)
                return True
        while not u.tx_done():
            pass
        if self._echo_bad or self._echo_left:
            got = -1
        elif got > modbus.MAX_ADU:
            got = modbus.MAX_ADU + 1
        self._got = got
        self._st = _ST_IDLE
        self.on_wire = False
        return False

    async def _transact(self, adu, n, rx, broadcast=False):
        # For the write path (allocates its generator; fine off the hot path).
        self._begin(adu, n, rx, broadcast)
        while self._pump():
            await asyncio.sleep_ms(0)
        return self._got

    def _result(self, got):
        if got < 0:
            return modbus.ERR_ECHO
        if got > modbus.MAX_ADU:
            return modbus.ERR_FRAME
        return self.rtu.check(got)

    # ---- decode (pipelined) -----------------------------------------------------------------

    def _flush(self):
        req = self._pend
        self._pend = -1
        code = self._pend_code
        rx = self._pend_rx
        rec = self.rec
        # the timestamp goes into the record once (at OFF_T), as split fields (no int >= 2**30
        # on 32-bit); pack_reading/pack_error (t None) leave it there for every point of the request
        flags = self.clock.stamp_into(rec, OFF_T)
        t = None
        sink = self.sink
        tab = self.points
        plan = self.plan
        idx = plan.idx
        offs = plan.offs
        q = self._q
        k = req * NQ
        for m in range(q[k + Q_FIRST], q[k + Q_END]):
            if code:
                n = pack_error(tab, idx[m], code, rec, t, flags)
            else:
                n = pack_reading(tab, idx[m], rx, offs[m], rec, t, flags)
            if n:
                sink(rec, n)

    def _fail_group(self, g, code):
        # The pending answer (if any) is flushed first by _emit; then one error per request.
        for req in range(g.first, g.end):
            self._emit(req, code, None)
        self._flush()

    def _emit(self, req, code, rx):
        if self._pend >= 0:
            self._flush()
        self._pend = req
        self._pend_code = code
        self._pend_rx = rx

    # ---- offline / backoff ------------------------------------------------------------------

    def _may_ask(self, si, now):
        if not self._offline[si]:
            return True
        return self._diff(now, self._probe_at[si]) >= 0

    def _outcome(self, si, code):
        if code == modbus.ERR_TIMEOUT:
            self._fails[si] += 1
            if self._offline[si]:
                # failed probe: wait longer
                b = self._backoff[si] * 2
                self._backoff[si] = b if b < self._bo_max else self._bo_max
                self._probe_at[si] = self._add(self.clock.ticks_ms(), self._backoff[si])
            elif self._fails[si] >= self._offline_after:
                self._offline[si] = True
                self._inc(si * _NC + _C_OFFLINE)
                self._backoff[si] = self._bo_first
                self._probe_at[si] = self._add(self.clock.ticks_ms(), self._bo_first)
        else:
            # any answer (even an exception or a bad CRC) means the slave is alive
            self._fails[si] = 0
            if self._offline[si]:
                self._offline[si] = False
                self._backoff[si] = self._bo_first

    # ---- polling ----------------------------------------------------------------------------

    def _prepare(self, req):
        """Set up a read of request req (an index into the plan); False when its slave is in
        backoff (an offline reading is emitted instead)."""
        q = self._q
        k = req * NQ
        si = self._si[q[k + Q_SLAVE]]
        if not self._may_ask(si, self.clock.ticks_ms()):
            self._inc(si * _NC + _C_SKIPPED)
            self._emit(req, modbus.ERR_OFFLINE, None)
            return False
        rtu = self.rtu
        # alternate response buffers so the pending decode keeps its bytes
        rx = self._rxb if self._pend_rx is self._rxa else self._rxa
        rtu.rx = rx
        rtu.slave = q[k + Q_SLAVE]
        rtu.fc = q[k + Q_FC]
        rtu.addr = q[k + Q_START]
        rtu.count = q[k + Q_COUNT]
        tx = self._tx
        adu = self.plan.adu
        for m in range(8):
            tx[m] = adu[8 * req + m]
        self._tries = self._retries + 1
        self._begin(tx, 8, rx, False, q[k + Q_RESP])
        return True

    def _finish(self, req):
        """Judge the response; True when done with req, False to retry it."""
        k = req * NQ
        si = self._si[self._q[k + Q_SLAVE]]
        code = self._result(self._got)
        self._count(si, code)
        # bus time spent on this slave (us): what a dead slave costs the others
        us = self._bus_us[si] + self._diff(self.uart.now_us(), self._t0)
        if us >= 1000000:
            self._bus_s[si] += us // 1000000
            us %= 1000000
        self._bus_us[si] = us
        self._tries -= 1
        if _retry(code) and self._tries > 0:
            self._inc(si * _NC + _C_RETRY)
            self._begin(self._tx, 8, self.rtu.rx, False, self._q[k + Q_RESP])
            return False
        self._outcome(si, code)
        self._emit(req, code, self.rtu.rx)
        return True

    async def poll_once(self):
        """Poll every group once, ignoring intervals (tests, benchmarks)."""
        await self.run(cycles=1)

    async def run(self, cycles=0):
        """Poll each group at its interval, forever (cancellable). With cycles > 0, poll every
        group back to back that many times and return (tests, benchmarks)."""
        self._running = True
        try:
            now = self.clock.ticks_ms()
            for g in self.groups:
                g.due = now
            left = cycles
            while True:
                ran = False
                for g in self.groups:
                    if cycles or self._diff(self.clock.ticks_ms(), g.due) >= 0:
                        try:
                            for req in range(g.first, g.end):
                                if self._wq:
                                    await self._serve_writes()
                                if not self._prepare(req):
                                    continue
                                while True:
                                    while self._pump():
                                        await asyncio.sleep_ms(0)
                                    if self._finish(req):
                                        break
                            # the last answer of the group stays pending: it is decoded while
                            # the next request is on the wire, or before going idle
                        except OSError as e:
                            # the port itself failed (adapter unplugged): every point of the
                            # group reports it (a reading already answered is kept), counted,
                            # then a pause and on with the next group
                            self.bus_errors += 1
                            self.last_bus_error = e
                            self.on_wire = False
                            self._fail_group(g, modbus.ERR_PORT)
                            await asyncio.sleep_ms(100)
                        g.due = self._add(g.due, g.interval_ms)
                        if self._diff(self.clock.ticks_ms(), g.due) > 0:
                            g.due = self.clock.ticks_ms()  # overrun: no catch-up burst
                        ran = True
                if ran:
                    c = self._cycles
                    c[0] += 1
                    if c[0] >= _CARRY:
                        c[0] = 0
                        c[1] += 1
                    if self.on_cycle is not None:
                        self.on_cycle(self)
                if cycles:
                    left -= 1
                    if left <= 0:
                        if self._pend >= 0:
                            self._flush()
                        return
                    continue
                if self._wq:
                    await self._serve_writes()
                    continue
                if not ran:
                    if self._pend >= 0:
                        self._flush()
                    # idle until the next group is due, in naps of at most _IDLE_MS so a
                    # queued write waits no longer than that
                    wait = _IDLE_MS
                    now = self.clock.ticks_ms()
                    for g in self.groups:
                        d = self._diff(g.due, now)
                        if d < wait:
                            wait = d
                    await asyncio.sleep_ms(wait if wait > 0 else 0)
        finally:
            self._running = False

    # ---- writes -----------------------------------------------------------------------------

    async def write(self, slave, table, address, values):
        """Write coils (05/15) or holding registers (06/16). values: a list of ints (register
        values 0..65535 or -32768..32767) or of bools (coils). Returns 0 or an error code.
        Slave 0 broadcasts: no answer, the turnaround delay is waited instead. Allocates."""
        if table == "coil":
            fc = modbus.FC_WRITE_COIL if len(values) == 1 else modbus.FC_WRITE_COILS
            lim = modbus.MAX_WRITE_BITS
        elif table == "holding":
            fc = modbus.FC_WRITE_REGISTER if len(values) == 1 else modbus.FC_WRITE_REGISTERS
            lim = modbus.MAX_WRITE_REGS
            for v in values:
                if v < -32768 or v > 65535:
                    raise ValueError("register value %r out of 16 bits" % (v,))
        else:
            raise ValueError("table %r is read-only (write coil or holding)" % (table,))
        if not values or len(values) > lim:
            raise ValueError("1..%d values per write" % lim)
        if slave < 0 or slave > 247 or address < 0 or address + len(values) > 65536:
            raise ValueError("slave 0..247, address 0..65535")
        job = [slave, fc, address, values, asyncio.Event(), 0]
        if not self._running:
            await self._do_write(job)
            return job[5]
        self._wq.append(job)
        await job[4].wait()
        return job[5]

    async def read(self, slave, table, address, count):
        """Read count registers (or bits) of a table through the bus slot the writes use,
        between polls (the console's `modbus read` while commissioning). Returns
        (0, [values]) or (error code, None). Allocates."""
        fc = modbus.read_fc(table)
        if not fc:
            raise ValueError("table %r: holding, input, coil or discrete" % (table,))
        if slave < 1 or slave > 247 or count < 1 or count > 125 or address < 0 \
                or address + count > 65536:
            raise ValueError("slave 1..247, count 1..125, address 0..65535")
        job = [slave, fc, address, count, asyncio.Event(), 0]
        if not self._running:
            await self._do_write(job)
        else:
            self._wq.append(job)
            await job[4].wait()
        return job[5], None if job[5] else job[3]

    async def _do_read(self, job):
        slave, fc, addr, count = job[0], job[1], job[2], job[3]
        rtu = self.rtu
        rtu.rx = self._rxa
        n = rtu.build_read(slave, fc, addr, count)
        self._begin(rtu.tx, n, rtu.rx, False, rtu.expected())
        while self._pump():
            await asyncio.sleep_ms(0)
        code = self._result(self._got)
        si = self._si.get(slave)
        if si is not None:
            self._count(si, code)
        job[5] = code
        if code == 0:
            b = rtu.rx
            if fc <= modbus.FC_READ_DISCRETE:
                job[3] = [(b[3 + (i >> 3)] >> (i & 7)) & 1 for i in range(count)]
            else:
                job[3] = [(b[3 + 2 * i] << 8) | b[4 + 2 * i] for i in range(count)]

    async def _serve_writes(self):
        while self._wq:
            job = self._wq.pop(0)
            try:
                await self._do_write(job)
            except OSError:
                self.bus_errors += 1
                job[5] = modbus.ERR_TIMEOUT
            job[4].set()

    async def _do_write(self, job):
        slave, fc, addr, values = job[0], job[1], job[2], job[3]
        if self._pend >= 0:
            self._flush()
        if fc <= modbus.FC_READ_INPUT:  # a read (read()), served in the writes' slot
            await self._do_read(job)
            return
        rtu = self.rtu
        rtu.rx = self._rxa
        if fc == modbus.FC_WRITE_COIL or fc == modbus.FC_WRITE_REGISTER:
            n = rtu.build_write_single(slave, fc, addr, values[0])
        else:
            n = rtu.build_write_multiple(slave, fc, addr, values, len(values))
        si = self._si.get(slave)
        tries = self._retries + 1
        while True:
            got = await self._transact(rtu.tx, n, rtu.rx, slave == 0)
            if slave == 0:
                job[5] = 0 if got == 0 else modbus.ERR_FRAME
                return
            code = self._result(got)
            if si is not None:
                self._count(si, code)
            tries -= 1
            if not _retry(code) or tries <= 0:
                break
            if si is not None:
                self._inc(si * _NC + _C_RETRY)
        job[5] = code
