# Maxim DS18B20 temperature sensors on one 1-Wire pin, several per pin, each a point whose
# channel is its 64-bit ROM code. Externally powered (VDD wired; parasite power is not
# supported: Convert T would need a strong pull-up the HAL does not drive).
# Datasheet (DS18B20, 19-7487) facts used:
#   ROM code: family 0x28, 48-bit serial, CRC-8 of the first 7 bytes, sent LSB first;
#   CRC-8 polynomial x^8 + x^5 + x^4 + 1 (Maxim/Dallas, reflected 0x8C, init 0);
#   ROM commands: Search ROM 0xF0 (bit, complement, direction per ROM bit), Match ROM 0x55,
#   Skip ROM 0xCC; function commands: Convert T 0x44, Read Scratchpad 0xBE (9 bytes, the
#   ninth their CRC), Write Scratchpad 0x4E (TH, TL, configuration);
#   configuration register: 0 R1 R0 1 1 1 1 1, resolution 9/10/11/12 bits, maximum
#   conversion time 93.75/187.5/375/750 ms; bits 0, 0-1, 0-2 of the temperature are undefined
#   at 11, 10, 9 bits; temperature is a signed 16-bit count of 1/16 degC, range -55..+125;
#   the temperature register powers up at +85 degC (0x0550).
# One sample: Skip ROM + Convert T to every sensor of the pin at once, the task sleeps the
# conversion time (the bus is never read during a conversion), then per sensor Match ROM +
# Read Scratchpad. An exact 85 degC is reported as not ready (error 12): it is what a sensor
# that reset (power dip) and has not converted since holds. Does not allocate after the first
# sample (its ROM search lists the sensors found in the boot log).
from otlink.core.compat import const
from otlink.core.errors import ERR_BUS_STUCK, ERR_NOT_READY, ERR_RANGE, ERR_SENSOR, ERR_SENSOR_CRC

_SEARCH_ROM = const(0xF0)
_MATCH_ROM = const(0x55)
_SKIP_ROM = const(0xCC)
_CONVERT_T = const(0x44)
_READ_SCRATCH = const(0xBE)
_WRITE_SCRATCH = const(0x4E)
_FAMILY = const(0x28)
_POWER_ON = const(0x0550)  # +85 degC
_T_MIN = const(-880)  # -55 degC in 1/16
_T_MAX = const(2000)  # +125 degC

BUS = "onewire"
OPTIONS = (("resolution", "choice", 12, (9, 10, 11, 12)),)
CHANNELS = "the sensor's ROM code, 16 hex digits in bus order (family 28 first, CRC last)"
CONVERT_MS = {9: 94, 10: 188, 11: 375, 12: 750}  # 93.75 / 187.5 / 375 / 750 ms, rounded up


def crc8(buf, start, n):
    """CRC-8/MAXIM of buf[start:start + n]; a block followed by its CRC gives 0."""
    c = 0
    for i in range(start, start + n):
        b = buf[i]
        for _ in range(8):
            mix = (c ^ b) & 1
            c >>= 1
            if mix:
                c ^= 0x8C
            b >>= 1
    return c


def parse_rom(text):
    """The 8 ROM bytes of a 16-hex-digit ROM code, or None when it is not a DS18B20's
    (length, hex digits, family 0x28, CRC)."""
    if not isinstance(text, str) or len(text) != 16:
        return None
    try:
        b = bytes([int(text[k:k + 2], 16) for k in range(0, 16, 2)])
    except ValueError:
        return None
    if b[0] != _FAMILY or crc8(b, 0, 8) != 0:
        return None
    return b


def rom_text(rom):
    return "".join(["%02x" % x for x in rom])


def channel(opts, name):
    if parse_rom(name) is None:
        return None
    return ("degC", "int16", 0.0625, 0.0)


