# Sensor drivers: one module per driver, found by its name (the config's "driver" field) and
# imported on demand. The module's declarations (docs/sensors.md, "Writing a driver"):
#
#   BUS = "i2c"            the board bus it takes: "i2c", "onewire", "adc" or "pin"
#   OPTIONS = (...)        its own config keys: (key, kind, default, a, b), validated by
#                          core/config.py (kinds: "int" a..b, "num" a..b, "choice" a = choices,
#                          "pairs": a list of [x, y] with x increasing, "range": [lo, hi])
#   CHANNELS = "..."       its channel names, for error messages
#   channel(opts, name)    (unit, type, scale, offset) of a channel, or None when there is no
#                          such channel; raw value * scale + offset is the value in the unit
#   Driver(bus, cfg, clock, keep)  the driver; cfg is the validated sensor config, keep a
#                          _keep.Keep (a small persistent record) when KEEP = True, else None
#     .measure_ms          start() to read(), ms
#     .start()             begin one sample
#     .read(s)             fill the Sample s: s.v[i] (s.hi[i]) or s.err[i] for cfg["points"][i]
#     .watch(emit), .close()  optional: an events coroutine; save state when the agent stops
#
# Adding a driver is adding its file here: nothing else names it.

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_PROTOCOL = ("BUS", "OPTIONS", "CHANNELS", "channel", "Driver")
BUSES = ("i2c", "onewire", "adc", "pin")


def load(name):
    """The driver module otlink.drivers.<name>. ValueError names what is wrong (no such
    module, or a module that is not a driver)."""
    import sys

    if not isinstance(name, str) or not name or name[0] == "_" or \
            [c for c in name if c not in _NAME_CHARS]:
        raise ValueError("a driver name is lower-case letters, digits and _, got %r" % (name,))
    full = "otlink.drivers." + name
    try:
        __import__(full)
    except ImportError as e:
        if full not in str(e):  # the driver is there but imports something missing
            raise
        raise ValueError("no driver %r (no module otlink/drivers/%s.py; docs/sensors.md "
                         "lists the drivers)" % (name, name))
    mod = sys.modules[full]
    for k in _PROTOCOL:
        if not hasattr(mod, k):
            raise ValueError("otlink/drivers/%s.py is not a driver: it lacks %s" % (name, k))
    if mod.BUS not in BUSES:
        raise ValueError("driver %s: BUS %r is not one of %s" % (name, mod.BUS, BUSES))
    return mod
