# Entry parsing of the queue's sectors with damage skipping: what recovery and the readers of
# the queue (core/queue/__init__.py) see of a sector. Design and format: docs/queue.md.
#
# Buffers, allocated once in __init__: hb (32 B: a sector header or the first 16 bytes of an
# entry), rb (group_bytes: one whole group entry), cb (64 B: scanning chunks). No sector-sized
# buffer: a 4 KiB contiguous block is hard to find in a fragmented small heap.
from binascii import crc32

from otlink.core.compat import const

from otlink.core.queue.fmt import (
    MAGIC, SHDR, GHDR, ACK_SIZE, BOOT_SIZE, T_GROUP, T_GROUP1, T_ACK, T_BOOT, u16, u32,
)

_CB = const(64)


class Scanner:
    """Reads and verifies entries of the sectors of a queue region (S bytes per sector)."""

    def __init__(self, dev, S, group_bytes):
        # attributes before buffers: the instance dict reaches its final size first
        self.dev = dev
        self.S = S
        self.gen = 0  # bumped whenever rb is reloaded
        self.end = 0  # walk() results: see walk()
        self.mid = 0
        self.clean_end = False
        self.rb = bytearray(group_bytes)
        self.rmv = memoryview(self.rb)
        self.hb = bytearray(SHDR)
        self.hmv = memoryview(self.hb)
        self.cb = bytearray(_CB)
        self.cmv = memoryview(self.cb)

    def hdr_ok(self, s):
        """Read sector s's header into hb; True when its magic and CRC verify."""
        self.dev.readblocks(s, self.hb, 0)
        b = self.hb
        return u32(b, 0) == MAGIC and u32(b, 28) == crc32(self.hmv[0:28])

    def clean(self, s, o):
        """True when bytes o..end of sector s are all erased (0xFF)."""
        S = self.S
        cb = self.cb
        while o < S:
            k = S - o if S - o < _CB else _CB
            self.dev.readblocks(s, self.cmv[0:k] if k < _CB else cb, o)
            for i in range(k):
                if cb[i] != 0xFF:
                    return False
            o += k
        return True

    def entry(self, s, o):
        """Size of the valid entry at offset o of sector s, 0 at clean free space, -1 if bad.

        Leaves the entry's first bytes in hb and, for a group, the whole entry in rb.
        """
        S = self.S
        k = S - o if S - o < GHDR else GHDR
        hb = self.hb
        self.dev.readblocks(s, self.hmv[0:k], o)
        t = hb[0]
        if t == T_GROUP or t == T_GROUP1:
            if k < GHDR:
                return -1
            size = GHDR + (u16(hb, 2) & 0x7FFF)  # bit 15: fmt.UNIFORM
            if o + size > S or size > len(self.rb) or hb[1] == 0:
                return -1
            rmv = self.rmv[0:size]
            self.dev.readblocks(s, rmv, o)
            self.gen += 1
            c = crc32(rmv[GHDR:size], crc32(rmv[0:12]))
            return size if c == u32(hb, 12) else -1
        if t == T_ACK:
            if k < ACK_SIZE:
                return -1
            c = crc32(self.hmv[4:8])
            if hb[1] == c & 0xFF and hb[2] == (c >> 8) & 0xFF and hb[3] == (c >> 16) & 0xFF:
                return ACK_SIZE
            return -1
        if t == T_BOOT:
            if k < BOOT_SIZE:
                return -1
            return BOOT_SIZE if crc32(self.hmv[0:8]) == u32(hb, 8) else -1
        if t == 0xFF:
            return 0 if self.clean(s, o) else -1
        return -1

    def resync(self, s, o, hi):
        """First offset >= o below hi where a group or boot entry verifies; hi if none.

        Acks (24-bit check) are not trusted here: a false ack would hide unsent readings.
        """
        cb = self.cb
        while o < hi:
            k = hi - o if hi - o < _CB else _CB
            self.dev.readblocks(s, self.cmv[0:k] if k < _CB else cb, o)
            for i in range(k):
                t = cb[i]
                if (t == T_GROUP or t == T_GROUP1 or t == T_BOOT) and self.entry(s, o + i) > 0:
                    return o + i
            o += k
        return hi

    def walk(self, s, hi, o=SHDR):
        """Yield (offset, size) of the valid entries of sector s from o below hi, skipping
        damage. o is SHDR or the offset of an entry already verified (a read hint). Each
        entry is in hb (and rb for a group) when yielded.

        Afterwards: end is the end of the last valid entry, clean_end tells whether all
        after it is erased, mid counts damaged spans followed by a valid entry (corruption;
        a damaged span at the very end is a torn write that never committed).
        """
        self.end = o
        self.mid = 0
        self.clean_end = False
        bad = False
        while o < hi:
            size = self.entry(s, o)
            if size > 0:
                if bad:
                    self.mid += 1
                    bad = False
                yield o, size
                o += size
                self.end = o
                continue
            if size == 0:
                self.clean_end = True
                return
            bad = True
            o = self.resync(s, o + 1, hi)
        if not bad and self.end >= self.S:
            self.clean_end = True
