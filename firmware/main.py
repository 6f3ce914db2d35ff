# Board entry point (and the Unix port's: `otlink node run` passes --config/--state).
import sys

from otlink import app


def _args():
    # --trace heap: log heap figures at each boot stage and while running (app.main)
    # --console stdio: the service console on stdin/stdout (the Unix port; a board always
    # has it on the USB serial line)
    a = {"config": "/config.json", "state": None, "board": None, "boards": "boards",
         "trace": None, "console": None}
    argv = sys.argv[1:]
    i = 0
    while i < len(argv) - 1:
        k = argv[i]
        if k.startswith("--") and k[2:] in a:
            a[k[2:]] = argv[i + 1]
            i += 2
        else:
            raise SystemExit("otlink: unknown argument %s" % k)
    return a


if __name__ == "__main__":
    rc = app.boot(_args())
    # On a board, never sys.exit(): SystemExit from main.py soft-reboots into main.py again
    # (a bad config would loop for good); the board stays at its REPL instead.
    if sys.platform not in ("esp32", "rp2"):
        sys.exit(rc)
