# RS-485 UART for the Unix port: a pty (or a real tty) opened raw with termios, read with
# deadlines via select.poll, and a recorded direction (DE) pin.
#
# HAL UART interface (the same in hal/uart_machine.py for esp32/rp2):
#   baud, char_us, t35_us, t15_us    timing of one character and the RTU silences, in us
#   de                               the direction pin (here a RecordedPin)
#   write(buf, n)                    raise DE, queue n bytes; does not wait for the wire
#   tx_done() -> bool                True once the last stop bit has left; drops DE then
#   wait(timeout_ms) -> bool         block at most timeout_ms until a byte is readable
#   read_byte() -> int               next received byte, or -1 when none is waiting
#   drain() -> int                   discard everything received so far
#   now_us()                         the ticks_us clock the timing above is measured on
#   last_us                          ticks_us of the last bus activity (byte seen, tx end)
#   close()
#
# A pty has no baud rate: bytes go through instantly. The wire time is modelled here (DE is
# dropped n * char_us after write, like a real UART's TX-done) and enforced by the pacing relay
# in tests/host/relay.py.
#
# Reads go one byte at a time into a preallocated 1-byte buffer: on this port readinto(buf)
# keeps reading until the whole buffer is full, which would block past any deadline.
import select
import time

from otlink.core import modbus

try:
    import termios
except ImportError:  # pragma: no cover - every Unix build we use has it
    termios = None

_LOG = 64  # DE transitions kept (ring)


class RecordedPin:
    """A DE pin for a machine without one: records (ticks_us, level) of every transition in a
    preallocated ring so tests can check the direction timing. Callable like machine.Pin."""

    def __init__(self):
        self.level = 0
        self._t = [0] * _LOG
        self._v = [0] * _LOG
        self.count = 0  # transitions ever

    def __call__(self, v=None):
        if v is None:
            return self.level
        v = 1 if v else 0
        if v != self.level:
            self.level = v
            i = self.count % _LOG
            self._t[i] = time.ticks_us()
            self._v[i] = v
            self.count += 1
        return None

    value = __call__

    def at(self, t_us, v):
        """Record a transition that happened at t_us (used when the drop is noticed late)."""
        v = 1 if v else 0
        if v != self.level:
            self.level = v
            i = self.count % _LOG
            self._t[i] = t_us
            self._v[i] = v
            self.count += 1

    def transitions(self):
        """[(ticks_us, level)] oldest first (allocates: for tests)."""
        n = self.count if self.count < _LOG else _LOG
        first = self.count - n
        return [(self._t[i % _LOG], self._v[i % _LOG]) for i in range(first, self.count)]


_SPEEDS = ("B9600", "B57600", "B115200", "B230400", "B460800", "B921600")


class UnixUart:
    def __init__(self, path, baud=9600, parity="N", stop_bits=1, de=None):
        self._f = open(path, "r+b")
        fd = self._f.fileno()
        if termios is not None:
            try:
                termios.setraw(fd)
                attrs = termios.tcgetattr(fd)
                name = "B%d" % baud
                if name in _SPEEDS and hasattr(termios, name):
                    attrs[4] = attrs[5] = getattr(termios, name)
                    termios.tcsetattr(fd, termios.TCSANOW, attrs)
            except OSError:
                pass  # not a tty (a pipe in a test): nothing to configure
        self.baud = baud
        self.char_us = modbus.char_us(baud, parity, stop_bits)
        self.t35_us = modbus.t35_us(baud)
        self.t15_us = modbus.t15_us(baud)
        self.de = de if de is not None else RecordedPin()
        self._poll = select.poll()
        self._poll.register(self._f, select.POLLIN)
        self._b1 = bytearray(1)
        self._busy = False
        self._tx_end = 0
        self.last_us = time.ticks_us()
        self.tx_bytes = 0
        self.rx_bytes = 0

    def now_us(self):
        return time.ticks_us()

    def write(self, buf, n):
        """Raise DE, then send buf[:n]. Does not allocate when n == len(buf)."""
        self.de(1)  # before the first start bit
        t0 = time.ticks_us()
        if n == len(buf):
            self._f.write(buf)
        else:
            self._f.write(memoryview(buf)[:n])
        self._tx_end = time.ticks_add(t0, n * self.char_us)
        self._busy = True
        self.tx_bytes += n

    def tx_done(self):
        if self._busy:
            if time.ticks_diff(time.ticks_us(), self._tx_end) < 0:
                return False
            # The last stop bit left at _tx_end: DE goes low at that instant, not when noticed.
            if hasattr(self.de, "at"):
                self.de.at(self._tx_end, 0)
            else:
                self.de(0)
            self._busy = False
            self.last_us = self._tx_end
        return True

    def tx_end_us(self):
        return self._tx_end

    def wait(self, timeout_ms):
        for _ in self._poll.ipoll(timeout_ms):
            return True
        return False

    def read_byte(self):
        for _ in self._poll.ipoll(0):
            if self._f.readinto(self._b1) != 1:
                raise OSError(5)  # EIO: the other end of the line went away
            self.last_us = time.ticks_us()
            self.rx_bytes += 1
            return self._b1[0]
        return -1

    def drain(self):
        n = 0
        while self.read_byte() >= 0:
            n += 1
        return n

    def close(self):
        try:
            self._poll.unregister(self._f)
        except (OSError, KeyError, ValueError):
            pass
        self._f.close()


def open_uart(serial_cfg, clock=None):
    """Open serial_cfg["port"] (a pty path on the Unix port) as the RS-485 HAL UART."""
    port = serial_cfg.get("port")
    if not port:
        from otlink.core.errors import ConfigError

        raise ConfigError("serial.port", "required on the Unix port (a pty or tty path)")
    return UnixUart(port, serial_cfg.get("baud", 9600), serial_cfg.get("parity", "N"),
                    serial_cfg.get("stop_bits", 1))
