# heapsize: 64K
# The queue's record codec (core/queue/codec.py): the native (viper, compiled at import) and
# the bytecode implementations give the same bytes on random and edge-case records, decode
# what they encode, refuse malformed bodies without reading past the end, allocate nothing.
import mptest
from otlink.core.queue import codec as qc
from otlink.core.queue import codec_py as PY  # the bytecode version
from otlink.core.queue.fmt import CMP, MAX_REC, MAX_ENC, MASKED
from otlink.core.reading import HEADER, MAX_TEXT, SIZE


class _Rng:
    # 16-bit LCG (x * 75 + 74 mod 65537): small ints only, so a 32-bit port makes no heap
    # ints here that would scatter the records over the test's 64 KiB heap
    x = 0x1234

    def next(self):
        self.x = (self.x * 75 + 74) % 65537
        return self.x


def _records(rng, count):
    # groups of records shaped like the agent's: shared timestamps, slowly changing values,
    # text records, and fully random bytes (incompressible)
    out = []
    for i in range(count):
        r = rng.next()
        kind = r % 5
        if kind == 4:
            n = HEADER + rng.next() % (MAX_TEXT + 1)  # text record: 12..76 bytes
        else:
            n = SIZE
        b = bytearray(n)
        if kind == 0:
            for k in range(n):
                b[k] = rng.next() & 0xFF
        else:
            b[0] = i % 10
            b[2] = kind & 1
            t = 1700000000000 + (i // 10) * 1000
            for k in range(8):
                b[4 + k] = (t >> (8 * k)) & 0xFF
            v = 1000 + i // 3
            for k in range(12, n):
                b[k] = (v >> (8 * (k - 12))) & 0xFF if k < 20 else 65 + (k + i) % 26
        out.append(b)
    return out


def _encode(mod, recs):
    g = bytearray(sum(len(r) + 1 for r in recs))  # the longest encoding: unmasked records
    prev = bytearray(CMP)
    o = 0
    for r in recs:
        o = mod.enc(g, o, r, prev, len(r))
    return g, o


def test_native_compiled_on_this_port():
    # the Unix port has the native emitter: the hot path must not silently fall back
    import sys

    mptest.true(qc.NATIVE, "viper codec compiled at import")
    mptest.true(qc.enc is not PY.enc, "native enc in use")
    # its source was dropped after compiling
    mptest.true("otlink.core.queue.codec_src" not in sys.modules, "source module dropped")


def test_failed_native_compile_falls_back_and_says_why():
    # a port whose compile fails (no emitter, no memory): simulated with a source that does
    # not compile; the module must still load, with the bytecode codec and the reason
    import sys

    class Broken:
        SRC = "@micropython.viper\ndef enc(:\n"

    saved = sys.modules.pop("otlink.core.queue.codec")
    sys.modules["otlink.core.queue.codec_src"] = Broken
    try:
        import otlink.core.queue.codec as fresh

        mptest.eq(fresh.NATIVE, False, "native flag")
        mptest.true(fresh.enc is PY.enc, "bytecode enc in use")
        mptest.true(fresh.WHY.startswith("SyntaxError"), "reason: %r" % fresh.WHY)
        mptest.true("otlink.core.queue.codec_src" not in sys.modules, "source module dropped")
    finally:
        sys.modules["otlink.core.queue.codec"] = saved
    mptest.eq(qc.WHY, "", "the real import compiled natively")


def test_native_and_bytecode_encode_alike_and_round_trip():
    rng = _Rng()
    for _ in range(6):
        recs = _records(rng, 40)
        g1, o1 = _encode(qc, recs)
        g2, o2 = _encode(PY, recs)
        mptest.eq(o1, o2)
        mptest.eq(bytes(g1[0:o1]), bytes(g2[0:o2]))
        masked = 0
        for mod in (qc, PY):
            rec = bytearray(MAX_REC)
            prev = bytearray(CMP)
            mod.zero(prev)
            p = 0
            for r in recs:
                if g1[p] & MASKED:
                    masked += 1
                n = g1[p] & 0x7F
                p = mod.decn(g1, p, o1, rec, prev, 1)
                mptest.true(p > 0, "record decodes")
                mptest.eq(n, len(r), "record length")
                mptest.eq(bytes(rec[0:n]), bytes(r))
            mptest.eq(p, o1)
            # decoding many at once ends at the same place with the last record in rec
            prev2 = bytearray(CMP)
            rec2 = bytearray(MAX_REC)
            mptest.eq(mod.decn(g1, 0, o1, rec2, prev2, len(recs)), o1)
            mptest.eq(bytes(rec2[0:len(recs[-1])]), bytes(recs[-1]))
        mptest.true(masked > 0, "masked records seen")  # the workload exercises the masked form


def test_truncated_or_malformed_bodies_are_refused():
    rng = _Rng()
    recs = _records(rng, 12)
    g, o = _encode(qc, recs)
    for mod in (qc, PY):
        rec = bytearray(MAX_REC)
        prev = bytearray(CMP)
        # every truncation of the body: never a record past the end
        for end in range(o):
            mod.zero(prev)
            mptest.eq(mod.decn(g, 0, end, rec, prev, len(recs)), -1)
        bad = bytearray(g[0:o])
        bad[0] = 0  # zero length
        mptest.eq(mod.decn(bad, 0, o, rec, prev, 1), -1)
        bad[0] = MAX_REC + 1
        mptest.eq(mod.decn(bad, 0, o, rec, prev, 1), -1)


def test_uniform_squeeze_and_copy_alike():
    # a group of unmasked records of one length: squeeze drops the length bytes in place,
    # copy reads a record back; native and bytecode give the same bytes, without allocating
    rng = _Rng()
    n = 20
    recs = []
    for _ in range(12):
        r = bytearray(n)
        for k in range(n):
            r[k] = rng.next() & 0xFF
        recs.append(r)
    raw = b"".join(bytes(r) for r in recs)
    for mod in (qc, PY):
        g = bytearray(4 + len(recs) * (n + 1))
        o = 4
        for r in recs:
            g[o] = n
            g[o + 1:o + 1 + n] = r
            o += n + 1
        _squeeze_locked(mod, g, len(recs), n)
        mptest.eq(bytes(g[4:4 + len(raw)]), raw, "squeezed body")
        rec = bytearray(MAX_REC)
        for i in range(len(recs)):
            mptest.no_alloc(_copy, mod, g, 4 + i * n, rec)
            mptest.eq(bytes(rec[0:n]), bytes(recs[i]), "record %d" % i)


def _squeeze_locked(mod, g, cnt, n):
    import micropython

    micropython.heap_lock()
    try:
        mod.squeeze(g, 4, cnt, n)
    finally:
        micropython.heap_unlock()


def _copy(mod, g, p, rec):
    mod.copy(g, p, rec, 20)


def test_codec_does_not_allocate():
    recs = _records(_Rng(), 4)
    g = bytearray(8 * MAX_ENC)
    prev = bytearray(CMP)
    rec = bytearray(MAX_REC)
    r0 = recs[1]

    def run():
        o = qc.enc(g, 0, r0, prev, 20)
        o = qc.enc(g, o, r0, prev, 20)
        qc.zero(prev)
        return qc.decn(g, 0, o, rec, prev, 2)

    mptest.true(mptest.no_alloc(run) > 0, "decoded under heap lock")


mptest.main(globals())
