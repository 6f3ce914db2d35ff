# Request planner: turns points into as few read requests as possible.
#
# Points are grouped by (poll group, slave, function code); within a group they are sorted by
# address and merged greedily while the request stays within max_regs registers (FC 03/04,
# spec limit 125) or max_bits bits (FC 01/02, limit 2000) and the hole between two points is at
# most max_gap registers/bits. Reading a hole costs 2 bytes per register on the wire but saves
# a whole transaction (8 + 5 bytes + two t3.5 + the slave's turnaround), so a small gap is
# almost always cheaper; max_gap -1 turns merging off (one request per point, the naive plan).
# Greedy in address order is optimal here: with a fixed cap, extending the current request
# whenever possible never increases the number of requests (interval cover argument).
from otlink.core import modbus
from otlink.core.errors import ConfigError


class Request:
    """One read request: its prebuilt ADU and where each point sits in the response."""

    def __init__(self, slave, fc, start, count):
        self.slave = slave
        self.fc = fc
        self.start = start
        self.count = count
        self.points = []
        self.offs = []  # byte offset into the response ADU (registers) or bit index (bits)
        self.adu = bytearray(8)
        self.resp_len = modbus.response_len(fc, count)

    def finish(self, rtu):
        n = rtu.build_read(self.slave, self.fc, self.start, self.count)
        self.adu[:] = rtu.tx[:n]
        bits = self.fc <= modbus.FC_READ_DISCRETE
        for p in self.points:
            rel = p.address - self.start
            self.offs.append(rel if bits else 3 + 2 * rel)

    def __repr__(self):
        return "Request(slave=%d fc=%d start=%d count=%d points=%d)" % (
            self.slave, self.fc, self.start, self.count, len(self.points))


class Group:
    def __init__(self, name, interval_ms):
        self.name = name
        self.interval_ms = interval_ms
        self.requests = []
        self.due = 0  # ticks_ms of the next poll, set by the scheduler


def plan(points, ser, merge=True):
    """Groups (fastest first, ties by name) each with its merged Requests.

    ser is parse_serial()'s output. With merge=False every point gets its own request."""
    rtu = modbus.Rtu()
    groups = []
    for name in sorted(ser["groups"], key=lambda n: (ser["groups"][n], n)):
        g = Group(name, ser["groups"][name])
        mine = [p for p in points if p.group == name]
        mine.sort(key=lambda p: (p.slave, p.fc, p.address, p.words))
        cur = None
        for p in mine:
            bits = p.fc <= modbus.FC_READ_DISCRETE
            cap = ser["max_bits"] if bits else ser["max_regs"]
            gap = ser["max_gap_bits"] if bits else ser["max_gap_regs"]
            end = p.address + p.words
            if (merge and cur is not None and gap >= 0 and cur.slave == p.slave
                    and cur.fc == p.fc and p.address - (cur.start + cur.count) <= gap
                    and max(end, cur.start + cur.count) - cur.start <= cap):
                if end > cur.start + cur.count:
                    cur.count = end - cur.start
                cur.points.append(p)
                continue
            if p.words > cap:
                raise ConfigError("serial.max_regs", "point %d spans %d, more than %d" % (p.id, p.words, cap))
            cur = Request(p.slave, p.fc, p.address, p.words)
            cur.points.append(p)
            g.requests.append(cur)
        for r in g.requests:
            r.resp_len = modbus.response_len(r.fc, r.count)
            r.finish(rtu)
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
