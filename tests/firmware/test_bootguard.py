# The crash-reboot guard (otlink/bootguard.py): boots that never reach healthy count up,
# safe mode from the third in a row, rescue (REPL only) from the sixth, a healthy run clears
# the count, and a garbled or missing file starts from zero.
# heapsize: 32K
import os

import mptest
from otlink import bootguard

PATH = "/tmp/otlink_bootguard_test_%d" % os.getpid() if hasattr(os, "getpid") else \
    "/tmp/otlink_bootguard_test"


def _clean():
    try:
        os.remove(PATH)
    except OSError:
        pass


def test_crash_boots_lead_to_safe_then_rescue():
    _clean()
    modes = []
    for _ in range(7):
        g = bootguard.BootGuard(PATH)
        modes.append(g.begin())  # and the boot "crashes": nothing marks it healthy
    mptest.eq(modes, ["normal", "normal", "normal", "safe", "safe", "safe", "rescue"],
              "modes of 7 boots that each crashed")
    _clean()


def test_a_healthy_run_clears_the_count():
    _clean()
    for _ in range(4):
        bootguard.BootGuard(PATH).begin()
    g = bootguard.BootGuard(PATH)
    mptest.eq(g.begin(), "safe", "fifth boot after four crashes")
    g.healthy()
    g.healthy()  # once is enough: the second writes nothing
    mptest.eq(bootguard.BootGuard(PATH).begin(), "normal", "after a healthy run")
    _clean()


def test_garbled_or_missing_file_starts_from_zero():
    _clean()
    mptest.eq(bootguard.BootGuard(PATH).crashes, 0, "no file")
    with open(PATH, "w") as f:
        f.write("x\n")
    mptest.eq(bootguard.BootGuard(PATH).begin(), "normal", "garbled file")
    mptest.eq(bootguard.BootGuard(PATH).crashes, 1, "counted from zero")
    _clean()


if __name__ == "__main__":
    mptest.main(globals())
