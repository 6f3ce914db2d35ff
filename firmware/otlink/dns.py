# A DNS A-record lookup with a deadline (RFC 1035 §4.1), for the boards: lwIP's resolver
# behind socket.getaddrinfo() waits out its own retries (several seconds per server, longer
# than the RP2040's 8.3 s watchdog when the server is gone), and nothing bounds it from
# Python. This sends one query over UDP and waits at most timeout_ms for the answer.
# Allocates a little per lookup (the socket, the name's labels): a connect-time step.
import errno
import select
import socket
import struct

from otlink.core.compat import const

_A = const(1)
_IN = const(1)
_RCODE_NXDOMAIN = const(3)


def is_ip(host):
    """True for a dotted IPv4 literal (nothing to resolve)."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


def query(buf, name, qid):
    """Write a recursive A query for name into buf; returns its length."""
    struct.pack_into(">HHHHHH", buf, 0, qid, 0x0100, 1, 0, 0, 0)
    n = 12
    for label in name.encode().split(b"."):
        if not label or len(label) > 63:
            raise ValueError("bad host name %r" % name)
        buf[n] = len(label)
        buf[n + 1:n + 1 + len(label)] = label
        n += 1 + len(label)
    buf[n] = 0
    struct.pack_into(">HH", buf, n + 1, _A, _IN)
    return n + 5


def _skip_name(b, i, end):
    while i < end:
        ln = b[i]
        if ln == 0:
            return i + 1
        if ln & 0xC0 == 0xC0:  # compression pointer: two bytes end the name
            return i + 2
        i += 1 + ln
    raise ValueError("truncated name")


def answer(b, n, qid):
    """The first A record's address ("a.b.c.d") of a response, None when it has none.
    Raises OSError(ENOENT) for NXDOMAIN, ValueError for a malformed or foreign reply."""
    if n < 12:
        raise ValueError("short reply")
    rid, flags, qd, an = struct.unpack_from(">HHHH", b, 0)
    if rid != qid or not flags & 0x8000:
        raise ValueError("not our answer")
    if flags & 0xF == _RCODE_NXDOMAIN:
        raise OSError(errno.ENOENT)
    i = 12
    for _ in range(qd):
        i = _skip_name(b, i, n) + 4
    for _ in range(an):
        i = _skip_name(b, i, n)
        if i + 10 > n:
            raise ValueError("truncated answer")
        typ, cls, _ttl, ln = struct.unpack_from(">HHIH", b, i)
        i += 10
        if typ == _A and cls == _IN and ln == 4 and i + 4 <= n:
            return "%d.%d.%d.%d" % (b[i], b[i + 1], b[i + 2], b[i + 3])
        i += ln
    return None


def resolve(host, server, timeout_ms=2000, port=53):
    """host's IPv4 address as a string, asking `server` (an IP string), within timeout_ms.
    Raises OSError: ETIMEDOUT (no answer in time), ENOENT (no such name or no A record)."""
    if is_ip(host):
        return host
    buf = bytearray(512)
    qid = (len(host) * 7919 + timeout_ms) & 0xFFFF
    n = query(buf, host, qid)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        addr = socket.getaddrinfo(server, port)[0][-1]  # an IP literal: no lookup
        s.sendto(memoryview(buf)[:n], addr)
        p = select.poll()
        p.register(s, select.POLLIN)
        if not p.poll(timeout_ms):
            raise OSError(errno.ETIMEDOUT)
        data = s.recv(512)
        ip = answer(data, len(data), qid)
        if ip is None:
            raise OSError(errno.ENOENT)
        return ip
    finally:
        s.close()
