# Store-and-forward queue of reading records on a raw flash region (design: docs/queue.md,
# bytes: docs/queue.md "On-flash format"). Pure core: the region is any object with
# MicroPython's extended block protocol (readblocks(n, buf, off), writeblocks(n, buf, off),
# ioctl(4|5|6)): esp32.Partition, rp2.Flash, or hal.unix.norflash regions on the Unix port.
#
# The package: fmt (on-flash constants, serial arithmetic), scan (Scanner: reads and verifies
# a sector's entries, skipping damage), page (Pager: whole-page programs for rp2), codec (the
# record codec: native, with the bytecode codec_py as fallback). This module is the Queue:
# recovery, the sector ring, append/commit, ack, reading back, statistics.
#
# Commit point: a group of readings is committed when the last byte of its CRC-protected group
# entry has been programmed; recovery returns exactly the groups whose CRC verifies.
#
# Allocation contract: append() does not allocate unless it commits, on 32-bit ports too (it
# creates no int >= 2**30). A commit or an ack allocates a few small objects for the flash
# write (memoryviews; CRCs and sequence numbers >= 2**30 on 32-bit ports: bounds measured in
# tests/firmware/test_queue.py). peek() yields a reused record buffer.
import gc
from array import array
from binascii import crc32

from otlink.core.reading import unpack
from otlink.core.queue.fmt import (
    MAGIC, M32, SHDR, GHDR, ACK_SIZE, T_GROUP, T_GROUP1, T_ACK, CMP, MAX_REC, MAX_ENC, UNIFORM,
    DMAX,
    POLICIES, sdiff, wrap, u16, u32, put32,
)
from otlink.core.queue.codec import enc, decn, zero, squeeze, copy
from otlink.core.queue.scan import Scanner


