# MicroPython side of tests/host/test_de_timing.py (not a pytest module): the whole agent (App:
# poller, flash queue with the NOR part's busy times waited out, publisher, uplink, commit
# loop) against a meter behind the baud-paced relay, with the RS-485 direction pin and the
# flash operations timed in us as they really happen (nothing back-dated).
#   micropython de_timing_mp.py job.json out.json
# job: {"config": {...}, "image": flash image path, "run_ms": n}
# out: {"tx": [[write_us, tx_end_us, de_drop_us, last_rx_us, turns]...],
#       "flash": [[t0, t1, kind, in_transaction]], "commits": n, "erases": n}
# turns: how many times another task ran between the request's write and the DE drop (a
# neighbour task counts its turns of the event loop)
import asyncio
import gc
import json
import sys
import time
from array import array

from otlink import app as app_mod
from otlink.core import config as config_mod
from otlink.hal.unix import board as unix
from otlink.hal.unix.uart import UnixUart


TURNS = [0]
MAXTX = 2048  # requests logged; the logs are preallocated: recording allocates nothing (an
# allocation could start a collection between the last stop bit and the DE drop, which a
# board's pin write never does)
W_T = array("q", bytes(8 * MAXTX))  # write called
W_END = array("q", bytes(8 * MAXTX))  # computed end of the last stop bit
W_DROP = array("q", bytes(8 * MAXTX))  # DE dropped
W_RX = array("q", bytes(8 * MAXTX))  # last answer byte
W_TURNS = array("q", bytes(8 * MAXTX))  # neighbour turns at write, then turns until the drop
NTX = [0]


class TimedPin:
    """DE pin recording the ticks_us of each drop when it happens, and the event loop
    turns of the neighbour task by then."""

    def __init__(self):
        self.level = 0
        self.ups = 0

    def __call__(self, v=None):
        if v is None:
            return self.level
        v = 1 if v else 0
        if v != self.level:
            self.level = v
            if v:
                self.ups += 1
            elif 0 < NTX[0] <= MAXTX:
                i = NTX[0] - 1
                W_DROP[i] = time.ticks_us()
                W_TURNS[i] = TURNS[0] - W_TURNS[i]


class TimedUart(UnixUart):
    def __init__(self, path, baud, parity, stop_bits):
        UnixUart.__init__(self, path, baud, parity, stop_bits, de=TimedPin())

    def write(self, buf, n):
        t = time.ticks_us()
        UnixUart.write(self, buf, n)
        i = NTX[0]
        if i < MAXTX:
            W_T[i] = t
            W_END[i] = self._tx_end
            W_TURNS[i] = TURNS[0]
            NTX[0] = i + 1

    def read_byte(self):
        b = UnixUart.read_byte(self)
        if b >= 0 and 0 < NTX[0] <= MAXTX:
            W_RX[NTX[0] - 1] = self.last_us
        return b


class TimedRegion:
    """The queue's flash region, timing every program and erase."""

    def __init__(self, dev, log):
        self.dev = dev
        self.log = log
        self.poller = None  # set once the app is built: its on_wire is logged per operation

    def _busy(self):
        return self.poller is not None and self.poller.on_wire

    def readblocks(self, n, buf, off=0):
        self.dev.readblocks(n, buf, off)

    def writeblocks(self, n, buf, off=0):
        t = time.ticks_us()
        self.dev.writeblocks(n, buf, off)
        self.log.append((t, time.ticks_us(), "prog", self._busy()))

    def ioctl(self, op, arg):
        t = time.ticks_us()
        r = self.dev.ioctl(op, arg)
        if op == 6:
            self.log.append((t, time.ticks_us(), "erase", self._busy()))
        return r


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    cfg = config_mod.validate(job["config"])
    board = unix.Board(unix.load_board("unix"), job["image"])
    flash = []
    qdev = board.queue_device

    region = []

    def timed():
        region.append(TimedRegion(qdev(), flash))
        return region[0]

    board.queue_device = timed
    board.uart = lambda s: TimedUart(s["port"], s["baud"], s["parity"], s["stop_bits"])
    a = app_mod.App(cfg, "0" * 16, board)
    region[0].poller = a.poller

    async def neighbour():
        while True:
            TURNS[0] += 1
            await asyncio.sleep_ms(0)

    async def go():
        asyncio.create_task(neighbour())
        t = asyncio.create_task(a.run())
        await asyncio.sleep_ms(job["run_ms"])
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass

    asyncio.run(go())
    n = NTX[0]
    head = {"flash": flash, "commits": a.queue.commits, "erases": a.queue.erases_run,
            "ups": a.poller.uart.de.ups}
    a.poller.uart.close()
    board.close()
    gc.collect()
    # streamed, one transaction at a time: a list of them all ran out of the heap where the
    # agent runs from source (no mpy-cross: a clone without the toolchain tarball)
    with open(sys.argv[2], "w") as f:
        f.write(json.dumps(head)[:-1] + ', "tx": [')
        for i in range(n):
            f.write(("," if i else "") + json.dumps(
                [W_T[i], W_END[i], W_DROP[i], W_RX[i], W_TURNS[i] if W_DROP[i] else 0]))
        f.write("]}")


main()
