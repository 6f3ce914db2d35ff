# ESP32 boards (ESP32-DevKitC WROOM-32 4 MiB, ESP32-S3-DevKitC, Olimex ESP32-POE). littlefs
# keeps the "vfs" partition that MicroPython's _boot.py mounts; the store-and-forward queue
# owns its own data partition "otq", written into the partition table by `otlink flash`
# (the board file's "partition_table", docs/queue.md).
import esp32
import machine
import network

from otlink.hal.machine_board import MachineBoard, load_board

# the port's reset causes (ports/esp32/modmachine.c): every one of these names exists there
_CAUSES = ((machine.PWRON_RESET, "power-on"), (machine.HARD_RESET, "hard"),
           (machine.WDT_RESET, "watchdog"), (machine.DEEPSLEEP_RESET, "deepsleep"),
           (machine.SOFT_RESET, "soft"))


class Board(MachineBoard):
    name = "esp32"
    WDT_MAX_MS = 0x7FFFFFFF  # the task watchdog takes any period
    # UART.flush() waits in uart_wait_tx_done() for TX-done: the last stop bit is out
    UART_FLUSH_WAITS = True

    def __init__(self, cfg, defn=None):
        MachineBoard.__init__(self, cfg, defn or load_board("esp32"), _CAUSES)

    def adc(self, name):
        """The ADC's own calibrated read_uv() (eFuse calibration) at 11 dB attenuation,
        accurate from 150 to 2450 mV (ESP-IDF): a 100 ohm 4-20 mA shunt keeps the loop's
        0.4..2.4 V inside it (docs/sensors.md, loop420)."""
        pin = machine.Pin(self.defn["adc"][name]["pin"])
        return machine.ADC(pin, atten=machine.ADC.ATTN_11DB)

    def _ethernet(self, eth):
        # RMII PHY (LAN8720 on the Olimex ESP32-POE): MDC/MDIO, the PHY's power enable, the
        # 50 MHz reference clock on GPIO17 driven by the ESP32 (ref_clk_mode OUT). These
        # keywords are ports/esp32/network_lan.c's; the stubs list fewer (test_portability).
        pin = machine.Pin
        nic = network.LAN(mdc=pin(eth["mdc"]), mdio=pin(eth["mdio"]),  # pyright: ignore[reportCallIssue]
                          power=pin(eth["power"]), ref_clk=pin(eth["ref_clk"]),  # pyright: ignore[reportCallIssue]
                          phy_addr=eth["phy_addr"], phy_type=network.PHY_LAN8720,  # pyright: ignore[reportCallIssue]
                          ref_clk_mode=machine.Pin.OUT)  # pyright: ignore[reportCallIssue]
        nic.active(True)
        return nic

    def queue_device(self):
        parts = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="otq")
        if not parts:
            raise OSError("no 'otq' partition: flash with `otlink flash` (otlink partition table)")
        return parts[0]
