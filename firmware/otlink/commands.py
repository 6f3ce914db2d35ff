# Commands from the top floor: writes to Modbus points, sent as JSON on the node's cmd topic
#   {"id": "r-17", "op": "write", "point": 6, "value": 0.95, "ctr": 18}
# and answered on its reply topic
#   {"id": "r-17", "ok": true, "ctr": 18}  /  {"id": "r-17", "ok": false, "error": "..."}
# Off unless the node config lists the writable points, each with the value range a write may
# set ("commands": {"writable": [{"point": 6, "min": 0.8, "max": 1.0}], "key": "<hex>"}): a
# broker account that may publish on cmd must not be able to drive arbitrary registers.
#
# Signed (docs/security.md): anyone who can publish on the broker could otherwise move a
# machine. A command is its JSON text B, one line feed, and the 64 hex digits of
# HMAC-SHA256(key, cmd topic || LF || B) under the node's command key; B carries "ctr", a
# counter that must be above every counter this node has accepted. A forged, unsigned or
# replayed command (a retained one replayed at a reconnect, a redelivery after another client
# took over the client id, a captured one sent again) is refused, counted and answered. The
# reply is signed the same way over the reply topic, so the sender can trust it.
# The counter survives reboots without a flash write per command: the node persists a high
# mark W = counter + WINDOW when a counter passes the last W, and after a boot accepts only
# counters above W (a refusal names the lowest counter it takes: "ctr_min").
# The value is given in the point's unit; it is turned back into registers with the point's
# scale, offset, type and word/byte order, so it reads back as what was written.
#
# Exact conversion, no float on the way: the boards' floats are single precision (an int32
# write of 16777217 through a float sends 16777216; a float64 write of 123456.789 sends
# 123456.7890625). The JSON number's text is read as an exact decimal m * 10**e, scale and
# offset as the exact binary fractions they are, raw = (value - offset) / scale as a ratio of
# integers, then rounded once: to the nearest integer for integer points (a whole value is
# required when the point is unscaled), to the nearest float32/float64 (ties to even) for
# float points, from which the register bits are built directly. A value outside the type
# (1e300 to float32, 1e999 to int16) is refused; the reply to a write that had to be rounded
# says so and gives the raw value written.
import json
import struct

from otlink.core.compat import const
from otlink.core.points import (T_BOOL, T_FLOAT32, T_FLOAT64, T_INT16, T_INT32, T_INT64,
                                T_UINT16, T_UINT32, T_UINT64, order_word)

_FMT = {T_INT16: ">h", T_UINT16: ">H", T_INT32: ">i", T_UINT32: ">I", T_INT64: ">q",
        T_UINT64: ">Q"}
_LIMITS = {T_INT16: (-32768, 32767), T_UINT16: (0, 65535), T_INT32: (-2147483648, 2147483647),
           T_UINT32: (0, 4294967295), T_INT64: (-(1 << 63), (1 << 63) - 1),
           T_UINT64: (0, (1 << 64) - 1)}
# float formats: (fraction bits incl. the hidden one, min normal exponent, max exponent, bytes)
_FLOATS = {T_FLOAT32: (24, -126, 127, 4), T_FLOAT64: (53, -1022, 1023, 8)}
MAX_PENDING = 8  # commands waiting for the bus; more are refused as busy, with a reply
MAX_REFUSED = 32  # busy refusals waiting to be sent; beyond, only counted
_MAX_TOKEN = 40  # longest JSON number taken (digits, sign, point, exponent)
_WS = (0x20, 0x09, 0x0A, 0x0D)  # JSON whitespace
_MAX_EXP = 400  # |decimal exponent| beyond which no float64 is near (and no integer fits)
_TAG = const(64)  # hex digits of an HMAC-SHA256 tag
WINDOW = 64  # counters accepted per persisted high mark: at most one flash write per WINDOW
_CTR_MAX = (1 << 53) - 1  # largest counter (exact in every JSON implementation)


class CommandError(ValueError):
    """args[0]: what is wrong. .rid: the request id, when the message carried one. .note:
    fields the refusal adds to the reply (ctr_min)."""

    rid = None
    note = None
    ctr = None


