# What every HAL RS-485 UART shares: RTU line timing from the baud rate, the direction (DE)
# pin raised before the first start bit and dropped once the last stop bit has left, and
# byte-at-a-time reads behind select.poll so no read waits past its deadline. The port
# classes (hal/unix/uart.py, hal/uart_machine.py) give the stream and say when TX is done.
#
# HAL UART interface:
#   baud, char_us, t35_us, t15_us    timing of one character and the RTU silences, in us
#   de                               the direction pin (callable like machine.Pin)
#   write(buf, n)                    raise DE, queue n bytes; does not wait for the wire
#   flush()                          block until the last stop bit has left, then drop DE
#   tx_done() -> bool                True once the last stop bit has left; drops DE then
#   tx_end_us()                      ticks_us when the last stop bit leaves (expected)
#   wait(timeout_ms) -> bool         block at most timeout_ms until a byte is readable
#   read_byte() -> int               next received byte, or -1 when none is waiting
#   drain() -> int                   discard everything received so far
#   now_us()                         the ticks_us clock the timing above is measured on
#   last_us                          ticks_us of the last bus activity (byte seen, tx end)
#   close()
#
# Time comes from the injected clock (hal/clock.py): clock.ticks_us, and its ticks_add /
# ticks_diff for every sum and distance, so a clock started near the wrap moves the line too.
# Ticks wrap every 2**30 us (17.9 min): last_us may be far older than half of that after a
# long silence, and users judge it with that in mind (the poller bounds its pre-request wait).
import select
import time

from otlink.core import modbus


class Rs485Uart:
    def _setup(self, stream, de, baud, parity, stop_bits, clock=None):
        t = time if clock is None else clock
        self._ticks_us = t.ticks_us
        self._ticks_add = t.ticks_add
        self._ticks_diff = t.ticks_diff
        self._io = stream
        self.de = de
        self.baud = baud
        self.char_us = modbus.char_us(baud, parity, stop_bits)
        self.t35_us = modbus.t35_us(baud)
        self.t15_us = modbus.t15_us(baud)
        self._poll = select.poll()
        self._poll.register(stream, select.POLLIN)
        self._b1 = bytearray(1)
        self._busy = False
        self._tx_end = 0
        self.last_us = self._ticks_us()
        self.tx_bytes = 0
        self.rx_bytes = 0

    # port specifics
    def _sent(self):
        """Has the last stop bit left the UART?"""
        raise NotImplementedError

    def _wait_sent(self):
        """Block until the last stop bit has left the UART (per port: UART.flush() where it
        waits for the shift register, txdone() and the computed byte time where it does not)."""
        raise NotImplementedError

    def _de_low(self):
        self.de(0)
        self.last_us = self._ticks_us()

    def _readable(self):
        for _ in self._poll.ipoll(0):
            return True
        return False

    # the interface
    def now_us(self):
        return self._ticks_us()

    def write(self, buf, n):
        """Raise DE, then queue buf[:n]. Does not allocate when n == len(buf)."""
        self.de(1)  # before the first start bit
        t0 = self._ticks_us()
        if n == len(buf):
            self._io.write(buf)
        else:
            self._io.write(memoryview(buf)[:n])
        # expected end of the last stop bit: the deadline for the answer counts from here
        self._tx_end = self._ticks_add(t0, n * self.char_us)
        self._busy = True
        self.tx_bytes += n

    def flush(self):
        """Hold the caller (and so the event loop) until the last stop bit of the frame has
        left, then drop DE at once. The bus is released right after the frame, not when its
        owner next runs: a flash erase or a TLS write in another task cannot keep the
        transceiver driving the line into the slave's answer. Costs the frame's wire time
        (an 8-byte request: 9.2 ms at 9600 baud, 0.8 ms at 115200)."""
        if self._busy:
            self._wait_sent()
            self._de_low()
            self._busy = False

    def tx_done(self):
        if self._busy:
            if not self._sent():
                return False
            self._de_low()
            self._busy = False
        return True

    def tx_end_us(self):
        return self._tx_end

    def wait(self, timeout_ms):
        for _ in self._poll.ipoll(timeout_ms):
            return True
        return False

    def read_byte(self):
        if not self._readable():
            return -1
        if self._io.readinto(self._b1, 1) != 1:
            raise OSError(5)  # EIO: readable but nothing came: the other end went away
        self.last_us = self._ticks_us()
        self.rx_bytes += 1
        return self._b1[0]

    def drain(self):
        n = 0
        while self.read_byte() >= 0:
            n += 1
        return n
