# Request planner: turns points into as few read requests as possible.
#
# Points are grouped by (poll group, slave, function code) and sorted by address; each such run
# is cut into requests by an exact dynamic program minimising wire time: a request costs
# (8 + response bytes) characters + t3.5, so reading a hole (2 bytes per register) pays off
# while it is cheaper than one more transaction (13 characters + t3.5: 18 registers at 9600,
# more above 19200 where t3.5 is fixed). Limits: max_regs registers (FC 03/04, spec 125) or
# max_bits bits (FC 01/02, spec 2000) per request, and at most max_gap registers/bits of hole
# (some devices answer "illegal address" for holes); max_gap -1 turns merging off.
from otlink.core import modbus
from otlink.core.compat import const
from otlink.core.errors import ConfigError

try:
    from array import array
except ImportError:  # pragma: no cover
    from uarray import array


NQ = const(7)  # fields per request in Plan.q
Q_SLAVE = const(0)
Q_FC = const(1)
Q_START = const(2)
Q_COUNT = const(3)
Q_RESP = const(4)  # expected response length (bytes)
Q_FIRST = const(5)  # its points: Plan.idx[first:end] (table indices), Plan.offs[first:end]
Q_END = const(6)


class Plan:
    """Every poll group's read requests as rows of flat arrays, no object per request (a
    request object with its buffers took ~210 bytes on a 32-bit board). Request r: its
    prebuilt ADU in adu[8 * r:8 * r + 8], its fields in q[r * 7 + Q_...]; its points'
    indices in the Points table in idx[first:end], and where each sits in the response in
    offs[first:end]: byte offset into the response ADU (registers) or bit index (bits).
    groups: the Groups (fastest first, ties by name), each with its request range."""

    def __init__(self, groups, nreq, npts):
        self.groups = groups
        self.n = 0
        self.adu = bytearray(8 * nreq)
        self.q = array("H", bytes(2 * NQ * nreq))
        self.idx = array("H", bytes(2 * npts))
        self.offs = array("H", bytes(2 * npts))

    def add(self, rtu, pts, slave, fc, start, count, idx):
        r = self.n
        self.n = r + 1
        n = rtu.build_read(slave, fc, start, count)
        for k in range(n):
            self.adu[8 * r + k] = rtu.tx[k]
        q = self.q
        k = r * NQ
        first = q[k - NQ + Q_END] if r else 0
        bits = fc <= modbus.FC_READ_DISCRETE
        for m in range(len(idx)):
            self.idx[first + m] = idx[m]
            rel = pts.address(idx[m]) - start
            self.offs[first + m] = rel if bits else 3 + 2 * rel
        q[k + Q_SLAVE] = slave
        q[k + Q_FC] = fc
        q[k + Q_START] = start
        q[k + Q_COUNT] = count
        q[k + Q_RESP] = modbus.response_len(fc, count)
        q[k + Q_FIRST] = first
        q[k + Q_END] = first + len(idx)
        return r

    def request(self, r):
        """Request r as an object (tools, tests; allocates)."""
        return Request(self, r)

    def requests(self, g):
        """The requests of group g as objects (tools, tests; allocates)."""
        return [Request(self, r) for r in range(g.first, g.end)]


class Request:
    """A snapshot of one planned read request (cold code: tests, tools)."""

    def __init__(self, plan, r):
        q = plan.q
        k = r * NQ
        self.slave = q[k + Q_SLAVE]
        self.fc = q[k + Q_FC]
        self.start = q[k + Q_START]
        self.count = q[k + Q_COUNT]
        self.resp_len = q[k + Q_RESP]
        self.adu = bytes(plan.adu[8 * r:8 * r + 8])
        self.idx = list(plan.idx[q[k + Q_FIRST]:q[k + Q_END]])
        self.offs = list(plan.offs[q[k + Q_FIRST]:q[k + Q_END]])

    def __repr__(self):
        return "Request(slave=%d fc=%d start=%d count=%d points=%d)" % (
            self.slave, self.fc, self.start, self.count, len(self.idx))


class Group:
    def __init__(self, name, interval_ms):
        self.name = name
        self.interval_ms = interval_ms
        self.first = 0  # its requests: range(first, end) of the Plan
        self.end = 0
        self.due = 0  # ticks_ms of the next poll, set by the scheduler


