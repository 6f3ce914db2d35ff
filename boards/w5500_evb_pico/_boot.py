# Frozen _boot.py of the otlink build of MicroPython for W5500_EVB_PICO (docs/queue.md, "Board
# layout"). The stock one mounts littlefs over the whole storage area and formats it when the
# mount fails; this one gives littlefs only the head of the area (boards/w5500_evb_pico.json
# flash.regions.fs) and never touches the tail, which the store-and-forward queue owns
# (flash.regions.queue, opened by firmware/otlink/hal/rp2.py).
# Build: put this file in place of ports/rp2/modules/_boot.py, then
#   make -C ports/rp2 BOARD=W5500_EVB_PICO
import gc

import rp2
import vfs

FS_LEN = 393216  # bytes: boards/w5500_evb_pico.json flash.regions.fs.size (96 blocks of 4 KiB)

bdev = rp2.Flash(start=0, len=FS_LEN)
try:
    fs = vfs.VfsLfs2(bdev, progsize=256)
except OSError:
    # A fresh board: format the littlefs part only; the queue region stays as it is.
    vfs.VfsLfs2.mkfs(bdev, progsize=256)
    fs = vfs.VfsLfs2(bdev, progsize=256)
vfs.mount(fs, "/")
del bdev, fs
gc.collect()