def _ratio_of_float(x):
    """(numerator, denominator) equal to the float x exactly (it is a binary fraction)."""
    if isinstance(x, int):
        return x, 1
    b = struct.pack(">d", x)  # a single-precision float widens exactly
    hi = b[0] << 8 | b[1]
    e = (hi >> 4) & 0x7FF
    m = 0
    for i in range(1, 8):
        m = (m << 8) | b[i]
    m &= (1 << 52) - 1
    if e == 0x7FF:
        raise CommandError("point scale/offset is not finite")
    if e:
        m |= 1 << 52
    else:
        e = 1
    e -= 1075  # x = m * 2**e
    if b[0] & 0x80:
        m = -m
    return (m << e, 1) if e >= 0 else (m, 1 << -e)


def _number_text(msg, value):
    """The text of the "value" number in the raw message (json gives a float of the board's
    precision: the text keeps every digit). None when it cannot be found unambiguously."""
    if isinstance(msg, str):
        msg = msg.encode()
    key = b'"value"'
    found = None
    i = msg.find(key)
    while i >= 0:
        j = i + len(key)
        while j < len(msg) and msg[j] in _WS:
            j += 1
        if j < len(msg) and msg[j] == 0x3A and (i == 0 or msg[i - 1] != 0x5C):  # ':' not \"
            j += 1
            while j < len(msg) and msg[j] in _WS:
                j += 1
            k = j
            while k < len(msg) and chr(msg[k]) in "+-.0123456789eE":
                k += 1
            if k > j:
                if found is not None:
                    return None  # two candidates: ambiguous
                found = bytes(msg[j:k])
        i = msg.find(key, i + 1)
    return found


def _decimal(text):
    """(m, e) with the JSON number text == m * 10**e exactly; CommandError otherwise."""
    if len(text) > _MAX_TOKEN:
        raise CommandError("value %s: more than %d characters" % (text, _MAX_TOKEN))
    t = text.decode() if isinstance(text, (bytes, bytearray)) else text
    exp = 0
    k = t.find("e")
    if k < 0:
        k = t.find("E")
    try:
        if k >= 0:
            exp = int(t[k + 1:])
            t = t[:k]
        neg = t.startswith("-")
        if neg:
            t = t[1:]
        ip, _, fp = t.partition(".")
        if not ip.isdigit() or (fp and not fp.isdigit()):
            raise ValueError
        m = int(ip + fp)
    except ValueError:
        raise CommandError("value %s is not a JSON number" % text)
    exp -= len(fp)
    if m == 0:
        return 0, 0
    if exp > _MAX_EXP or exp < -_MAX_EXP - _MAX_TOKEN:
        raise CommandError("value %s is out of range for any point" % text)
    return (-m if neg else m), exp


def _config_ratio(x):
    """A config scale/offset as the decimal the engineer wrote (0.001 means 1/1000, not the
    binary float nearest to it): the float's shortest repr, which gives that float back."""
    if isinstance(x, int):
        return x, 1
    try:
        m, e = _decimal(repr(x))
    except CommandError:
        return _ratio_of_float(x)
    return (m * 10 ** e, 1) if e >= 0 else (m, 10 ** -e)


def _raw_ratio(p, vn, vd):
    """(n, d), d > 0: the raw register value (value - offset) / scale as an exact ratio,
    value = vn / vd."""
    on, od = _config_ratio(p.offset)
    sn, sd = _config_ratio(p.scale)
    if sn == 0:
        raise CommandError("point %d has scale 0: cannot be written" % p.id)
    n = (vn * od - on * vd) * sd
    d = vd * od * sn
    if d < 0:
        n, d = -n, -d
    return n, d


def _bitlen(n):
    # n.bit_length() for n >= 0 (MicroPython's int has no bit_length)
    b = 0
    while n >> (b + 32):
        b += 32
    while n >> b:
        b += 1
    return b


def _round_int(n, d):
    """(nearest integer to n/d, halves away from zero; exact?)"""
    q, r = divmod(abs(n), d)
    exact = r == 0
    if 2 * r >= d:
        q += 1
    return (-q if n < 0 else q), exact


