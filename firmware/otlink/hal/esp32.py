# ESP32 (4 MiB, no PSRAM). littlefs keeps the "vfs" partition that MicroPython's _boot.py
# mounts; the store-and-forward queue owns its own data partition "otq", written into the
# partition table by `otlink flash` (boards/esp32.json "partition_table", docs/queue.md).
import esp32

from otlink.hal.machine_board import MachineBoard, load_board


class Board(MachineBoard):
    name = "esp32"

    def __init__(self, cfg):
        MachineBoard.__init__(self, cfg, load_board("esp32"))

    def adc(self, name):
        """The ADC's own calibrated read_uv() (eFuse calibration), 11 dB attenuation: the
        0..~3.1 V span a 150 ohm 4-20 mA shunt needs (3.0 V at 20 mA)."""
        import machine

        pin = machine.Pin(self.defn["adc"][name]["pin"])
        return machine.ADC(pin, atten=machine.ADC.ATTN_11DB)

    def queue_device(self):
        parts = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="otq")
        if not parts:
            raise OSError("no 'otq' partition: flash with `otlink flash` (otlink partition table)")
        return parts[0]
