# Frozen _boot.py of the otlink build of MicroPython for the RP2 boards (docs/queue.md, "Board
# layout"), one source for all of them. The stock one mounts littlefs over the whole storage
# area and formats it when the mount fails; this one gives littlefs only the head of the area
# (the board file's flash.regions.fs) and never touches the tail, which the store-and-forward
# queue owns (flash.regions.queue, opened by firmware/otlink/hal/rp2.py).
# A board's copy carries its own FS_LEN and PROG_SIZE, written in from boards/<board>.json by
#   python -m otlink_tools.rp2_boot <board> -o <micropython>/ports/rp2/modules/_boot.py
# then: make -C ports/rp2 BOARD=<the board file's micropython.variant>
# The template itself holds FS_LEN 0, a length rp2.Flash refuses (ValueError, rp2_flash.c):
# frozen without a board's values it mounts and formats nothing.
import gc

import rp2
import vfs

FS_LEN = 0  # bytes: the board file's flash.regions.fs.size
PROG_SIZE = 256  # bytes: the board file's flash.prog_size (littlefs program unit)

bdev = rp2.Flash(start=0, len=FS_LEN)
try:
    fs = vfs.VfsLfs2(bdev, progsize=PROG_SIZE)
except OSError:
    # A fresh board: format the littlefs part only; the queue region stays as it is.
    vfs.VfsLfs2.mkfs(bdev, progsize=PROG_SIZE)
    fs = vfs.VfsLfs2(bdev, progsize=PROG_SIZE)
vfs.mount(fs, "/")
del bdev, fs
gc.collect()
