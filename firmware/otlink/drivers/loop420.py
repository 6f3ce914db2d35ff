# A 4-20 mA transmitter read through a shunt resistor into an ADC input. The loop current
# makes a voltage across the shunt (150 ohm: 0.6 V at 4 mA, 3.0 V at 20 mA, inside an
# ESP32's 11 dB span or a Pico's 3.3 V); the board's adc(name).read_uv() gives it in uV.
# One sample averages `samples` ADC reads, converts them to uA, corrects them by the
# calibration points (a loop calibrator's known currents against what the node measured),
# and checks them against NAMUR NE 43: below 3.8 mA the loop is open or the transmitter
# signals a failure (error 10), above 20.5 mA it is over range or shorted (error 11).
# Readings: "current" in uA (always, the diagnosis), "value" the same uA with the birth's
# scale and offset mapping 4..20 mA onto `range` (error 10/11 outside 3.8..20.5 mA).
# All integer: every product stays below 2**30 (32-bit boards' small ints); no allocation.
from otlink.core.compat import const
from otlink.core.errors import ERR_LOOP_HIGH, ERR_LOOP_LOW

_LOW_UA = const(3800)  # NAMUR NE 43 measuring range 3.8..20.5 mA
_HIGH_UA = const(20500)
_CLAMP_UA = const(30000)  # beyond any loop: keeps the calibration's products small
_VALUE = const(0)
_CURRENT = const(1)

BUS = "adc"
OPTIONS = (("range", "range", "!", None),  # engineering value at 4 mA and at 20 mA
           ("unit", "text", "", None),
           ("shunt_ohm", "num", 150.0, 10.0, 1000.0),
           ("samples", "int", 8, 1, 64),  # ADC reads averaged per sample
           ("calibration", "pairs", None, None))  # [[measured mA, true mA], ...]
CHANNELS = "value, current"
_ADC_MAX_UV = 3300000  # the highest input an ADC here measures (3.3 V reference)


def channel(cfg, name):
    if name == "current":
        return ("mA", "int32", 0.001, 0.0)
    if name == "value":
        lo, hi = cfg["range"]
        scale = (hi - lo) / 16000.0  # per uA
        return (cfg["unit"], "int32", scale, lo - 4000.0 * scale)
    return None


def check(cfg):
    errs = []
    r = cfg["shunt_ohm"]
    if r is not None and 20.5e-3 * r * 1e6 > _ADC_MAX_UV:
        errs.append(("shunt_ohm", "20.5 mA across %s ohm is %.2f V, above the ADC's 3.3 V: "
                     "use 150 ohm or less" % (r, 20.5e-3 * r)))
    cal = cfg["calibration"]
    if cal is not None:
        for x, y in cal:
            if not (0 <= x <= 25 and 0 <= y <= 25):
                errs.append(("calibration", "points are [measured mA, true mA] within "
                             "0..25 mA, got [%s, %s]" % (x, y)))
                break
    return errs


class Driver:
    def __init__(self, adc, cfg, clock=None, keep=None):
        self.adc = adc
        self.measure_ms = 0  # the ADC reads at once
        self.n = cfg["samples"]
        self.r100 = int(cfg["shunt_ohm"] * 100 + 0.5)  # shunt in 0.01 ohm
        cal = cfg["calibration"] or ((4.0, 4.0), (20.0, 20.0))
        self.cx = [int(x * 1000 + 0.5) for x, _ in cal]  # measured uA
        self.cy = [int(y * 1000 + 0.5) for _, y in cal]  # true uA
        self._what = bytes([_VALUE if p["channel"] == "value" else _CURRENT
                            for p in cfg["points"]])
        self.last_ua = 0

    def start(self):
        pass

    def current_ua(self):
        """The calibrated loop current in uA, averaged over `samples` reads."""
        adc = self.adc
        total = 0
        for _ in range(self.n):
            total += adc.read_uv()  # <= 64 * 3.3e6 < 2**30 (a direct call: no bound method)
        uv = total // self.n
        ua = (uv * 100 + (self.r100 >> 1)) // self.r100  # uv * 100 <= 3.3e8
        if ua > _CLAMP_UA:
            ua = _CLAMP_UA
        cx = self.cx
        cy = self.cy
        k = 0
        while k < len(cx) - 2 and ua > cx[k + 1]:
            k += 1  # the segment holding ua; the first/last one extends beyond the ends
        x0 = cx[k]
        y0 = cy[k]
        d = (ua - x0) * (cy[k + 1] - y0)  # |.| <= 30000 * 25000 < 2**30
        dx = cx[k + 1] - x0
        return y0 + (d + (dx >> 1)) // dx if d >= 0 else y0 - ((dx >> 1) - d) // dx

    def read(self, s):
        ua = self.current_ua()
        self.last_ua = ua
        w = self._what
        for i in range(len(w)):
            if w[i] == _CURRENT:
                s.v[i] = ua
            elif ua < _LOW_UA:
                s.err[i] = ERR_LOOP_LOW
            elif ua > _HIGH_UA:
                s.err[i] = ERR_LOOP_HIGH
            else:
                s.v[i] = ua
