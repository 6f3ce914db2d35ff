# What the ESP32 and RP2 boards share: machine.UART/Pin/I2C/ADC/WDT, network (WiFi station or
# wired Ethernet), NTP, reset cause, unique id. Only hal/ imports machine and network. Port
# specifics (reset cause names, watchdog limit, UART flush semantics, the Ethernet chip, the
# queue's flash region) live in esp32.py / rp2.py, which pass them in.
#
# Every machine/network call here is checked against the pinned stubs of both ports
# (tests/host/test_portability.py: names, arity and keywords; basedpyright on these files).
import binascii
import gc
import json

import machine
import network

from otlink.hal.board import Board
from otlink.hal.clock import Clock


def load_board(name):
    """The board file deployed beside the firmware (/boards/<name>.json, boards/ in the
    repository: pins, flash layout, watchdog, network)."""
    with open("/boards/%s.json" % name) as f:
        return json.load(f)


class MachineBoard(Board):
    # per port (esp32.py, rp2.py)
    WDT_MAX_MS = 8388  # the longest watchdog period the port's hardware takes
    UART_FLUSH_WAITS = False  # UART.flush() returns only after the last stop bit

    def __init__(self, cfg, defn, causes):
        self.cfg = cfg
        self.defn = defn
        self.name = defn["name"]
        self.clock = Clock(synced=False)  # set by NTP once the network is up
        self._nic = None
        self._i2c = {}
        self._wdt = None
        self.net_errors = 0  # failed network (re)starts: counted, retried by the app
        # (machine constant, word) pairs of the causes this port defines: names it lacks
        # (rp2 has only PWRON_RESET and WDT_RESET) are never looked up
        self._causes = causes
        self._cause = machine.reset_cause()

    # Each board provides queue_device() (the raw queue region, docs/queue.md "Board
    # layout"); prog_size comes from its board file.

    def prog_size(self):
        return self.defn["flash"].get("prog_size", 1)

    def watchdog_start(self):
        """Hardware watchdog: a node whose event loop hangs resets instead of going silent.
        The period comes from the board file, capped at what the hardware takes (RP2040:
        8.388 s)."""
        if self._wdt is not None:
            return  # armed once (main, before the app is built)
        ms = self.defn.get("watchdog_ms", 8000)
        self._wdt = machine.WDT(timeout=ms if ms < self.WDT_MAX_MS else self.WDT_MAX_MS)

    def watchdog_feed(self):
        w = self._wdt
        if w is not None:
            w.feed()

    def uart(self, serial_cfg):
        from otlink.hal.uart_machine import open_uart

        u = self.defn["uart"]["rs485"]
        return open_uart(serial_cfg, self.clock, u["id"], u["tx"], u["rx"], u["de_pin"],
                         self.UART_FLUSH_WAITS)

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
        n = self.defn["inputs"][name]["pin"]
        if pull == "up":
            return machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP)
        if pull == "down":
            return machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_DOWN)
        return machine.Pin(n, machine.Pin.IN)

    # Network: the WiFi station, or the board's wired Ethernet when its board file has an
    # "ethernet" section (_ethernet(), per port).

    def _ethernet(self, eth):
        raise OSError("board %s: no wired Ethernet on this port" % self.name)

    def network_start(self, wifi_cfg):
        """Begin joining the network, or rejoin it; returns at once (the app polls
        network_ok and calls this again while it is down: the reconnect)."""
        try:
            nic = self._nic
            eth = self.defn.get("ethernet")
            if nic is None:
                if eth:
                    nic = self._ethernet(eth)  # DHCP starts with the link
                else:
                    nic = network.WLAN(network.STA_IF)
                    nic.active(True)
                self._nic = nic
            if eth:
                return
            # a join in progress is left alone (esp32 refuses a second connect() meanwhile)
            if not nic.isconnected() and nic.status() != network.STAT_CONNECTING:
                nic.connect(wifi_cfg["ssid"], wifi_cfg.get("password") or "")
        except OSError:
            self.net_errors += 1  # the radio or PHY refused: tried again by the app

    def network_ok(self):
        return self._nic is not None and self._nic.isconnected()

    def resolver(self):
        return self._resolve

    def _resolve(self, host):
        # the DNS server the network gave (DHCP), asked with a deadline (dns.py): lwIP's own
        # resolver waits out its retries, past the watchdog when the server is gone
        from otlink import dns

        nic = self._nic
        if nic is None:
            raise OSError(113)  # EHOSTUNREACH: no network yet
        return dns.resolve(host, nic.ifconfig()[3], 2000)

    def sync_time(self):
        try:
            import ntptime

            ntptime.timeout = 1  # s: the one blocking wait of a sync (a UDP answer)
            ntptime.settime()
        except Exception:
            return False  # readings stay flagged untimed until a later sync succeeds
        self.clock.sync()
        return True

    def reset_cause(self):
        for c, word in self._causes:
            if c == self._cause:
                return word
        return str(self._cause)

    def unique_id(self):
        """The chip's id as hex (esp32: the base MAC; rp2: the flash's 64-bit id)."""
        return binascii.hexlify(machine.unique_id()).decode()

    def free_heap(self):
        return gc.mem_free()

    def stop_requested(self):
        return False  # a board runs until it is reset

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
