# Helpers of the sensor driver tests (tests/firmware/test_<driver>.py): a config validated by
# the firmware's one schema, a sink that keeps records without allocating, a simulated clock.
from mptest import ACK_KEY
from otlink.core import reading
from otlink.hal.clock import Clock, ticks_add, ticks_diff

T0 = 1700000000000  # wall clock at the start of a simulation (epoch ms)


def sensor_cfg(sensor, groups=None):
    """The validated, normalized config of one sensor entry (core/config.validate)."""
    from otlink.core import config

    c = {"node": {"id": "n1", "site": "s1"}, "mqtt": {"host": "127.0.0.1", "ack_key": ACK_KEY},
         "groups": groups or {"default": {"interval_ms": 1000}}, "sensors": [sensor]}
    sensor.setdefault("group", "default")
    return config.validate(c)["sensors"][0]


def config_errors(sensor):
    """[(field, problem)] the schema reports for a config holding this one sensor."""
    from otlink.core import config

    sensor.setdefault("group", "default")
    c = {"node": {"id": "n1", "site": "s1"}, "mqtt": {"host": "127.0.0.1", "ack_key": ACK_KEY},
         "sensors": [sensor]}
    try:
        config.validate(c, buses={"i2c": ["i2c0"], "onewire": ["ow0"], "adc": ["adc0"],
                                  "pin": ["s0", "in0"]})
    except config.ConfigError as e:
        return [(x.field, x.problem) for x in config.errors_of(e)]
    return []


class Sink:
    """Keeps the records it is given in preallocated slots (does not allocate)."""

    def __init__(self, n=16):
        self.buf = bytearray(n * reading.SIZE)
        self.cap = n
        self.n = 0

    def __call__(self, rec, n):
        if self.n == self.cap:
            self.n = 0  # a ring: the test reads the last ones
        o = self.n * reading.SIZE
        for i in range(n):
            self.buf[o + i] = rec[i]
        self.n += 1

    def records(self):
        return [reading.unpack(self.buf[i * reading.SIZE:(i + 1) * reading.SIZE],
                               reading.SIZE) for i in range(self.n)]

    def clear(self):
        self.n = 0


class StepTicks:
    """A ticks source (hal/clock.py's interface) that moves only when told: step(ms) or the
    clock's sleep_ms. Wraps at 2**30 like the boards' ticks."""

    def __init__(self, ms=1000):
        self.ms = ms

    def ticks_ms(self):
        return self.ms

    def ticks_us(self):
        return (self.ms * 1000) & 0x3FFFFFFF

    def ticks_add(self, a, d):
        return ticks_add(a, d)

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def sleep_ms(self, ms):
        self.ms = (self.ms + ms) & 0x3FFFFFFF

    step = sleep_ms


class _Wall:
    def time_ns(self):
        return T0 * 1000000

    def gmtime(self, s):
        return (1970,)


def sim_clock(ms=1000):
    """(ticks, Clock) at wall time T0, moving only when the test steps it."""
    ticks = StepTicks(ms)
    return ticks, Clock(ticks=ticks, wall=_Wall())
