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
from otlink.core.compat import const

SAFE_AFTER = const(3)
RESCUE_AFTER = const(6)
NORMAL = "normal"
SAFE = "safe"
RESCUE = "rescue"


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

    def begin(self):
        """At the very start of a boot: count it as a crash until healthy() says otherwise
        (persisted now, so a crash anywhere after this is counted). Returns the mode."""
        self._write(self.crashes + 1)
        return self.mode()

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
