import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# tests/firmware/*.py are MicroPython scripts run by tests/test_firmware.py inside the Unix
# port; tests/bench/*.py are benchmark suites run by `make bench`. pytest must not import them.
collect_ignore = ["firmware", "bench"]
