# Modbus RTU framing: CRC-16, request building and response checking in preallocated buffers.
# References: "MODBUS over Serial Line Specification and Implementation Guide V1.02" (§2.5.1
# RTU framing and timing, §6.2.2 CRC) and "MODBUS Application Protocol Specification V1.1b3"
# (§6 function codes, §7 exception responses).
#
# Allocation contract: Rtu allocates its two 256-byte buffers once; every build_* / check call
# afterwards works in place and allocates nothing (heap-lock tested).
from otlink.core.compat import const
from otlink.core.errors import (ERR_CRC, ERR_ECHO, ERR_EXCEPTION, ERR_FRAME,  # noqa: F401
                                ERR_OFFLINE, ERR_PORT, ERR_RANGE,
                                ERR_TIMEOUT, ERR_WRITE_MISMATCH, ERR_WRONG_FUNCTION,
                                ERR_WRONG_SLAVE)

# Function codes (application protocol §6)
FC_READ_COILS = const(1)
FC_READ_DISCRETE = const(2)
FC_READ_HOLDING = const(3)
FC_READ_INPUT = const(4)
FC_WRITE_COIL = const(5)
FC_WRITE_REGISTER = const(6)
FC_WRITE_COILS = const(15)
FC_WRITE_REGISTERS = const(16)

# Error codes carried by a reading instead of its value: the one table in core/errors.py.
# A slave's exception x becomes 0x80 | x (application protocol §7).
EX_ILLEGAL_FUNCTION = const(0x81)
EX_ILLEGAL_ADDRESS = const(0x82)
EX_ILLEGAL_VALUE = const(0x83)
EX_SLAVE_FAILURE = const(0x84)
EX_ACKNOWLEDGE = const(0x85)
EX_SLAVE_BUSY = const(0x86)
EX_NEGATIVE_ACK = const(0x87)
EX_MEMORY_PARITY = const(0x88)
EX_GATEWAY_PATH = const(0x8A)
EX_GATEWAY_TARGET = const(0x8B)

ERROR_NAMES = {
    0x81: "illegal_function", 0x82: "illegal_address", 0x83: "illegal_value",
    0x84: "slave_failure", 0x85: "acknowledge", 0x86: "slave_busy", 0x87: "negative_ack",
    0x88: "memory_parity", 0x8A: "gateway_path", 0x8B: "gateway_target",
    ERR_TIMEOUT: "timeout", ERR_CRC: "crc", ERR_FRAME: "frame", ERR_WRONG_SLAVE: "wrong_slave",
    ERR_WRONG_FUNCTION: "wrong_function", ERR_OFFLINE: "offline", ERR_ECHO: "echo",
    ERR_WRITE_MISMATCH: "write_mismatch", ERR_PORT: "port", ERR_RANGE: "out_of_range",
}


def error_name(code):
    n = ERROR_NAMES.get(code)
    if n is None:
        return "exception_%d" % (code & 0x7F) if code & 0x80 else "error_%d" % code
    return n


MAX_ADU = const(256)  # RTU ADU limit (serial line §2.5.1): addr + PDU 253 + CRC 2
MAX_REGS = const(125)  # FC 03/04 quantity limit
MAX_BITS = const(2000)  # FC 01/02 quantity limit
MAX_WRITE_REGS = const(123)  # FC 16
MAX_WRITE_BITS = const(1968)  # FC 15


def _make_table():
    # CRC-16/MODBUS: reflected polynomial 0xA001, init 0xFFFF (serial line §6.2.2).
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        t.append(c)
    try:
        from array import array
    except ImportError:  # pragma: no cover
        return t
    return array("H", t)


_TABLE = _make_table()


def crc16(buf, n, start=0):
    """CRC-16/MODBUS of buf[start:start+n]; does not allocate."""
    crc = 0xFFFF
    t = _TABLE
    for i in range(start, start + n):
        crc = (crc >> 8) ^ t[(crc ^ buf[i]) & 0xFF]
    return crc


def char_us(baud, parity="N", stop_bits=1):
    """Microseconds per character on the wire: start + 8 data + parity + stop bits. The spec
    (serial line §2.5.1) uses 11 bits with parity or with 2 stop bits; 'N' with 1 stop bit is
    10 bits on the wire, which we honour for timing of the direction pin."""
    bits = 1 + 8 + (0 if parity == "N" else 1) + stop_bits
    return (bits * 1000000 + baud - 1) // baud


def t35_us(baud):
    """Inter-frame silence t3.5 (serial line §2.5.1.1): 3.5 characters of 11 bits, fixed at
    1750 us above 19200 baud."""
    if baud > 19200:
        return 1750
    return (38500000 + baud - 1) // baud  # 3.5 * 11 bits * 1e6 / baud


def t15_us(baud):
    """Inter-character limit t1.5, fixed at 750 us above 19200 baud."""
    if baud > 19200:
        return 750
    return (16500000 + baud - 1) // baud


