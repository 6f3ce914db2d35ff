# Commands from the top floor: writes to Modbus points, sent as JSON on the node's cmd topic
#   {"id": "r-17", "op": "write", "point": 6, "value": 0.95}
# and answered on its reply topic
#   {"id": "r-17", "ok": true}  /  {"id": "r-17", "ok": false, "error": "..."}
# Off unless the node config lists the writable points ("commands": {"writable": [6]}): a
# broker account that may publish on cmd must not be able to drive arbitrary registers.
# The value is given in the point's unit; it is turned back into registers with the point's
# scale, offset, type and word/byte order, so it reads back as what was written.
import json
import struct

from otlink.core.points import (T_BOOL, T_FLOAT32, T_FLOAT64, T_INT16, T_INT32, T_INT64,
                                T_UINT16, T_UINT32, T_UINT64)

_FMT = {T_INT16: ">h", T_UINT16: ">H", T_INT32: ">i", T_UINT32: ">I", T_INT64: ">q",
        T_UINT64: ">Q", T_FLOAT32: ">f", T_FLOAT64: ">d"}
_LIMITS = {T_INT16: (-32768, 32767), T_UINT16: (0, 65535), T_INT32: (-2147483648, 2147483647),
           T_UINT32: (0, 4294967295), T_INT64: (-(1 << 63), (1 << 63) - 1),
           T_UINT64: (0, (1 << 64) - 1)}
MAX_PENDING = 8


class CommandError(ValueError):
    """args[0]: what is wrong. .rid: the request id, when the message carried one."""

    rid = None


def encode_registers(p, value):
    """Register values (or one coil bit) that make point p read back `value` (its unit)."""
    typ = p.type
    if typ == T_BOOL:
        if p.table != "coil":
            raise CommandError("point %d is a discrete input: read-only" % p.id)
        return [1 if value else 0]
    if p.table != "holding":
        raise CommandError("point %d is an input register: read-only" % p.id)
    fmt = _FMT.get(typ)
    if fmt is None:
        raise CommandError("point %d: type %s cannot be written" % (p.id, p.type_name()))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError("value must be a number")
    raw = (value - p.offset) / p.scale
    if typ != T_FLOAT32 and typ != T_FLOAT64:
        raw = int(raw + 0.5) if raw >= 0 else -int(-raw + 0.5)
        lo, hi = _LIMITS[typ]
        if raw < lo or raw > hi:
            raise CommandError("value %r is outside %s after scale/offset" % (value, p.type_name()))
    b = struct.pack(fmt, raw)
    n = len(b) // 2
    wswap = p.order & 1  # points.ORDERS: bit 0 word swap, bit 1 byte swap
    bswap = p.order >> 1
    regs = []
    for w in range(n):
        if bswap:
            regs.append(b[2 * w] | (b[2 * w + 1] << 8))
        else:
            regs.append((b[2 * w] << 8) | b[2 * w + 1])
    if wswap:
        regs.reverse()
    return regs


def parse(msg, points, writable):
    """(request id, point, register values) of one command message; CommandError otherwise
    (with .rid set when the message had an id, so the refusal can be answered)."""
    try:
        cmd = json.loads(msg)
    except ValueError:
        raise CommandError("not JSON")
    if not isinstance(cmd, dict):
        raise CommandError("want a JSON object")
    rid = cmd.get("id")
    try:
        return rid, _write(cmd, points, writable)
    except CommandError as e:
        e.rid = rid
        raise


def _write(cmd, points, writable):
    if cmd.get("op") != "write":
        raise CommandError("unknown op %r (supported: write)" % (cmd.get("op"),))
    pid = cmd.get("point")
    if not writable:
        raise CommandError("commands are disabled in this node's config")
    if pid not in writable:
        raise CommandError("point %r is not writable on this node" % (pid,))
    for p in points:
        if p.id == pid:
            return p, encode_registers(p, cmd.get("value"))
    raise CommandError("point %r is not a Modbus point of this node" % (pid,))


def reply(rid, error=None):
    """The reply payload (bytes: the socket layer takes no str)."""
    if error is None:
        return json.dumps({"id": rid, "ok": True}).encode()
    return json.dumps({"id": rid, "ok": False, "error": error}).encode()
