# Store-and-forward queue of reading records on a raw flash region (design: docs/queue.md,
# bytes: docs/queue.md "On-flash format"). Pure core: the region is any object with
# MicroPython's extended block protocol (readblocks(n, buf, off), writeblocks(n, buf, off),
# ioctl(4|5|6)): esp32.Partition, rp2.Flash, or hal.norflash regions on the Unix port.
#
# Commit point: a group of readings is committed when the last byte of its CRC-protected group
# entry has been programmed; recovery returns exactly the groups whose CRC verifies.
#
# Allocation contract: append() does not allocate unless it commits; a commit allocates a few
# small memoryview objects for the flash write. peek() yields a reused record buffer.
import gc
from array import array
from binascii import crc32

from otlink.core.queue_fmt import (
    M32, SHDR, GHDR, ACK_SIZE, T_GROUP, T_ACK, CMP, MAX_REC, MAX_ENC, POLICIES, sdiff, put32,
)
from otlink.core.queue_codec import enc, zero
from otlink.core.queue_stats import QueueStats


class QueueError(Exception):
    pass


class Queue(QueueStats):
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
        # Every attribute recovery sets exists from here on, before any buffer: the instance
        # dict reaches its final size now, rather than growing (one contiguous block) in
        # _recover() after the buffers have split the heap.
        self.boot = 0
        self._wseq = 0
        self._ack = 0
        self._head = 0
        self._off = 0
        self._sealed = False
        self._w_end = 0  # _walk() results, also set before the first read
        self._w_mid = 0
        self._w_clean = False
        self._dev = dev
        self._clock = clock
        self._S = S
        self._n = n
        self.commit_count = commit_count
        self.commit_ms = commit_ms
        self.policy = policy
        # buffers, allocated once (the biggest first, after a collection: boot-time only)
        gc.collect()
        self._g = bytearray(group_bytes)  # staging: group header + encoded records
        self._gmv = memoryview(self._g)
        self._room = group_bytes - GHDR - MAX_ENC  # body length above which a record may not fit
        self._rb = bytearray(group_bytes)  # one group entry read back from flash
        self._rmv = memoryview(self._rb)
        self._rgen = 0  # bumped whenever _rb is reloaded
        # read hint (peek_from): the last group read, valid while sector _h_s keeps _h_sseq
        self._h_s = -1
        self._h_o = 0
        self._h_seq = 0
        self._h_sseq = 0
        self._hb = bytearray(SHDR)  # a sector header, or the first bytes of an entry
        self._hmv = memoryview(self._hb)
        self._cb = bytearray(64)  # scanning chunk
        self._cmv = memoryview(self._cb)
        self._pager = None
        if prog_size > 1:
            # page-programmed flash (rp2: 256): every program is one whole aligned page
            from otlink.core.queue_page import Pager

            self._pager = Pager(dev, prog_size)
        # per-sector state (RAM mirror of the sector headers)
        self._sseq = array("I", (0 for _ in range(n)))  # sector sequence, serial
        self._lo = array("I", (0 for _ in range(n)))  # first seq committed into the sector
        self._erases = array("I", (0 for _ in range(n)))  # persisted erase count
        self._valid = bytearray(n)  # 1: the sector belongs to the log
        self._prev = bytearray(CMP)  # previous record of the staged group (mask encoding)
        self._e = bytearray(SHDR)  # small entries (sector header, ack, boot)
        self._emv = memoryview(self._e)
        # staging state
        self._cnt = 0
        self._blen = 0
        self._t0 = 0
        # counters
        self.drops = 0
        self.corrupt = 0  # unacknowledged readings lost to damage found at recovery
        self.damaged = 0  # damaged entries or sectors skipped
        self.torn = 0  # uncommitted tails found at recovery (power cut mid-write)
        self.read_errors = 0
        self.erases_run = 0
        self.commits = 0
        self._recover()

    # ---------------- append / commit ----------------

    def append(self, rec, n):
        """Stage one reading record (n bytes, 12..76); return its sequence number.

        Commits first when the group is full. Does not allocate (except in that commit).
        """
        if n > MAX_REC or n < 1 or n > len(rec):
            raise ValueError("reading record length %d: want 1..%d and <= len(rec) %d"
                             % (n, MAX_REC, len(rec)))
        if self._blen > self._room or self._cnt >= self.commit_count:
            self.commit()
        o = enc(self._g, GHDR + self._blen, rec, self._prev, n)
        if self._cnt == 0:
            self._t0 = self._clock.ticks_ms()
        seq = (self._wseq + self._cnt) & M32
        self._cnt += 1
        self._blen = o - GHDR
        if self._cnt >= self.commit_count:
            self.commit()
        return seq

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
        size = GHDR + self._blen
        if self._sealed or self._off + size > self._S:
            if not self._advance():
                # drop_newest and the flash is full of unacknowledged readings
                self.drops += cnt
                self._reset_stage()
                return 0
        g = self._g
        g[0] = T_GROUP
        g[1] = cnt
        g[2] = self._blen & 0xFF
        g[3] = self._blen >> 8
        put32(g, 4, self._wseq)
        put32(g, 8, self.boot)
        c = crc32(self._gmv[GHDR:size], crc32(self._gmv[0:12]))
        put32(g, 12, c)
        self._prog(self._head, self._gmv[0:size], self._off)
        self._off += size
        self._wseq = (self._wseq + cnt) & M32
        self.commits += 1
        self._reset_stage()
        return cnt

    def _reset_stage(self):
        self._cnt = 0
        self._blen = 0
        zero(self._prev)

    # ---------------- acknowledge ----------------

    def ack(self, seq):
        """Acknowledge every committed reading up to seq (delivery confirmed); persisted."""
        seq &= M32
        if sdiff(seq, self._ack) <= 0:
            return
        last = (self._wseq - 1) & M32
        if sdiff(seq, last) > 0:
            raise ValueError("ack %d beyond the last committed reading %d" % (seq, last))
        if self._sealed or self._off + ACK_SIZE > self._S:
            # No room in the head: the next sector's header records the ack. With drop_newest
            # and a ring full of unacknowledged readings there is no next sector yet: the ack
            # then lives in RAM until one opens (a reboot before that re-delivers, never loses).
            self._ack = seq
            self._advance()
            return
        else:
            e = self._e
            e[0] = T_ACK
            put32(e, 4, seq)
            c = crc32(self._emv[4:8])
            e[1] = c & 0xFF
            e[2] = (c >> 8) & 0xFF
            e[3] = (c >> 16) & 0xFF
            self._prog(self._head, self._emv[0:ACK_SIZE], self._off)
            self._off += ACK_SIZE
        self._ack = seq

    # ---------------- sector management ----------------
