# heapsize: 64K
# CBOR encoder tests (cases in cbor_cases.py). Compiling a module from source takes a large
# transient share of a 64K heap, so the encoder is compiled first, its parse tree freed, and
# only then the cases: one file holding both would not fit.
from otlink.core import cbor  # noqa: F401
import gc

gc.collect()
import mptest  # noqa: E402
import cbor_cases  # noqa: E402

mptest.main(cbor_cases.__dict__)
