# Shared setup of the flash-queue firmware tests (test_queue*.py, test_norflash.py): a clock
# the test drives, emulated NOR flash images in the scratch folder, int readings packed by
# core/reading.py (the record layout's owner, which the queue imports anyway).
import gc
import os
import sys

from otlink.core.reading import pack_int
from otlink.hal.unix.norflash import NorFlash

DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
T0 = 1700000000000
BUF = bytearray(20)  # one int record (reading.SIZE)


class Clock:
    def __init__(self):
        self.t = 0

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def now_ms(self):
        return T0 + self.t


def fresh(name):
    """Path of a scratch file `name`, removed if a previous run left it."""
    p = DIR + "/" + name
    try:
        os.remove(p)
    except OSError:
        pass
    return p


def flash(name, sectors=8, page=1):
    """A new file-backed emulated flash (no flash image in the heap)."""
    p = fresh(name)
    gc.collect()
    return NorFlash(p, sectors * 4096, cache=False, page=page)


def value(i):
    return (i * 0x9E3779B97F4A7C15) & 0x7FFFFFFFFFFFFFFF  # every byte changes: ~17 B each


def pack(i, v, dt=1237):
    """Int reading i (point id i, time T0 + i * dt, value v) into BUF; returns its length."""
    return pack_int(BUF, i & 0xFFFF, T0 + i * dt, v)


def put(q, i):
    # the point id is the reading index (so a returned record names its expected value)
    q.append(BUF, pack(i, value(i)))
    return q.last_seq
