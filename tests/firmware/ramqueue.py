# A reading queue held in RAM with the flash queue's interface (otlink.core.queue.Queue):
# the "no durability" side of the durability-cost benchmark, and a stand-in in uplink tests.
# Fixed ring of slots allocated once; append/peek/ack do not allocate. Lost on reset.
from array import array

from otlink.core.queue.fmt import sdiff, wrap  # the firmware's one sequence arithmetic
from otlink.core.reading import MAX_SIZE


class RamQueue:
    """capacity records of at most `slot` bytes each (reading.SIZE holds numeric and error
    records in 20 bytes; the MAX_SIZE default also holds text records)."""

    def __init__(self, clock, capacity=4096, boot=1, first_seq=1, slot=MAX_SIZE):
        if capacity < 1 or not 12 <= slot <= 255:
            raise ValueError("ram queue capacity %r / slot %r: want >= 1 / 12..255"
                             % (capacity, slot))
        self.clock = clock
        self.capacity = capacity
        self.boot = boot
        self._slot = slot
        self._buf = bytearray(capacity * slot)
        self._mv = memoryview(self._buf)
        self._len = bytearray(capacity)  # record lengths (<= 255)
        self._boots = array("I", bytes(4 * capacity))
        # append time for oldest-age: ticks_ms() (a small int: the ticks period is 2**30 or
        # less). An append time is never ahead of now, so a negative ticks_diff means more
        # than half a period (6.2 days) ago: stats() takes it modulo the period (12.4 days)
        self._t = array("i", bytes(4 * capacity))
        for i in range(capacity):
            self._boots[i] = boot
        self._head = 0  # slot of the oldest unacknowledged record
        self._n = 0
        self._seq0 = first_seq % 0x100000000  # seq of the record in slot _head
        self.drops = 0
        self.appended = 0

    def append(self, rec, n):
        """Store one record (n bytes); return its seq. Does not allocate."""
        if n > self._slot or n < 1:
            raise ValueError("reading record length %d: want 1..%d" % (n, self._slot))
        if self._n == self.capacity:  # full: drop the oldest (policy drop_oldest)
            self._head = (self._head + 1) % self.capacity
            self._seq0 = wrap(self._seq0 + 1)
            self._n -= 1
            self.drops += 1
        i = (self._head + self._n) % self.capacity
        o = i * self._slot
        self._mv[o:o + n] = rec[:n] if n != len(rec) else rec
        self._len[i] = n
        self._boots[i] = self.boot
        self._t[i] = self.clock.ticks_ms()
        seq = wrap(self._seq0 + self._n)
        self._n += 1
        self.appended += 1
        return seq

    def tick(self, now_ms=None):
        pass

    def commit(self):
        pass

    def peek(self, max_n, start=None):
        """(seq, boot, rec, n) oldest unacknowledged first; from `start` when given (a seq
        inside the queue; nothing when it is past the tail). rec is a view into the ring."""
        return self.peek_from(start, max_n)

    def peek_from(self, start, max_n):
        """As the flash queue: a start before the oldest unacknowledged record is clamped
        to it; a start past the newest yields nothing."""
        skip = 0
        if start is not None:
            skip = sdiff(start, self._seq0)
            if skip < 0:
                skip = 0  # before the oldest (serial arithmetic)
            if skip >= self._n:
                return
        cap = self.capacity
        k = skip
        while k < self._n and k - skip < max_n:
            i = (self._head + k) % cap
            o = i * self._slot
            n = self._len[i]
            yield wrap(self._seq0 + k), self._boots[i], self._mv[o:o + n], n
            k += 1

    def ack(self, seq):
        """Acknowledge everything up to seq (serial arithmetic); older/unknown seqs ignored."""
        k = sdiff(seq, self._seq0) + 1
        if k < 1 or k > self._n:
            return
        self._head = (self._head + k) % self.capacity
        self._seq0 = wrap(self._seq0 + k)
        self._n -= k

    @property
    def first_seq(self):
        return self._seq0

    def depth(self):
        return self._n

    def stats(self):
        age = 0
        if self._n:
            age = self.clock.ticks_diff(self.clock.ticks_ms(), self._t[self._head])
            if age < 0:
                age = age + 0x3FFFFFFF + 1  # the boards' period, 2**30, in small ints
        return {"depth": self._n, "oldest_age_ms": age, "drops": self.drops, "boot": self.boot,
                "bytes_used": self._n * self._slot, "next_seq": wrap(self._seq0 + self._n)}
