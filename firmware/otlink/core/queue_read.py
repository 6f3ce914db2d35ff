# Read side of the queue: peek() from the oldest unacknowledged reading and peek_from() from a
# given sequence number (docs/queue.md "Reading"). Split from queue_scan.py so each module
# compiles inside a 64 KiB heap.
from otlink.core.queue_fmt import M32, SHDR, GHDR, T_GROUP, CMP, MAX_REC, sdiff, u32
from otlink.core.queue_codec import decn, zero
from otlink.core.queue_scan import QueueScan


class QueueRead(QueueScan):
    def _sector_of(self, seq):
        """Log sector holding seq: walking back from the head, the first with lo <= seq."""
        n = self._n
        s = self._head
        for _ in range(n):
            if self._valid[s] and sdiff(self._lo[s], seq) <= 0:
                return s
            s = (s - 1) % n
        return self._next_valid(self._head)  # older than the log: start at the tail

    def peek(self, max_n):
        """Yield (seq, boot, rec, n) for up to max_n committed, unacknowledged readings.

        Oldest first, contiguous in log order. rec is a buffer of this call, overwritten by
        the next iteration. Allocates (generator, tuples): not for hot paths.
        """
        return self._read((self._ack + 1) & M32, max_n)

    def peek_from(self, start_seq, max_n):
        """Like peek(), but from start_seq: up to max_n committed, unacknowledged readings
        with seq at or after start_seq (serial arithmetic), oldest first.

        A start before the first unacknowledged reading is clamped to it; a start after the
        newest committed reading yields nothing. Seeks: the per-sector first-seq mirror
        picks the sector, and a hint left by the previous read (sector, entry offset, first
        seq, sector sequence) skips the groups already passed in it, so a consumer that
        reads on from where its last batch ended re-reads about one group, not the backlog.
        """
        want = (self._ack + 1) & M32
        start_seq &= M32
        if sdiff(start_seq, want) > 0:
            want = start_seq
        return self._read(want, max_n)

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
        b = self._rb
        while s >= 0:
            hi = self._off if s == self._head else self._S
            for eo, size in self._walk(s, hi, o):
                if self._hb[0] != T_GROUP:
                    continue
                first = u32(b, 4)
                cnt = b[1]
                if sdiff((first + cnt) & M32, want) <= 0:
                    continue
                # remember this group: the next read from a seq >= first starts here
                self._h_s = s
                self._h_o = eo
                self._h_seq = first
                self._h_sseq = self._sseq[s]
                gboot = u32(b, 8)
                gen = self._rgen
                zero(prev)
                # readings of this group before want: decoded (each is the base of the next)
                # but not yielded
                i = sdiff(want, first)
                if i < 0:
                    i = 0
                p = decn(b, GHDR, size, rec, prev, i) if i else GHDR
                while p > 0 and i < cnt:
                    n = p  # the record's length byte is at the old offset
                    p = decn(b, p, size, rec, prev, 1)
                    if p < 0:
                        break
                    n = b[n] & 0x7F
                    yield (first + i) & M32, gboot, rec, n
                    got += 1
                    if got >= max_n:
                        return
                    i += 1
                    if self._rgen != gen:
                        # the consumer read other entries meanwhile: reload this group
                        self._dev.readblocks(s, self._rmv[0:size], eo)
                        self._dev.readblocks(s, self._hmv[0:GHDR], eo)
                        self._rgen += 1
                        gen = self._rgen
                if p < 0:
                    self.read_errors += 1  # a verified group that does not decode: skipped
            if s == self._head:
                return
            s = self._next_valid(s)
            o = SHDR
