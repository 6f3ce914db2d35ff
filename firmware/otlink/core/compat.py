# Lets pure-core modules run unchanged on CPython (host tools import the config schema
# and the reading format). On MicroPython these are the real builtins.
try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython

    def const(x):
        return x