def _float_bits(n, d, fmt):
    """IEEE bits (big-endian bytes) of the float of format fmt nearest to n/d (ties to even)
    and whether it is exact; None when n/d is beyond the format's largest finite value."""
    mbits, emin, emax, size = _FLOATS[fmt]
    ebits = 8 if size == 4 else 11
    neg = n < 0
    n = abs(n)
    q = 0
    exact = True
    e = 0
    if n:
        # scale so that q = floor(n / d / 2**e) has mbits bits
        e = _bitlen(n) - _bitlen(d) - mbits
        while True:
            q, r = divmod(n, d << e) if e >= 0 else divmod(n << -e, d)
            if q >> mbits:
                e += 1
            elif not q >> (mbits - 1):
                e -= 1
            else:
                break
        if e + mbits - 1 < emin:  # subnormal: fewer fraction bits at the lowest exponent
            e = emin - mbits + 1
            q, r = divmod(n, d << e) if e >= 0 else divmod(n << -e, d)
        den = (d << e) if e >= 0 else d
        exact = r == 0
        if 2 * r > den or (2 * r == den and q & 1):
            q += 1
            if q >> mbits:
                q >>= 1
                e += 1
        if e + mbits - 1 > emax:
            return None, False
    if q >> (mbits - 1):
        biased = e + mbits - 1 + (1 << (ebits - 1)) - 1
        bits = (biased << (mbits - 1)) | (q & ((1 << (mbits - 1)) - 1))
    else:
        bits = q  # subnormal or zero: biased exponent 0
    if neg:
        bits |= 1 << (ebits + mbits - 1)
    out = bytearray(size)
    for i in range(size):
        out[size - 1 - i] = bits & 0xFF
        bits >>= 8
    return out, exact


def convert(p, value, text=None):
    """(big-endian register bytes, raw written, exact) for writing `value` (the point's unit)
    to point p. text: the JSON number's text, needed for floats (see the module comment)."""
    typ = p.type
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError("value must be a number")
    if isinstance(value, int):
        vn, vd = value, 1
    elif text is None:  # a float object given directly: its exact binary value
        if value != value or value in (float("inf"), float("-inf")):
            raise CommandError("value must be a finite number")
        vn, vd = _ratio_of_float(value)
    else:
        m, e = _decimal(text)
        vn, vd = (m * 10 ** e, 1) if e >= 0 else (m, 10 ** -e)
    n, d = _raw_ratio(p, vn, vd)
    shown = text.decode() if isinstance(text, (bytes, bytearray)) else repr(value)
    if typ in _FLOATS:
        b, exact = _float_bits(n, d, typ)
        if b is None:
            raise CommandError("value %s is outside %s" % (shown, p.type_name()))
        return b, None, exact
    raw, exact = _round_int(n, d)
    lo, hi = _LIMITS[typ]
    if raw < lo or raw > hi:
        raise CommandError("value %s is outside %s after scale/offset" % (shown, p.type_name()))
    if not exact and p.scale == 1 and p.offset == 0:
        raise CommandError("value %s: point %d (%s) takes whole numbers"
                           % (shown, p.id, p.type_name()))
    return struct.pack(_FMT[typ], raw), raw, exact


def encode_registers(p, value, text=None):
    """Register values (or one coil bit) that make point p read back `value` (its unit)."""
    return _registers(p, value, text)[0]


def _registers(p, value, text):
    # (registers, raw written or None, exact)
    typ = p.type
    if typ == T_BOOL:
        if p.table != "coil":
            raise CommandError("point %d is a discrete input: read-only" % p.id)
        if value is not True and value is not False and value != 0 and value != 1:
            raise CommandError("coil %d takes true/false or 1/0" % p.id)
        return [1 if value else 0], None, True
    if p.table != "holding":
        raise CommandError("point %d is an input register: read-only" % p.id)
    if typ not in _FMT and typ not in _FLOATS:
        raise CommandError("point %d: type %s cannot be written" % (p.id, p.type_name()))
    b, raw, exact = convert(p, value, text)
    n = len(b) // 2
    return [order_word(b, 0, w, n, p.order) for w in range(n)], raw, exact


