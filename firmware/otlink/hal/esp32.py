# ESP32 (4 MiB, no PSRAM): the "vfs" partition is split: littlefs on its head, the
# store-and-forward queue (boards/esp32.json "queue.size") on its tail.
import esp32

from otlink.hal.machine_board import MachineBoard, load_board


class Board(MachineBoard):
    name = "esp32"

    def __init__(self, cfg):
        MachineBoard.__init__(self, cfg, load_board("esp32"))

    def flash_device(self):
        return esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")[0]
