# Errors shared by the core. Kept tiny: args are short strings, no formatting in hot paths.
from otlink.core.compat import const

# The one table of error codes a reading carries instead of its value (docs/payload.md, "Error
# codes"). One byte, sent as a CBOR simple value, so 20..31 are never used. Below 0x80: what
# the node saw itself; 0x80 | x: Modbus exception x answered by the slave.
ERR_TIMEOUT = const(1)  # no byte within the response timeout
ERR_CRC = const(2)  # a frame of the expected length whose CRC does not match
ERR_FRAME = const(3)  # wrong length (truncated, run-on), byte count mismatch
ERR_WRONG_SLAVE = const(4)  # a valid frame from another slave address
ERR_WRONG_FUNCTION = const(5)  # a valid frame with another function code
ERR_ECHO = const(6)  # echo expected and what came back is not what was sent
ERR_WRITE_MISMATCH = const(7)  # write confirmation does not repeat address/quantity
ERR_PORT = const(8)  # the serial port itself failed (USB adapter unplugged, device gone)
ERR_RANGE = const(9)  # a value outside the point's configured plausibility range
ERR_LOOP_LOW = const(10)  # 4-20 mA loop below 3.8 mA: open loop or failed transmitter (NE 43)
ERR_LOOP_HIGH = const(11)  # 4-20 mA loop above 20.5 mA: over range or short circuit (NE 43)
ERR_NOT_READY = const(12)  # local sensor: no valid measurement yet (DS18B20 85 degC power-on)
ERR_SENSOR = const(16)  # local sensor: absent or not answering (NACK, no presence pulse)
ERR_SENSOR_CRC = const(17)  # local sensor: checksum of its answer wrong
ERR_BUS_STUCK = const(18)  # local sensor bus held low or timing out (I2C/1-Wire line stuck)
ERR_OFFLINE = const(32)  # not asked: the slave is offline and in backoff
ERR_EXCEPTION = const(0x80)  # | Modbus exception code (application protocol §7)


class ConfigError(ValueError):
    """A node config value is wrong. args[0] is the field path (e.g. "points[3].type"),
    args[1] what is wrong with it."""

    def __init__(self, field, problem):
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self):
        return "config: %s: %s" % (self.field, self.problem)


class ConfigErrors(ConfigError):
    """Every error of one config: errors is a list of ConfigError, each naming its field.
    Itself a ConfigError with the first one's field and problem, so `except ConfigError`
    still catches it; str() gives one line per error."""

    def __init__(self, errors):
        super().__init__(errors[0].field, errors[0].problem)
        self.errors = errors

    def __str__(self):
        return "\n".join([str(e) for e in self.errors])
