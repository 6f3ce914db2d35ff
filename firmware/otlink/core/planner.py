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
from otlink.core.errors import ConfigError

try:
    from array import array
except ImportError:  # pragma: no cover
    from uarray import array


class Request:
    """One read request: its prebuilt ADU and where each point sits in the response.
    idx: the points' indices in the Points table, offs: each one's byte offset into the
    response ADU (registers) or bit index (bits); both 16-bit arrays, fixed after plan()."""

    def __init__(self, slave, fc, start, count):
        self.slave = slave
        self.fc = fc
        self.start = start
        self.count = count
        self.idx = None
        self.offs = None
        self.adu = bytearray(8)
        self.resp_len = modbus.response_len(fc, count)

    def finish(self, rtu, pts, idx):
        n = rtu.build_read(self.slave, self.fc, self.start, self.count)
        self.adu[:] = rtu.tx[:n]
        bits = self.fc <= modbus.FC_READ_DISCRETE
        self.idx = array("H", idx)
        offs = array("H", idx)
        for k in range(len(idx)):
            rel = pts.address(idx[k]) - self.start
            offs[k] = rel if bits else 3 + 2 * rel
        self.offs = offs

    def __repr__(self):
        return "Request(slave=%d fc=%d start=%d count=%d points=%d)" % (
            self.slave, self.fc, self.start, self.count, len(self.idx))


class Group:
    def __init__(self, name, interval_ms):
        self.name = name
        self.interval_ms = interval_ms
        self.requests = []
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
    """Groups (fastest first, ties by name) each with its Requests, for the Points table pts.

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
    sl = pts.slave
    fc = pts.fc
    ad = pts.address
    wd = pts.words
    for name in sorted(ser["groups"], key=lambda n: (ser["groups"][n], n)):
        g = Group(name, ser["groups"][name])
        mine = [i for i in range(len(pts)) if pts.group(i) == name]
        mine.sort(key=lambda i: (sl(i), fc(i), ad(i), wd(i)))
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
                r = Request(sl(run[a]), fc(run[a]), start, end - start)
                r.finish(rtu, pts, run[a:b])
                g.requests.append(r)
            i = j
        if g.requests:
            groups.append(g)
    return groups


def wire_chars(groups):
    """(request chars, response chars, requests) of one full cycle of every group."""
    q = a = n = 0
    for g in groups:
        for r in g.requests:
            q += 8
            a += r.resp_len
            n += 1
    return q, a, n
