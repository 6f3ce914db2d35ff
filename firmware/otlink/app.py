# Wiring: the one module that knows every layer. Builds the board HAL, the flash queue,
# the sources (Modbus poller, sensors), the uplink and the publisher from the validated
# config, then runs them as asyncio tasks under one supervisor.
#
#   sources --reading record--> Queue (flash, group commit) --batches--> Publisher
#     --CBOR--> Uplink (umqtt.simple, QoS1) --> broker ; ack (PUBACK or consumer) --> Queue.ack
import asyncio
import gc
import sys

from otlink import VERSION
from otlink.core.compat import const
from otlink.core.queue import codec as queue_codec

_DEBUG = False
_BOOT_GC = const(2048)  # bytes allocated between collections while booting (main)
_RUN_GC = const(4096)  # bytes allocated between collections while running (main)
_POINT_ERRORS_MAX = const(32)  # state message: at most this many points in error listed
_HEALTHY_MS = const(30000)  # every task alive this long: the boot was good (bootguard.py)
_DEAD_AFTER = const(3)  # failures in a row that make a task dead (watchdog starves)
_RAN_MS = const(10000)  # a run this long breaks a run of failures
CRASHED = const(70)  # main()'s status after an uncaught exception (app.boot)
_HOLD = const(8)  # readings of other tasks held while the poller waits for an answer
_PUBLISH_HEAD = const(160)  # MQTT PUBLISH head: 5 fixed + 2 + topic (<= 150) + 2 packet id


REBOOT = const(75)  # main()'s status when the agent asks for a restart (no board reset)
_log_hook = None  # console_io: `show log` keeps the recent lines


def log(*a):
    print("otlink:", *a)
    if _log_hook is not None:
        _log_hook(" ".join([str(x) for x in a]))


def _set_log_hook(fn):
    global _log_hook
    _log_hook = fn


def make_board(cfg, args):
    name = args.get("board") or cfg["board"]
    if name == "unix":
        from otlink.hal.unix import board as unix

        state = args.get("state") or "state"
        image = cfg["flash"]["image"] or (state + "/flash.img")
        return unix.Board(unix.load_board("unix", args.get("boards") or "boards"), image,
                          stop_file=state + "/stop")
    # a board: its file (/boards/<name>.json, deployed with the firmware) names its port HAL
    from otlink.hal.machine_board import load_board

    defn = load_board(name)
    if defn["hal"] == "esp32":
        from otlink.hal import esp32

        return esp32.Board(cfg, defn)
    if defn["hal"] == "rp2":
        from otlink.hal import rp2

        return rp2.Board(cfg, defn)
    raise ValueError("board %r: unknown hal %r" % (name, defn["hal"]))


def birth_rows(cfg):
    """The point table the birth message carries, one row at a time: (id, name, unit, type,
    scale, offset, source), what a consumer needs to read values. A generator: the table is
    streamed from the validated config into the encoder, never built as a list."""
    from otlink.core.points import TYPES
    from otlink.sensors import driver_scale, source

    pts = cfg["points"]  # a Points table (core/points.py): rows read by index
    for i in range(len(pts)):
        yield (pts.id(i), pts.name(i), pts.unit(i) or "", TYPES[pts.type(i)], pts.scale(i),
               pts.offset(i), pts.source(i))
    if cfg.get("analytics"):  # derived and event points (docs/analytics.md)
        from otlink.analytics import derived_rows

        for r in derived_rows(cfg):
            yield r
    for s in cfg["sensors"]:
        for p in s["points"]:
            typ, sc, off = driver_scale(s, p)
            yield (p["id"], p["name"], p["unit"], typ, sc, off, source(s, p))


def birth_points(cfg):
    """The birth point table as dicts (tools and tests; the agent streams birth_rows)."""
    keys = ("id", "name", "unit", "type", "scale", "offset", "source")
    return [dict(zip(keys, r)) for r in birth_rows(cfg)]


def encode_birth(cfg, cfg_hash, boot, sec=None):
    """The birth message, encoded once for the agent's life (re-published, retained, at every
    connect): one bytes object of its exact size. The rows are streamed into a buffer sized
    by birth_bound() and copied out, so the heap holds no list or dict of the point table."""
    from otlink.core.payload import birth_bound, encode_birth_rows

    node = cfg["node"]["id"]
    n = len(cfg["points"]) + sum([len(s["points"]) for s in cfg["sensors"]])
    if cfg.get("analytics"):
        from otlink.analytics import derived_count

        n += derived_count(cfg)
    buf = bytearray(birth_bound(node, VERSION, cfg_hash, birth_rows(cfg), sec))
    used = encode_birth_rows(buf, node, VERSION, cfg_hash, boot, n, birth_rows(cfg), None, sec)
    return bytes(memoryview(buf)[:used]), n


