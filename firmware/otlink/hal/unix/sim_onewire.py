# Simulated 1-Wire bus for the Unix port with DS18B20 models built from the datasheet
# (drivers/ds18b20.py lists the facts). The same methods as micropython-lib's
# onewire.OneWire that drivers use: reset() -> presence, readbit(), writebit(b), readbyte(),
# writebyte(b). Modelled at the level of time slots: the line is a wired AND, so several
# devices answering at once (Search ROM's bit and complement, a Read ROM with two devices)
# give the AND of their bits, as on the wire; a read slot nobody drives reads 1 (pull-up).
# Faults: stuck = True holds the line low (every reset sees a "presence", every bit reads 0);
# a model's present = False takes it off the bus. Models compute with the heap lock lifted
# (sim_heap.py).
import math

from otlink.drivers.ds18b20 import crc8
from otlink.hal.unix.sim_heap import relock, release

_CONV_MS = {9: 94, 10: 188, 11: 375, 12: 750}  # datasheet maximum, rounded up


def make_rom(serial):
    """A DS18B20 ROM code (family 0x28, 48-bit serial, CRC) in bus order."""
    b = bytearray(8)
    b[0] = 0x28
    for k in range(6):
        b[1 + k] = (serial >> (8 * k)) & 0xFF
    b[7] = crc8(b, 0, 7)
    return bytes(b)


DEMO_ROMS = (make_rom(0x0000A1B2C3D4), make_rom(0x0000A1B2C3D5), make_rom(0x00000000BEEF))


class DS18B20Model:
    """One externally powered DS18B20. Temperature: 40 +/- 15 degC per ROM (a motor warming
    and cooling), or temp fixed by a test. Power-on scratchpad: +85 degC, TH 0x4B, TL 0x46,
    12 bits (datasheet figure 7 and "Operation - measuring temperature")."""

    def __init__(self, clock, rom, temp=None):
        self.clock = clock
        self.rom = rom
        self.temp = temp
        self.present = True
        self.corrupt_next = False  # tests: flip a bit of the next scratchpad read
        self.conversions = 0
        self.converting = None  # ticks_ms of the Convert T being done
        self.last = None  # degC of the last conversion, as encoded
        self.sp = bytearray(9)
        self.power_on()

    def power_on(self):
        sp = self.sp
        sp[0], sp[1], sp[2], sp[3], sp[4] = 0x50, 0x05, 0x4B, 0x46, 0x7F
        sp[5], sp[6], sp[7] = 0xFF, 0x0C, 0x10
        sp[8] = crc8(sp, 0, 8)
        self.converting = None

    def resolution(self):
        return 9 + ((self.sp[4] >> 5) & 3)

    def temperature(self, t_ms):
        if self.temp is not None:
            return self.temp
        return 40.0 + 15.0 * math.sin(t_ms / 1000.0 / 45.0 + self.rom[1])

    def busy(self):
        """True while a conversion runs; at its end the temperature register is written."""
        if self.converting is None:
            return False
        if self.clock.ticks_diff(self.clock.ticks_ms(), self.converting) < \
                _CONV_MS[self.resolution()]:
            return True
        self.converting = None
        self.conversions += 1
        t = self.temperature(self.clock.uptime_ms())
        raw = int(math.floor(t * 16 + 0.5))
        und = (1 << (12 - self.resolution())) - 1
        raw |= und  # undefined low bits: the model sets them, the driver must clear them
        self.last = (raw & ~und) / 16.0
        raw &= 0xFFFF
        self.sp[0] = raw & 0xFF
        self.sp[1] = raw >> 8
        self.sp[8] = crc8(self.sp, 0, 8)
        return False

    def convert(self):
        self.busy()
        self.converting = self.clock.ticks_ms()

    def scratchpad(self):
        self.busy()
        out = bytearray(self.sp)
        if self.corrupt_next:
            self.corrupt_next = False
            out[0] ^= 0x02
        return out

    def write_scratchpad(self, th, tl, cfg):
        self.sp[2] = th
        self.sp[3] = tl
        self.sp[4] = (cfg & 0x60) | 0x1F
        self.sp[8] = crc8(self.sp, 0, 8)


