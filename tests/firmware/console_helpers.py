# Shared setup of the service console tests (test_console.py, test_fuzz_console.py): the node
# side of the console without a node, a ticks source the test drives, and a Console over a
# config store whose file is written fresh in the scratch folder.
import json
import os
import sys

import mptest
from otlink import console_config as cc
from otlink.console import Console

DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp"


class Ticks:
    """ms ticks starting at 1000 that move by `step` at every ticks_ms() call (0: only when the
    test adds to .ms)."""

    def __init__(self, step=0):
        self.ms = 1000
        self.step = step

    def ticks_ms(self):
        self.ms += self.step
        return self.ms

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, d):
        return a + d


class View:
    """What the console's commands ask of the node. Reboots and breaks are counted;
    may_reboot=False makes a reboot request fail the test at once."""

    def __init__(self, may_reboot=True):
        self.may_reboot = may_reboot
        self.reboots = []
        self.breaks = 0

    def status(self):
        return {"node": "s1/n1"}

    def points(self):
        return ["1 v modbus:1:input:0 float32 V last_error=0"]

    def queue(self):
        return {"depth": 0}

    def slaves(self):
        return {"1": {"ok": 1}}

    def log(self):
        return ["a log line"]

    def reboot(self, why):
        if not self.may_reboot:
            raise mptest.Fail("reboot asked for: %s" % why)
        self.reboots.append(why)

    def brk(self):
        self.breaks += 1

    def modbus_read(self, *a):
        return [0]


def console(name, cfg, write, view=None, ticks=None, pin=None):
    """(Console, config path): `cfg` written to DIR/<name>.json (what an earlier run left of
    it and its .prev/.trial/.rollback/.bad/.new removed), the store opened on it."""
    path = "%s/%s.json" % (DIR, name)
    for ext in ("", ".prev", ".trial", ".rollback", ".bad", ".new"):
        try:
            os.remove(path + ext)
        except OSError:
            pass
    with open(path, "w") as f:
        f.write(json.dumps(cfg))
    store = cc.ConfigStore(path, cc.file_hash(path), 30, unload=False)
    return Console(write, view or View(), store, ticks or Ticks(), pin), path
