# Service console: the commissioning command line on the serial line (the USB REPL stream of a
# board, the agent's stdin/stdout on the Unix port, which `otlink node run` puts on a pty).
# Pure core: bytes in through feed(), text out through the write function given, commands
# run against a node view (console_io.NodeView) and a ConfigStore (console_config.py).
# No machine, no select, no asyncio here: the stream adapter lives in console_io.py.
#
# Line editing for a dumb terminal (docs/field-guide.md, "The console"):
#   printable ASCII is echoed; Backspace/DEL erases one; Ctrl-U erases the line; Ctrl-C
#   cancels a typed line (on an empty line it is the break: on a board, back to the REPL);
#   CR, LF or CR LF ends the line; ESC sequences (arrow keys) are skipped; other control
#   bytes and bytes >= 0x80 are refused when the line ends, naming the byte.
# A line longer than the buffer (LINE_MAX bytes) is refused with a message when it ends:
# the buffer never grows and the session carries on.
#
# Machine-readable mode: a line starting with "@" is not echoed and gets exactly one reply
# line "@" + JSON: {"ok": true, "data": ...} or {"ok": false, "error": "..."} (otlink's host
# tool speaks this). Human lines get text and a prompt.
import json

from otlink.core.compat import const

LINE_MAX = const(256)  # bytes of one command line (a `set` with a point object fits)
_ST_TEXT = const(0)
_ST_ESC = const(1)  # after ESC
_ST_CSI = const(2)  # after ESC [ : parameters until a final byte 0x40..0x7e
_PROMPT = "otlink> "
_MASK = "******"
# Fields whose values are secrets: shown as _MASK by every command, in every mode.
SECRET_KEYS = ("password", "pin", "key", "key_file", "psk", "secret", "token", "ack_key")
_PIN_TRIES = const(3)  # failed unlocks before the first lockout
_LOCK_FIRST_S = const(5)  # first lockout; doubles with each further failure
_LOCK_MAX_S = const(3600)
_IDLE_LOCK_MS = const(600000)  # an unlocked console locks again after 10 min without a line

HELP = (
    ("help", "this list"),
    ("status", "node, config, uplink, queue and bus at a glance"),
    ("show config|points|queue|slaves|log", "the running (or staged) config, point table, "
     "flash queue, Modbus slaves, recent log lines"),
    ("get <path>", "one config value, e.g. get mqtt.port, get points[0].address"),
    ("set <path> <value>", "stage a change (value as JSON; bare words are strings)"),
    ("unset <path>", "stage removing a field (back to its default)"),
    ("set -f / unset -f", "stage without checking this change (commit still validates)"),
    ("diff", "staged changes against the running config"),
    ("validate", "check the staged (or running) config"),
    ("commit", "write the staged config and reboot into it (rolled back by itself if the "
     "node is not healthy after it)"),
    ("rollback", "drop staged changes; with none staged, go back to the previous config"),
    ("modbus read <slave> <table> <addr> <count> [type order]", "read registers through "
     "the node's bus (table: holding, input, coil, discrete)"),
    ("reboot", "restart the agent"),
    ("unlock <pin> / lock", "when console.pin is set"),
)


class CmdError(Exception):
    pass


def is_secret(key):
    """A field holding a secret: a name in SECRET_KEYS, or any *_key / *password field (a
    secret added to the schema later is masked without a change here)."""
    return isinstance(key, str) and (key in SECRET_KEYS or key.endswith("_key")
                                     or key.endswith("password"))


def masked(v):
    """A copy of v with every secret field's value replaced (dicts and lists, recursively)."""
    if isinstance(v, dict):
        out = {}
        for k in v:
            out[k] = _MASK if is_secret(k) and v[k] is not None else masked(v[k])
        return out
    if isinstance(v, list):
        return [masked(x) for x in v]
    return v


