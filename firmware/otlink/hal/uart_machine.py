# RS-485 UART for esp32 / rp2: machine.UART plus a GPIO driving the transceiver's DE (and /RE,
# usually tied to it). Same interface as hal/unix_uart.py, documented there.
#
# Direction timing (Modbus over Serial Line §3.3.1, and the transceiver datasheet: DE must be
# high before the first start bit and stay high until the last stop bit has left):
#   - DE goes high before write(); the UART starts shifting only after write() queues bytes.
#   - uart.write() on both ports copies into the TX ring/FIFO and returns (blocking only while
#     the ring is full), so DE is dropped later, when uart.txdone() reports the shift register
#     empty: on rp2 that is TX FIFO empty and the BUSY flag clear (stop bit included), on esp32
#     the driver's TX-done state. tx_done() is polled by the poller while it waits for the
#     answer, so DE drops within one poll of the end of the frame - far inside the slave's
#     t3.5 silence before it may answer.
#   - With /RE tied to DE the receiver is off while we send: no echo. Wire /RE low permanently
#     and set "echo": true to hear (and check) our own bytes instead.
import select
import time

import machine

from otlink.core import modbus


class MachineUart:
    def __init__(self, uart_id, tx, rx, de_pin, baud=9600, parity="N", stop_bits=1):
        par = None if parity == "N" else (0 if parity == "E" else 1)
        self._u = machine.UART(uart_id, baudrate=baud, bits=8, parity=par, stop=stop_bits,
                               tx=machine.Pin(tx), rx=machine.Pin(rx), timeout=0,
                               timeout_char=0, rxbuf=512)
        self.de = machine.Pin(de_pin, machine.Pin.OUT, value=0)
        self.baud = baud
        self.char_us = modbus.char_us(baud, parity, stop_bits)
        self.t35_us = modbus.t35_us(baud)
        self.t15_us = modbus.t15_us(baud)
        self._poll = select.poll()
        self._poll.register(self._u, select.POLLIN)
        self._b1 = bytearray(1)
        self._busy = False
        self._tx_end = 0
        self.last_us = time.ticks_us()
        self.tx_bytes = 0
        self.rx_bytes = 0

    def now_us(self):
        return time.ticks_us()

    def write(self, buf, n):
        self.de.value(1)
        t0 = time.ticks_us()
        if n == len(buf):
            self._u.write(buf)
        else:
            self._u.write(memoryview(buf)[:n])
        # expected end of the last stop bit: the deadline for the answer counts from here
        self._tx_end = time.ticks_add(t0, n * self.char_us)
        self._busy = True
        self.tx_bytes += n

    def tx_done(self):
        if self._busy:
            if not self._u.txdone():
                return False
            self.de.value(0)
            self._busy = False
            self.last_us = time.ticks_us()
        return True

    def tx_end_us(self):
        return self._tx_end

    def wait(self, timeout_ms):
        for _ in self._poll.ipoll(timeout_ms):
            return True
        return False

    def read_byte(self):
        if self._u.any():
            if self._u.readinto(self._b1, 1) != 1:
                return -1
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
        self.de.value(0)
        self._u.deinit()


def open_uart(serial_cfg, clock, uart_id, tx, rx, de_pin):
    """The board's RS-485 UART (ids and pins from boards/<board>.json) at the configured
    baud/parity/stop bits."""
    return MachineUart(uart_id, tx, rx, de_pin, serial_cfg.get("baud", 9600),
                       serial_cfg.get("parity", "N"), serial_cfg.get("stop_bits", 1))
