# Page-buffered programs for page-programmed flash (rp2.Flash: flash_range_program takes
# whole, aligned 256-byte pages). Imported by the queue only when prog_size > 1, so the
# byte-programmable case (ESP32) does not carry it. Design: docs/queue.md "Page-programmed
# flash".


class Pager:
    """Keeps a RAM copy of the page being filled; every program is that whole page.

    Bytes already on flash in the page are sent again with their own value: a NOR program only
    clears bits, so they cannot change, even if the power fails mid-program. The rest of the
    page goes as 0xFF, which leaves it erased.
    """

    def __init__(self, dev, page):
        self.dev = dev
        self.P = page
        self.pb = bytearray(page)
        self.s = -1  # sector and offset of the page held in pb; -1: none
        self.o = -1

    def forget(self, s):
        if s == self.s:
            self.s = -1

    def prog(self, s, mv, off):
        P = self.P
        pb = self.pb
        n = len(mv)
        i = 0
        while i < n:
            o = off + i
            base = o - o % P
            if base != self.o or s != self.s:
                # a page not held yet (the next page, or the head after a reboot): read it
                self.s = -1
                self.dev.readblocks(s, pb, base)
                self.o = base
            k = base + P - o
            if k > n - i:
                k = n - i
            pb[o - base:o - base + k] = mv[i:i + k]
            self.s = -1  # until the program succeeds, pb may differ from the flash
            self.dev.writeblocks(s, pb, base)
            self.s = s
            i += k