def parse_path(path):
    """"mqtt.port", "points[0].address" or "points.0.address" -> ["mqtt", "port"] /
    ["points", 0, "address"]. CmdError names what is wrong."""
    if not path or len(path) > 96:
        raise CmdError("path: want section.field (e.g. mqtt.port), at most 96 characters")
    out = []
    for part in path.replace("[", ".").replace("]", "").split("."):
        if not part:
            raise CmdError("path %s: empty part (want e.g. points[0].address)" % path)
        if part.isdigit():
            out.append(int(part))
        else:
            for c in part:
                if not (c.isalpha() or c.isdigit() or c == "_" or c == "-"):
                    raise CmdError("path %s: %r is not allowed in a field name" % (path, c))
            out.append(part)
    return out


def path_text(parts):
    s = ""
    for p in parts:
        s += "[%d]" % p if isinstance(p, int) else ("." + p if s else p)
    return s


def lookup(obj, parts, path):
    for p in parts:
        if isinstance(p, int):
            if not isinstance(obj, list) or p >= len(obj):
                raise CmdError("%s: no such item (%s)" % (path, "list has %d" % len(obj)
                               if isinstance(obj, list) else "not a list"))
        elif not isinstance(obj, dict) or p not in obj:
            raise CmdError("%s: not set in the config%s" % (path, "" if isinstance(obj, dict)
                           else " (%s is not a section)" % p))
        obj = obj[p]
    return obj


def parse_value(text):
    """The value of `set`: JSON (numbers, true/false/null, "strings", [lists], {objects}),
    or a bare word taken as a string (set node.site plant2)."""
    t = text.strip()
    if not t:
        raise CmdError("set: value missing (set <path> <value>)")
    c = t[0]
    if c in "-0123456789[{\"" or t in ("true", "false", "null"):
        try:
            return json.loads(t)
        except (ValueError, TypeError):
            raise CmdError("value %s is not valid JSON (quote a string: \"...\")" % _short(t))
    return t


def _short(s):
    return s if len(s) <= 40 else s[:37] + "..."


def diff(old, new, parts=None, out=None):
    """[(path, old, new)] of every leaf that differs (None: absent), secrets masked."""
    parts = parts or []
    out = out if out is not None else []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            diff(old.get(k), new.get(k), parts + [k], out)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i in range(len(old)):
            diff(old[i], new[i], parts + [i], out)
    elif old != new or type(old) is not type(new):
        key = parts[-1] if parts else None
        if is_secret(key):
            out.append((path_text(parts), _MASK if old is not None else None,
                        _MASK if new is not None else None))
        else:
            out.append((path_text(parts), old, new))
    return out


