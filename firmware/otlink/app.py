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
from otlink.core.queue import codec as queue_codec

_DEBUG = False


def log(*a):
    print("otlink:", *a)


def make_board(cfg, args):
    name = args.get("board") or cfg["board"]
    if name == "unix":
        from otlink.hal.unix import board as unix

        state = args.get("state") or "state"
        image = cfg["flash"]["image"] or (state + "/flash.img")
        return unix.Board(unix.load_board("unix", args.get("boards") or "boards"), image)
    if name == "esp32":
        from otlink.hal import esp32

        return esp32.Board(cfg)
    if name == "pico_w":
        from otlink.hal import rp2

        return rp2.Board(cfg)
    raise ValueError("unknown board %r" % name)


def birth_points(cfg):
    """The point table the birth message carries: what a consumer needs to read values."""
    from otlink.sensors import driver_scale

    out = []
    for p in cfg["points"]:
        out.append({
            "id": p.id, "name": p.name, "unit": p.unit or "", "type": p.type_name(),
            "scale": p.scale, "offset": p.offset,
            "source": "modbus:%d:%s:%d" % (p.slave, p.table, p.address),
        })
    for s in cfg["sensors"]:
        for p in s["points"]:
            sc, off = driver_scale(s, p)
            out.append({"id": p["id"], "name": p["name"], "unit": p["unit"], "type": "uint16",
                        "scale": sc, "offset": off,
                        "source": "%s:%s:0x%02x:%s" % (s["driver"], s["bus"], s["address"],
                                                      p["channel"])})
    return out


class App:
    def __init__(self, cfg, cfg_hash, board):
        from otlink.core.queue import Queue

        self.cfg = cfg
        self.board = board
        clock = self.clock = board.clock
        qc = cfg["queue"]
        kw = {"commit_count": qc["commit_count"], "commit_ms": qc["commit_ms"],
              "policy": qc["policy"], "prog_size": board.prog_size()}
        if qc["capacity"]:
            kw["capacity"] = qc["capacity"]
        self.queue = Queue(board.queue_device(), clock, **kw)
        self.birth = {
            "node": cfg["node"]["id"], "site": cfg["node"]["site"], "fw": VERSION,
            "config_hash": cfg_hash, "boot": self.queue.boot,
            "points": birth_points(cfg),
        }
        self.tasks = []
        self.task_errors = 0
        self.poller = None
        if cfg["points"]:
            from otlink.modbus_poller import Poller

            uart = board.uart(cfg["serial"])
            self.poller = Poller(uart, clock, cfg["serial"], cfg["points"], self.sink)
            self.tasks.append(("modbus", self.poller.run))
        self.sensors = []
        if cfg["sensors"]:
            from otlink.sensors import SensorTask, make_driver

            for s in cfg["sensors"]:
                t = SensorTask(s, make_driver(s, board.i2c(s["bus"])), clock, self.sink,
                               cfg["groups"][s["group"]]["interval_ms"])
                self.sensors.append(t)
                self.tasks.append(("sensor:" + s["name"], t.run))
        from otlink.uplink import Uplink
        from otlink.publisher import Publisher

        # The uplink and publisher buffers are the biggest blocks the agent keeps (KiBs, for
        # its life): a collection first frees the config parse's garbage, so they are found
        # contiguous at boot instead of failing in a fragmented heap.
        gc.collect()
        self.uplink = Uplink(cfg["mqtt"], cfg["node"], clock)
        self.publisher = Publisher(self.queue, self.uplink, clock, cfg["mqtt"], self.birth,
                                   self.state)
        self.tasks.append(("publisher", self.publisher.run))
        self.commands = None
        if self.poller is not None:  # writes go through the poller's bus slot
            from otlink.commands import Commands

            self.commands = Commands(self.uplink, self.poller, cfg["points"],
                                     cfg["commands"]["writable"], log)
            self.uplink.on_cmd = self.commands.on_msg
            self.tasks.append(("commands", self.commands.run))
        self.tasks.append(("queue", self._commit_loop))
        self.tasks.append(("network", self._network_loop))

    def sink(self, rec, n):
        """Every source hands its readings here: into the flash queue, no allocation."""
        self.queue.append(rec, n)

    async def _commit_loop(self):
        # Group commit by time: at most commit_ms of readings are ever at risk.
        # Also feeds the watchdog: if the event loop stops turning, the board resets and the
        # queue recovers on boot, rather than the node hanging silently.
        period = self.cfg["queue"]["commit_ms"] // 4 or 10
        if period > 1000:
            period = 1000
        self.board.watchdog_start()
        while True:
            self.queue.tick(self.clock.ticks_ms())
            self.board.watchdog_feed()
            await asyncio.sleep_ms(period)

    async def _network_loop(self):
        # Keep the link up and the wall clock set. Nothing here waits without a bound:
        # WiFi joins in the background, NTP has its own 1 s socket timeout.
        board = self.board
        said = None
        bus_said = 0
        while True:
            err = self.uplink.last_error
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
              "task_errors": self.task_errors}
        if self.poller is not None:
            st["slaves"] = self.poller.stats()
            st["bus_errors"] = self.poller.bus_errors
        if self.sensors:
            st["sensor_errors"] = sum(s.errors for s in self.sensors)
        return st

    async def _supervise(self, name, fn):
        # A crashed task is reported, counted and restarted after a pause: one bad
        # component never stops the node.
        pause = 1000
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the one place that catches everything
                self.task_errors += 1
                log("task %s failed:" % name)
                sys.print_exception(e)
                await asyncio.sleep_ms(pause)
                pause = min(pause * 2, 60000)

    async def run(self):
        await asyncio.gather(*[self._supervise(n, f) for n, f in self.tasks])

    def close(self):
        try:
            self.queue.commit()
        except Exception:
            pass
        try:
            self.uplink.close()
        except Exception:
            pass


