# RS-485 UART for esp32 / rp2: machine.UART plus a GPIO driving the transceiver's DE (and /RE,
# usually tied to it). The interface and the shared logic are in hal/rs485.py.
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
import machine

from otlink.hal.rs485 import Rs485Uart


class MachineUart(Rs485Uart):
    def __init__(self, uart_id, tx, rx, de_pin, baud=9600, parity="N", stop_bits=1,
                 clock=None):
        par = None if parity == "N" else (0 if parity == "E" else 1)
        self._u = machine.UART(uart_id, baudrate=baud, bits=8, parity=par, stop=stop_bits,
                               tx=machine.Pin(tx), rx=machine.Pin(rx), timeout=0,
                               timeout_char=0, rxbuf=512)
        self._setup(self._u, machine.Pin(de_pin, machine.Pin.OUT, value=0), baud, parity,
                    stop_bits, clock)

    def _sent(self):
        return self._u.txdone()

    def _readable(self):
        return self._u.any() > 0

    def close(self):
        self.de(0)
        self._u.deinit()


def open_uart(serial_cfg, clock, uart_id, tx, rx, de_pin):
    """The board's RS-485 UART (ids and pins from boards/<board>.json) at the configured
    baud/parity/stop bits."""
    return MachineUart(uart_id, tx, rx, de_pin, serial_cfg.get("baud", 9600),
                       serial_cfg.get("parity", "N"), serial_cfg.get("stop_bits", 1), clock)
