# heapsize: 64K
# Payload encoder tests (cases in payload_cases.py): payload.py is compiled first and its
# parse tree freed before the cases compile; together they would not fit a 64K heap.
import gc

from otlink.core import cbor  # noqa: F401
gc.collect()
from otlink.core import payload  # noqa: F401, E402
gc.collect()
import mptest  # noqa: E402
import payload_cases  # noqa: E402

mptest.main(payload_cases.__dict__)
