# Crash-reboot guard. A node in a cabinet must always come back reachable: every boot counts
# as a crash until the agent has run healthy (every task alive for app.py's _HEALTHY_MS), so
# a node that keeps failing at boot or soon after - a driver raising, a board file missing, a
# task that dies, a watchdog reset - is told apart from one that runs. The count lives in a
# few bytes on the board's filesystem:
#   fewer than SAFE_AFTER crash-boots in a row: normal;
#   SAFE_AFTER or more: safe mode - console and network only, no polling (app.py), reported
#     in the state message (safe_mode);
#   RESCUE_AFTER or more (safe mode failed as well): nothing is started; the board stays at
#     its REPL, where `otlink deploy` and `otlink config push` reach it over USB.
# Written once per boot and once when healthy: no wear worth counting.
import os

from otlink.core.compat import const

_RESET_MARK = ".reset"  # beside the count: the last run ended in a reset (Unix port)
SAFE_AFTER = const(3)
RESCUE_AFTER = const(6)
NORMAL = "normal"
SAFE = "safe"
RESCUE = "rescue"


def power_on(path, cause_path):
    """True when this start follows a power cut rather than a reset. Boards: the reset cause
    (machine.PWRON_RESET; a watchdog or hard reset is not one). The Unix port: no reset mark
    beside the count (BootGuard.mark_reset) and no reset cause left by the simulated
    watchdog."""
    from otlink.hal.reset import power_on_reset  # only hal/ imports machine

    board = power_on_reset()
    if board is not None:
        return board
    for p in (path + _RESET_MARK, cause_path):
        try:
            os.stat(p)
        except OSError:
            continue
        return False
    return True


class BootGuard:
    def __init__(self, path):
        self.path = path
        self.crashes = 0  # boots in a row that did not reach healthy (this one excluded)
        try:
            with open(path) as f:
                self.crashes = int(f.read().strip() or 0)
        except (OSError, ValueError):
            pass  # none yet, or unreadable: start from zero
        self.marked = False

    def mode(self):
        if self.crashes >= RESCUE_AFTER:
            return RESCUE
        if self.crashes >= SAFE_AFTER:
            return SAFE
        return NORMAL

    def begin(self, power_on=False):
        """At the very start of a boot: count it as a crash until healthy() says otherwise
        (persisted now, so a crash anywhere after this is counted). power_on: this start
        follows a power cut, not a reset: the count starts over. Returns the mode."""
        if power_on:
            self.crashes = 0
        try:
            os.remove(self.path + _RESET_MARK)
        except OSError:
            pass
        self._write(self.crashes + 1)
        return self.mode()

    def mark_reset(self):
        """The run ends in a reset (app.boot, before hard_reset): the next start counts it."""
        try:
            with open(self.path + _RESET_MARK, "w") as f:
                f.write("1\n")
        except OSError:
            pass

    def healthy(self):
        """The agent runs: the next boot starts from a clean count."""
        if not self.marked:
            self._write(0)
            self.marked = True

    def _write(self, n):
        try:
            with open(self.path, "w") as f:
                f.write("%d\n" % n)
        except OSError:
            pass  # a read-only or full filesystem must not stop the boot
