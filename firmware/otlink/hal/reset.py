# A hard reset of the board, for the boot path when no Board object exists yet (app.boot):
# machine.reset() on esp32 and rp2. On the Unix port (whose machine module has no reset) the
# caller exits the process instead and whatever runs it (a test, systemd) starts it again.


def hard_reset():
    """Reset the board (does not return there); False where there is no board to reset."""
    import sys

    if sys.platform not in ("esp32", "rp2"):
        return False  # the Unix port's machine module has no reset()
    import machine
    import time

    time.sleep_ms(2000)  # what was printed stays readable on the console
    machine.reset()
    return True


def power_on_reset():
    """On a board: did it start from power-up (machine.PWRON_RESET, which every port has)
    rather than a watchdog, hard or soft reset? None on the Unix port (no such cause)."""
    import sys

    if sys.platform not in ("esp32", "rp2"):
        return None
    import machine

    return machine.reset_cause() == machine.PWRON_RESET