def load(msg):
    """The command object of a message body (JSON); CommandError otherwise."""
    try:
        cmd = json.loads(msg)
    except (ValueError, OverflowError):
        raise CommandError("not JSON")
    if not isinstance(cmd, dict):
        raise CommandError("want a JSON object")
    return cmd


def parse(msg, points, writable, limits=None, cmd=None):
    """(request id, (point, register values, note)) of one command message; note is None
    or what the reply should add (a rounded write). limits: {point id: (min, max)} in the
    point's unit, the range a write may set. CommandError otherwise (with .rid set
    when the message had an id, so the refusal can be answered)."""
    if cmd is None:
        cmd = load(msg)
    rid = cmd.get("id")
    try:
        return rid, _write(cmd, msg, points, writable, limits)
    except CommandError as e:
        e.rid = rid
        raise
    except (ValueError, OverflowError, TypeError) as e:  # never leaves a command unanswered
        err = CommandError("value refused: %s" % (e,))
        err.rid = rid
        raise err


def _exact(value, text):
    """(n, d), d > 0: the command's value as an exact ratio."""
    if isinstance(value, int):
        return value, 1
    if text is None:
        if value != value or value in (float("inf"), float("-inf")):
            raise CommandError("value must be a finite number")
        return _ratio_of_float(value)
    m, e = _decimal(text)
    return (m * 10 ** e, 1) if e >= 0 else (m, 10 ** -e)


def _check_limits(pid, value, text, lim):
    # exact comparison of the value's decimal with the config's min/max decimals
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # the type check names it
    vn, vd = _exact(value, text)
    lo, hi = lim
    ln, ld = _config_ratio(lo)
    hn, hd = _config_ratio(hi)
    if vn * ld < ln * vd or vn * hd > hn * vd:
        shown = text.decode() if isinstance(text, (bytes, bytearray)) else repr(value)
        raise CommandError("value %s is outside %r..%r, the range commands.writable allows "
                           "for point %d" % (shown, lo, hi, pid))


def _write(cmd, msg, points, writable, limits):
    if cmd.get("op") != "write":
        raise CommandError("unknown op %r (supported: write)" % (cmd.get("op"),))
    pid = cmd.get("point")
    if not writable:
        raise CommandError("commands are disabled in this node's config")
    if pid not in writable:
        raise CommandError("point %r is not writable on this node" % (pid,))
    k = points.find(pid) if isinstance(pid, int) and not isinstance(pid, bool) else -1
    if k < 0:
        raise CommandError("point %r is not a Modbus point of this node" % (pid,))
    p = points[k]  # the row as a Point snapshot (cold path)
    v = cmd.get("value")
    text = None
    if isinstance(v, float):
        text = _number_text(msg, v)
        if text is None:
            raise CommandError("value: cannot read the number's digits")
    lim = limits.get(pid) if limits else None
    if lim is not None:
        _check_limits(pid, v, text, lim)
    regs, raw, exact = _registers(p, v, text)
    note = None
    if not exact:
        note = {"rounded": True}
        if raw is not None:
            note["raw"] = raw
    return p, regs, note


def _echo_id(rid):
    # The request id echoed: a text or a number JSON can carry. Anything else (a nested
    # object, -1e999 read as -inf) is answered with null: dumping it could recurse past the
    # stack or give "inf", which no JSON reader takes, and the sender would get no answer.
    if isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)):
        return rid
    if isinstance(rid, float) and rid == rid and rid not in (_INF, -_INF):
        return rid
    return None


_INF = float("inf")


def reply(rid, error=None, note=None):
    """The reply payload (bytes: the socket layer takes no str)."""
    rid = _echo_id(rid)
    if error is None:
        r = {"id": rid, "ok": True}
        if note:
            r.update(note)
        return json.dumps(r).encode()
    r = {"id": rid, "ok": False, "error": error}
    if note:
        r.update(note)
    return json.dumps(r).encode()


