# Emulated NOR flash for the Unix port: the device-emulation stand-in for the SPI/QSPI flash of
# the ESP32 (4 MiB) and the Pico W (2 MiB). Built from what a NOR datasheet promises:
#   - erase works on whole 4 KiB sectors and sets every bit to 1 (0xFF);
#   - program can only clear bits (1 -> 0); asking for a 0 -> 1 change is a firmware bug, so it
#     raises FlashError and fails the test instead of silently AND-ing;
#   - an interrupted program or erase leaves the bytes it was working on in an unknown state.
# The image lives in a bytearray and is written through to a file (when a path is given) so an
# agent killed with SIGKILL and restarted finds its flash as it left it.
#
# page=256 makes it a page-programmed part (rp2): a program that is not exactly one whole,
# aligned page raises FlashError.
#
# Test hooks: per-sector erase/program counters, bytes programmed, an operation counter, and
# cut_after(n): the next n program/erase operations complete, operation n+1 is torn (when
# tear=True) and raises PowerCut, and every flash access after that raises PowerCut until
# power_on() is called (the "reboot").
#
# Timing (timing="typ" or "max"): a real part is busy while it programs or erases, and the
# caller waits for it (polls the status register's BUSY bit). Figures of the Winbond
# W25Q32JV / W25Q16JV (datasheets, section 9.6 "AC Electrical Characteristics"):
#   tPP page program (up to 256 B, one page)   0.4 ms typical,   3 ms max
#   tSE sector erase (4 KiB)                    45 ms typical, 400 ms max
# A program command cannot cross a 256-byte page, so a program spanning k pages is k
# commands: k * tPP. A program of part of a page is charged a whole tPP (the datasheet gives
# no smaller bound for it: an upper estimate for small entries). sleep=True makes the caller
# actually wait that long (time.sleep_us); by default the busy time is only accounted, in
# busy_us (with busy_program_us and busy_erase_us), so tests stay fast.
import os
import time
from array import array

# (tPP, tSE) in microseconds: W25Q32JV/W25Q16JV datasheet section 9.6
TIMING = {"typ": (400, 45000), "max": (3000, 400000)}
_PAGE = 256  # the part's program page: a program command stays within one


class FlashError(Exception):
    """A program tried to set a bit from 0 to 1, or an access was out of range."""


class PowerCut(Exception):
    """The emulated supply was cut: no flash operation completes until power_on()."""


