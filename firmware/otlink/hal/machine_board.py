# What ESP32 and Pico W boards share: machine.UART/Pin/I2C, network.WLAN, NTP, reset
# cause. Only hal/ imports machine and network. Board specifics live in esp32.py / rp2.py.
import gc
import json

import machine
import network

from otlink.hal.board import Board
from otlink.hal.clock import Clock

_RESET_CAUSES = {}


def load_board(name):
    with open("/boards/%s.json" % name) as f:
        return json.load(f)


class MachineBoard(Board):

    def __init__(self, cfg, defn):
        self.cfg = cfg
        self.defn = defn
        self.clock = Clock(synced=False)  # set by NTP once the network is up
        self._wlan = None
        self._i2c = {}
        self._cause = machine.reset_cause()

    # Each board provides queue_device() (the raw queue region, docs/queue.md "Board
    # layout"); prog_size comes from its board file.

    def prog_size(self):
        return self.defn["flash"].get("prog_size", 1)

    def watchdog_start(self):
        """Hardware watchdog: a node whose event loop hangs resets instead of going silent.
        The period comes from the board file (rp2's hardware allows at most 8.3 s)."""
        self._wdt = machine.WDT(timeout=self.defn.get("watchdog_ms", 8000))

    def watchdog_feed(self):
        self._wdt.feed()

    def uart(self, serial_cfg):
        from otlink.hal.uart_machine import open_uart

        u = self.defn["uart"]["rs485"]
        return open_uart(serial_cfg, self.clock, u["id"], u["tx"], u["rx"], u["de_pin"])

    def i2c(self, bus_name):
        bus = self._i2c.get(bus_name)
        if bus is None:
            d = self.defn["i2c"][bus_name]
            bus = machine.I2C(d["id"], scl=machine.Pin(d["scl"]), sda=machine.Pin(d["sda"]),
                              freq=d.get("freq", 100000))
            self._i2c[bus_name] = bus
        return bus

    # Sensor buses (hal/board.py, docs/sensors.md): pins from the board file's "onewire",
    # "adc" and "inputs" sections, {"<name>": {"pin": n}}.

    def onewire(self, name):
        import onewire  # micropython-lib's, over the port's _onewire bit timing

        return onewire.OneWire(machine.Pin(self.defn["onewire"][name]["pin"]))

    def adc(self, name):
        return _U16Adc(machine.ADC(machine.Pin(self.defn["adc"][name]["pin"])))

    def pin_in(self, name, pull):
        pl = {"up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN}.get(pull)
        return machine.Pin(self.defn["inputs"][name]["pin"], machine.Pin.IN, pl)

    def network_start(self, wifi_cfg):
        """Begin joining the configured WiFi; returns at once (the app polls network_ok)."""
        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
            self._wlan.active(True)
        if not self._wlan.isconnected():
            self._wlan.connect(wifi_cfg["ssid"], wifi_cfg.get("password") or "")

    def network_ok(self):
        return self._wlan is not None and self._wlan.isconnected()

    def sync_time(self):
        try:
            import ntptime

            ntptime.settime()
        except Exception:
            return False  # readings stay flagged untimed until a later sync succeeds
        self.clock.sync()
        return True

    def reset_cause(self):
        return {machine.PWRON_RESET: "power-on", machine.HARD_RESET: "hard",
                machine.WDT_RESET: "watchdog", machine.DEEPSLEEP_RESET: "deepsleep",
                machine.SOFT_RESET: "soft"}.get(self._cause, str(self._cause))

    def free_heap(self):
        return gc.mem_free()

    def reset(self):
        """Restart the board (app.main after a commit, a rollback or the console's reboot)."""
        machine.reset()

    def close(self):
        pass


class _U16Adc:
    """read_uv() over read_u16() (rp2: 12-bit ADC scaled to 16 bits, 3.3 V reference):
    uV = raw * 3300000 / 65536 = raw * 12891 / 256, every product below 2**30 (no heap int
    on a 32-bit port)."""

    def __init__(self, adc):
        self.read_u16 = adc.read_u16

    def read_uv(self):
        return (self.read_u16() * 12891) >> 8