def _out_of_memory(what):
    # A raw MemoryError traceback would leave a board at the REPL with no hint: say what
    # ran out and what to do (docs/config.md, "How many points fit").
    heap = (gc.mem_free() + gc.mem_alloc()) // 1024
    return ("otlink: out of memory at boot while %s in a %d KiB heap: on the Unix port give "
            "`otlink node run` a bigger --heap (e.g. --heap %dK); on a board configure fewer "
            "points (docs/config.md, \"How many points fit\")" % (what, heap, 2 * heap))


def read_config(path):
    """(validated config, hash of the file), or (None, exit status) after printing every
    error. Validated once: the schema module is then dropped, since on the Unix port its
    bytecode holds ~25 KiB of the heap (a board's is frozen in flash)."""
    from otlink.core import config as config_mod

    try:
        with open(path) as f:
            text = f.read()
        cfg_hash = config_mod.config_hash(text)
        cfg = config_mod.loads(text)
        # the file's text is not needed once parsed: on a board it is KiBs of the heap
        del text
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
        core = sys.modules.get("otlink.core")
        if core is not None and hasattr(core, "config"):
            delattr(core, "config")


def main(args):
    cfg, cfg_hash = read_config(args["config"])
    if cfg is None:
        return cfg_hash
    gc.collect()
    board = make_board(cfg, args)
    gc.collect()
    try:
        app = App(cfg, cfg_hash, board)
    except MemoryError:
        n = len(cfg["points"]) + sum([len(s["points"]) for s in cfg["sensors"]])
        gc.collect()
        print(_out_of_memory("building %d points" % n))
        return 3
    log("node %s/%s fw %s boot %d, %d points, broker %s:%d" % (
        cfg["node"]["site"], cfg["node"]["id"], VERSION, app.queue.boot,
        len(app.birth["points"]), cfg["mqtt"]["host"], cfg["mqtt"]["port"]))
    if not queue_codec.NATIVE:  # works, but each append and read-back costs about 3x
        log("queue record codec: bytecode (native compile failed: %s)" % queue_codec.WHY)
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        log("stopping")
    finally:
        app.close()
    return 0