def heap_figures():
    """(used, free, largest free block) of the heap in bytes, after a collection. The largest
    block is found by halving trial allocations (a failed one costs a collection): boot
    reports and tests only, never a hot path."""
    gc.collect()
    used = gc.mem_alloc()
    free = gc.mem_free()
    lo = _probe(free)
    # The collector scans the stack and registers conservatively: a stale copy of the last
    # probe's address would keep KiBs alive. Small allocations overwrite it before collecting.
    for _ in range(4):
        bytearray(16)
    gc.collect()
    return used, free, lo


def _probe(free):
    lo = 0
    hi = free + 1
    while hi - lo > 16:
        m = (lo + hi) // 2
        gc.collect()
        try:
            bytearray(m)
            lo = m
        except MemoryError:
            hi = m
    return lo


class App:
    def __init__(self, cfg, cfg_hash, board, stage=None, safe=None):
        # Boot order matters as much as totals in a small heap: what lives for the agent's
        # life is built in stages with a collection between them (the garbage of one stage
        # does not fragment the next), and the biggest long-lived buffers come first.
        # stage(name), when given, is called after each (main's --heap-trace).
        from otlink.core.queue import Queue

        self.cfg = cfg
        self.board = board
        self.trace = False  # log heap figures while running (main's --trace heap)
        clock = self.clock = board.clock
        stage = stage or _collect
        qc = cfg["queue"]
        kw = {"commit_count": qc["commit_count"], "commit_ms": qc["commit_ms"],
              "policy": qc["policy"], "prog_size": board.prog_size()}
        if qc["capacity"]:
            kw["capacity"] = qc["capacity"]
        self.queue = Queue(board.queue_device(), clock, **kw)
        stage("queue")
        from otlink.uplink import Uplink
        from otlink.publisher import Publisher

        from otlink import posture

        # the security posture the birth carries; insecure options repeated in every state
        self.insecure = posture.insecure(cfg)
        if self.insecure:
            log("insecure options in force: %s (docs/security.md)" % self.insecure)
        birth, self.npoints = encode_birth(cfg, cfg_hash, self.queue.boot,
                                           posture.posture(cfg, cfg_hash,
                                                           posture.firmware_hash()))
        del posture
        sys.modules.pop("otlink.posture", None)  # used once: its globals leave the heap
        try:
            delattr(sys.modules["otlink"], "posture")
        except (KeyError, AttributeError):
            pass
        stage("birth")
        # the write-coalescing buffer holds one data PUBLISH (batch + fixed header, topic,
        # packet id): one segment per batch, without the default's spare KiB
        self.uplink = Uplink(cfg["mqtt"], cfg["node"], clock,
                             out_size=cfg["mqtt"]["batch_bytes"] + _PUBLISH_HEAD,
                             resolver=board.resolver())
        stage("uplink")
        self.publisher = Publisher(self.queue, self.uplink, clock, cfg["mqtt"], birth,
                                   self.state)
        birth = None  # the publisher holds it, once
        stage("publisher")
        self.tasks = []
        self.task_errors = 0
        self.reboot = None  # why the agent restarts (request_reboot), None while it runs
        self.halted = False  # the host asked it to stop (request_stop)
        self.config_state = "ok"  # ok, trial, rolled_back (console_config.py)
        self._live = []
        # safe mode (bootguard.py): why, when the node boots with console and network only
        self.safe = safe
        self.guard = None  # the boot guard, told once the agent runs healthy (main)
        self.dead = []  # tasks that keep failing: the watchdog is no longer fed
        self.poller = None
        if cfg["points"] and safe is None:
            from otlink.modbus_poller import Poller

            uart = board.uart(cfg["serial"])
            self.poller = Poller(uart, clock, cfg["serial"], cfg["points"], self.sink)
            self.tasks.append(("modbus", self.poller.run))
            stage("poller")
        self.sensors = []
        if cfg["sensors"] and safe is None:
            from otlink.sensors import SensorTask, make_driver

            for s in cfg["sensors"]:
                t = SensorTask(s, make_driver(s, board, clock), clock, self.sink,
                               cfg["groups"][s["group"]]["interval_ms"])
                self.sensors.append(t)
                self.tasks.append(("sensor:" + s["name"], t.run))
                if t.watches:  # a driver with events (digital inputs): their own task
                    self.tasks.append(("sensor:" + s["name"] + ":events", t.watch_task))
            stage("sensors")
        self.tasks.append(("publisher", self.publisher.run))
        self.commands = None
        # The cmd topic is off (not even subscribed) unless points are writable; writes go
        # through the poller's bus slot
        if self.poller is not None and cfg["commands"]["writable"]:
            from otlink.commands import Commands, Counter

            cc = cfg["commands"]
            mac = counter = None
            if cc["key"]:  # signed commands (docs/security.md); without a key all refused
                from otlink.core.auth import Hmac, parse_key

                mac = Hmac(parse_key(cc["key"]))
                counter = Counter(getattr(board, "mount_point", "") + "/cmd_counter")
            self.commands = Commands(self.uplink, self.poller, cfg["points"], cc["writable"],
                                     log, mac, counter, cc["limits"])
            self.uplink.on_cmd = self.commands.on_msg
            self.tasks.append(("commands", self.commands.run))
            stage("commands")
        self.analytics = None
        if cfg.get("analytics") and safe is None:  # windows, alarms, states, counters
            from otlink.analytics import Analytics

            self.analytics = Analytics(cfg, clock, self._append,
                                       getattr(board, "mount_point", "") + "/counters.bin",
                                       board)
            self.tasks.append(("analytics", self.analytics.run))
            self.tasks.extend(self.analytics.tasks)  # accelerometer bursts
            stage("analytics")
        self.tasks.append(("queue", self._commit_loop))
        self.tasks.append(("network", self._network_loop))
        # readings of other tasks (sensors, the analytics' timers) that arrive while the
        # poller waits for an answer are held here (numeric records: reading.SIZE bytes)
        self._held = None
        self._held_len = None
        self._nheld = 0
        if self.poller is not None and (self.sensors or self.analytics is not None):
            from otlink.core.reading import SIZE

            h = self._held = bytearray(_HOLD * SIZE)
            self._held_len = bytearray(_HOLD)
            self._held_mv = [memoryview(h)[k * SIZE:(k + 1) * SIZE] for k in range(_HOLD)]

    def sink(self, rec, n):
        """Every source hands its readings here: into the flash queue, no allocation (the
        analytics first, when configured: windows, alarms, states; raw kept or not)."""
        a = self.analytics
        if a is None or a.feed(rec, n):
            self._append(rec, n)

    def _append(self, rec, n):
        # An append may commit a group or erase a sector: flash work that must not fall
        # between a Modbus request and its answer (docs/boards.md, "RS-485 direction
        # timing"). The poller hands in readings only between transactions; a reading from
        # another task while the poller is on the wire is held (up to _HOLD) and goes in
        # first when the poller next hands in readings, or at the commit loop's next turn.
        # Does not allocate.
        h = self._held
        if h is not None:
            if self.poller.on_wire:
                k = self._nheld
                if k < _HOLD and n <= len(self._held_mv[0]):
                    o = k * len(self._held_mv[0])
                    for i in range(n):
                        h[o + i] = rec[i]
                    self._held_len[k] = n
                    self._nheld = k + 1
                    return
            elif self._nheld:
                self._release()
        self.queue.append(rec, n)

    def _release(self):
        n = self._nheld
        self._nheld = 0
        for k in range(n):
            self.queue.append(self._held_mv[k], self._held_len[k])

    async def _commit_loop(self):
        # Group commit by time: at most commit_ms of readings are ever at risk.
        # Also feeds the watchdog: if the event loop stops turning, the board resets and the
        # queue recovers on boot, rather than the node hanging silently.
        period = self.cfg["queue"]["commit_ms"] // 4 or 10
        if period > 1000:
            period = 1000
        self.board.watchdog_start()  # armed by main already; here for Apps run without it
        clock = self.clock
        t0 = clock.ticks_ms()
        while True:
            p = self.poller
            if p is None or not p.on_wire:  # no flash work between a request and its answer
                if self._nheld:
                    self._release()
                self.queue.tick(clock.ticks_ms())
            # fed from the loop only while every task is alive: a task that keeps failing
            # stops the feeding and the board resets (counted by the boot guard)
            if not self.dead:
                self.board.watchdog_feed()
                g = self.guard
                if g is not None and not g.marked and \
                        clock.ticks_diff(clock.ticks_ms(), t0) >= _HEALTHY_MS:
                    g.healthy()
            if self.board.stop_requested():
                self.request_stop()
                return
            await asyncio.sleep_ms(period)

    async def _network_loop(self):
        # Keep the link up and the wall clock set. Nothing here waits without a bound:
        # WiFi joins in the background, NTP has its own 1 s socket timeout.
        board = self.board
        said = None
        bus_said = 0
        traced = self.clock.ticks_ms()
        while True:
            if self.trace and self.clock.ticks_diff(self.clock.ticks_ms(), traced) >= 10000:
                traced = self.clock.ticks_ms()
                log("heap running: used %d free %d largest %d" % heap_figures())
            err = self.uplink.last_error
            if err is not None and not self.uplink.ever_connected and \
                    self.cfg["mqtt"]["user"] is None and (
                        err.endswith("bad user name or password") or
                        err.endswith("not authorised")):
                # the broker takes no anonymous node: without credentials there is nothing
                # to retry (docs/security.md); the agent stops instead of knocking forever
                log("uplink: %s: the broker requires credentials and mqtt.user/mqtt.password "
                    "are not configured: not starting (docs/security.md)" % err)
                raise SystemExit(4)
            if err is not None and err != said and not self.uplink.connected:
                log("uplink: %s (retrying with backoff)" % err)  # never carries secrets
            elif said is not None and self.uplink.connected:
                log("uplink: connected again")
            said = err if not self.uplink.connected else None
            p = self.poller
            if p is not None and p.bus_errors != bus_said:
                # the port itself fails (USB adapter unplugged?): say so, at most once a
                # second, with how often; the points report error 8 meanwhile
                log("modbus: serial port %s failed %d times: %r" % (
                    self.cfg["serial"]["port"] or "(board UART)", p.bus_errors,
                    p.last_bus_error))
                bus_said = p.bus_errors
            if not board.network_ok():
                board.network_start(self.cfg["wifi"])
            elif not self.clock.is_set():
                board.sync_time()
            await asyncio.sleep_ms(1000 if board.network_ok() else 5000)

    def state(self):
        """Fields of the state/health message."""
        # what only the app knows; the publisher adds queue, clock and session fields
        st = {"free_heap": self.board.free_heap(), "reset_cause": self.board.reset_cause(),
              "task_errors": self.task_errors, "config": self.config_state}
        if self.safe is not None:
            st["safe_mode"] = self.safe
        if self.insecure:
            st["insecure"] = self.insecure
        if self.commands is not None:
            st["cmd_forged"] = self.commands.forged
            st["cmd_replayed"] = self.commands.replayed
        if self.poller is not None:
            st["slaves"] = self.poller.stats()
            st["bus_errors"] = self.poller.bus_errors
            # points whose last report is an error, so that a consumer started after the
            # error began learns of it from the retained state (the error is sent once)
            pts = self.cfg["points"]
            pe = {}
            for i in range(len(pts)):
                e = pts.err(i)
                if e > 0:
                    pe[pts.id(i)] = e
                    if len(pe) >= _POINT_ERRORS_MAX:
                        break
            st["point_errors"] = pe
        if self.sensors:
            st["sensor_errors"] = sum(s.errors for s in self.sensors)
        return st

    async def _supervise(self, name, fn):
        # A crashed task is reported, counted and restarted after a pause: one bad
        # component never stops the node.
        # A task that fails _DEAD_AFTER times in a row, none of its runs lasting _RAN_MS, is
        # dead: the watchdog stops being fed (_commit_loop) and the board resets.
        pause = 1000
        clock = self.clock
        fails = 0
        while True:
            t0 = clock.ticks_ms()
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the one place that catches everything
                self.task_errors += 1
                log("task %s failed:" % name)
                sys.print_exception(e)
                fails = fails + 1 if clock.ticks_diff(clock.ticks_ms(), t0) < _RAN_MS else 1
                if fails >= _DEAD_AFTER and name not in self.dead:
                    self.dead.append(name)
                    log("task %s keeps failing: watchdog no longer fed, the board resets"
                        % name)
                await asyncio.sleep_ms(pause)
                pause = min(pause * 2, 60000)

    async def run(self):
        # One task each, then wait until they have all ended (they run for the node's life).
        # Not asyncio.gather: it lives in asyncio/funcs.py, a module the heap would carry.
        live = self._live = [asyncio.create_task(self._supervise(n, f)) for n, f in self.tasks]
        for t in live:
            try:
                await t
            except asyncio.CancelledError:
                if self.reboot is None and not self.halted:
                    raise

    def request_stop(self):
        """Stop every task (the caller's own returns by itself) so run() returns and main()
        stops the agent cleanly: the host's stop request (Board.stop_requested)."""
        self.halted = True
        self._cancel_others()

    def request_reboot(self, why):
        """Stop every task (the caller's own returns by itself) so main() restarts the node:
        a commit, a rollback, the console's reboot."""
        self.reboot = why
        self._cancel_others()

    def _cancel_others(self):
        me = asyncio.current_task()
        for t in self._live:
            if t is not me:
                t.cancel()

    def close(self):
        for t in self.sensors:  # drivers that keep state save it (a pulse total)
            try:
                if hasattr(t.drv, "close"):
                    t.drv.close()
            except Exception:
                pass
        try:
            if self.analytics is not None:
                self.analytics.save()
            self.queue.commit()
        except Exception:
            pass
        try:
            # the stopped state (online false, stopped true), then DISCONNECT: a clean
            # DISCONNECT drops the will, so without it the node would stay "online"
            self.publisher.stop()
        except Exception:
            try:
                self.uplink.close()
            except Exception:
                pass