class Console:
    """The console of one serial line. write(str) sends text; node: the node view
    (status(), points(), queue(), slaves(), log(), reboot(why), modbus_read(...)); store: the
    ConfigStore; clock: ticks_ms()/ticks_diff(); pin: the unlock PIN or None."""

    def __init__(self, write, node, store, clock, pin=None, line_max=LINE_MAX):
        self.write = write
        self.node = node
        self.store = store
        self.clock = clock
        self.pin = pin
        self.locked = bool(pin)
        self._fails = 0
        self._until = None  # ticks_ms when the lockout ends
        self._seen = clock.ticks_ms()  # the last line run (idle lock)
        self.buf = bytearray(line_max)
        self.n = 0
        self.over = False  # the line ran past the buffer
        self.bad = -1  # first refused byte of the line, -1: none
        self.json = False  # this line started with "@"
        self.hide = False  # echo * from here: the value of a `set` of a secret field
        self._st = _ST_TEXT
        self._cr = False  # last byte was CR: a following LF ends nothing
        self.pending = None  # (coroutine function, args) for the adapter to await
        self.lines = 0  # lines run (tests, status)

    # ---- line editing --------------------------------------------------------------------
    def feed(self, data):
        """Bytes from the serial line (any chunking). Runs every complete line."""
        for b in data:
            self.feed_byte(b)

    def feed_byte(self, b):
        cr = self._cr
        self._cr = False
        st = self._st
        if st != _ST_TEXT:
            if b == 0x0D or b == 0x0A or b == 0x03 or b == 0x1B:
                # a line end, Ctrl-C or ESC inside an unfinished sequence acts as itself (as
                # terminals do): a stray ESC must not swallow the Enter and the next @
                self._st = _ST_TEXT
            else:
                if st == _ST_ESC:
                    self._st = _ST_CSI if b == 0x5B or b == 0x4F else _ST_TEXT  # [ or O (SS3)
                elif 0x40 <= b <= 0x7E:
                    self._st = _ST_TEXT
                return
        if b == 0x0D or b == 0x0A:
            if b == 0x0A and cr:
                return
            self._cr = b == 0x0D
            self._end_line()
        elif b == 0x1B:
            self._st = _ST_ESC
        elif b == 0x08 or b == 0x7F:
            if self.n:
                self.n -= 1
                if not self.json:
                    self.write("\b \b")
                if self.n == 0:
                    self.json = False
        elif b == 0x15:  # Ctrl-U
            if not self.json:
                self.write("\b \b" * self.n)
            self._clear()
        elif b == 0x03:  # Ctrl-C
            if self.n or self.over or self.bad >= 0:
                js = self.json
                self._clear()
                self._reply(js, None, "line cancelled (Ctrl-C)") if js else \
                    self.write("^C\r\n" + _PROMPT)
            else:
                self.node.brk()
        elif 0x20 <= b < 0x7F:
            if self.n >= len(self.buf):
                self.over = True
                return
            if self.n == 0 and b == 0x40:
                self.json = True
            self.buf[self.n] = b
            self.n += 1
            if not self.json:
                self.write("*" if self.hide else chr(b))
                if b == 0x20 and not self.hide:
                    self.hide = self._secret_value()
        elif self.bad < 0:
            self.bad = b

    def _secret_value(self):
        """The line so far is `set [-f] <path> ` with a secret field's path: what follows is
        its value, echoed as * (a person's terminal shows what the console echoes)."""
        w = bytes(self.buf[:self.n]).split()
        if len(w) < 2 or w[0] != b"set":
            return False
        if w[1] == b"-f":
            w = w[1:]
        if len(w) != 2:
            return False
        p = w[1].replace(b"]", b"").replace(b"[", b".").split(b".")[-1]
        return is_secret(p.decode())

    def _clear(self):
        self.hide = False
        self.n = 0
        self.over = False
        self.bad = -1
        self.json = False

    def _end_line(self):
        js = self.json
        if not js:
            self.write("\r\n")
        if self.over:
            self._clear()
            self._reply(js, None, "line longer than %d bytes refused (nothing was changed)"
                        % len(self.buf))
            return
        if self.bad >= 0:
            b = self.bad
            self._clear()
            self._reply(js, None, "byte 0x%02x refused: the console takes printable ASCII "
                        "(nothing was changed)" % b)
            return
        line = self.buf[1 if js else 0:self.n].decode().strip()
        self._clear()
        if not line:
            if not js:
                self.write(_PROMPT)
            return
        self.lines += 1
        self.run_line(line, js)

    # ---- dispatch --------------------------------------------------------------------------
    def run_line(self, line, js=False):
        """Run one command line; the reply goes out through write()."""
        words = line.split(None, 1)
        cmd = words[0]
        rest = words[1] if len(words) > 1 else ""
        try:
            fn = _COMMANDS.get(cmd)
            if fn is None:
                raise CmdError("unknown command %s (type help)" % _short(cmd))
            now = self.clock.ticks_ms()
            if self.pin and self.clock.ticks_diff(now, self._seen) >= _IDLE_LOCK_MS:
                self.locked = True  # a technician who walked away
            self._seen = now
            if self.locked and cmd not in ("help", "unlock"):
                raise CmdError("console locked: unlock <PIN> first")
            data = fn(self, rest)
        except CmdError as e:
            self.store.release()
            self._reply(js, None, e.args[0])
            return
        except MemoryError:
            self._reply(js, None, "out of memory running %s (nothing was changed)" % cmd)
            return
        except Exception as e:  # a command must never cost the session or the agent
            self._reply(js, None, "%s failed: %s %s" % (cmd, type(e).__name__, _short(
                str(e))))
            return
        if data is _ASYNC:  # the adapter awaits self.pending and calls done()
            self._js = js
            return
        self._reply(js, data, None)
        data = None
        self.store.release()

    def done(self, data, err=None):
        """The result of a pending (awaited) command."""
        self.pending = None
        self._reply(self._js, data, err)

    def _reply(self, js, data, err):
        try:
            self._send(js, data, err)
        except MemoryError:  # a reply too big for the heap: say so, the session goes on
            data = None
            self.write(('@{"ok": false, "error": "out of memory writing the reply"}\r\n' if js
                        else "error: out of memory writing the reply\r\n" + _PROMPT))

    def _send(self, js, data, err):
        if js:
            if err is None:
                self.write("@" + json.dumps({"ok": True, "data": masked(data)}) + "\r\n")
            else:
                self.write("@" + json.dumps({"ok": False, "error": err}) + "\r\n")
            return
        if err is not None:
            self.write("error: " + err + "\r\n" + _PROMPT)
            return
        self.write(render(masked(data)) + _PROMPT)

    # ---- commands ------------------------------------------------------------------------
    def c_help(self, rest):
        return "\r\n".join("  %-28s %s" % h for h in HELP)

    def c_status(self, rest):
        st = self.node.status()
        st["config_hash"] = self.store.running_hash
        st["config"] = self.store.state_text()
        st["config_state"] = self.store.state()
        st["staged_changes"] = len(self.store.changes())
        st["console"] = "locked" if self.locked else "unlocked" if self.pin else "open"
        return st

    def c_show(self, rest):
        what = rest.strip()
        if what == "config":
            return self.store.current()
        if what == "points":
            return self.node.points()
        if what == "queue":
            return self.node.queue()
        if what == "slaves":
            return self.node.slaves()
        if what == "log":
            return self.node.log()
        raise CmdError("show what? config, points, queue, slaves or log")

    def c_get(self, rest):
        path = rest.strip()
        parts = parse_path(path)
        v = lookup(self.store.current(), parts, path)
        return _MASK if is_secret(parts[-1]) and v is not None else v

    def c_set(self, rest):
        force, rest = _force(rest)
        words = rest.split(None, 1)
        if len(words) < 2:
            raise CmdError("set <path> <value>, e.g. set mqtt.port 1883")
        parts = parse_path(words[0])
        try:
            value = parse_value(words[1])
        except CmdError:
            if is_secret(parts[-1]):  # never repeat a secret, even a malformed one
                raise CmdError("value of %s is not valid JSON" % words[0])
            raise
        return self.store.set(parts, words[0], value, force)

    def c_unset(self, rest):
        force, path = _force(rest)
        return self.store.unset(parse_path(path), path, force)

    def c_diff(self, rest):
        return ["%s: %s -> %s" % (p, _j(a), _j(b)) for p, a, b in self.store.changes()] \
            or "no staged changes"

    def c_validate(self, rest):
        errs = self.store.validate()
        if errs:
            raise CmdError("%d config error(s): %s" % (len(errs), "; ".join(
                "%s: %s" % e for e in errs)))
        return "ok (%s config)" % ("staged" if self.store.staged is not None else "running")

    def c_commit(self, rest):
        h = self.store.commit()  # raises CmdError naming every error; nothing written then
        self.node.reboot("commit")
        return "committed config %s; rebooting into it (rolled back by itself unless a poll " \
               "or publish succeeds within %d s)" % (h, self.store.check_s)

    def c_rollback(self, rest):
        what = self.store.rollback()
        if what == "staged":
            return "staged changes dropped"
        self.node.reboot("rollback")
        return "restored the previous config %s; rebooting into it" % what

    def c_reboot(self, rest):
        self.node.reboot("console")
        return "rebooting"

    def c_modbus(self, rest):
        w = rest.split()
        if len(w) < 5 or w[0] != "read":
            raise CmdError("modbus read <slave> <table> <addr> <count> [type order]")
        nums = []
        for name, s, lo, hi in (("slave", w[1], 1, 247), ("addr", w[3], 0, 65535),
                                ("count", w[4], 1, 125)):
            if not s.isdigit() or not lo <= int(s) <= hi:
                raise CmdError("modbus read: %s must be %d..%d, got %s" % (name, lo, hi,
                                                                            _short(s)))
            nums.append(int(s))
        if w[2] not in ("holding", "input", "coil", "discrete"):
            raise CmdError("modbus read: table must be holding, input, coil or discrete")
        if nums[1] + nums[2] > 65536:
            raise CmdError("modbus read: addr + count past 65535")
        typ = w[5] if len(w) > 5 else None
        order = w[6] if len(w) > 6 else "ABCD"
        if typ is not None:
            from otlink.core.points import ORDERS, TYPES

            if typ not in TYPES:
                raise CmdError("modbus read: type must be one of %s" % ", ".join(TYPES))
            if order not in ORDERS:
                raise CmdError("modbus read: order must be one of %s" % ", ".join(ORDERS))
        self.pending = (self.node.modbus_read, (nums[0], w[2], nums[1], nums[2], typ, order))
        return _ASYNC

    def c_unlock(self, rest):
        if not self.pin:
            return "no PIN configured (console.pin)"
        now = self.clock.ticks_ms()
        if self._until is not None:
            left = self.clock.ticks_diff(self._until, now)
            if left > 0:
                raise CmdError("locked out: try again in %d s" % ((left + 999) // 1000))
            self._until = None
        given = rest.strip()
        if _same(given, self.pin):
            self.locked = False
            self._fails = 0
            return "unlocked"
        self._fails += 1
        if self._fails >= _PIN_TRIES:
            s = _LOCK_FIRST_S << min(self._fails - _PIN_TRIES, 10)
            s = min(s, _LOCK_MAX_S)
            self._until = self.clock.ticks_add(now, s * 1000)
            raise CmdError("wrong PIN (%d failed): locked out for %d s" % (self._fails, s))
        raise CmdError("wrong PIN (%d of %d tries before a lockout)" % (self._fails,
                                                                        _PIN_TRIES))

    def c_lock(self, rest):
        if not self.pin:
            raise CmdError("no PIN configured (console.pin)")
        self.locked = True
        return "locked"


_ASYNC = object()


def _force(rest):
    """`set -f` / `unset -f`: stage without the per-change check (otlink config push stages a
    whole file change by change; commit still validates the result)."""
    rest = rest.strip()
    if rest.startswith("-f ") or rest == "-f":
        return True, rest[2:].strip()
    return False, rest


def _same(a, b):
    """PIN comparison in time independent of where they differ."""
    a = a.encode()
    b = b.encode()
    d = len(a) ^ len(b)
    for i in range(len(b)):
        d |= (a[i] if i < len(a) else 0) ^ b[i]
    return d == 0


def _j(v):
    return "(absent)" if v is None else json.dumps(v)


def render(v):
    """Text of a reply for a person: a string as it is, a dict as `key: value` lines, a list
    one item a line; every line ends in CR LF (the terminal may be raw)."""
    if isinstance(v, str):
        return v + "\r\n"
    if isinstance(v, dict):
        return "".join("%s: %s\r\n" % (k, v[k] if isinstance(v[k], str) else json.dumps(v[k]))
                       for k in sorted(v))
    if isinstance(v, list):
        return "".join((x if isinstance(x, str) else json.dumps(x)) + "\r\n" for x in v)
    return json.dumps(v) + "\r\n"


_COMMANDS = {
    "help": Console.c_help, "status": Console.c_status, "show": Console.c_show,
    "get": Console.c_get, "set": Console.c_set, "unset": Console.c_unset,
    "diff": Console.c_diff, "validate": Console.c_validate, "commit": Console.c_commit,
    "rollback": Console.c_rollback, "reboot": Console.c_reboot, "modbus": Console.c_modbus,
    "unlock": Console.c_unlock, "lock": Console.c_lock,
}
