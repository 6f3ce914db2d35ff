# The analytics kernels (analytics/kern_src.py), compiled to machine code at import by the
# runtime's viper emitter and the source then dropped (as core/queue/codec.py does). Every
# board otlink targets has the emitter (x64 / x86 Unix ports, xtensawin, armv6m); a port
# without it cannot run the analytics without one allocation per reading, so the import
# fails with ImportError naming why, and the app says so at boot.
import sys


def _compile():
    name = "otlink.analytics.kern_src"
    try:
        from otlink.analytics import kern_src

        ns = {}
        exec(kern_src.SRC, ns)
        exec(kern_src.SRC2, ns)
        return ns
    finally:
        sys.modules.pop(name, None)
        pkg = sys.modules.get("otlink.analytics")
        if pkg is not None and hasattr(pkg, "kern_src"):
            delattr(pkg, "kern_src")


try:
    _ns = _compile()
except Exception as e:  # noqa: BLE001 - no emitter, no memory: one meaning, no kernels
    raise ImportError("analytics kernels: native compile failed: %s: %s" % (type(e).__name__, e))
okey = _ns["okey"]
kcmp = _ns["kcmp"]
tge = _ns["tge"]
nz = _ns["nz"]
d32 = _ns["d32"]
mag = _ns["mag"]
acc = _ns["acc"]
del _ns, _compile
