# heapsize: 2M
# Power-cut sweep of the flash queue (issue 4 item 6). A scripted workload - readings at
# 10/s with group commit, batches read and acknowledged, clean reboots - runs on an emulated
# NOR flash; power is cut at program/erase operation i, for every i in turn (full sweep:
# `make sweep`) or every STRIDE-th (here). After each cut: reboot, recover, and assert what
# must hold at any cut: the flash mounts, no committed reading is missing, none is garbled,
# order and (seq, boot) are preserved, nothing acknowledged comes back, no drops.
# The heap cap is for the emulated 64 KiB flash image and the model; the queue alone runs
# under 64K (test_queue.py).
# Usage as a script for the bench:
#   micropython test_queue_sweep.py DIR full [readings] [step] [page] [double] [seed]
import sys
from array import array

import mptest
from otlink.core import reading
from otlink.core.queue import Queue
from otlink.hal.unix.norflash import NorFlash, PowerCut
from queue_helpers import T0, Clock

SIZE = 64 * 1024  # 16 sectors: the log wraps several times in 10,000 readings
PAGE = [1]  # program unit: 1 (byte-programmable NOR, ESP32) or 256 (rp2 page mode)
LOST = [0, None]  # committed readings found missing after a cut (counted), the first one


def new_nor(seed=1):
    # seed: where torn operations stop (the emulator's tear point generator)
    return NorFlash(None, SIZE, page=PAGE[0], seed=seed)


