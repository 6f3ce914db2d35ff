"""Simulated RS-485 devices: a pymodbus RTU server on one end of a pty link.

``start_meter()`` creates two ptys joined by a byte forwarder (or, with ``device_port``, serves
on a port someone else made, e.g. the pacing relay of the tests), runs a pymodbus RTU server
on the device side in a background thread, and returns a :class:`Meter` whose ``agent_port``
is the path the agent opens.

Demo map, slave 1 (input registers, FC 04, ABCD): 0 voltage float32 V (~230), 2 current
float32 A, 4 active power float32 W, 6 frequency float32 Hz, 100 energy uint32 Wh (grows);
holding register 200 power factor int16 x0.001. With ``reference_map=True`` slaves 1-3 carry
the 60-point reference map of docs/modbus.md (``REFERENCE_POINTS``), values fixed.

Run standalone: ``python -m otlink_tools.sim_meter [--reference]`` prints the agent port.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import os
import random
import select
import sys
import threading
import time
import tty

from otlink_tools.modbus_probe import WORDS, decode, encode, string_regs

_TABLE_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_SIZE = 1024


def reference_points() -> list[dict]:
    """The 60-point, 3-slave reference map (point config entries, ids 1..60)."""
    pts: list[dict] = []

    def add(slave, table, address, typ, order="ABCD", **kw):
        pts.append(dict(id=len(pts) + 1, name=f"s{slave}_{table}_{address}"
                        + (f"_b{kw['bit']}" if "bit" in kw else ""),
                        slave=slave, table=table, address=address, type=typ, order=order,
                        group="fast", **kw))

    # slave 1: three-phase energy meter, input registers, floats big-endian
    for i in range(12):  # U1..3, I1..3, P1..3, P total, f, PF
        add(1, "input", 2 * i, "float32", unit="")
    add(1, "input", 100, "uint32")  # energy import Wh
    add(1, "input", 102, "uint32")  # energy export Wh
    add(1, "input", 104, "float64")
    add(1, "input", 108, "int64")
    add(1, "holding", 200, "int16", scale=0.001)
    add(1, "holding", 201, "uint16")
    add(1, "holding", 202, "int32")
    add(1, "holding", 210, "string", length=16)  # 8 registers
    # slave 2: drive, holding registers, low word first (CDAB)
    for i in range(6):
        add(2, "holding", i, "uint16")
    for b in range(3):
        add(2, "holding", 0, "bit", bit=b)
    for i in range(4):
        add(2, "holding", 10 + 2 * i, "int32", "CDAB")
    add(2, "holding", 20, "float32", "CDAB")
    add(2, "holding", 22, "float32", "CDAB")
    add(2, "holding", 40, "uint64", "DCBA")
    for c in range(4):
        add(2, "coil", c, "bool")
    # slave 3: PLC, discrete inputs + byte-swapped words
    for d in range(8):
        add(3, "discrete", d, "bool")
    for i in range(8):
        add(3, "holding", i, "int16")
    add(3, "holding", 100, "float32", "BADC")
    add(3, "holding", 102, "float32", "DCBA")
    add(3, "input", 0, "float64", "DCBA")
    add(3, "input", 4, "uint32", "BADC")
    assert len(pts) == 60, len(pts)
    return pts


REFERENCE_POINTS = reference_points()


def reference_value(p: dict):
    """The fixed value the reference map holds for point config p."""
    k = p["id"]
    t = p["type"]
    if t == "bool":
        return k % 2
    if t == "bit":
        return None  # set through the register it lives in
    if t == "string":
        return "METER-%02d" % k
    if t.startswith("float"):
        return round(100.0 + k * 3.25 - (k % 7) * 11.5, 3)
    if t.startswith("u"):
        return 1000 * k + 7 if t != "uint64" else (1 << 40) + k
    return -(300 * k + 3) if k % 2 else 300 * k + 3


class Meter:
    """Handle on the running simulator."""

    def __init__(self, slaves, reference_map: bool, device_port: str | None, frozen: bool):
        self.slaves = tuple(slaves)
        self.reference_map = reference_map
        self.frozen = frozen or reference_map
        self._stop = threading.Event()
        self._link_fds: list[int] = []
        self._ctx = None
        self._loop = None
        self._pending: list = []
        self._faults: dict[tuple[int, int], int] = {}
        self._fwd: threading.Thread | None = None
        if device_port is None:
            a_m, a_s = os.openpty()
            d_m, d_s = os.openpty()
            for fd in (a_s, d_s):
                tty.setraw(fd)
            self.agent_port = os.ttyname(a_s)
            self.device_port = os.ttyname(d_s)
            self._link_fds = [a_m, d_m, a_s, d_s]
            self._fwd = threading.Thread(target=self._forward, args=(a_m, d_m), daemon=True)
            self._fwd.start()
        else:
            self.agent_port = None
            self.device_port = device_port
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.name = "sim-meter"
        self._thread.start()
        if not self._ready.wait(30):  # generous: a loaded 2-core CI host
            raise RuntimeError("sim meter: pymodbus server did not start")

    # -- link --
    def _forward(self, a: int, d: int) -> None:
        peer = {a: d, d: a}
        while not self._stop.is_set():
            r, _, _ = select.select([a, d], [], [], 0.1)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if data:
                    try:
                        os.write(peer[fd], data)
                    except OSError:
                        pass  # the other end is gone: the line just drops the bytes

    # -- server --
    def _devices(self):
        from pymodbus.simulator import DataType, SimData, SimDevice

        def block(dt):
            return [SimData(0, count=_SIZE, values=0, datatype=dt)]

        bits, regs = DataType.BITS, DataType.REGISTERS
        # four separate tables per slave; bits packed 16 to a register (bit addressing)
        return [SimDevice(id=s, simdata=(block(bits), block(bits), block(regs), block(regs)),
                          use_bit_addressing=True, action=functools.partial(self._action, s))
                for s in self.slaves]

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # A slave id nobody has stays silent on a real bus; pymodbus would answer for it
        # (exception 4), so its answer is swallowed here.
        if sending and data and data[0] not in self.slaves:
            return b""
        return data

    async def _action(self, slave, func_code, start_address, address, count, registers,
                      set_values):
        from pymodbus.constants import ExcCodes

        for (s, a), code in self._faults.items():
            if s == slave and address <= a < address + count:
                return ExcCodes(code)
        return None

    def fail(self, slave: int, address: int, code: int | None) -> None:
        """Make requests covering address answer with exception code (None: stop)."""
        if code is None:
            self._faults.pop((slave, address), None)
        else:
            self._faults[(slave, address)] = code

    def _fill(self) -> None:
        if self.reference_map:
            bits2 = 0
            for p in REFERENCE_POINTS:
                if p["slave"] not in self.slaves:
                    continue
                if p["type"] == "bit":
                    continue
                v = reference_value(p)
                if p["type"] == "bool":
                    self.set(p["slave"], p["table"], p["address"], [v])
                else:
                    self.set(p["slave"], p["table"], p["address"],
                             encode(v, p["type"], p["order"], p.get("length")))
            if 2 in self.slaves:
                bits2 = 0b101 | (0x1230)
                self.set(2, "holding", 0, [bits2])
            return
        if 1 in self.slaves:
            self._demo_values(0.0)

    def _demo_values(self, t: float) -> None:
        v = 230.0 + 2.0 * math.sin(t / 7.0) + random.uniform(-0.2, 0.2)
        i = 5.0 + 1.5 * math.sin(t / 11.0) + random.uniform(-0.05, 0.05)
        pf = 0.92 + 0.03 * math.sin(t / 5.0)
        p = v * i * pf
        f = 50.0 + random.uniform(-0.02, 0.02)
        regs = []
        for x in (v, i, p, f):
            regs += encode(x, "float32", "ABCD")
        self.set(1, "input", 0, regs)
        self._energy = getattr(self, "_energy", 1_000_000.0) + p * 1.0 / 3600.0
        self.set(1, "input", 100, encode(int(self._energy), "uint32", "ABCD"))
        self.set(1, "holding", 200, encode(int(round(pf * 1000)), "int16", "ABCD"))

    def _serve(self) -> None:
        from pymodbus.server import ModbusSerialServer

        # A request for a slave id the simulator does not have makes pymodbus 3.16's simulator
        # fail a lookup of device 0 (KeyError: 0) and log it with a traceback before the
        # answer is swallowed by _trace. On a real bus that is just silence: keep the log quiet.
        logging.getLogger("pymodbus.logging").addFilter(
            lambda rec: "KeyError: 0" not in rec.getMessage())

        async def main():
            self._loop = asyncio.get_running_loop()
            server = ModbusSerialServer(self._devices(), port=self.device_port,
                                        baudrate=115200, timeout=1,
                                        ignore_missing_devices=True, broadcast_enable=True,
                                        trace_packet=self._trace)
            self._ctx = server.context
            self._fill()
            await self._apply()
            task = asyncio.create_task(server.serve_forever())
            self._ready.set()
            t0 = time.monotonic()
            while not self._stop.is_set():
                await asyncio.sleep(0.2)
                if not self.frozen:
                    self._demo_values(time.monotonic() - t0)
                    await self._apply()
            await server.shutdown()
            task.cancel()

        asyncio.run(main())

    async def _apply(self) -> None:
        while self._pending:
            await self._pending.pop(0)

    # -- data access --
    def _call(self, coro):
        if self._loop is None or threading.current_thread() is self._thread:
            raise RuntimeError("use the async path inside the server thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    def set(self, slave: int, table: str, address: int, values: list[int]) -> None:
        """Write raw register (or bit) values into the simulated device."""
        coro = self._ctx.async_setValues(slave, _TABLE_FC[table], address, list(values))
        if threading.current_thread() is self._thread:
            self._pending.append(coro)
        else:
            self._call(coro)

    def registers(self, slave: int, table: str, address: int, count: int) -> list[int]:
        """Raw register (or bit) values currently in the simulated device."""
        v = self._call(self._ctx.async_getValues(slave, _TABLE_FC[table], address, count))
        return [int(x) for x in v]

    def expected(self, slave: int, table: str, address: int, type: str = "uint16",
                 order: str = "ABCD", length: int | None = None, bit: int | None = None):
        """The value the agent should decode right now for that point (raw, unscaled)."""
        if table in ("coil", "discrete"):
            return int(bool(self.registers(slave, table, address, 1)[0]))
        if type == "bit":
            reg = decode(self.registers(slave, table, address, 1), "uint16", order)
            return (reg >> bit) & 1
        n = string_regs(length) if type == "string" else WORDS[type]
        return decode(self.registers(slave, table, address, n), type, order, length)

    def stop(self) -> None:
        self._stop.set()
        # The forwarder must be gone before its fds are closed: a closed fd number is soon
        # reused (by the next test's pipes, say), and a late read would steal that data.
        if self._fwd is not None:
            self._fwd.join()
        self._thread.join(30)
        for fd in self._link_fds:
            try:
                os.close(fd)
            except OSError:
                pass


def start_meter(slaves=(1,), reference_map: bool = False, device_port: str | None = None,
                frozen: bool = False) -> Meter:
    """Start the simulator. device_port: serve on this existing tty path instead of making a
    pty link (then agent_port is None: the caller owns the link). frozen: values never move."""
    if reference_map and tuple(slaves) == (1,):
        slaves = (1, 2, 3)
    return Meter(slaves, reference_map, device_port, frozen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m otlink_tools.sim_meter", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slaves", default="1", help="comma-separated slave ids")
    ap.add_argument("--reference", action="store_true", help="the 60-point reference map")
    args = ap.parse_args(argv)
    slaves = tuple(int(s) for s in args.slaves.split(","))
    m = start_meter(slaves, args.reference)
    print(m.agent_port, flush=True)  # first line: the port alone (scripts read it)
    what = ("the 60-point reference map (docs/modbus.md)" if args.reference else
            "the demo map: input registers 0 V, 2 A, 4 W, 6 Hz (float32 ABCD), 100 Wh "
            "(uint32); holding 200 power factor (int16, x0.001)")
    print(f"simulated meter: slave id(s) {args.slaves} on {m.agent_port}, {what}; any baud "
          "and parity work (a pty has no line timing). Ctrl-C stops.", file=sys.stderr,
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        m.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