class NorFlash:
    """NOR flash image of `size` bytes in the file `path` (None: RAM only).

    cache=True keeps the image in a bytearray (fast; written through to the file), False works
    on the file directly (no image in the heap: for runs under a small -X heapsize). Default:
    cache when there is no file.
    counters=False leaves out the per-sector erase/program counters (8 bytes per sector of
    heap, 4 KiB for 2 MiB): an agent on the Unix port (hal/unix Board) does not pay in its
    heap budget for test hooks a board does not have. erases/programs are then None.
    """

    def __init__(self, path, size, sector=4096, create=True, cache=None, page=1, timing=None,
                 sleep=False, seed=0x2545F491, counters=True):
        if sector <= 0 or size <= 0 or size % sector:
            raise ValueError("flash size %d is not a multiple of sector %d" % (size, sector))
        if timing is not None and timing not in TIMING:
            raise ValueError("flash timing %r: want None, %s" % (timing, ", ".join(TIMING)))
        # busy-time model (see the top of this file): None, or (tPP, tSE) in us
        self._t = TIMING[timing] if timing is not None else None
        self._sleep = sleep and timing is not None
        self.busy_us = 0  # accounted busy time of programs and erases, us
        self.busy_program_us = 0
        self.busy_erase_us = 0
        if page < 1 or sector % page:
            raise ValueError("flash page %d does not divide sector %d" % (page, sector))
        # page > 1: a page-programmed part (rp2's QSPI flash through rp2.Flash: 256 bytes):
        # every program must be one whole, aligned page, as flash_range_program requires
        self.page = page
        if cache is None:
            cache = path is None
        if path is None and not cache:
            raise ValueError("flash without a file must be cached in RAM")
        self.size = size
        self.sector = sector
        self.sectors = size // sector
        self.path = path
        self._f = None
        self.mem = None
        if path is not None:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is None:
                if not create:
                    raise OSError(2, "no flash image " + path)
                with open(path, "wb") as f:
                    for _ in range(size // 256):
                        f.write(_FF256)
                    if size % 256:
                        f.write(_FF256[0:size % 256])
            elif st[6] != size:
                raise ValueError("flash image %s is %d bytes, want %d" % (path, st[6], size))
            self._f = open(path, "r+b")
        if cache:
            mem = bytearray(size)
            if self._f is not None:
                self._f.seek(0)
                self._f.readinto(mem)
            else:
                for i in range(0, size, 256):
                    mem[i:i + 256] = _FF256[0:min(256, size - i)]
            self.mem = mem
            self._mv = memoryview(mem)
        # Counters, readable by tests and benchmarks (reset_counters() zeroes them).
        # built from generators: no temporary list of the sector count left as garbage
        self.erases = self.programs = None
        if counters:
            self.erases = array("I", (0 for _ in range(self.sectors)))
            self.programs = array("I", (0 for _ in range(self.sectors)))
        self.bytes_programmed = 0
        self.ops = 0  # program + erase operations since construction
        self._cut = -1  # ops left before the cut; -1: no cut armed
        self._tear = True
        self._dead = False
        self._rng = (seed & 0xFFFFFFFF) or 0x2545F491  # where torn operations stop
        self._chunk = bytearray(256)  # file mode: the bytes a program lands on, 256 at a time

    # ---- test hooks ----
    def cut_after(self, n, tear=True):
        """Let n more program/erase operations complete; the next is torn, raises PowerCut."""
        if n is None:
            self._cut = -1
        else:
            self._cut = n
            self._tear = tear

    def reseed(self, seed):
        """Restart the tear-point generator (xorshift32) from seed: reproducible tears."""
        self._rng = (seed & 0xFFFFFFFF) or 0x2545F491

    def power_on(self):
        """End a power cut (the reboot): flash accesses work again, no cut armed."""
        self._dead = False
        self._cut = -1

    @property
    def dead(self):
        return self._dead

    def reset_counters(self):
        for i in range(self.sectors if self.erases is not None else 0):
            self.erases[i] = 0
            self.programs[i] = 0
        self.bytes_programmed = 0
        self.busy_us = self.busy_program_us = self.busy_erase_us = 0

    def _busy(self, us, erase):
        # the part is busy for us microseconds; the caller waits (sleep) or it is accounted
        self.busy_us += us
        if erase:
            self.busy_erase_us += us
        else:
            self.busy_program_us += us
        if self._sleep:
            time.sleep_us(us)

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def region(self, offset, size):
        """A sector-aligned window as a block device (extended block protocol)."""
        return NorRegion(self, offset, size)

    # ---- flash operations (absolute addresses) ----
    def _rand(self):
        # xorshift32: tears are reproducible from the same starting state
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x

    def _begin(self):
        # Returns True when this operation is the one the power cut tears.
        if self._dead:
            raise PowerCut("flash is unpowered")
        if self._cut == 0:
            self._dead = True
            self._cut = -1
            return True
        if self._cut > 0:
            self._cut -= 1
        self.ops += 1
        return False

    def _check(self, addr, n):
        if addr < 0 or n < 0 or addr + n > self.size:
            raise FlashError("flash access 0x%x+%d outside 0..0x%x" % (addr, n, self.size))

    def read(self, addr, buf):
        if self._dead:
            raise PowerCut("flash is unpowered")
        n = len(buf)
        self._check(addr, n)
        if self.mem is not None:
            buf[0:n] = self._mv[addr:addr + n]
        else:
            self._f.seek(addr)
            self._f.readinto(buf)

    def _old(self, addr, n):
        if self.mem is not None:
            return self.mem[addr:addr + n]
        b = bytearray(n)
        self._f.seek(addr)
        self._f.readinto(b)
        return b

    def _store(self, addr, data):
        if self.mem is not None:
            self.mem[addr:addr + len(data)] = data
        if self._f is not None:
            self._f.seek(addr)
            self._f.write(data)

    def _bad_bits(self, addr, old, data, i0, i1, doff=0):
        # old[i] is the flash byte at addr + i, data[doff + i] what was asked there
        for i in range(i0, i1):
            if old[i] & data[doff + i] != data[doff + i]:
                raise FlashError("program sets bits 0->1 at 0x%x: has 0x%02x, asked 0x%02x"
                                 % (addr + i, old[i], data[doff + i]))

    def program(self, addr, data):
        n = len(data)
        self._check(addr, n)
        if self.page > 1 and (n != self.page or addr % self.page):
            raise FlashError("program %d B at 0x%x: not a whole page" % (n, addr))
        torn = self._begin()
        if self.mem is not None:
            # RAM image: one check in C over the whole range (allocates two ints of n bytes)
            old = self._mv[addr:addr + n]
            new = int.from_bytes(data, "little")
            if int.from_bytes(old, "little") & new != new:
                self._bad_bits(addr, old, data, 0, n)
        else:
            # file image: compare through a fixed chunk buffer, allocating nothing, so the
            # emulator does not take heap or fragment it under the agent (a board's flash
            # driver takes none of the Python heap either)
            ch = self._chunk
            f = self._f
            for o in range(0, n, 256):
                k = min(256, n - o)
                f.seek(addr + o)
                f.readinto(ch)
                for i in range(k):
                    if ch[i] & data[o + i] != data[o + i]:
                        self._bad_bits(addr + o, ch, data, i, i + 1, o)
        if torn:
            if self._tear and n:
                # a prefix of the bytes got programmed, the byte after it only partly
                k = self._rand() % n
                t = bytearray(self._old(addr, n))
                t[0:k] = data[0:k]
                t[k] &= data[k] | (self._rand() & 0xFF)
                self._store(addr, t)
            raise PowerCut("power cut during program at 0x%x" % addr)
        self._store(addr, data)
        if self.programs is not None:
            self.programs[addr // self.sector] += 1
        self.bytes_programmed += n
        if self._t is not None and n:
            # one page-program command per 256-byte page the bytes touch
            self._busy(((addr + n - 1) // _PAGE - addr // _PAGE + 1) * self._t[0], False)

    def erase(self, sector):
        if sector < 0 or sector >= self.sectors:
            raise FlashError("erase of sector %d outside 0..%d" % (sector, self.sectors - 1))
        torn = self._begin()
        a = sector * self.sector
        ss = self.sector
        if torn:
            if self._tear:
                # erase got partway: a prefix is 0xFF, one byte is half-set, the rest is old
                k = self._rand() % ss
                for i in range(a, a + k, 256):
                    self._store(i, _FF256 if a + k - i >= 256 else _FF256[0:a + k - i])
                t = self._old(a + k, 1)
                t[0] |= self._rand() & 0xFF
                self._store(a + k, t)
            raise PowerCut("power cut during erase of sector %d" % sector)
        for i in range(a, a + ss, 256):
            self._store(i, _FF256 if a + ss - i >= 256 else _FF256[0:a + ss - i])
        if self.erases is not None:
            self.erases[sector] += 1
        if self._t is not None:
            self._busy(self._t[1], True)


_FF256 = b"\xff" * 256


class NorRegion:
    """A window of a NorFlash as a block device with MicroPython's extended block protocol.

    Block size is the erase sector. writeblocks() only programs (no implicit erase);
    ioctl(6, block) erases. vfs.VfsLfs2 mounts on it; the queue uses it raw.
    """

    def __init__(self, nor, offset, size):
        if offset % nor.sector or size % nor.sector or offset < 0 or offset + size > nor.size:
            raise ValueError("region 0x%x+0x%x not sector-aligned in the flash" % (offset, size))
        self.nor = nor
        self.offset = offset
        self.size = size
        self.block = nor.sector
        self.blocks = size // nor.sector

    def _addr(self, n, off, ln):
        if n < 0 or n >= self.blocks or off < 0 or n * self.block + off + ln > self.size:
            raise FlashError("block %d+%d (%d bytes) outside region" % (n, off, ln))
        return self.offset + n * self.block + off

    def readblocks(self, n, buf, off=0):
        self.nor.read(self._addr(n, off, len(buf)), buf)

    def writeblocks(self, n, buf, off=0):
        self.nor.program(self._addr(n, off, len(buf)), buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return self.block
        if op == 6:  # erase one block
            if arg < 0 or arg >= self.blocks:
                raise FlashError("erase of block %d outside region" % arg)
            self.nor.erase(self.offset // self.block + arg)
            return 0
        if op in (1, 2, 3):  # init, deinit, sync: nothing cached here
            return 0
        return None

    def erase_counts(self):
        """Erase count of every sector of this region (a list; for tests and benchmarks)."""
        b = self.offset // self.block
        return [self.nor.erases[b + i] for i in range(self.blocks)]