class Queue:
    def __init__(self, dev, clock, commit_count=64, commit_ms=1000, capacity=None,
                 policy="drop_oldest", group_bytes=512, prog_size=1):
        if policy not in POLICIES:
            raise ValueError("queue policy %r: want one of %s" % (policy, ", ".join(POLICIES)))
        if commit_count < 1 or commit_count > 255:
            raise ValueError("queue commit_count %r: want 1..255" % (commit_count,))
        if commit_ms < 0:
            raise ValueError("queue commit_ms %r: want >= 0" % (commit_ms,))
        S = dev.ioctl(5, 0)
        n = dev.ioctl(4, 0)
        if capacity is not None:
            if capacity < 2 * S:
                raise ValueError("queue capacity %r: want at least 2 sectors (%d bytes)"
                                 % (capacity, 2 * S))
            n = min(n, capacity // S)
        if n < 2:
            raise ValueError("queue region has %d sectors: want at least 2" % n)
        if group_bytes < GHDR + MAX_ENC or group_bytes > S - SHDR:
            raise ValueError("queue group_bytes %r: want %d..%d" % (group_bytes, GHDR + MAX_ENC,
                                                                   S - SHDR))
        if prog_size < 1 or S % prog_size or prog_size & (prog_size - 1):
            raise ValueError("queue prog_size %r: want 1 or a power of 2 dividing %d"
                             % (prog_size, S))
        # Every attribute exists from here on, before any buffer: the instance dict reaches its
        # final size now, rather than growing (one contiguous block) in _recover() after the
        # buffers have split the heap.
        self.boot = 0
        self._wseq = 0  # seq of the next reading committed
        self._ack = 0  # last acknowledged seq
        self._head = 0  # sector being filled
        self._off = 0  # first free byte in it
        self._sealed = False  # the head takes no more entries (torn tail found at recovery)
        self._hboot = 0  # boot counter in the head sector's header (group boot deltas)
        self._ack_due = False  # _ack not persisted yet: rides in the staged group's header
        self._dev = dev
        self._clock = clock
        self._S = S
        self._n = n
        self.commit_count = commit_count
        self.commit_ms = commit_ms
        self.policy = policy
        # staging state
        self._cnt = 0
        self._blen = 0
        self._t0 = 0
        # read hint (peek_from): the last group read, valid while sector _h_s keeps _h_sseq
        self._h_s = -1
        self._h_o = 0
        self._h_seq = 0
        self._h_sseq = 0
        # counters
        self.drops = 0
        self.corrupt = 0  # unacknowledged readings lost to damage found at recovery
        self.damaged = 0  # damaged entries or sectors skipped
        self.torn = 0  # uncommitted tails found at recovery (power cut mid-write)
        self.read_errors = 0
        self.erases_run = 0
        self.commits = 0
        self._pager = None
        self._scan = None
        self._gb = group_bytes
        self._uni = 0  # length of every staged record when all are unmasked and alike, else 0
        # buffers, allocated once (the biggest first, after a collection: boot-time only)
        gc.collect()
        self._g = bytearray(group_bytes)  # staging: group header + encoded records
        self._gmv = memoryview(self._g)
        self._scan = Scanner(dev, S, group_bytes)
        if prog_size > 1:
            # page-programmed flash (rp2: 256): every program is one whole aligned page
            from otlink.core.queue.page import Pager

            self._pager = Pager(dev, prog_size)
        # per-sector state (RAM mirror of the sector headers)
        self._sseq = array("I", (0 for _ in range(n)))  # sector sequence, serial
        self._lo = array("I", (0 for _ in range(n)))  # first seq committed into the sector
        self._erases = array("I", (0 for _ in range(n)))  # persisted erase count
        self._valid = bytearray(n)  # 1: the sector belongs to the log
        self._prev = bytearray(CMP)  # previous record of the staged group (mask encoding)
        self._e = bytearray(SHDR)  # small entries (sector header, ack, boot)
        self._emv = memoryview(self._e)
        self._recover()
        self._settle()

    # ---------------- append / commit ----------------

    def append(self, rec, n):
        """Stage one reading record (n bytes, 1..76 and <= len(rec)).

        Commits first when the group is full. Does not allocate (except in that commit).
        The reading's sequence number is last_seq (not returned: on a 32-bit port a seq
        >= 2**30 would be a heap object).
        """
        if n > MAX_REC or n < 1 or n > len(rec):
            raise ValueError("reading record length %d: want 1..%d and <= len(rec) %d"
                             % (n, MAX_REC, len(rec)))
        blen = self._blen
        if self._cnt:
            # Where the staged group goes: the head's free room, else (it does not fit
            # there) a new sector. A record that might not fit with it commits it first, so
            # groups fill sectors to within a record rather than leaving half a group's
            # room unused at each sector's end (docs/queue.md "Write amplification").
            lim = 0 if self._sealed else self._S - self._off
            if lim > self._gb or GHDR + blen > lim:
                lim = self._gb
            if GHDR + blen + n + 1 > lim or self._cnt >= self.commit_count:
                self.commit()
                blen = 0
        o = GHDR + blen
        g = self._g
        p = enc(g, o, rec, self._prev, n)
        if self._cnt == 0:
            self._t0 = self._clock.ticks_ms()
            self._uni = n if g[o] == n else 0  # unmasked: the length byte is n itself
        elif self._uni != g[o]:
            self._uni = 0
        self._cnt += 1
        self._blen = p - GHDR
        if self._cnt >= self.commit_count:
            self.commit()

    @property
    def last_seq(self):
        """Sequence number of the last reading appended (staged or committed)."""
        return wrap(self._wseq + self._cnt - 1)

    @property
    def staged(self):
        """Readings appended but not yet committed (lost if power fails now)."""
        return self._cnt

    def tick(self, now_ms):
        """Group commit when the oldest staged reading has waited commit_ms. Call often."""
        if self._cnt and self._clock.ticks_diff(now_ms, self._t0) >= self.commit_ms:
            self.commit()

    def commit(self):
        """Write the staged readings as one group; returns how many were committed."""
        cnt = self._cnt
        if not cnt:
            return 0
        blen = self._blen
        u = self._uni
        if u:
            # every record unmasked and n bytes long: the length bytes carry nothing
            squeeze(self._g, GHDR, cnt, u)
            blen = cnt * u
            self._blen = blen
        size = GHDR + blen
        if (self._sealed or self._off + size > self._S
                or wrap(self.boot - self._hboot) > DMAX):
            if not self._advance():
                # drop_newest and the flash is full of unacknowledged readings
                self.drops += cnt
                self._reset_stage()
                if self._ack_due:
                    self._put_ack()
                return 0
        g = self._g
        g[0] = T_GROUP
        g[1] = cnt
        g[2] = blen & 0xFF
        g[3] = (blen | UNIFORM) >> 8 if u else blen >> 8
        put32(g, 4, self._wseq)
        # boot as a delta from the sector header's, the ack as a distance below first_seq
        # (saturated: a lower bound, which at worst re-delivers)
        d = wrap(self.boot - self._hboot)
        g[8] = d & 0xFF
        g[9] = d >> 8
        d = wrap(self._wseq - 1 - self._ack)
        if d > DMAX:
            d = DMAX
        g[10] = d & 0xFF
        g[11] = d >> 8
        c = crc32(self._gmv[GHDR:size], crc32(self._gmv[0:12]))
        put32(g, 12, c)
        self._prog(self._head, self._gmv[0:size], self._off)
        self._off += size
        self._wseq = wrap(self._wseq + cnt)
        self.commits += 1
        if d < DMAX:
            self._ack_due = False
        self._reset_stage()
        return cnt

    def _reset_stage(self):
        self._cnt = 0
        self._blen = 0
        self._uni = 0
        zero(self._prev)

    # ---------------- acknowledge ----------------

    def ack(self, seq):
        """Acknowledge every committed reading up to seq (delivery confirmed); persisted now,
        or, while readings are staged, in the header of their group (at their commit: within
        commit_ms). A power cut before that re-delivers those readings, never loses any."""
        if seq < 0 or seq > M32:
            seq &= M32
        if sdiff(seq, self._ack) <= 0:
            return
        last = wrap(self._wseq - 1)
        if sdiff(seq, last) > 0:
            raise ValueError("ack %d beyond the last committed reading %d" % (seq, last))
        self._ack = seq
        if self._cnt and sdiff(last, seq) < DMAX:
            self._ack_due = True  # the staged group carries it: no ack entry
            return
        self._put_ack()

    @property
    def ack_pending(self):
        """True while the last ack is in RAM only (it rides in the staged group)."""
        return self._ack_due

    def _put_ack(self):
        seq = self._ack
        self._ack_due = False
        if self._sealed or self._off + ACK_SIZE > self._S:
            # No room in the head: the next sector's header records the ack. With drop_newest
            # and a ring full of unacknowledged readings there is no next sector yet: the ack
            # then lives in RAM until one opens (a reboot before that re-delivers, never loses).
            self._advance()
            return
        e = self._e
        e[0] = T_ACK
        put32(e, 4, seq)
        c = crc32(self._emv[4:8])
        e[1] = c & 0xFF
        e[2] = (c >> 8) & 0xFF
        e[3] = (c >> 16) & 0xFF
        self._prog(self._head, self._emv[0:ACK_SIZE], self._off)
        self._off += ACK_SIZE

    # ---------------- reading back ----------------

    def depth(self):
        """Committed, unacknowledged readings."""
        d = sdiff(self._wseq, wrap(self._ack + 1))
        return d if d > 0 else 0

    def peek(self, max_n):
        """Yield (seq, boot, rec, n) for up to max_n committed, unacknowledged readings.

        Oldest first, contiguous in log order. rec is a buffer of this call, overwritten by
        the next iteration. Allocates (generator, tuples): not for hot paths.
        """
        return self._read(wrap(self._ack + 1), max_n)

    def peek_from(self, start_seq, max_n):
        """Like peek(), but from start_seq: up to max_n committed, unacknowledged readings
        with seq at or after start_seq (serial arithmetic), oldest first.

        A start before the first unacknowledged reading is clamped to it; a start after the
        newest committed reading yields nothing. Seeks: the per-sector first-seq mirror
        picks the sector, and a hint left by the previous read (sector, entry offset, first
        seq, sector sequence) skips the groups already passed in it, so a consumer that
        reads on from where its last batch ended re-reads about one group, not the backlog.
        """
        want = wrap(self._ack + 1)
        if start_seq < 0 or start_seq > M32:
            start_seq &= M32
        if sdiff(start_seq, want) > 0:
            want = start_seq
        return self._read(want, max_n)

    def _sector_of(self, seq):
        """Log sector holding seq: walking back from the head, the first with lo <= seq."""
        n = self._n
        s = self._head
        for _ in range(n):
            if self._valid[s] and sdiff(self._lo[s], seq) <= 0:
                return s
            s = (s - 1) % n
        return self._next_valid(self._head)  # older than the log: start at the tail

    def _read(self, want, max_n):
        if sdiff(want, self._wseq) >= 0 or max_n <= 0:
            return
        s = self._sector_of(want)
        o = SHDR
        hs = self._h_s
        if (hs == s and self._valid[s] and self._sseq[s] == self._h_sseq
                and sdiff(want, self._h_seq) >= 0):
            o = self._h_o  # an entry verified by an earlier read, at or before want
        got = 0
        rec = bytearray(MAX_REC)
        prev = bytearray(CMP)
        sc = self._scan
        b = sc.rb
        while s >= 0:
            hi = self._off if s == self._head else self._S
            sc.hdr_ok(s)
            sboot = u32(sc.hb, 12)  # the groups' boot deltas are from the sector's header
            for eo, size in sc.walk(s, hi, o):
                t = sc.hb[0]
                if t != T_GROUP and t != T_GROUP1:
                    continue
                first = u32(b, 4)
                cnt = b[1]
                if sdiff(wrap(first + cnt), want) <= 0:
                    continue
                # remember this group: the next read from a seq >= first starts here
                self._h_s = s
                self._h_o = eo
                self._h_seq = first
                self._h_sseq = self._sseq[s]
                gboot = wrap(sboot + u16(b, 8)) if t == T_GROUP else u32(b, 8)
                gen = sc.gen
                zero(prev)
                i = sdiff(want, first)
                if i < 0:
                    i = 0
                un = 0  # uniform body: record length
                if u16(b, 2) & UNIFORM:
                    un = (size - GHDR) // cnt
                    if un < 1 or un > MAX_REC or un * cnt != size - GHDR:
                        self.read_errors += 1
                        continue
                    p = GHDR + i * un
                else:
                    # readings of this group before want: decoded (each is the base of the
                    # next) but not yielded
                    p = decn(b, GHDR, size, rec, prev, i) if i else GHDR
                while p > 0 and i < cnt:
                    if un:
                        copy(b, p, rec, un)
                        p += un
                        n = un
                    else:
                        n = p  # the record's length byte is at the old offset
                        p = decn(b, p, size, rec, prev, 1)
                        if p < 0:
                            break
                        n = b[n] & 0x7F
                    yield wrap(first + i), gboot, rec, n
                    got += 1
                    if got >= max_n:
                        return
                    i += 1
                    if sc.gen != gen:
                        # the consumer read other entries meanwhile: reload this group
                        self._dev.readblocks(s, sc.rmv[0:size], eo)
                        self._dev.readblocks(s, sc.hmv[0:GHDR], eo)
                        sc.gen += 1
                        gen = sc.gen
                if p < 0:
                    self.read_errors += 1  # a verified group that does not decode: skipped
            if s == self._head:
                return
            s = self._next_valid(s)
            o = SHDR

    # ---------------- recovery ----------------

    def _recover(self):
        n = self._n
        S = self._S
        sc = self._scan
        hb = sc.hb
        self._sealed = False
        head = -1
        boot = 0
        emax = 0
        for s in range(n):
            if sc.hdr_ok(s):
                self._valid[s] = 1
                self._sseq[s] = u32(hb, 4)
                self._erases[s] = u32(hb, 8)
                self._lo[s] = u32(hb, 16)
                if self._erases[s] > emax:
                    emax = self._erases[s]
                if sdiff(u32(hb, 12), boot) > 0:
                    boot = u32(hb, 12)
                if head < 0 or sdiff(self._sseq[s], self._sseq[head]) > 0:
                    head = s
            else:
                self._valid[s] = 0
        for s in range(n):
            if not self._valid[s]:
                self._erases[s] = emax  # unknown: assume the worst seen
        if head < 0:
            # blank or unreadable region: the first write formats it (opens sector 0)
            self.boot = 1
            self._wseq = 1
            self._ack = 0
            self._head = n - 1
            self._sseq[n - 1] = M32
            self._sealed = True
        else:
            sc.hdr_ok(head)
            ack = u32(hb, 20)
            self.drops = u32(hb, 24)
            wseq = u32(hb, 16)
            gaps = []
            expect = -1
            tail = self._next_valid(head)
            s = tail
            while True:
                lo = self._lo[s]
                if expect >= 0 and sdiff(lo, expect) > 0:
                    gaps.append((expect, lo))
                expect = lo
                sc.hdr_ok(s)
                sboot = u32(hb, 12)
                if s == head:
                    self._hboot = sboot
                for _o, _size in sc.walk(s, S):
                    t = hb[0]
                    if t == T_GROUP or t == T_GROUP1:
                        first = u32(hb, 4)
                        if sdiff(first, expect) > 0:
                            gaps.append((expect, first))
                        expect = wrap(first + hb[1])
                        if t == T_GROUP:
                            b = wrap(sboot + u16(hb, 8))
                            a = wrap(first - 1 - u16(hb, 10))
                            if sdiff(a, ack) > 0:
                                ack = a
                        else:
                            b = u32(hb, 8)
                        if sdiff(b, boot) > 0:
                            boot = b
                    elif t == T_ACK:
                        a = u32(hb, 4)
                        if sdiff(a, ack) > 0:
                            ack = a
                    else:
                        a = u32(hb, 4)
                        if sdiff(a, boot) > 0:
                            boot = a
                self.damaged += sc.mid
                if s == head:
                    self._off = sc.end
                    self._sealed = not sc.clean_end
                    if not sc.clean_end and sc.end < S:
                        self.torn += 1
                s = self._next_valid(s)
                if s == tail:
                    break
            if sdiff(expect, wseq) > 0:
                wseq = expect
            if sdiff(ack, wrap(wseq - 1)) > 0:
                ack = wrap(wseq - 1)
            first = self._lo[tail]
            if sdiff(ack, wrap(first - 1)) < 0:
                ack = wrap(first - 1)
            for a, z in gaps:
                if sdiff(a, ack) <= 0:
                    a = wrap(ack + 1)
                d = sdiff(z, a)
                if d > 0:
                    self.corrupt += d
                    self.damaged += 1
            self._wseq = wseq
            self._ack = ack
            self._head = head
            self.boot = wrap(boot + 1)
        # Nothing is written at open: the new boot counter is persisted by the first write of
        # this run (a group header carries it, and so does a sector header), so a start that
        # fails before writing anything (out of memory further on, a power cut) does not
        # spend a boot number, and a cut during recovery cannot damage anything.

    def _settle(self):
        """Leave the heap as a fresh image's after recovery, whatever the history.

        Recovery's garbage grows with what the region holds (every entry walked); left
        uncollected, the modules imported next would land above it and split the free heap
        when it is finally collected. Values that may be heap ints (>= 2**30 on 32-bit
        ports) were allocated in the middle of that garbage: they are re-made after the
        collection, next to the queue's buffers, so none is left stranded.
        """
        e = self._e
        put32(e, 0, self._wseq)
        put32(e, 4, self._ack)
        put32(e, 8, self.boot)
        put32(e, 12, self.drops)
        self._wseq = self._ack = self.boot = self.drops = 0
        gc.collect()
        self._wseq = u32(e, 0)
        self._ack = u32(e, 4)
        self.boot = u32(e, 8)
        self.drops = u32(e, 12)

    # ---------------- the sector ring ----------------

    def _next_valid(self, s):
        n = self._n
        for _ in range(n):
            s = (s + 1) % n
            if self._valid[s]:
                return s
        return -1

    def _advance(self):
        """Open the next sector of the ring as the head. False when drop_newest forbids it."""
        n = self._n
        nxt = (self._head + 1) % n
        ack = self._ack
        if self._valid[nxt]:
            # the ring is full: nxt is the oldest sector, holding seqs lo[nxt]..lo[after]-1
            hi = self._lo[self._next_valid(nxt)]
            unacked = sdiff(hi, wrap(ack + 1))
            if unacked > 0:
                if self.policy == "drop_newest":
                    return False
                self.drops += unacked
                ack = wrap(hi - 1)
                self._ack = ack
        self._valid[nxt] = 0
        if self._pager is not None:
            self._pager.forget(nxt)  # its page copy is of bytes about to be erased
        self._dev.ioctl(6, nxt)
        self.erases_run += 1
        self._erases[nxt] += 1
        sseq = wrap(self._sseq[self._head] + 1)
        self._write_header(nxt, sseq, ack)
        self._ack_due = False  # the header carries the ack
        self._hboot = self.boot
        self._sseq[nxt] = sseq
        self._lo[nxt] = self._wseq
        self._valid[nxt] = 1
        self._head = nxt
        self._off = SHDR
        self._sealed = False
        return True

    def _write_header(self, s, sseq, ack):
        e = self._e
        put32(e, 0, MAGIC)
        put32(e, 4, sseq)
        put32(e, 8, self._erases[s])
        put32(e, 12, self.boot)
        put32(e, 16, self._wseq)
        put32(e, 20, ack)
        put32(e, 24, self.drops)
        put32(e, 28, crc32(self._emv[0:28]))
        self._prog(s, self._emv[0:SHDR], 0)

    def _prog(self, s, mv, off):
        """Program mv at offset off of sector s, whose bytes there are erased."""
        if self._pager is None:
            self._dev.writeblocks(s, mv, off)
        else:
            self._pager.prog(s, mv, off)

    # ---------------- statistics ----------------

    def stats(self):
        depth = self.depth()
        t = None
        for _seq, _boot, rec, n in self.peek(1):
            try:
                t = unpack(rec, n)[3]
            except ValueError:  # the queue stores any record; only a reading has a time
                pass
        nvalid = 0
        for i in range(self._n):
            if self._valid[i]:
                nvalid += 1
        used = (nvalid - 1) * self._S + self._off if nvalid else 0
        er = self._erases
        emax = max(er)
        emean = sum(er) / len(er)
        st = {
            "depth": depth,
            "staged": self._cnt,
            "oldest_t_ms": t,
            "bytes_used": used,
            "bytes_total": self._n * self._S,
            "drops": self.drops,
            "corrupt_skipped": self.corrupt,
            "damaged": self.damaged,
            "torn": self.torn,
            "read_errors": self.read_errors,
            "erases_run": self.erases_run,
            "erase_max": emax,
            "erase_mean": emean,
            "commits": self.commits,
            "boot": self.boot,
            "next_seq": self._wseq,
            "acked": self._ack,
        }
        if t is not None:
            try:
                st["oldest_age_ms"] = self._clock.now_ms() - t
            except Exception:
                st["oldest_age_ms"] = None
        return st
