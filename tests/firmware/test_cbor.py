# heapsize: 72K
# CBOR encoder tests (cases in cbor_cases.py). Run from source (OTLINK_TEST_SOURCE=1), compiling
# a module takes a large transient share of the heap, so the encoder is compiled first, its
# parse tree freed, and only then the cases.
from otlink.core import cbor  # noqa: F401
import gc

gc.collect()
import mptest  # noqa: E402
import cbor_cases  # noqa: E402

mptest.main(cbor_cases.__dict__)
