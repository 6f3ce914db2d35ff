# Heap cost of importing the uplink agent's modules, run by the 32-bit Unix port (the
# boards' object model): bytes still allocated after importing what tests/bench/
# uplink_agent.py imports, beyond asyncio (frozen in every board firmware, so imported
# first and not counted). Frozen: the bytecode stays in the firmware image and only the
# module objects take heap. Deployed as .mpy (MICROPYPATH holds the .mpy tree before
# .frozen): the bytecode is loaded into the heap. Prints RESULT {"bytes": n, "from": path}.
import gc
import json

import asyncio  # noqa: F401

gc.collect()
a0 = gc.mem_alloc()
from otlink.core import reading  # noqa: E402, F401
from otlink.core.queue import Queue  # noqa: E402, F401
from otlink.hal.clock import Clock  # noqa: E402, F401
from otlink.hal.unix.norflash import NorFlash  # noqa: E402, F401
from otlink.publisher import Publisher  # noqa: E402, F401
from otlink.uplink import Uplink  # noqa: E402, F401
import otlink.uplink as _u  # noqa: E402

gc.collect()
print("RESULT " + json.dumps({"bytes": gc.mem_alloc() - a0,
                              "from": getattr(_u, "__file__", "?")}))
