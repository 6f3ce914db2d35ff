# Record codec of the queue's group bodies (docs/queue.md, "On-flash format", Group): the
# masked encoding of one reading record against the previous record of its group, and the
# decoding back. These loops run once per byte of every reading appended and read back: they
# are the queue's hot path.
#
# enc(g, o, rec, prev, n): write record rec[0:n] encoded at g[o..]; return the offset after
#   it. prev (CMP bytes) is the previous record of the group and becomes this one. The caller
#   guarantees n <= len(rec), 1 <= n <= MAX_REC and len(g) - o >= MAX_ENC. Does not allocate.
# decn(b, p, end, rec, prev, cnt): decode cnt records from b[p..end) into rec (the last one
#   stays there) and prev; return the offset after them, or -1 when the bytes are not a
#   well-formed encoding (never reads at or past end). Does not allocate.
# zero(prev): clear prev (the start of a group).
# squeeze(g, o, cnt, n): rewrite in place cnt unmasked records of n bytes each, encoded at
#   g[o..] (length byte + n bytes), as their cnt * n raw bytes (a uniform group body).
# copy(b, p, rec, n): rec[0:n] = b[p:p + n]. Neither allocates.
#
# Two implementations, same bytes (tests/firmware/test_queue_codec.py):
# - native (core/queue/codec_src.py): @micropython.viper functions compiled at import by the
#   runtime compiler, which emits machine code for the CPU it runs on (x64 on the Unix port,
#   xtensawin on the ESP32, armv6m on the Pico W). They are a source string rather than
#   decorated functions in a module because mpy-cross refuses viper code without -march, and
#   the firmware's .mpy files are built without one. Measured (Unix port, .mpy, 128K heap,
#   the uplink agent's workload): append+commit 6.3 -> 1.8 us/reading, peek_from read-back
#   4.0 -> 1.1 us/reading. Heap: ~0.9 KB once compiled (the source is dropped).
# - bytecode (core/queue/codec_py.py): loaded only when the native compile fails (no native
#   emitter or compiler on the port, out of memory, CPython).
import sys

NATIVE = False
WHY = ""  # why the native compile failed, for the agent's boot log


def _native():
    name = "otlink.core.queue.codec_src"
    try:
        from otlink.core.queue import codec_src

        ns = {}
        exec(codec_src.SRC, ns)
        exec(codec_src.SRC2, ns)
        exec(codec_src.SRC3, ns)
        codec_src = None
        return ns["enc"], ns["decn"], ns["zero"], ns["squeeze"], ns["copy"]
    finally:
        # the source is not needed once compiled: let the collector have it
        sys.modules.pop(name, None)
        pkg = sys.modules.get("otlink.core.queue")
        if pkg is not None and hasattr(pkg, "codec_src"):
            delattr(pkg, "codec_src")


try:
    enc, decn, zero, squeeze, copy = _native()
    NATIVE = True
except Exception as e:  # noqa: BLE001 - any failure to compile: the bytecode version
    WHY = "%s: %s" % (type(e).__name__, e)
    from otlink.core.queue.codec_py import enc, decn, zero, squeeze, copy  # noqa: F401
del _native
