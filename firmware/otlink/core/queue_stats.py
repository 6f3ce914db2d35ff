# Queue statistics (depth, oldest reading, flash use, drops, damage, wear). Queue (queue.py)
# extends this; split so each module compiles inside a 64 KiB heap.
from otlink.core.queue_fmt import M32, sdiff
from otlink.core.queue_ring import QueueRing


class QueueStats(QueueRing):
    def depth(self):
        """Committed, unacknowledged readings."""
        d = sdiff(self._wseq, (self._ack + 1) & M32)
        return d if d > 0 else 0

    def stats(self):
        depth = self.depth()
        t = None
        for _seq, _boot, rec, _n in self.peek(1):
            t = 0
            for k in range(7, -1, -1):
                t = (t << 8) | rec[4 + k]
            if t >= 1 << 63:
                t -= 1 << 64
        nvalid = 0
        for i in range(self._n):
            if self._valid[i]:
                nvalid += 1
        used = (nvalid - 1) * self._S + self._off
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
