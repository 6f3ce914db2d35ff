# A window onto part of a block device that speaks MicroPython's extended block protocol
# (esp32.Partition, rp2.Flash, the Unix NOR emulator): littlefs gets the first blocks of
# the flash filesystem partition, the queue the rest. Block numbers are translated; every
# access outside the window raises instead of touching the neighbour.
from micropython import const

_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)


class Region:
    def __init__(self, dev, first_block, nblocks, block_size=4096):
        self.dev = dev
        self.first = first_block
        self.n = nblocks
        self.bs = block_size

    def _check(self, block, nbytes):
        if block < 0 or block * self.bs + nbytes > self.n * self.bs:
            raise OSError(22)  # EINVAL: outside this region

    def readblocks(self, block, buf, off=0):
        self._check(block, off + len(buf))
        self.dev.readblocks(self.first + block, buf, off)

    def writeblocks(self, block, buf, off=None):
        if off is None:
            # simple protocol (no offset): whole blocks, erase first as the protocol implies
            self._check(block, len(buf))
            self.dev.writeblocks(self.first + block, buf)
        else:
            self._check(block, off + len(buf))
            self.dev.writeblocks(self.first + block, buf, off)

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.n
        if op == _IOCTL_BLOCK_SIZE:
            return self.bs
        if op == _IOCTL_BLOCK_ERASE:
            self._check(arg, self.bs)
            return self.dev.ioctl(_IOCTL_BLOCK_ERASE, self.first + arg)
        return self.dev.ioctl(op, arg)
