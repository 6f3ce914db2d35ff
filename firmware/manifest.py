# MicroPython manifest of the otlink agent: what a board runs, frozen into its firmware image
# so the bytecode stays in flash instead of the heap (docs/boards.md, "Frozen or deployed").
#
# A board build: make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=<a manifest that
#   does include("$(PORT_DIR)/boards/manifest.py") and include("<otlink>/firmware/manifest.py")>
# `otlink deploy` reads this same file (host_tools/otlink_tools/manifest.py) to learn which
# modules go to a board running stock firmware: the list lives here only.
#
# options.unix_harness: also the Unix port's emulation harness (otlink/hal/unix/: NOR flash
#   emulator, pty UART, simulated I2C), for the frozen 32-bit Unix build the tests run on.
#   Never on a board.
# options.umqtt_dir: the folder holding umqtt/simple.py, fetched by `make umqtt` (never
#   committed); relative to this file.
import os

options.defaults(unix_harness=False, umqtt_dir="../build/lib")


def _otlink_files():
    files = []
    for d, _, names in os.walk("otlink"):
        rel = os.path.relpath(d, "otlink").replace(os.sep, "/")
        if not options.unix_harness and (rel == "hal/unix" or rel.startswith("hal/unix/")):
            continue
        files += [os.path.normpath(os.path.join(rel, n)) for n in names if n.endswith(".py")]
    return sorted(f.replace(os.sep, "/") for f in files)


package("otlink", files=_otlink_files())
package("umqtt", files=["simple.py"], base_path=options.umqtt_dir)