def search(ow):
    """Every ROM on the bus by the Search ROM algorithm (Maxim AN187): a list of 8-byte
    bytes, in search order. Allocates: boot and diagnostics only. Raises OSError(ENODEV)
    without a presence pulse; a line held low gives the all-zero ROM (its CRC is 0 too)."""
    found = []
    rom = bytearray(8)
    last_fork = -1
    while True:
        if not ow.reset():
            if found:
                return found
            raise OSError(19)
        ow.writebyte(_SEARCH_ROM)
        fork = -1
        for i in range(64):
            b = ow.readbit()
            nb = ow.readbit()
            if b and nb:  # no device answers: they left during the search
                return found
            if b != nb:
                d = b  # every remaining device has this bit
            elif i == last_fork:
                d = 1  # the fork taken with 0 last time: now 1
            elif i > last_fork:
                d = 0
                fork = i
            else:
                d = (rom[i >> 3] >> (i & 7)) & 1  # the path before the last fork
                if d == 0:
                    fork = i
            if d:
                rom[i >> 3] |= 1 << (i & 7)
            else:
                rom[i >> 3] &= ~(1 << (i & 7))
            ow.writebit(d)
        found.append(bytes(rom))
        if not any(rom):  # the line held low reads as zeros: one ROM of zeros, no more
            return found
        last_fork = fork
        if last_fork < 0 or len(found) >= 64:
            return found


class Driver:
    def __init__(self, ow, cfg, clock=None, keep=None):
        self.ow = ow
        self.res = cfg["resolution"]
        self.measure_ms = CONVERT_MS[self.res]
        pts = cfg["points"]
        self.roms = bytearray(8 * len(pts))
        for i in range(len(pts)):
            self.roms[8 * i:8 * i + 8] = parse_rom(pts[i]["channel"])
        self._mask = ~((1 << (12 - self.res)) - 1)  # the undefined low bits cleared
        self._sp = bytearray(9)
        self.found = None  # ROMs of the first search (boot log)

    def _first(self):
        # warm-up: list the sensors on the pin, set the resolution of all of them
        self.found = search(self.ow)
        print("otlink: ds18b20: %d on the pin: %s" % (
            len(self.found), " ".join([rom_text(r) for r in self.found])))
        ow = self.ow
        ow.reset()
        ow.writebyte(_SKIP_ROM)
        ow.writebyte(_WRITE_SCRATCH)
        ow.writebyte(0x4B)  # TH, TL: the alarm bytes' factory values, unused
        ow.writebyte(0x46)
        ow.writebyte(((self.res - 9) << 5) | 0x1F)

    def start(self):
        """Convert T on every sensor of the pin at once. OSError(ENODEV): no presence pulse."""
        if self.found is None:
            self._first()
        ow = self.ow
        if not ow.reset():
            raise OSError(19)
        ow.writebyte(_SKIP_ROM)
        ow.writebyte(_CONVERT_T)

    def read(self, s):
        """Each sensor's temperature in 1/16 degC, by Match ROM + Read Scratchpad."""
        ow = self.ow
        sp = self._sp
        roms = self.roms
        for i in range(len(roms) >> 3):
            if not ow.reset():
                s.err[i] = ERR_SENSOR
                continue
            ow.writebyte(_MATCH_ROM)
            for k in range(8 * i, 8 * i + 8):
                ow.writebyte(roms[k])
            ow.writebyte(_READ_SCRATCH)
            ones = 0
            zeros = 0
            for k in range(9):
                b = ow.readbyte()
                sp[k] = b
                if b == 0xFF:
                    ones += 1
                elif b == 0:
                    zeros += 1
            if ones == 9:  # nobody drove the line: this ROM is not on the bus
                s.err[i] = ERR_SENSOR
            elif zeros == 9:  # the line stays low (its CRC would pass: 0 over zeros)
                s.err[i] = ERR_BUS_STUCK
            elif crc8(sp, 0, 9) != 0:
                s.err[i] = ERR_SENSOR_CRC
            else:
                t = sp[0] | (sp[1] << 8)
                if t & 0x8000:
                    t -= 0x10000
                t &= self._mask
                if t == _POWER_ON:
                    s.err[i] = ERR_NOT_READY
                elif t < _T_MIN or t > _T_MAX:
                    s.err[i] = ERR_RANGE
                else:
                    s.v[i] = t
