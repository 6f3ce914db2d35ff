# RP2040 / RP2350 boards (Raspberry Pi Pico W, Pico 2 W, W5500-EVB-Pico). The otlink firmware
# build's frozen _boot.py mounts littlefs on the head of the storage area only; the queue owns
# the rest (the board file's flash regions, docs/queue.md "Board layout"). Stock MicroPython
# mounts littlefs over the whole area, which would overlap the queue: refuse to start rather
# than corrupt either.
# Flash writes stall the CPU (XIP): the queue programs whole 256-byte pages (prog_size).
import os

import machine
import network
import rp2

from otlink.hal.machine_board import MachineBoard, load_board

# ports/rp2/modmachine.c defines these two causes only: HARD_RESET, SOFT_RESET and
# DEEPSLEEP_RESET do not exist there (the stubs carry them from the docs, untyped)
_CAUSES = ((machine.PWRON_RESET, "power-on"), (machine.WDT_RESET, "watchdog"))


class Board(MachineBoard):
    name = "pico_w"
    WDT_MAX_MS = 8388  # 0x7fffff us: the RP2040 watchdog counts each us twice (erratum E1)
    # txdone() is true once the TX FIFO is empty, with the last character still shifting:
    # the computed end of the frame is waited as well (hal/uart_machine.py)
    UART_FLUSH_WAITS = False

    def __init__(self, cfg, defn=None):
        MachineBoard.__init__(self, cfg, defn or load_board("pico_w"), _CAUSES)

    def _ethernet(self, eth):
        # W5500 on SPI (W5500-EVB-Pico: SPI0 SCK 18, MOSI 19, MISO 16, CS 17, RST 20), in the
        # W5500_EVB_PICO image's network.WIZNET5K (extmod/network_wiznet5k.c); the Pico W
        # stubs do not have it (test_portability names it)
        spi = machine.SPI(eth["spi"], baudrate=eth.get("baud", 2000000),
                          sck=machine.Pin(eth["sck"]), mosi=machine.Pin(eth["mosi"]),
                          miso=machine.Pin(eth["miso"]))
        nic = network.WIZNET5K(spi, machine.Pin(eth["cs"]), machine.Pin(eth["rst"]))  # pyright: ignore[reportAttributeAccessIssue]
        nic.active(True)
        nic.ipconfig(dhcp4=True)
        return nic

    def queue_device(self):
        regions = self.defn["flash"]["regions"]
        want = regions["fs"]["size"] // 4096
        have = os.statvfs("/")[2]
        if have != want:
            raise OSError("littlefs spans %d blocks, want %d: this is stock MicroPython, "
                          "flash the otlink build for this board (docs/queue.md)"
                          % (have, want))
        q = regions["queue"]
        return rp2.Flash(start=q["start"], len=q["size"])