def _bits(data):
    out = []
    for b in data:
        for k in range(8):
            out.append((b >> k) & 1)
    return out


class SimOneWire:
    def __init__(self, devices, clock=None):
        self.devices = list(devices)
        self.stuck = False
        self.resets = 0
        self._phase = "idle"
        self._sel = []  # devices still taking part after the ROM command
        self._acc = 0  # bits of the byte being written, LSB first
        self._nacc = 0
        self._out = {}  # device -> bits it sends in the next read slots
        self._bit = 0  # Search ROM: ROM bit index, and the step in its triplet
        self._step = 0
        self._match = []

    def _present(self):
        return [d for d in self.devices if d.present]

    def reset(self):
        n = release()
        try:
            self.resets += 1
            if self.stuck:
                return True  # the line is low when the master samples: a "presence"
            self._sel = self._present()
            self._phase = "rom"
            self._acc = self._nacc = 0
            self._out = {}
            return bool(self._sel)
        finally:
            relock(n)

    def readbit(self):
        n = release()
        try:
            return self._readbit()
        finally:
            relock(n)

    def _readbit(self):
        if self.stuck:
            return 0
        if self._phase == "search":
            i = self._bit
            bits = [(d.rom[i >> 3] >> (i & 7)) & 1 for d in self._sel]
            if self._step == 0:
                self._step = 1
                return min(bits) if bits else 1
            if self._step == 1:
                self._step = 2
                return min([1 - b for b in bits]) if bits else 1
            return 1
        if self._phase == "converting":
            # read slots after Convert T: 0 while any converts, 1 when done (datasheet)
            return 0 if [d for d in self._sel if d.busy()] else 1
        v = 1
        for d in self._sel:
            q = self._out.get(d)
            if q:
                v &= q.pop(0)
        return v

    def readbyte(self):
        v = 0
        for k in range(8):
            v |= self.readbit() << k
        return v

    def writebit(self, b):
        n = release()
        try:
            self._writebit(b & 1)
        finally:
            relock(n)

    def writebyte(self, v):
        for k in range(8):
            self.writebit((v >> k) & 1)

    def _writebit(self, b):
        if self.stuck:
            return
        if self._phase == "search":
            if self._step != 2:
                return
            i = self._bit
            self._sel = [d for d in self._sel if ((d.rom[i >> 3] >> (i & 7)) & 1) == b]
            self._bit += 1
            self._step = 0
            if self._bit == 64:
                self._phase = "function"
            return
        if self._phase == "match":
            self._match.append(b)
            if len(self._match) == 64:
                want = bytes([sum([self._match[8 * k + j] << j for j in range(8)])
                              for k in range(8)])
                self._sel = [d for d in self._sel if d.rom == want]
                self._phase = "function"
            return
        self._acc |= b << self._nacc
        self._nacc += 1
        if self._nacc == 8:
            v = self._acc
            self._acc = self._nacc = 0
            self._byte(v)

    def _byte(self, v):
        ph = self._phase
        if ph == "rom":
            if v == 0xF0:
                self._phase, self._bit, self._step = "search", 0, 0
            elif v == 0x55:
                self._phase, self._match = "match", []
            elif v == 0xCC:
                self._phase = "function"
            elif v == 0x33:  # Read ROM: every device sends, the line ANDs them
                self._phase = "data"
                self._out = {d: _bits(d.rom) for d in self._sel}
            else:
                self._phase = "idle"
        elif ph == "function":
            if v == 0x44:
                for d in self._sel:
                    d.convert()
                self._phase = "converting"
            elif v == 0xBE:
                self._out = {d: _bits(d.scratchpad()) for d in self._sel}
                self._phase = "data"
            elif v == 0x4E:
                self._phase = "write"
                self._wr = []
            else:
                self._phase = "idle"
        elif ph == "write":
            self._wr.append(v)
            if len(self._wr) == 3:
                for d in self._sel:
                    d.write_scratchpad(self._wr[0], self._wr[1], self._wr[2])
                self._phase = "idle"
