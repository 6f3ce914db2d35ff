# Unix-port HAL: the device-emulation harness. Behaves like a board towards the app:
#  - flash: an emulated NOR chip kept in a file (hal/unix/norflash.py); littlefs on its "fs"
#    region mounted at /flash, the raw "queue" region handed to the queue;
#  - UART: a pty opened with termios (hal/unix/uart.py) with a recorded RS-485 DE pin;
#  - I2C, 1-Wire, ADC, input pins: simulated sensors built from their datasheets
#    (hal/unix/sim_i2c.py, sim_onewire.py, sim_adc.py, sim_pin.py);
#  - clock and network: host clock, host sockets (same `socket`/`ssl` API as the boards).
import gc
import json
import os
import vfs

from otlink.hal.board import Board as _Board
from otlink.hal.clock import Clock  # noqa: F401  (re-exported: otlink.hal.unix.Clock)


def load_board(name="unix", root="boards"):
    with open("%s/%s.json" % (root, name)) as f:
        return json.load(f)


class Board(_Board):
    name = "unix"

    def __init__(self, board_def, image_path, clock=None, mount_point="/flash",
                 counters=False, stop_file=None):
        from otlink.hal.unix.norflash import NorFlash

        # `otlink node run` asks the agent to stop by creating this file (a SIGINT on the
        # desktop MicroPython is raised mid-C-function: node.ask_to_stop); one left by an
        # earlier run is removed so it cannot stop this one
        self._stop_file = stop_file
        if stop_file is not None:
            try:
                os.remove(stop_file)
            except OSError:
                pass

        self.defn = board_def
        fl = board_def["flash"]
        self.clock = clock or Clock()
        # no wear counters by default: test hooks a board does not have stay out of the
        # agent's heap budget (4 KiB for the 2 MiB image)
        # "timing" (typ/max): the part's datasheet busy times, waited out for real, so the
        # agent's loop stalls during a program or an erase as it does on a board
        timing = fl.get("timing")
        self.nor = NorFlash(image_path, fl["size"], fl["sector"], counters=counters,
                            timing=timing, sleep=timing is not None)
        regions = fl["regions"]
        self._fs_dev = self.nor.region(regions["fs"]["offset"], regions["fs"]["size"])
        self._q = regions["queue"]
        self.mount_point = mount_point
        self.fs = self._mount()
        self._i2c = {}
        # the simulated watchdog (hal/unix/wdt.py, imported only when the board file sets
        # watchdog_ms) and the reset cause it left beside the flash image for this boot
        self._cause_path = image_path + ".reset_cause"
        self._cause = "power-on"
        try:
            os.stat(self._cause_path)
        except OSError:
            pass
        else:
            from otlink.hal.unix.wdt import take_cause

            self._cause = take_cause(self._cause_path) or self._cause
        self._wdt = None
        self.watchdog_feeds = 0
        # test faults of the harness: {"network": "raise"} makes network_ok() raise
        self._faults = board_def.get("faults")

    def _mount(self):
        try:
            fs = vfs.VfsLfs2(self._fs_dev)
        except OSError:  # blank or unreadable: a fresh board formats its filesystem
            vfs.VfsLfs2.mkfs(self._fs_dev)
            fs = vfs.VfsLfs2(self._fs_dev)
        try:
            vfs.mount(fs, self.mount_point)
        except OSError:
            pass  # already mounted by an earlier Board in this process (tests)
        return fs

    def queue_device(self):
        return self.nor.region(self._q["offset"], self._q["size"])

    def watchdog_start(self):
        # tests can see it being fed (watchdog_feeds); it resets the process when the board
        # file sets watchdog_ms
        if self._wdt is None and self.defn.get("watchdog_ms"):
            from otlink.hal.unix.wdt import SimWdt

            self._wdt = SimWdt(self.defn["watchdog_ms"], self._cause_path)

    def watchdog_feed(self):
        self.watchdog_feeds += 1
        if self._wdt is not None:
            self._wdt.feed()

    def prog_size(self):
        return self.defn["flash"].get("prog_size", 1)

    def uart(self, serial_cfg):
        from otlink.hal.unix.uart import open_uart

        return open_uart(serial_cfg, self.clock)

    def i2c(self, bus_name):
        bus = self._i2c.get(bus_name)
        if bus is None:
            from otlink.hal.unix.sim_i2c import SimI2C, SHT3xModel

            bus = SimI2C({0x44: SHT3xModel(self.clock), 0x45: SHT3xModel(self.clock)},
                         later={0x76: ("otlink.hal.unix.sim_bme280", "BME280Model")},
                         clock=self.clock)
            self._i2c[bus_name] = bus
        return bus

    # Simulated sensor buses (docs/sensors.md): every name gives the same wiring, built from
    # the datasheets in hal/unix/sim_*.py.

    def onewire(self, name):
        bus = self._i2c.get("ow:" + name)
        if bus is None:
            from otlink.hal.unix.sim_onewire import DEMO_ROMS, DS18B20Model, SimOneWire

            bus = SimOneWire([DS18B20Model(self.clock, rom) for rom in DEMO_ROMS], self.clock)
            self._i2c["ow:" + name] = bus
        return bus

    def adc(self, name):
        from otlink.hal.unix.sim_adc import SimADC, Transmitter

        return SimADC(Transmitter(self.clock), shunt_ohm=150.0)

    def pin_in(self, name, pull):
        from otlink.hal.unix import sim_pin

        return sim_pin.demo_pin(name, pull, self.clock)

    def network_start(self, wifi_cfg=None):
        pass  # the host's network is always there

    def network_ok(self):
        if self._faults is not None and self._faults.get("network") == "raise":
            raise OSError(5)  # EIO: a test fault (the network task dies each time)
        return True

    def resolver(self):
        return None  # the host's resolver (getaddrinfo) answers from the host

    def sync_time(self):
        self.clock.sync()
        return True

    def reset_cause(self):
        return self._cause

    def unique_id(self):
        return "0000000000000000"  # the harness has no chip id

    def stop_requested(self):
        if self._stop_file is None:
            return False
        try:
            os.stat(self._stop_file)
        except OSError:
            return False
        return True

    def free_heap(self):
        return gc.mem_free()

    def close(self):
        try:
            vfs.umount(self.mount_point)
        except OSError:
            pass