def make(buf, i):
    # reading i: 10 points polled together each second, one text point every 50 readings
    t = T0 + (i // 10) * 1000
    if i % 50 == 49:
        return reading.pack_text(buf, 99, t, b"txt%d" % i)
    if i % 10 == 3:
        return reading.pack_float(buf, 3, t, i * 0.5)
    return reading.pack_int(buf, i % 10, t, i * 7)


class Model:
    """What the workload knows for sure: state per reading index."""

    def __init__(self, total):
        self.seq = array("I", (0 for _ in range(total)))
        self.boot = array("I", (0 for _ in range(total)))
        # 0 staged/lost, 1 committed, 2 acked, 3 acked in RAM only (the ack rides in the
        # staged group's header: a cut before its commit re-delivers, which is allowed)
        self.st = bytearray(total)
        self.pend = 0  # readings below this index may be in state 3
        self.appended = 0  # readings appended so far
        self.committed = 0  # readings 0..committed-1 are committed or lost-at-reboot
        self.inflight_ack = -1  # index whose ack was in flight at the cut

    def copy(self):
        m = Model(0)
        m.seq = array("I", self.seq)
        m.boot = array("I", self.boot)
        m.st = bytearray(self.st)
        m.appended = self.appended
        m.committed = self.committed
        m.pend = self.pend
        return m


def run(nor, total, model, cut_at, reboots_every=1000, ack_every=15, batch=50, ckpt=None):
    """Drive the workload from model.appended to total; return True if power was cut.

    ckpt: a list that receives (flash image, model, ops) at every scripted reboot, so a sweep
    can restart from the last reboot before its cut instead of from the beginning.
    """
    clock = Clock()
    clock.t = model.appended * 100
    dev = nor.region(0, SIZE)
    buf = bytearray(reading.MAX_SIZE)
    if cut_at is not None:
        nor.cut_after(cut_at - nor.ops)
    q = None
    try:
        q = Queue(dev, clock, commit_ms=1000, prog_size=PAGE[0])
        i = model.appended
        while i < total:
            n = make(buf, i)
            q.append(buf, n)
            model.seq[i] = q.last_seq
            model.boot[i] = q.boot
            i += 1
            model.appended = i
            clock.t += 100
            q.tick(clock.t)
            c = i - q.staged  # readings before the staged ones are committed (a group can
            if c > model.committed:  # be committed before the reading that did not fit it)
                for k in range(model.committed, c):
                    model.st[k] = 1
                model.committed = c
            if model.pend and not q.ack_pending:
                settle(model, 2)
            # uplink outages: no acknowledgement for 1,200 readings of every 2,500 (a backlog
            # over several sectors), then batches of 50 drain it
            if i % ack_every == 0 and i % 2500 >= 1200:
                last = -1
                for seq, boot, _rec, _n in q.peek(batch):  # noqa: B007 (boot used below)
                    last = seq
                if last >= 0:
                    k = index_of(model, last, boot)
                    model.inflight_ack = k
                    q.ack(last)
                    a = 3 if q.ack_pending else 2
                    for j in range(k + 1):
                        if model.st[j] == 1 or (model.st[j] == 3 and a == 2):
                            model.st[j] = a
                    if a == 3:
                        model.pend = k + 1
                    model.inflight_ack = -1
            if i % reboots_every == 0:
                # clean reboot: staged readings are lost (they were never committed)
                for k in range(model.committed, i):
                    model.st[k] = 0
                model.committed = i
                settle(model, 1)  # an ack still in RAM is gone: those readings come back
                if ckpt is not None:
                    ckpt.append((bytes(nor.mem), model.copy(), nor.ops))
                q = Queue(dev, clock, commit_ms=1000, prog_size=PAGE[0])
        q.commit()
        for k in range(model.committed, total):
            model.st[k] = 1
        model.committed = total
        return False
    except PowerCut:
        return True


def settle(model, to):
    """Readings whose ack was in RAM only: now persisted (2) or lost with the RAM (1)."""
    for j in range(model.pend):
        if model.st[j] == 3:
            model.st[j] = to
    model.pend = 0


def index_of(model, seq, boot):
    # the reading with this (seq, boot): search back from the newest
    for k in range(model.appended - 1, -1, -1):
        if model.seq[k] == seq and model.boot[k] == boot:
            return k
    raise mptest.Fail("no reading has seq %d boot %d" % (seq, boot))


def verify(nor, model, what):
    """Reboot after a cut and check the recovered queue against the model."""
    nor.power_on()
    clock = Clock()
    # must mount: any exception fails the sweep
    q = Queue(nor.region(0, SIZE), clock, prog_size=PAGE[0])
    buf = bytearray(reading.MAX_SIZE)
    got = []
    for seq, boot, rec, n in q.peek(100000):
        k = index_of(model, seq, boot) if model.appended else -1
        m = make(buf, k)
        if m != n or bytes(rec[0:n]) != bytes(buf[0:n]):
            raise mptest.Fail("%s: garbled reading seq %d (index %d)" % (what, seq, k))
        got.append(k)
    st = q.stats()
    if st["drops"] or st["corrupt_skipped"]:
        raise mptest.Fail("%s: drops %d corrupt %d" % (what, st["drops"], st["corrupt_skipped"]))
    for a in range(1, len(got)):
        if got[a] <= got[a - 1]:
            raise mptest.Fail("%s: order broken at %d" % (what, got[a]))
    have = set(got)
    last_committed = model.committed
    lost = 0
    for k in range(model.appended):
        s = model.st[k]
        if s == 3:
            continue  # acknowledged in RAM only: may come back, or not
        if s == 2 and k in have and k > model.inflight_ack:
            raise mptest.Fail("%s: acknowledged reading %d came back" % (what, k))
        if s == 1 and k not in have:
            if model.inflight_ack >= k:
                continue  # its ack was being written when the power went
            lost += 1  # counted: the sweep reports the total, the tests want 0
            if LOST[1] is None:
                LOST[1] = "%s: committed reading %d is missing" % (what, k)
        if s == 0 and k in have and k < last_committed:
            raise mptest.Fail("%s: reading %d lost at a reboot came back" % (what, k))
    LOST[0] += lost
    return q, got


def adopt(model, q, got):
    """After recovery, the model continues: recovered readings are committed, the rest lost."""
    have = set(got)
    for k in range(model.appended):
        if k in have:
            model.st[k] = 1
        elif model.st[k] == 3:
            model.st[k] = 2
        elif model.st[k] == 1 and model.inflight_ack >= k:
            model.st[k] = 2
        elif model.st[k] != 2:
            model.st[k] = 0
    model.committed = model.appended
    model.inflight_ack = -1
    model.pend = 0


def sweep(total, step, start=0, tail=300, double=False, seed=1):
    """Cut at ops start, start+step, ...; returns (cuts, ops, lost).

    Each cut tears its operation at a point drawn from a generator seeded with seed and the
    cut's op number (reproducible, different at every cut). double: after the reboot the
    power fails again within the first writes (recovery itself writes nothing: the first
    writes after it, e.g. leaving a torn head, are where a second cut can land).
    lost counts committed readings missing after recovery (the tests want 0).
    """
    LOST[0] = 0
    LOST[1] = None
    nor = new_nor()
    ckpt = [(bytes(nor.mem), Model(total), 0)]
    run(nor, total, Model(total), None, ckpt=ckpt)
    ops = nor.ops
    cuts = 0
    c = 0
    for cut in range(start, ops, step):
        while c + 1 < len(ckpt) and ckpt[c + 1][2] <= cut:
            c += 1
        image, m0, ops0 = ckpt[c]
        nor = new_nor(seed * 1000003 + cut)
        nor.mem[:] = image
        nor.ops = ops0
        model = m0.copy()
        what = "cut at op %d of %d" % (cut, ops)
        if not run(nor, total, model, cut):
            raise mptest.Fail(what + ": the workload finished without a cut")
        q, got = verify(nor, model, what)
        adopt(model, q, got)
        q = None
        if double:
            # a second cut among the first writes after the reboot
            r = nor._rand() % 3
            if run(nor, total, model, nor.ops + r):
                what += ", then at op %d" % (nor.ops + r)
                q, got = verify(nor, model, what)
                adopt(model, q, got)
                q = None
                cuts += 1
        # the queue keeps working after recovery: finish a short tail, reboot, check again
        end = min(total, model.appended + tail)
        if run(nor, end, model, None):
            raise mptest.Fail(what + ": power cut without a cut armed")
        verify(nor, model, what + " (after recovery)")
        cuts += 1
    return cuts, ops, LOST[0]


def check(cuts, ops, lost, want_cuts, what):
    mptest.true(cuts >= want_cuts, "%s made %d cuts of %d ops" % (what, cuts, ops))
    mptest.eq(lost, 0, "%s: committed readings lost (first: %s)" % (what, LOST[1]))


def test_sweep_subset():
    # every 7th operation of a 3,000-reading workload (the full sweep is `make sweep`)
    cuts, ops, lost = sweep(3000, 7, tail=100)
    check(cuts, ops, lost, 50, "sweep")


def test_sweep_double_faults():
    # every 11th operation, and after each reboot the power fails again within its first
    # writes; another seed for the tear points
    cuts, ops, lost = sweep(3000, 11, tail=100, double=True, seed=7)
    check(cuts, ops, lost, 60, "double-fault sweep")


def test_sweep_subset_page_mode():
    # the same on a page-programmed flash (rp2): every program is one whole aligned page
    PAGE[0] = 256
    try:
        cuts, ops, lost = sweep(3000, 4, tail=100)
    finally:
        PAGE[0] = 1
    check(cuts, ops, lost, 50, "page-mode sweep")


def test_no_cut_delivers_everything():
    total = 1400
    nor = new_nor()
    model = Model(total)
    mptest.eq(run(nor, total, model, None), False, "cut")
    q, got = verify(nor, model, "no cut")
    # everything not acknowledged and not lost at a reboot comes back, in order
    want = [k for k in range(total) if model.st[k] == 1]
    mptest.eq(got, want, "recovered readings")
    mptest.true(len(want) > 100, "backlog of %d readings at the end" % len(want))


if len(sys.argv) > 2 and sys.argv[2] == "full":
    import time
    total = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    step = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    PAGE[0] = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    dbl = len(sys.argv) > 6 and sys.argv[6] == "1"
    sd = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    t = time.ticks_ms()
    cuts, ops, lost = sweep(total, step, tail=100, double=dbl, seed=sd)
    print("SWEEP readings=%d ops=%d cuts=%d losses=%d ms=%d page=%d double=%d seed=%d"
          % (total, ops, cuts, lost, time.ticks_diff(time.ticks_ms(), t), PAGE[0], dbl, sd))
    if LOST[1]:
        print("first loss:", LOST[1])
else:
    mptest.main(globals())
