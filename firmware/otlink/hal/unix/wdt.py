# A hardware watchdog for the Unix port, behaving as machine.WDT does on the boards: armed
# once, never stopped, and when it is not fed within timeout_ms the "board" resets - here the
# process is killed at once (SIGKILL: no cleanup, no final commit, as a reset gives none),
# after the cause is written where the next boot's reset_cause() reads it.
#
# It watches from a thread (the Unix port's _thread) that allocates nothing while it waits:
# the event loop it guards may be stuck anywhere, a blocking socket call included.
import _thread
import os
import time

_POLL_MS = 20


class SimWdt:
    def __init__(self, timeout_ms, cause_path):
        self.timeout_ms = timeout_ms
        self._fed = time.ticks_ms()
        # the shell's parent is this process; the cause file first, then the reset
        self._cmd = "echo watchdog > '%s'; kill -9 $PPID" % cause_path
        _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._fed = time.ticks_ms()

    def _watch(self):
        while True:
            time.sleep_ms(_POLL_MS)
            if time.ticks_diff(time.ticks_ms(), self._fed) > self.timeout_ms:
                print("otlink: watchdog: not fed for %d ms: reset" % self.timeout_ms)
                os.system(self._cmd)
                return


def take_cause(path):
    """The reset cause the watchdog left (or None), removed so it is reported once."""
    try:
        with open(path) as f:
            cause = f.read().strip()
    except OSError:
        return None
    try:
        os.remove(path)
    except OSError:
        pass
    return cause or None
