# Entry parsing of the queue with damage skipping (used by recovery and by the readers in
# queue_read.py). Queue (queue.py) extends QueueStats -> QueueRing -> QueueRead -> this; the
# split keeps every module small enough to compile inside a 64 KiB heap. Design and format:
# docs/queue.md.
#
# Buffers (allocated in Queue.__init__): _hb (32 B: sector header or the first 16 bytes of an
# entry), _rb (group_bytes: one whole group entry), _cb (64 B: scanning chunks). No sector-sized
# buffer: a 4 KiB contiguous block is hard to find in a fragmented small heap.
from binascii import crc32

from otlink.core.compat import const

from otlink.core.queue_fmt import (
    MAGIC, SHDR, GHDR, ACK_SIZE, BOOT_SIZE, T_GROUP, T_ACK, T_BOOT, u16, u32,
)

_CB = const(64)


class QueueScan:
    def _hdr_ok(self, s):
        """Read sector s's header into _hb; True when its magic and CRC verify."""
        self._dev.readblocks(s, self._hb, 0)
        b = self._hb
        return u32(b, 0) == MAGIC and u32(b, 28) == crc32(self._hmv[0:28])

    def _clean(self, s, o):
        """True when bytes o..end of sector s are all erased (0xFF)."""
        S = self._S
        cb = self._cb
        while o < S:
            k = S - o if S - o < _CB else _CB
            self._dev.readblocks(s, self._cmv[0:k] if k < _CB else cb, o)
            for i in range(k):
                if cb[i] != 0xFF:
                    return False
            o += k
        return True

    def _entry(self, s, o):
        """Size of the valid entry at offset o of sector s, 0 at clean free space, -1 if bad.

        Leaves the entry's first bytes in _hb and, for a group, the whole entry in _rb.
        """
        S = self._S
        k = S - o if S - o < GHDR else GHDR
        hb = self._hb
        self._dev.readblocks(s, self._hmv[0:k], o)
        t = hb[0]
        if t == T_GROUP:
            if k < GHDR:
                return -1
            size = GHDR + u16(hb, 2)
            if o + size > S or size > len(self._rb) or hb[1] == 0:
                return -1
            rmv = self._rmv[0:size]
            self._dev.readblocks(s, rmv, o)
            self._rgen += 1
            c = crc32(rmv[GHDR:size], crc32(rmv[0:12]))
            return size if c == u32(hb, 12) else -1
        if t == T_ACK:
            if k < ACK_SIZE:
                return -1
            c = crc32(self._hmv[4:8])
            if hb[1] == c & 0xFF and hb[2] == (c >> 8) & 0xFF and hb[3] == (c >> 16) & 0xFF:
                return ACK_SIZE
            return -1
        if t == T_BOOT:
            if k < BOOT_SIZE:
                return -1
            return BOOT_SIZE if crc32(self._hmv[0:8]) == u32(hb, 8) else -1
        if t == 0xFF:
            return 0 if self._clean(s, o) else -1
        return -1

    def _resync(self, s, o, hi):
        """First offset >= o below hi where a group or boot entry verifies; hi if none.

        Acks (24-bit check) are not trusted here: a false ack would hide unsent readings.
        """
        cb = self._cb
        while o < hi:
            k = hi - o if hi - o < _CB else _CB
            self._dev.readblocks(s, self._cmv[0:k] if k < _CB else cb, o)
            for i in range(k):
                t = cb[i]
                if (t == T_GROUP or t == T_BOOT) and self._entry(s, o + i) > 0:
                    return o + i
            o += k
        return hi

    def _walk(self, s, hi, o=SHDR):
        """Yield (offset, size) of the valid entries of sector s from o below hi, skipping
        damage. o is SHDR or the offset of an entry already verified (a read hint).

        Afterwards: _w_end is the end of the last valid entry, _w_clean tells whether all
        after it is erased, _w_mid counts damaged spans followed by a valid entry (corruption;
        a damaged span at the very end is a torn write that never committed).
        """
        self._w_end = o
        self._w_mid = 0
        self._w_clean = False
        bad = False
        while o < hi:
            size = self._entry(s, o)
            if size > 0:
                if bad:
                    self._w_mid += 1
                    bad = False
                yield o, size
                o += size
                self._w_end = o
                continue
            if size == 0:
                self._w_clean = True
                return
            bad = True
            o = self._resync(s, o + 1, hi)
        if not bad and self._w_end >= self._S:
            self._w_clean = True

    def _next_valid(self, s):
        n = self._n
        for _ in range(n):
            s = (s + 1) % n
            if self._valid[s]:
                return s
        return -1