def split_signed(msg):
    """(body, tag) views of a signed message "B LF <64 hex>", or None when it has no tag."""
    n = len(msg)
    if n < _TAG + 3 or msg[n - _TAG - 1] != 0x0A:
        return None
    mv = memoryview(msg)
    return mv[:n - _TAG - 1], mv[n - _TAG:]


def request_id(msg):
    """The "id" of a command message, or None; never raises (for busy refusals)."""
    try:
        sp = split_signed(msg)
        cmd = json.loads(bytes(sp[0]) if sp else msg)
        return cmd.get("id") if isinstance(cmd, dict) else None
    except Exception:  # any malformed message: it is refused without an id
        return None


class Counter:
    """The highest command counter accepted, kept across reboots in a small file (on the
    board's littlefs: a file rewrite is atomic, the old content survives a power cut).
    The file holds a high mark W, rewritten only when a counter passes it (to counter +
    WINDOW); after a boot every counter up to W counts as used. .last: the counter to beat;
    None when the file exists but cannot be read (commands are then refused: accepting
    from 0 would let every old command be replayed)."""

    def __init__(self, path, window=WINDOW):
        self.path = path
        self.window = window
        self.writes = 0
        self.high = 0
        try:
            with open(path) as f:
                t = f.read()
            if not t.startswith("ctr ") or not t[4:].strip().isdigit():
                raise ValueError
            self.high = int(t[4:])
        except OSError:
            pass  # no file: a node that never took a command
        except ValueError:
            self.high = None
        self.last = self.high

    def take(self, ctr):
        """Accept ctr (> last) and persist the mark first when it passes it; OSError when
        the mark cannot be written (the command is then not run)."""
        if ctr > self.high:
            mark = ctr + self.window
            with open(self.path, "w") as f:
                f.write("ctr %d\n" % mark)
            self.high = mark
            self.writes += 1
        self.last = ctr


_BUSY = "busy: %d commands waiting, try again later" % MAX_PENDING
_RETAINED = ("retained command not run: publish commands without the retain flag (a retained "
             "one would run again at every reconnect)")
_UNSIGNED = "not signed: commands carry an HMAC-SHA256 tag (otlink write; docs/security.md)"
_FORGED = "signature does not verify: refused (wrong key, or the command was altered)"


