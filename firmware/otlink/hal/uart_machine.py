# RS-485 UART for esp32 / rp2: machine.UART plus a GPIO driving the transceiver's DE (and /RE,
# usually tied to it). The interface and the shared logic are in hal/rs485.py.
#
# Direction timing (Modbus over Serial Line §3.3.1, and the transceiver datasheet: DE must be
# high before the first start bit and stay high until the last stop bit has left):
#   - DE goes high before write(); the UART starts shifting only after write() queues bytes.
#   - uart.write() on both ports copies into the TX ring/FIFO and returns (blocking only while
#     the ring is full). The poller then calls flush(), which holds it until the last stop bit
#     has left and drops DE at once - not when the poller next runs, which may be after another
#     task's flash erase (tens of ms: the slave's answer would meet a driven line).
#   - What "sent" means differs per port (v1.23-v1.26 source):
#       esp32: UART.flush() waits in uart_wait_tx_done() for the TX-done interrupt, raised
#              once the stop bit of the last character is out;
#       rp2:   UART.txdone() is true once the ring and the TX FIFO are empty, while the last
#              character may still be in the shift register (up to one char time, 1.15 ms at
#              9600 baud). So after it the computed end of the frame (write time + n chars)
#              is waited out as well.
#   - With /RE tied to DE the receiver is off while we send: no echo. Wire /RE low permanently
#     and set "echo": true to hear (and check) our own bytes instead.
import machine

from otlink.hal.rs485 import Rs485Uart


class MachineUart(Rs485Uart):
    def __init__(self, uart_id, tx, rx, de_pin, baud=9600, parity="N", stop_bits=1,
                 clock=None, flush_waits=False):
        par = None if parity == "N" else (0 if parity == "E" else 1)
        self._u = machine.UART(uart_id, baudrate=baud, bits=8, parity=par, stop=stop_bits,
                               tx=machine.Pin(tx), rx=machine.Pin(rx), timeout=0,
                               timeout_char=0, rxbuf=512)
        self._flush_waits = flush_waits  # UART.flush() returns after the last stop bit
        self._setup(self._u, machine.Pin(de_pin, machine.Pin.OUT, value=0), baud, parity,
                    stop_bits, clock)

    def _sent(self):
        return self._u.txdone() and self._ticks_diff(self._ticks_us(), self._tx_end) >= 0

    def _wait_sent(self):
        if self._flush_waits:
            self._u.flush()
        else:
            while not self._u.txdone():
                pass
        # the computed end of the last stop bit (rp2: the shift register after the FIFO)
        while self._ticks_diff(self._ticks_us(), self._tx_end) < 0:
            pass

    def _readable(self):
        return self._u.any() > 0

    def close(self):
        self.de(0)
        self._u.deinit()


def open_uart(serial_cfg, clock, uart_id, tx, rx, de_pin, flush_waits=False):
    """The board's RS-485 UART (ids and pins from the board file) at the configured
    baud/parity/stop bits. flush_waits: the port's UART.flush() waits for the last stop bit
    (esp32)."""
    return MachineUart(uart_id, tx, rx, de_pin, serial_cfg.get("baud", 9600),
                       serial_cfg.get("parity", "N"), serial_cfg.get("stop_bits", 1), clock,
                       flush_waits)
