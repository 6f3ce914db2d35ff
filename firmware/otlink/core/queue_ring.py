# Recovery of the queue after a reset or power cut, and the sector ring (opening the next
# sector, reclaiming or dropping the oldest). Design and format: docs/queue.md.
# Split from queue.py so each module compiles inside a 64 KiB heap.
from binascii import crc32

from otlink.core.queue_fmt import (
    MAGIC, M32, SHDR, BOOT_SIZE, T_GROUP, T_ACK, T_BOOT, sdiff, u32, put32,
)
from otlink.core.queue_read import QueueRead


class QueueRing(QueueRead):
    def _recover(self):
        n = self._n
        S = self._S
        self._sealed = False
        head = -1
        boot = 0
        emax = 0
        for s in range(n):
            if self._hdr_ok(s):
                b = self._hb
                self._valid[s] = 1
                self._sseq[s] = u32(b, 4)
                self._erases[s] = u32(b, 8)
                self._lo[s] = u32(b, 16)
                if u32(b, 8) > emax:
                    emax = u32(b, 8)
                if sdiff(u32(b, 12), boot) > 0:
                    boot = u32(b, 12)
                if head < 0 or sdiff(self._sseq[s], self._sseq[head]) > 0:
                    head = s
            else:
                self._valid[s] = 0
        for s in range(n):
            if not self._valid[s]:
                self._erases[s] = emax  # unknown: assume the worst seen
        if head < 0:
            # blank or unreadable region: format it
            self.boot = 1
            self._wseq = 1
            self._ack = 0
            self._head = n - 1
            self._sseq[n - 1] = M32
            self._sealed = True
            self._advance()
        else:
            self._hdr_ok(head)
            hb = self._hb
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
                for _o, _size in self._walk(s, S):
                    b = hb
                    t = b[0]
                    if t == T_GROUP:
                        first = u32(b, 4)
                        if sdiff(first, expect) > 0:
                            gaps.append((expect, first))
                        expect = (first + b[1]) & M32
                        if sdiff(u32(b, 8), boot) > 0:
                            boot = u32(b, 8)
                    elif t == T_ACK:
                        a = u32(b, 4)
                        if sdiff(a, ack) > 0:
                            ack = a
                    else:
                        a = u32(b, 4)
                        if sdiff(a, boot) > 0:
                            boot = a
                self.damaged += self._w_mid
                if s == head:
                    self._off = self._w_end
                    self._sealed = not self._w_clean
                    if not self._w_clean and self._w_end < S:
                        self.torn += 1
                s = self._next_valid(s)
                if s == tail:
                    break
            if sdiff(expect, wseq) > 0:
                wseq = expect
            if sdiff(ack, (wseq - 1) & M32) > 0:
                ack = (wseq - 1) & M32
            first = self._lo[tail]
            if sdiff(ack, (first - 1) & M32) < 0:
                ack = (first - 1) & M32
            for a, z in gaps:
                if sdiff(a, ack) <= 0:
                    a = (ack + 1) & M32
                d = sdiff(z, a)
                if d > 0:
                    self.corrupt += d
                    self.damaged += 1
            self._wseq = wseq
            self._ack = ack
            self._head = head
            self.boot = (boot + 1) & M32
        # persist the new boot counter before anything is committed under it
        if self._sealed or self._off + BOOT_SIZE > S:
            self._advance()  # the new header carries the boot counter
        else:
            e = self._e
            e[0] = T_BOOT
            e[1] = e[2] = e[3] = 0
            put32(e, 4, self.boot)
            put32(e, 8, crc32(self._emv[0:8]))
            self._prog(self._head, self._emv[0:BOOT_SIZE], self._off)
            self._off += BOOT_SIZE

    def _advance(self):
        """Open the next sector of the ring as the head. False when drop_newest forbids it."""
        n = self._n
        nxt = (self._head + 1) % n
        ack = self._ack
        if self._valid[nxt]:
            # the ring is full: nxt is the oldest sector, holding seqs lo[nxt]..lo[after]-1
            hi = self._lo[self._next_valid(nxt)]
            unacked = sdiff(hi, (ack + 1) & M32)
            if unacked > 0:
                if self.policy == "drop_newest":
                    return False
                self.drops += unacked
                ack = (hi - 1) & M32
                self._ack = ack
        self._valid[nxt] = 0
        if self._pager is not None:
            self._pager.forget(nxt)  # its page copy is of bytes about to be erased
        self._dev.ioctl(6, nxt)
        self.erases_run += 1
        self._erases[nxt] += 1
        sseq = (self._sseq[self._head] + 1) & M32
        self._write_header(nxt, sseq, ack)
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