def _collect(name):
    gc.collect()


def _out_of_memory(what):
    # A raw MemoryError traceback would leave a board at the REPL with no hint: say what
    # ran out and what to do (docs/config.md, "How many points fit").
    heap = (gc.mem_free() + gc.mem_alloc()) // 1024
    return ("otlink: out of memory at boot while %s in a %d KiB heap: on the Unix port give "
            "`otlink node run` a bigger --heap (e.g. --heap %dK); on a board configure fewer "
            "points (docs/config.md, \"How many points fit\")" % (what, heap, 2 * heap))


def _config_op(name, *a):
    """console_config.<name>(*a, log), the module dropped again afterwards (it stays only
    when the console or a trial needs it): on the Unix port its bytecode takes heap."""
    had = "otlink.console_config" in sys.modules
    from otlink import console_config

    try:
        return getattr(console_config, name)(*(a + (log,)))
    finally:
        console_config = None
        if not had:
            sys.modules.pop("otlink.console_config", None)
            pkg = sys.modules.get("otlink")
            if pkg is not None and hasattr(pkg, "console_config"):
                delattr(pkg, "console_config")


def read_config(path):
    """(validated config, hash of the file), or (None, exit status) after printing every
    error. Validated once: the schema module is then dropped, since on the Unix port its
    bytecode holds ~25 KiB of the heap (a board's is frozen in flash)."""
    from otlink.core import config as config_mod

    try:
        # Neither pass holds the file's text (KiBs on a board): the hash reads it in chunks,
        # the JSON parser from the stream.
        with open(path, "rb") as f:
            cfg_hash = config_mod.config_hash(f)
        gc.collect()
        with open(path) as f:
            cfg = config_mod.load_stream(f)
        return cfg, cfg_hash
    except OSError as e:
        print("otlink: cannot read config %s: %s" % (path, e))
        return None, 2
    except config_mod.ConfigError as e:
        for err in config_mod.errors_of(e):  # every wrong field, one line each
            print("otlink: %s: %s" % (path, err))
        return None, 2
    except MemoryError as e:
        what = e.args[0] if e.args else ""
        gc.collect()
        print(_out_of_memory(what if what.startswith("validating") else "reading the config"))
        return None, 3
    finally:
        del config_mod
        sys.modules.pop("otlink.core.config", None)
        sys.modules.pop("otlink.core.config_analytics", None)  # its analytics section
        core = sys.modules.get("otlink.core")
        if core is not None and hasattr(core, "config"):
            delattr(core, "config")


