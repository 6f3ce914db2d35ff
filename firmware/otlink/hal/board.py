# The Board interface: everything the agent asks of the hardware, in one place. app.py builds
# one Board (make_board) and hands its parts to the layers that need them; nothing outside
# hal/ looks hardware up. Implementations: hal/esp32.py and hal/rp2.py (over
# hal/machine_board.py, machine/network), hal/unix/ (the Unix port's emulation harness).
# Every method here raises until a board defines it; tests/host/test_board_interface.py
# checks that each board class defines all of them.


class Board:
    name = "?"
    clock = None  # hal/clock.Clock: monotonic ticks and the wall clock, injected everywhere

    def queue_device(self):
        """The raw flash region of the queue: a block device with MicroPython's extended
        block protocol (readblocks/writeblocks with offset, ioctl 4/5/6), docs/queue.md."""
        raise NotImplementedError

    def prog_size(self):
        """Smallest program unit of the queue's flash in bytes: 1, or 256 on page-programmed
        parts (rp2)."""
        raise NotImplementedError

    def uart(self, serial_cfg):
        """The RS-485 port as an hal/rs485.Rs485Uart for the validated `serial` config."""
        raise NotImplementedError

    def i2c(self, bus_name):
        """The I2C bus named in the board file, shared by every driver on it."""
        raise NotImplementedError

    # Sensor buses (docs/sensors.md): each named in the board file, built on first use and
    # shared by every driver on it. Drivers use only the methods listed.

    def onewire(self, name):
        """The 1-Wire bus on the pin named: reset() -> presence (bool), readbit(),
        writebit(b), readbyte(), writebyte(b) (micropython-lib onewire.OneWire)."""
        raise NotImplementedError

    def adc(self, name):
        """The ADC input named: read_uv() -> the input voltage in microvolts (an int; esp32's
        calibrated read_uv, rp2's read_u16 scaled by its 3.3 V reference)."""
        raise NotImplementedError

    def pin_in(self, name, pull):
        """The input pin named, pull "up", "down" or "none": value() -> 0/1 and
        irq(handler, trigger) with the IRQ_RISING/IRQ_FALLING constants of machine.Pin (the
        handler gets the pin; it must not allocate)."""
        raise NotImplementedError

    def watchdog_start(self):
        """Arm the hardware watchdog (period from the board file)."""
        raise NotImplementedError

    def watchdog_feed(self):
        raise NotImplementedError

    def network_start(self, wifi_cfg):
        """Begin joining the network; returns at once (the app polls network_ok)."""
        raise NotImplementedError

    def network_ok(self):
        raise NotImplementedError

    def resolver(self):
        """A function host -> IPv4 address string that answers within a deadline (the
        uplink's DNS step), or None where the platform's getaddrinfo is bounded enough."""
        raise NotImplementedError

    def sync_time(self):
        """Set the wall clock (NTP on boards); True when it is set."""
        raise NotImplementedError

    def reset_cause(self):
        """Why the node last started, as a word: power-on, watchdog, soft, ..."""
        raise NotImplementedError

    def unique_id(self):
        """The chip's unique id as hex (esp32: base MAC; rp2: flash id)."""
        raise NotImplementedError

    def free_heap(self):
        raise NotImplementedError

    def stop_requested(self):
        """True when the host asked the agent to stop cleanly (the Unix port's stop file,
        written by `otlink node run`); a board is stopped by its power switch: never."""
        return False

    def close(self):
        """Release what the board holds (files, mounts); a no-op on hardware."""