def read_fc(table):
    """Function code that reads a table name, or 0."""
    if table == "holding":
        return FC_READ_HOLDING
    if table == "input":
        return FC_READ_INPUT
    if table == "coil":
        return FC_READ_COILS
    if table == "discrete":
        return FC_READ_DISCRETE
    return 0


def response_len(fc, count):
    """Length of the normal response ADU to a request (slave id + PDU + CRC)."""
    if fc == FC_READ_COILS or fc == FC_READ_DISCRETE:
        return 5 + (count + 7) // 8
    if fc == FC_READ_HOLDING or fc == FC_READ_INPUT:
        return 5 + 2 * count
    return 8  # 05, 06, 15, 16 echo address + value/quantity


class Rtu:
    """One request buffer and one response buffer; the poller owns exactly one of these.

    build_* fill self.tx and return the ADU length; check(n) validates the n bytes in self.rx
    against the last request and returns 0 or an error code. Does not allocate."""

    def __init__(self):
        self.tx = bytearray(MAX_ADU)
        self.rx = bytearray(MAX_ADU)
        self.slave = 0
        self.fc = 0
        self.addr = 0
        self.count = 0

    def _crc_tail(self, n):
        c = crc16(self.tx, n)
        self.tx[n] = c & 0xFF  # CRC goes low byte first (serial line §2.5.1.2)
        self.tx[n + 1] = c >> 8
        return n + 2

    def _head(self, slave, fc, addr, word):
        b = self.tx
        b[0] = slave
        b[1] = fc
        b[2] = (addr >> 8) & 0xFF
        b[3] = addr & 0xFF
        b[4] = (word >> 8) & 0xFF
        b[5] = word & 0xFF
        self.slave = slave
        self.fc = fc
        self.addr = addr

    def build_read(self, slave, fc, addr, count):
        """FC 01/02/03/04 request. Returns 8."""
        self._head(slave, fc, addr, count)
        self.count = count
        return self._crc_tail(6)

    def build_write_single(self, slave, fc, addr, value):
        """FC 05 (value true/false -> 0xFF00/0x0000) or FC 06 (16-bit value). Returns 8."""
        if fc == FC_WRITE_COIL:
            value = 0xFF00 if value else 0
        self._head(slave, fc, addr, value & 0xFFFF)
        self.count = value & 0xFFFF
        return self._crc_tail(6)

    def build_write_multiple(self, slave, fc, addr, values, count):
        """FC 15 (values: sequence of truthy bits) or FC 16 (values: 16-bit ints)."""
        self._head(slave, fc, addr, count)
        self.count = count
        b = self.tx
        if fc == FC_WRITE_COILS:
            nb = (count + 7) // 8
            for i in range(nb):
                b[7 + i] = 0
            for i in range(count):
                if values[i]:
                    b[7 + (i >> 3)] |= 1 << (i & 7)
        else:
            nb = 2 * count
            for i in range(count):
                v = values[i] & 0xFFFF
                b[7 + 2 * i] = v >> 8
                b[8 + 2 * i] = v & 0xFF
        b[6] = nb
        return self._crc_tail(7 + nb)

    def expected(self):
        return response_len(self.fc, self.count)

    def check(self, n):
        """0 when rx[:n] is the valid normal response to the last request, else an error code
        (0x80 | the slave's exception code, or ERR_*). For reads, data starts at rx[3]."""
        b = self.rx
        if n == 0:
            return ERR_TIMEOUT
        want = response_len(self.fc, self.count)
        if n != want:
            if n == 5 and b[1] == (self.fc | 0x80):
                # exception response (application protocol §7)
                if crc16(b, 3) != (b[3] | (b[4] << 8)):
                    return ERR_CRC
                if b[0] != self.slave:
                    return ERR_WRONG_SLAVE
                x = b[2]
                return ERR_EXCEPTION | x if 0 < x < 0x80 else ERR_FRAME
            # ended early or ran on: a framing error even if some CRC happened to match
            return ERR_FRAME
        # The frame has the expected length: any corrupted byte, whatever it hit (address,
        # function, count, data), is a CRC error.
        if crc16(b, n - 2) != (b[n - 2] | (b[n - 1] << 8)):
            return ERR_CRC
        if b[0] != self.slave:
            return ERR_WRONG_SLAVE
        if b[1] != self.fc:
            return ERR_WRONG_FUNCTION
        fc = self.fc
        if fc <= FC_READ_INPUT:
            if b[2] != n - 5:
                return ERR_FRAME
            return 0
        # Write confirmations repeat address and value/quantity (application protocol §6.5+).
        t = self.tx
        if b[2] != t[2] or b[3] != t[3] or b[4] != t[4] or b[5] != t[5]:
            return ERR_WRITE_MISMATCH
        return 0
