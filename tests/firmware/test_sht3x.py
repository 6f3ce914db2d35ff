# SHT3x driver against the datasheet-built bus model: values, CRC, NACK while measuring.
# heapsize: 64K
import mptest
from otlink.drivers import sht3x
from otlink.hal.clock import Clock
from otlink.hal.unix.sim_i2c import SimI2C, SHT3xModel


def setup():
    clock = Clock()
    model = SHT3xModel(clock)
    return clock, model, sht3x.SHT3x(SimI2C({0x44: model}))


def test_crc_datasheet_example():
    # Datasheet section 4.12: CRC of 0xBEEF is 0x92.
    mptest.eq(sht3x.crc8(b"\xbe\xef", 0, 2), 0x92, "crc8(0xBEEF)")


def test_measurement_converts_within_one_lsb():
    clock, model, drv = setup()
    drv.start()
    clock.sleep_ms(sht3x.MEASURE_MS)
    st, srh = drv.read()
    t = st * sht3x.SCALE["temperature"] + sht3x.OFFSET["temperature"]
    rh = srh * sht3x.SCALE["humidity"]
    mptest.true(abs(t - model.last[0]) < 0.003, "temperature %f vs %f" % (t, model.last[0]))
    mptest.true(abs(rh - model.last[1]) < 0.002, "humidity")
    mptest.true(19.0 < t < 25.0 and 35.0 < rh < 55.0, "plausible ambient")


def test_read_too_early_is_nacked():
    clock, model, drv = setup()
    drv.start()
    mptest.raises(OSError, drv.read)


def test_corrupt_word_fails_crc():
    clock, model, drv = setup()
    model.corrupt_next = True
    drv.start()
    clock.sleep_ms(sht3x.MEASURE_MS)
    e = mptest.raises(sht3x.CRCError, drv.read)
    mptest.true(isinstance(e, OSError), "CRC error is an OSError")


def test_absent_sensor():
    drv = sht3x.SHT3x(SimI2C({}), 0x44)
    mptest.raises(OSError, drv.start)


def test_start_and_crc_do_not_allocate():
    clock, model, drv = setup()
    buf = bytearray(b"\xbe\xef\x92")
    mptest.eq(mptest.no_alloc(sht3x.crc8, buf, 0, 2), 0x92, "crc no alloc")
    mptest.no_alloc(drv.start)


class _Answer:
    """An I2C bus whose sensor always has this 6-byte answer ready (allocates nothing)."""

    def __init__(self, frame):
        self.frame = frame

    def writeto(self, addr, buf, stop=True):
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        for i in range(6):
            buf[i] = self.frame[i]


def test_read_does_not_allocate():
    # datasheet 4.12 example word 0xBEEF (CRC 0x92) as temperature, 0x1234 as humidity
    frame = bytearray(b"\xbe\xef\x92\x12\x34\x00")
    frame[5] = sht3x.crc8(frame, 3, 2)
    drv = sht3x.SHT3x(_Answer(frame))
    got = mptest.no_alloc(drv.read)
    mptest.eq((got[0], got[1]), (0xBEEF, 0x1234), "raw words")
    mptest.true(mptest.no_alloc(drv.read) is got, "the same list every read")


mptest.main(globals())
