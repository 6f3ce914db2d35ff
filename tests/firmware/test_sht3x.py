# SHT3x driver against the datasheet-built bus model: values, CRC, NACK while measuring.
# heapsize: 64K
import mptest
from otlink.core.errors import ERR_SENSOR_CRC
from otlink.drivers import sht3x
from otlink.hal.clock import Clock
from otlink.hal.unix.sim_i2c import SimI2C, SHT3xModel


CFG = {"address": 0x44, "points": [{"channel": "temperature"}, {"channel": "humidity"}]}


class Sample:
    """sensors.Sample's slots, for the driver alone."""

    def __init__(self):
        self.v = [0, 0]
        self.err = [0, 0]


def setup():
    clock = Clock()
    model = SHT3xModel(clock)
    return clock, model, sht3x.Driver(SimI2C({0x44: model}), CFG)


def read(drv):
    s = Sample()
    drv.read(s)
    return s


def test_crc_datasheet_example():
    # Datasheet section 4.12: CRC of 0xBEEF is 0x92.
    mptest.eq(sht3x.crc8(b"\xbe\xef", 0, 2), 0x92, "crc8(0xBEEF)")


def test_measurement_converts_within_one_lsb():
    clock, model, drv = setup()
    drv.start()
    clock.sleep_ms(sht3x.MEASURE_MS)
    st, srh = read(drv).v
    _u, typ, sc, off = sht3x.channel(CFG, "temperature")
    t = st * sc + off
    rh = srh * sht3x.channel(CFG, "humidity")[2]
    mptest.eq(typ, "uint16", "raw type")
    mptest.true(abs(t - model.last[0]) < 0.003, "temperature %f vs %f" % (t, model.last[0]))
    mptest.true(abs(rh - model.last[1]) < 0.002, "humidity")
    mptest.true(19.0 < t < 25.0 and 35.0 < rh < 55.0, "plausible ambient")


def test_read_too_early_is_nacked():
    clock, model, drv = setup()
    drv.start()
    mptest.raises(OSError, read, drv)


def test_corrupt_word_fails_crc():
    clock, model, drv = setup()
    model.corrupt_next = True
    drv.start()
    clock.sleep_ms(sht3x.MEASURE_MS)
    s = read(drv)
    mptest.eq(s.err, [ERR_SENSOR_CRC, 0], "the corrupted temperature word alone fails")


def test_absent_sensor():
    drv = sht3x.Driver(SimI2C({}), CFG)
    mptest.raises(OSError, drv.start)


def test_sample_through_the_model_does_not_allocate():
    clock, model, drv = setup()
    s = Sample()
    for _ in range(3):
        mptest.no_alloc(drv.start)
        clock.sleep_ms(sht3x.MEASURE_MS)
        mptest.no_alloc(drv.read, s)
        mptest.eq(s.err, [0, 0], "no error")
    t = s.v[0] * sht3x.channel(CFG, "temperature")[2] - 45.0
    mptest.true(abs(t - model.last[0]) < 0.003, "value")


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
    drv = sht3x.Driver(_Answer(frame), CFG)
    s = Sample()
    mptest.no_alloc(drv.read, s)
    mptest.eq((s.v, s.err), ([0xBEEF, 0x1234], [0, 0]), "raw words")


mptest.main(globals())
