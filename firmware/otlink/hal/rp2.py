# Raspberry Pi Pico W (2 MiB). The otlink firmware build's frozen _boot.py mounts littlefs on
# the head of the storage area only; the queue owns the rest (boards/pico_w.json,
# docs/queue.md "Board layout"). Stock MicroPython mounts littlefs over the whole area, which
# would overlap the queue: refuse to start rather than corrupt either.
# Flash writes stall the CPU (XIP): the queue programs whole 256-byte pages (prog_size).
import os

import rp2

from otlink.hal.machine_board import MachineBoard, load_board


class Board(MachineBoard):
    name = "pico_w"

    def __init__(self, cfg):
        MachineBoard.__init__(self, cfg, load_board("pico_w"))

    def queue_device(self):
        regions = self.defn["flash"]["regions"]
        want = regions["fs"]["size"] // 4096
        have = os.statvfs("/")[2]
        if have != want:
            raise OSError("littlefs spans %d blocks, want %d: this is stock MicroPython, "
                          "flash the otlink Pico W build (docs/queue.md)" % (have, want))
        q = regions["queue"]
        return rp2.Flash(start=q["start"], len=q["size"])
