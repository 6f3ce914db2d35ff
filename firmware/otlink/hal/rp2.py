# Raspberry Pi Pico W (2 MiB): rp2.Flash() is the filesystem area; littlefs keeps its head,
# the queue its tail (boards/pico_w.json). Flash writes stop the CPU (XIP): the UART FIFO
# is 32 bytes, so the queue commits between Modbus transactions, never during one.
import rp2

from otlink.hal.machine_board import MachineBoard, load_board


class Board(MachineBoard):
    name = "pico_w"

    def __init__(self, cfg):
        MachineBoard.__init__(self, cfg, load_board("pico_w"))

    def flash_device(self):
        return rp2.Flash()
