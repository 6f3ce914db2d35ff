# The console on a live agent: the stream adapter (the serial line polled with select.poll,
# a byte at a time while bytes wait, never blocking the event loop), the node view the
# console core asks (console.py), and the trial after a commit (console_config.py).
# app.main calls start(); nothing here runs unless the console or a trial is on.
import asyncio
import select
import sys

from otlink.core.compat import const

_IDLE_MS = const(20)  # poll period of the serial line while nothing arrives
_BURST = const(64)  # bytes taken per turn of the loop before yielding
_LOG_KEEP = const(10)  # log lines kept for `show log` (each cut to _LOG_LEN)
_LOG_LEN = const(120)
_HEALTH_MS = const(500)


class NodeView:
    """What the console shows of a running App."""

    def __init__(self, app, on_board):
        self.app = app
        self.on_board = on_board
        self.lines = []

    def add_log(self, line):
        self.lines.append(line[:_LOG_LEN])
        if len(self.lines) > _LOG_KEEP:
            self.lines.pop(0)

    def status(self):
        from otlink import VERSION

        a = self.app
        c = a.cfg
        up = a.uplink
        st = {"node": "%s/%s" % (c["node"]["site"], c["node"]["id"]), "fw": VERSION,
              "boot": a.queue.boot, "uptime_s": a.clock.uptime_ms() // 1000,
              "points": a.npoints, "queue_depth": a.queue.depth(),
              "uplink": "connected" if up.connected else "down (%s)" % (up.last_error or
                                                                          "connecting"),
              "broker": "%s:%d" % (c["mqtt"]["host"], c["mqtt"]["port"]),
              "published_batches": a.publisher.batches, "task_errors": a.task_errors,
              "free_heap": a.board.free_heap()}
        if a.poller is not None:
            st["bus_errors"] = a.poller.bus_errors
            st["poll_cycles"] = a.poller.cycles
        return st

    def points(self):
        from otlink.core.errors import ERR_TIMEOUT  # noqa: F401  (codes: docs/payload.md)
        from otlink.core.points import TYPES

        pts = self.app.cfg["points"]
        out = []
        for i in range(len(pts)):
            out.append("%d %s %s %s %s last_error=%d" % (
                pts.id(i), pts.name(i), pts.source(i), TYPES[pts.type(i)],
                pts.unit(i) or "-", pts.err(i)))
        for s in self.app.cfg["sensors"]:
            for p in s["points"]:
                out.append("%d %s %s:%s:0x%02x:%s %s" % (p["id"], p["name"], s["driver"],
                                                          s["bus"], s["address"], p["channel"],
                                                          p["unit"]))
        return out or "no points"

    def queue(self):
        return self.app.queue.stats()

    def slaves(self):
        p = self.app.poller
        if p is None:
            return "no Modbus points configured"
        st = p.stats()
        out = {}
        for k in st:
            out[str(k)] = st[k]
        return out

    def log(self):
        return list(self.lines) or "no log lines yet"

    def reboot(self, why):
        self.app.request_reboot(why)

    def brk(self):
        if self.on_board:
            raise KeyboardInterrupt  # Ctrl-C on an empty line: the agent stops, the REPL runs
        # the Unix port: `otlink node run` stops the agent (Ctrl-C in its terminal)

    async def modbus_read(self, slave, table, addr, count, typ, order):
        p = self.app.poller
        if p is None:
            from otlink.console import CmdError

            raise CmdError("no Modbus bus: configure serial and points first")
        code, regs = await p.read(slave, table, addr, count)
        if code:
            from otlink.core.modbus import error_name

            return {"error": code, "text": error_name(code)}
        out = {"values": regs}
        if typ is not None:
            out["decoded"] = _decode(regs, typ, order)
        return out