def main(args):
    # args["trace"] == "heap": log the heap (used, free, largest free block) after each boot
    # stage and every 10 s while running (tests size the heap budget from these lines)
    trace = args.get("trace") == "heap"

    def stage(name):
        if trace:
            log("heap %s: used %d free %d largest %d" % ((name,) + heap_figures()))
        else:
            gc.collect()

    # While booting, collect after every _BOOT_GC bytes allocated: the config parse and the
    # builders make KiBs of short-lived garbage, and without collections the heap fills to its
    # top before the first one, leaving the long-lived objects spread over all of it (the
    # largest free block then a few KiB however much is free). Collected often, what lives
    # stays packed at the bottom and the free space stays one block.
    gc.threshold(_BOOT_GC)
    stage("start")
    from otlink import bootguard

    state = args.get("state") or ""
    guard = bootguard.BootGuard(state + "/otlink_boots")
    # a power cut is no crash: only resets count (bootguard.begin)
    mode = guard.begin(bootguard.power_on(guard.path, state + "/flash.img.reset_cause"))
    if mode == bootguard.RESCUE:
        log("%d boots in a row failed, safe mode too: nothing started (REPL only; "
            "`otlink deploy` / `otlink config push` reach the board)" % guard.crashes)
        return 4
    safe = None
    if mode == bootguard.SAFE:
        safe = "%d crash-reboots in a row" % guard.crashes
        log("safe mode: %s; console and network only, no polling" % safe)
    path = args["config"]
    trial = _config_op("boot_check", path)  # a committed config on trial counts its boots
    cfg, cfg_hash = read_config(path)
    if cfg is None and trial is not None and _config_op(
            "auto_rollback", path, "the committed config does not load"):
        trial = None
        cfg, cfg_hash = read_config(path)
    if cfg is None:
        return cfg_hash
    stage("config")
    board = make_board(cfg, args)
    # armed before anything else can hang (the queue's recovery scan, a driver's probe); the
    # stages between here and the commit loop feed it
    board.watchdog_start()
    stage("board")

    def fed(name):
        board.watchdog_feed()
        stage(name)

    try:
        app = App(cfg, cfg_hash, board, fed, safe)
    except MemoryError:
        n = len(cfg["points"]) + sum([len(s["points"]) for s in cfg["sensors"]])
        gc.collect()
        print(_out_of_memory("building %d points" % n))
        if trial is not None and _config_op(
                "auto_rollback", path, "out of memory building %d points" % n):
            return REBOOT
        return 3
    except Exception as e:
        if trial is not None and _config_op(
                "auto_rollback", path, "the agent failed to start: %s %s" % (
                    type(e).__name__, e)):
            return REBOOT
        raise
    # the console (on a board always, the serial line; on the Unix port with --console) and
    # the trial of a freshly committed config
    if trial is not None or args.get("console") or board.name != "unix":
        from otlink import console_io

        console_io.start(app, path, cfg_hash, trial, args.get("console") or
                         board.name != "unix", board.name != "unix", _set_log_hook, log)
    app.trace = trace
    app.guard = guard
    log("node %s/%s fw %s boot %d, %d points, broker %s:%d" % (
        cfg["node"]["site"], cfg["node"]["id"], VERSION, app.queue.boot,
        app.npoints, cfg["mqtt"]["host"], cfg["mqtt"]["port"]))
    if not queue_codec.NATIVE:  # works, but each append and read-back costs about 3x
        log("queue record codec: bytecode (native compile failed: %s)" % queue_codec.WHY)
    stage("boot")
    # Running: a collection after every _RUN_GC bytes allocated keeps the garbage of the
    # loops (tens of bytes per reading) from spreading over all the free space, so what a
    # reconnect allocates for a session lands low and the largest free block stays close to
    # the free total (~1-3 ms per collection of a board's heap, a few times a second).
    gc.threshold(_RUN_GC)
    try:
        asyncio.run(app.run())
        if app.halted:
            log("stopping")
    except KeyboardInterrupt:
        log("stopping")
    finally:
        app.close()
    if app.reboot is not None:
        log("restarting: %s" % app.reboot)
        reset = getattr(board, "reset", None)
        if reset is not None:
            reset()  # a board: machine.reset(), does not return
        return REBOOT
    return 0


def boot(args):
    """main() for a board's main.py: a node must always come back reachable. An uncaught
    exception (at boot or later) is printed and the board is reset (hard: the watchdog and
    every peripheral start clean) - after bootguard.SAFE_AFTER of those in a row it boots in
    safe mode. A config that does not load leaves the board at its REPL with the errors
    printed, instead of soft-rebooting into the same errors forever. On the Unix port the
    status is returned for the process to exit with."""
    try:
        rc = main(args)
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # the boot path's last resort: anything not caught below
        log("crashed:")
        sys.print_exception(e)
        rc = CRASHED
    if rc == CRASHED or rc == 3:  # crashed, or out of memory: try again from a reset
        from otlink import bootguard
        from otlink.hal.reset import hard_reset

        # the Unix port exits instead: the next start must count as a reset, not a power-up
        bootguard.BootGuard((args.get("state") or "") + "/otlink_boots").mark_reset()
        hard_reset()  # does not return on a board
    return rc
