# Block device over a window of an emulated NorFlash (norflash.py), with MicroPython's
# extended block protocol so vfs.VfsLfs2 mounts on it and the queue uses it raw.
from otlink.hal.norflash import FlashError


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