def _cost_us(fc, span, char_us, per_tx_us):
    return (8 + modbus.response_len(fc, span)) * char_us + per_tx_us


def _cut(pts, run, char_us, per_tx_us, cap, gap):
    """Cut one (slave, fc) run of point indices, sorted by address, into consecutive requests
    of least total wire time: exact dynamic programming over the cut positions, O(n^2)."""
    n = len(run)
    fc = pts.fc(run[0])
    best = [0] * (n + 1)
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        best[j] = -1
        end = 0
        for i in range(j - 1, -1, -1):
            a = pts.address(run[i])
            e = a + pts.words(run[i])
            if e > end:
                end = e
            span = end - a
            if span > cap:
                break
            if i < j - 1:
                # the hole between run[i] and the rest must not exceed max_gap
                qa = pts.address(run[i + 1])
                hole = qa - e if qa > e else 0
                if gap < 0 or hole > gap:
                    break
            c = best[i] + _cost_us(fc, span, char_us, per_tx_us)
            if best[j] < 0 or c < best[j]:
                best[j] = c
                back[j] = i
    cuts = []
    j = n
    while j > 0:
        cuts.append((back[j], j))
        j = back[j]
    cuts.reverse()
    return cuts


def plan(pts, ser, merge=True):
    """The Plan of the Points table pts: its groups (fastest first, ties by name, only those
    with points), each with its range of requests.

    ser is parse_serial()'s output. Points of one slave and table are cut into the requests of
    least wire time for the configured baud (a hole is read when its 2 bytes per register cost
    less than another transaction: request + response overhead + t3.5), never exceeding
    max_regs/max_bits per request nor max_gap_regs/max_gap_bits of hole. The slave's turnaround
    is not known in advance and is taken as 0, which only makes merging more conservative.
    With merge=False every point gets its own request (the naive plan)."""
    rtu = modbus.Rtu()
    char_us = modbus.char_us(ser["baud"], ser["parity"], ser["stop_bits"])
    per_tx_us = ser.get("frame_gap_us") or modbus.t35_us(ser["baud"])
    groups = []
    cut = []  # per group: [(slave, fc, start, count, point indices)], laid out below
    sl = pts.slave
    fc = pts.fc
    ad = pts.address
    wd = pts.words
    nreq = 0
    for name in sorted(ser["groups"], key=lambda n: (ser["groups"][n], n)):
        mine = [i for i in range(len(pts)) if pts.group(i) == name]
        if not mine:
            continue
        mine.sort(key=lambda i: (sl(i), fc(i), ad(i), wd(i)))
        reqs = []
        i = 0
        while i < len(mine):
            j = i
            while j < len(mine) and sl(mine[j]) == sl(mine[i]) and fc(mine[j]) == fc(mine[i]):
                j += 1
            run = mine[i:j]
            bits = fc(run[0]) <= modbus.FC_READ_DISCRETE
            cap = ser["max_bits"] if bits else ser["max_regs"]
            gap = ser["max_gap_bits"] if bits else ser["max_gap_regs"]
            for p in run:
                if wd(p) > cap:
                    raise ConfigError("serial.max_regs", "point %d spans %d, more than %d"
                                      % (pts.id(p), wd(p), cap))
            if merge:
                cuts = _cut(pts, run, char_us, per_tx_us, cap, gap)
            else:
                cuts = [(k, k + 1) for k in range(len(run))]
            for a, b in cuts:
                start = ad(run[a])
                end = 0
                for p in run[a:b]:
                    if ad(p) + wd(p) > end:
                        end = ad(p) + wd(p)
                reqs.append((sl(run[a]), fc(run[a]), start, end - start, run[a:b]))
            i = j
        groups.append(Group(name, ser["groups"][name]))
        cut.append(reqs)
        nreq += len(reqs)
    out = Plan(groups, nreq, len(pts))
    for g, reqs in zip(groups, cut):
        g.first = out.n
        for slave, f, start, count, idx in reqs:
            out.add(rtu, pts, slave, f, start, count, idx)
        g.end = out.n
    return out


def wire_chars(plan):
    """(request chars, response chars, requests) of one full cycle of every group."""
    a = 0
    for r in range(plan.n):
        a += plan.q[r * NQ + Q_RESP]
    return 8 * plan.n, a, plan.n