class Commands:
    """The command task: on_msg() queues what the uplink receives (called from inside an
    MQTT read, so it never publishes), run() checks the signature and counter, writes
    through the poller between polls and answers every command on the reply topic. Beyond
    MAX_PENDING waiting commands a command is refused at once as busy, and a retained one
    (the broker replays it at every subscribe) is never run (its reply is queued, up to
    MAX_REFUSED); only past that is one dropped unanswered, and counted.
    mac: an otlink.core.auth.Hmac under the command key; counter: a Counter. Without mac
    every command is refused (the config validator requires a key with writable points)."""

    def __init__(self, uplink, poller, points, writable, log=None, mac=None, counter=None,
                 limits=None):
        self.up = uplink
        self.poller = poller
        self.points = points
        self.writable = writable
        self.limits = limits
        self.log = log
        self.mac = mac
        self.counter = counter
        self.t_reply = uplink.t_cmd[:-3] + b"reply"
        self._pending = []
        self._refused = []  # request ids to answer "busy"
        self.received = 0
        self.errors = 0  # refused or failed commands
        self.dropped = 0  # neither run nor answered (flood beyond both queues)
        self.forged = 0  # unsigned or with a tag that does not verify
        self.replayed = 0  # authentic, with a counter already used

    def on_msg(self, msg):
        if not len(msg):
            return  # how a retained message is cleared (MQTT 3.1.1 §3.3.1.3): no command
        self.received += 1
        if getattr(self.up, "retained", False):
            # a retained command would run again at every reconnect: answered, never run
            why = _RETAINED
        elif self.mac is not None and not self._signed(msg):
            # checked here, not in the queue: a flood of forged commands never takes the
            # places of authentic ones (two SHA-256 blocks of a short message: < 1 ms)
            self.forged += 1
            why = _UNSIGNED if split_signed(msg) is None else _FORGED
            n = self.forged
            if self.log is not None and not n & (n - 1):  # 1, 2, 4, 8...: a flood logs little
                self.log("commands: %d refused as unsigned or forged so far (%s)" % (n, why))
        elif len(self._pending) < MAX_PENDING:
            self._pending.append(msg)  # the uplink's fresh copy
            return
        else:
            why = _BUSY
        if len(self._refused) < MAX_REFUSED:
            self._refused.append((request_id(msg), why))
        else:
            self.dropped += 1

    def _send(self, payload):
        if self.mac is not None:
            tag = self.mac.hexdigest(self.t_reply, b"\n", payload)
            b = bytearray(len(payload) + 1 + _TAG)
            b[:len(payload)] = payload
            b[len(payload)] = 0x0A
            b[len(payload) + 1:] = tag
            payload = b
        try:
            self.up.publish(self.t_reply, payload, 1, False)
        except OSError:
            pass  # the session is down: the sender times out and may retry

    def _signed(self, msg):
        sp = split_signed(msg)
        return sp is not None and self.mac.verify(sp[1], self.up.t_cmd, b"\n", sp[0])

    def _authentic(self, msg):
        """The command object of an authentic, fresh message: (object, body, counter).
        CommandError (with .rid, .note) otherwise."""
        sp = split_signed(msg)
        if self.mac is None or sp is None or not self.mac.verify(sp[1], self.up.t_cmd, b"\n",
                                                                 sp[0]):
            self.forged += 1
            e = CommandError(_FORGED if sp is not None and self.mac is not None else
                             "commands are disabled in this node's config" if self.mac is None
                             else _UNSIGNED)
            e.rid = request_id(msg)
            raise e
        body = bytes(sp[0])
        cmd = load(body)
        ctr = cmd.get("ctr")
        c = self.counter
        if isinstance(ctr, bool) or not isinstance(ctr, int) or ctr < 1 or ctr > _CTR_MAX:
            e = CommandError("ctr: a counter 1..2**53-1 is required in a signed command")
        elif c is None or c.last is None:
            e = CommandError("command counter record unreadable: commands refused until it "
                             "is rewritten (docs/security.md)")
        elif ctr <= c.last:
            self.replayed += 1
            e = CommandError("replayed or stale: counter %d already used (this node takes "
                             "counters above %d)" % (ctr, c.last))
            e.note = {"ctr_min": c.last + 1}
        else:
            try:
                c.take(ctr)
            except OSError as x:
                e = CommandError("cannot persist the command counter (%s): not run" % (x,))
            else:
                return cmd, body, ctr
        e.rid = cmd.get("id")
        e.ctr = ctr if isinstance(ctr, int) and not isinstance(ctr, bool) else None
        raise e

    async def step(self):
        """Answer one busy refusal or run one command; False when there was nothing."""
        if self._refused:
            rid, why = self._refused.pop(0)
            self.errors += 1
            self._send(reply(rid, why))
            return True
        if not self._pending:
            return False
        msg = self._pending.pop(0)
        rid = None
        err = None
        note = None
        ctr = None
        try:
            cmd, body, ctr = self._authentic(msg)
            rid, (p, regs, note) = parse(body, self.points, self.writable, self.limits, cmd)
            code = await self.poller.write(p.slave, p.table, p.address, regs)
            if code:
                from otlink.core.modbus import error_name

                err = "write failed: %s" % error_name(code)
        except ValueError as e:  # CommandError and the poller's argument checks
            err = str(e)
            rid = getattr(e, "rid", rid)
            note = getattr(e, "note", None)
            if getattr(e, "ctr", None) is not None:
                ctr = e.ctr
        if ctr is not None:
            note = dict(note) if note else {}
            note["ctr"] = ctr
        if err:
            self.errors += 1
            if self.log is not None:
                self.log("command %r refused: %s" % (rid, err))
        self._send(reply(rid, err, note))
        return True

    async def run(self):
        import asyncio

        while True:
            if not await self.step():
                await asyncio.sleep_ms(50)