def _decode(regs, typ, order):
    """The registers read as one value of typ in order (commissioning: compare with the
    device's display)."""
    from otlink.core.points import ORDERS, TYPES, WORDS
    import struct

    t = TYPES.index(typ)
    n = WORDS[t] if t < len(WORDS) else 1
    if len(regs) < n:
        return "%s needs %d registers" % (typ, n)
    raw = bytearray(2 * n)
    for i in range(n):
        raw[2 * i] = regs[i] >> 8
        raw[2 * i + 1] = regs[i] & 0xFF
    o = ORDERS.index(order)
    if o & 1:  # word swap (CDAB, DCBA)
        w = bytearray(raw)
        for i in range(n):
            j = n - 1 - i
            w[2 * i] = raw[2 * j]
            w[2 * i + 1] = raw[2 * j + 1]
        raw = w
    if o & 2:  # byte swap within each word (BADC, DCBA)
        for i in range(n):
            raw[2 * i], raw[2 * i + 1] = raw[2 * i + 1], raw[2 * i]
    fmt = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
           "int64": ">q", "uint64": ">Q", "float64": ">d"}.get(typ)
    if fmt is None:
        return "decode %s: see the point table" % typ
    return struct.unpack(fmt, raw)[0]


async def serve(console, stream, stop):
    """Feed the console from stream (select.poll, never blocking) until stop() or EOF."""
    p = select.poll()
    p.register(stream, select.POLLIN)
    rd = getattr(stream, "buffer", stream)
    one = bytearray(1)
    while not stop():
        n = 0
        while n < _BURST and console.pending is None:
            ev = p.poll(0)
            if not ev:
                break
            if not rd.readinto(one):
                return  # the line closed (the Unix port's stdin at EOF)
            console.feed_byte(one[0])
            n += 1
        if console.pending is not None:
            fn, args = console.pending
            try:
                data = await fn(*args)
                console.done(data)
            except Exception as e:
                console.done(None, "%s: %s" % (type(e).__name__, e))
        await asyncio.sleep_ms(0 if n else _IDLE_MS)


def healthy(app):
    """A poll or a publish succeeded since boot."""
    if app.publisher.batches:
        return True
    p = app.poller
    if p is not None:
        st = p.stats()
        for k in st:
            v = st[k]
            if isinstance(v, dict) and v.get("ok"):
                return True
    return False


async def trial(app, store, log):
    """After a commit: confirm the config at the first success, or roll it back."""
    from otlink import console_config as cc

    clock = app.clock
    t0 = clock.ticks_ms()
    while True:
        await asyncio.sleep_ms(_HEALTH_MS)
        if healthy(app):
            cc.confirm(store.path)
            store.trial = None
            app.config_state = store.state()
            log("config %s confirmed: a poll or publish succeeded" % store.running_hash)
            return
        if clock.ticks_diff(clock.ticks_ms(), t0) >= store.check_s * 1000:
            cc.auto_rollback(store.path, "no successful poll or publish within %d s after "
                             "commit" % store.check_s, log)
            store.trial = None
            app.config_state = "rolled_back"
            app.request_reboot("config rolled back")
            return


def start(app, path, cfg_hash, trial_rec, console_on, on_board, log_hook, log):
    """Wire the console and the trial into app (before app.run()). log_hook(fn): app.log
    hands each line to fn too (`show log`); log: the agent's log line."""
    from otlink.console_config import ConfigStore

    c = app.cfg.get("console") or {}
    store = ConfigStore(path, cfg_hash, c.get("commit_check_s", 600), trial_rec)
    app.config_state = store.state()
    if trial_rec is not None:
        app.tasks.append(("trial", lambda: trial(app, store, log)))
    if not console_on:
        return store
    from otlink.console import Console

    view = NodeView(app, on_board)
    log_hook(view.add_log)
    out = sys.stdout

    def write(s):
        out.write(s)

    con = Console(write, view, store, app.clock, c.get("pin"))
    if on_board:
        import micropython

        micropython.kbd_intr(-1)  # Ctrl-C reaches the console (an empty line's is the break)
    app.tasks.append(("console", lambda: serve(con, sys.stdin, lambda: app.reboot is not None)))
    if store.note is not None:
        log("config was rolled back: %s" % store.note.get("reason"))
    log("console ready on the serial line (type help)%s" % (
        ", locked: unlock <PIN>" if con.locked else ""))
    return store
