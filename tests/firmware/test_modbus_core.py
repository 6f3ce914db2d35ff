# heapsize: 64K
# Modbus RTU framing: CRC, timing, request building, response checking, heap-locked.
import mptest
from mptest import eq, no_alloc, true

from otlink.core import modbus
from otlink.core.modbus import Rtu, crc16


def _adu(*b):
    """bytes + CRC (test helper)."""
    buf = bytearray(b)
    c = crc16(buf, len(buf))
    buf.append(c & 0xFF)
    buf.append(c >> 8)
    return buf


def test_crc_known_vectors():
    # "01 03 00 00 00 0A" -> C5 CD (serial line spec appendix example family)
    eq(crc16(bytes([1, 3, 0, 0, 0, 10]), 6), 0xCDC5, "crc 01 03 0000 000A")
    # CRC-16/MODBUS check value for "123456789"
    eq(crc16(b"123456789", 9), 0x4B37, "check value")
    eq(crc16(b"", 0), 0xFFFF, "empty")


def test_crc_does_not_allocate():
    b = bytearray(range(200))
    crc16(b, 200)
    no_alloc(crc16, b, 200)


def test_timing_from_baud():
    eq(modbus.t35_us(9600), 4011, "t3.5 @9600")
    eq(modbus.t15_us(9600), 1719, "t1.5 @9600")
    eq(modbus.t35_us(19200), 2006, "t3.5 @19200 still computed")
    eq(modbus.t35_us(38400), 1750, "fixed above 19200")
    eq(modbus.t15_us(115200), 750, "t1.5 fixed")
    eq(modbus.char_us(9600, "E", 1), 1146, "11-bit char @9600")
    eq(modbus.char_us(9600, "N", 2), 1146, "N with 2 stop bits is 11 bits too")
    eq(modbus.char_us(9600, "N", 1), 1042, "8N1 is 10 bits")


def test_build_read_every_fc():
    r = Rtu()
    for fc in (1, 2, 3, 4):
        n = r.build_read(17, fc, 0x006B, 3)
        eq(bytes(r.tx[:n]), bytes(_adu(17, fc, 0x00, 0x6B, 0x00, 0x03)), "fc %d" % fc)


def test_build_writes():
    r = Rtu()
    n = r.build_write_single(1, 5, 0xAC, True)
    eq(bytes(r.tx[:n]), bytes(_adu(1, 5, 0, 0xAC, 0xFF, 0)), "fc5 on")
    n = r.build_write_single(1, 5, 0xAC, False)
    eq(bytes(r.tx[:n]), bytes(_adu(1, 5, 0, 0xAC, 0, 0)), "fc5 off")
    n = r.build_write_single(1, 6, 1, -2)
    eq(bytes(r.tx[:n]), bytes(_adu(1, 6, 0, 1, 0xFF, 0xFE)), "fc6 negative as 16 bits")
    # application protocol §6.11 example: coils 20..29 = CD 01
    bits = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    n = r.build_write_multiple(1, 15, 19, bits, 10)
    eq(bytes(r.tx[:n]), bytes(_adu(1, 15, 0, 19, 0, 10, 2, 0xCD, 0x01)), "fc15")
    n = r.build_write_multiple(1, 16, 1, [0x000A, 0x0102], 2)
    eq(bytes(r.tx[:n]), bytes(_adu(1, 16, 0, 1, 0, 2, 4, 0, 0x0A, 1, 2)), "fc16")


def _answer(r, frame):
    r.rx[:len(frame)] = frame
    return r.check(len(frame))


def test_check_read_ok_and_errors():
    r = Rtu()
    r.build_read(1, 3, 0, 2)
    good = _adu(1, 3, 4, 0x43, 0x66, 0, 0)
    eq(_answer(r, good), 0, "good")
    eq(r.check(0), modbus.ERR_TIMEOUT, "nothing")
    bad = bytearray(good)
    bad[4] ^= 0x10
    eq(_answer(r, bad), modbus.ERR_CRC, "corrupted data")
    bad = bytearray(good)
    bad[1] ^= 0x80  # function byte corrupted into an exception-looking byte
    eq(_answer(r, bad), modbus.ERR_CRC, "corrupted function byte is a crc error")
    eq(_answer(r, good[:7]), modbus.ERR_FRAME, "truncated")
    eq(_answer(r, good + b"\x00"), modbus.ERR_FRAME, "run-on garbage")
    eq(_answer(r, _adu(2, 3, 4, 0x43, 0x66, 0, 0)), modbus.ERR_WRONG_SLAVE, "other slave")
    eq(_answer(r, _adu(1, 4, 4, 0x43, 0x66, 0, 0)), modbus.ERR_WRONG_FUNCTION, "other fc")
    eq(_answer(r, _adu(1, 3, 3, 0x43, 0x66, 0, 0)), modbus.ERR_FRAME, "byte count lies")


def test_exceptions_become_codes():
    r = Rtu()
    r.build_read(1, 4, 0, 2)
    for code in (1, 2, 3, 4, 6, 11):
        eq(_answer(r, _adu(1, 0x84, code)), 0x80 | code, "exception %d" % code)
    eq(_answer(r, _adu(1, 0x84, 0)), modbus.ERR_FRAME, "exception code 0 is no exception")
    bad = _adu(1, 0x84, 2)
    bad[2] = 3
    eq(_answer(r, bad), modbus.ERR_CRC, "exception with bad crc")
    eq(_answer(r, _adu(9, 0x84, 2)), modbus.ERR_WRONG_SLAVE, "exception from another slave")
    eq(modbus.error_name(modbus.EX_ILLEGAL_ADDRESS), "illegal_address", "name")
    eq(modbus.error_name(0x86), "slave_busy", "name")
    eq(modbus.error_name(modbus.ERR_CRC), "crc", "name")


def test_check_write_confirmations():
    r = Rtu()
    r.build_write_single(1, 6, 7, 0x1234)
    eq(_answer(r, _adu(1, 6, 0, 7, 0x12, 0x34)), 0, "fc6 echo")
    eq(_answer(r, _adu(1, 6, 0, 8, 0x12, 0x34)), modbus.ERR_WRITE_MISMATCH, "fc6 wrong addr")
    r.build_write_multiple(1, 16, 1, [1, 2, 3], 3)
    eq(_answer(r, _adu(1, 16, 0, 1, 0, 3)), 0, "fc16 confirm")
    eq(_answer(r, _adu(1, 16, 0, 1, 0, 2)), modbus.ERR_WRITE_MISMATCH, "fc16 wrong qty")


def test_response_lengths():
    eq(modbus.response_len(1, 2000), 255, "2000 coils fit the ADU")
    eq(modbus.response_len(3, 125), 255, "125 registers fit the ADU")
    eq(modbus.response_len(16, 10), 8, "write confirm")


def test_build_and_check_do_not_allocate():
    r = Rtu()
    good = _adu(1, 3, 4, 0x43, 0x66, 0, 0)
    r.rx[:9] = good
    vals = [1, 2, 3]

    def hot():
        r.build_read(1, 3, 0, 2)
        c = r.check(9)
        r.build_write_multiple(1, 16, 0, vals, 3)
        r.build_write_single(1, 5, 0, 1)
        return c

    hot()
    eq(no_alloc(hot), 0, "checked ok under heap lock")
    true(True, "no MemoryError")


mptest.main(globals())
