# A small record that survives reboots, for drivers that declare KEEP = True (the pulse
# counter's total). Loaded only by them. Not a driver (drivers.load refuses "_" names).
import struct


class Keep:
    """A small record that survives reboots (a pulse counter's total): one littlefs file of
    16 bytes, rewritten whole. littlefs commits a file at close by copy-on-write, so a power
    cut leaves the old record or the new one, never a mix; its wear levelling spreads the
    rewrites over the filesystem's blocks (docs/sensors.md gives the writes per day).
    load()/save() open a file: they allocate, and are called at boot and at most every
    persist interval, never per sample."""

    _MAGIC = b"OTK1"

    def __init__(self, path):
        self.path = path
        self.buf = bytearray(16)
        self.saves = 0

    def load(self):
        """(hi, lo) saved, or (0, 0) when there is none or it is unreadable."""
        try:
            with open(self.path, "rb") as f:
                n = f.readinto(self.buf)
        except OSError:
            return 0, 0
        b = self.buf
        if n != 16 or b[0:4] != self._MAGIC:
            return 0, 0
        hi, lo, chk = struct.unpack_from("<iii", b, 4)
        if chk != (hi ^ lo ^ 0x5A5A5A5A) or hi < 0 or not 0 <= lo < (1 << 30):
            return 0, 0
        return hi, lo

    def save(self, hi, lo):
        b = self.buf
        b[0:4] = self._MAGIC
        struct.pack_into("<iii", b, 4, hi, lo, hi ^ lo ^ 0x5A5A5A5A)
        with open(self.path, "wb") as f:
            f.write(b)
        self.saves += 1
