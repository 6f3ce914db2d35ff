# RS-485 UART for the Unix port: a pty (or a real tty) opened raw with termios, read with
# deadlines via select.poll, and a recorded direction (DE) pin.
#
# The HAL UART interface and the shared logic are in hal/rs485.py.
#
# A pty has no baud rate: bytes go through instantly. The wire time is modelled here (DE is
# dropped n * char_us after write, like a real UART's TX-done) and enforced by the pacing relay
# in tests/host/relay.py.
#
# Reads go one byte at a time into a preallocated 1-byte buffer: on this port readinto(buf)
# keeps reading until the whole buffer is full, which would block past any deadline.
import time

from otlink.hal.rs485 import Rs485Uart

try:
    import termios
except ImportError:  # pragma: no cover - every Unix build we use has it
    termios = None

_LOG = 64  # DE transitions kept (ring)


class RecordedPin:
    """A DE pin for a machine without one: records (ticks_us, level) of every transition in a
    preallocated ring so tests can check the direction timing. Callable like machine.Pin.
    ticks_us: the clock's ticks (the UART passes its own), so the log and the line agree."""

    def __init__(self, ticks_us=None):
        self._ticks_us = time.ticks_us if ticks_us is None else ticks_us
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
            self._t[i] = self._ticks_us()
            self._v[i] = v
            self.count += 1
        return None

    value = __call__

    def transitions(self):
        """[(ticks_us, level)] oldest first (allocates: for tests)."""
        n = self.count if self.count < _LOG else _LOG
        first = self.count - n
        return [(self._t[i % _LOG], self._v[i % _LOG]) for i in range(first, self.count)]


_SPEEDS = ("B9600", "B57600", "B115200", "B230400", "B460800", "B921600")


class UnixUart(Rs485Uart):
    def __init__(self, path, baud=9600, parity="N", stop_bits=1, de=None, clock=None):
        try:
            f = open(path, "r+b")
        except OSError as e:  # name the port: ENOENT alone does not say which
            raise OSError(e.args[0], "serial.port %s cannot be opened" % path)
        fd = f.fileno()
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
        self._f = f
        t = time if clock is None else clock
        self._setup(f, de if de is not None else RecordedPin(t.ticks_us), baud, parity,
                    stop_bits, clock)

    def _sent(self):
        # A pty has no shift register: the wire time is modelled from the baud rate.
        return self._ticks_diff(self._ticks_us(), self._tx_end) >= 0

    def _wait_sent(self):
        while self._ticks_diff(self._ticks_us(), self._tx_end) < 0:
            pass

    # DE is recorded at the instant it really drops (RecordedPin reads the clock then), so a
    # test sees how late the release is: the line time is the model, the release is not.

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
                    serial_cfg.get("stop_bits", 1), clock=clock)
