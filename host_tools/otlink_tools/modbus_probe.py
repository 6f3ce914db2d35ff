"""`otlink modbus probe`: find slaves, readable register ranges and the word order of a value.

Runs on a technician's laptop with a USB RS-485 adapter (pyserial). Three modes:

* ``--scan-ids 1-247``: which slave ids answer (any answer, even an exception, counts);
* ``--scan-regs 0-999``: which register blocks of a slave can be read (FC 03 and 04);
* ``--decode ADDR``: read 4 registers at ADDR and print the value under every type and
  word/byte order (ABCD, CDAB, BADC, DCBA), marking the plausible ones.

The codec (``encode`` / ``decode``) is shared with the simulated meter.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import time
from collections.abc import Iterable

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
         "int64": 4, "uint64": 4, "float64": 4}
_FMT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
        "int64": ">q", "uint64": ">Q", "float64": ">d"}


def _to_wire(value_bytes: bytes, order: str) -> bytes:
    """Big-endian value bytes -> the bytes as they sit in consecutive registers."""
    n = len(value_bytes) // 2
    words = [value_bytes[2 * i:2 * i + 2] for i in range(n)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def _from_wire(wire: bytes, order: str) -> bytes:
    # the transforms are involutions
    return _to_wire(wire, order)


def encode(value, typ: str, order: str = "ABCD", length: int | None = None) -> list[int]:
    """Registers (16-bit ints) holding value as typ in the given word/byte order."""
    if typ == "string":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        raw = raw.ljust(2 * (length or (len(raw) + 1) // 2), b"\0")
        if order in ("BADC", "DCBA"):
            raw = b"".join(raw[i:i + 2][::-1] for i in range(0, len(raw), 2))
        return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    wire = _to_wire(struct.pack(_FMT[typ], value), order)
    return [int.from_bytes(wire[i:i + 2], "big") for i in range(0, len(wire), 2)]


def decode(regs: Iterable[int], typ: str, order: str = "ABCD"):
    """Value of typ read from registers regs in the given order."""
    wire = b"".join(int(r).to_bytes(2, "big") for r in regs)
    if typ == "string":
        if order in ("BADC", "DCBA"):
            wire = b"".join(wire[i:i + 2][::-1] for i in range(0, len(wire), 2))
        return wire.split(b"\0", 1)[0].decode("latin-1")
    n = 2 * WORDS[typ]
    return struct.unpack(_FMT[typ], _from_wire(wire[:n], order))[0]


def plausible(typ: str, v) -> bool:
    """A rough 'this looks like a real measurement' test: finite floats of a sensible
    magnitude with few significant digits beyond the decimal, integers that are not huge."""
    if typ.startswith("float"):
        if not math.isfinite(v):
            return False
        a = abs(v)
        if a == 0:
            return True
        return 1e-3 <= a <= 1e7
    return abs(v) < 10**7


def decode_table(regs: list[int]) -> list[tuple[str, str, object, bool]]:
    """(type, order, value, plausible) for every type that fits in regs and every order.
    16-bit types only differ by byte swap, so they are listed for ABCD and BADC."""
    out = []
    for typ in ("int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"):
        if WORDS[typ] > len(regs):
            continue
        for order in ORDERS:
            if WORDS[typ] == 1 and order in ("CDAB", "DCBA"):
                continue
            v = decode(regs[:WORDS[typ]], typ, order)
            out.append((typ, order, v, plausible(typ, v)))
    return out


# ---- a tiny RTU master over pyserial (the firmware's is MicroPython) ---------------------------

def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class ProbeError(Exception):
    """One failed exchange: timeout, CRC, or an exception code from the slave."""


class SerialMaster:
    """Blocking RTU master for the probe: one request, one answer, with a deadline."""

    def __init__(self, port: str, baud: int = 9600, parity: str = "N", stop_bits: int = 1,
                 timeout_ms: int = 200):
        import serial  # pyserial

        self.ser = serial.Serial(port, baudrate=baud, parity=parity, stopbits=stop_bits,
                                 bytesize=8, timeout=0)
        self.baud = baud
        self.timeout = timeout_ms / 1000.0
        self.t35 = 0.00175 if baud > 19200 else 38.5 / baud

    def close(self) -> None:
        self.ser.close()

    def request(self, slave: int, fc: int, addr: int, count: int) -> bytes:
        pdu = bytes([slave, fc]) + addr.to_bytes(2, "big") + count.to_bytes(2, "big")
        c = crc16(pdu)
        self.ser.reset_input_buffer()
        time.sleep(self.t35)
        self.ser.write(pdu + bytes([c & 0xFF, c >> 8]))
        want = 5 + 2 * count if fc in (3, 4) else 5 + (count + 7) // 8
        buf = b""
        deadline = time.monotonic() + self.timeout + 8 * 11 / self.baud
        last = None
        while True:
            chunk = self.ser.read(256)
            now = time.monotonic()
            if chunk:
                buf += chunk
                last = now
                if len(buf) >= 2 and buf[1] & 0x80:
                    want = 5
            if len(buf) >= want and now - (last or now) >= self.t35:
                break
            if not buf and now > deadline:
                raise ProbeError("timeout")
            if buf and now - last > max(self.t35, 0.02) and len(buf) < want:
                break
            time.sleep(0.0005)
        if len(buf) < 5 or crc16(buf[:-2]) != buf[-2] | (buf[-1] << 8):
            raise ProbeError("bad frame (%d bytes, CRC or length)" % len(buf))
        if buf[0] != slave:
            raise ProbeError("answer from slave %d" % buf[0])
        if buf[1] & 0x80:
            raise ProbeError("exception %d" % buf[2])
        return buf[3:-2]

    def read_regs(self, slave: int, fc: int, addr: int, count: int) -> list[int]:
        data = self.request(slave, fc, addr, count)
        return [int.from_bytes(data[2 * i:2 * i + 2], "big") for i in range(len(data) // 2)]


def _range(s: str) -> range:
    a, _, b = s.partition("-")
    return range(int(a), int(b or a) + 1)


def scan_ids(m: SerialMaster, ids: Iterable[int], out=print) -> list[int]:
    """Slave ids that answer FC 03 at register 0 (an exception answer counts)."""
    found = []
    for sid in ids:
        try:
            m.read_regs(sid, 3, 0, 1)
            found.append(sid)
            out(f"slave {sid}: answers")
        except ProbeError as e:
            if str(e).startswith("exception"):
                found.append(sid)
                out(f"slave {sid}: answers ({e})")
    return found


def scan_regs(m: SerialMaster, slave: int, regs: range, block: int = 10,
              out=print) -> dict[int, list[tuple[int, int]]]:
    """{fc: [(start, end)]} register blocks that read without error, per FC 03 / 04."""
    spans: dict[int, list[tuple[int, int]]] = {3: [], 4: []}
    for fc in (3, 4):
        for a in range(regs.start, regs.stop, block):
            n = min(block, regs.stop - a)
            try:
                m.read_regs(slave, fc, a, n)
            except ProbeError:
                continue
            if spans[fc] and spans[fc][-1][1] == a:
                spans[fc][-1] = (spans[fc][-1][0], a + n)
            else:
                spans[fc].append((a, a + n))
        for s, e in spans[fc]:
            out(f"FC{fc:02d} {'holding' if fc == 3 else 'input'} {s}..{e - 1}: readable")
    return spans


def format_decode(regs: list[int]) -> str:
    lines = ["registers: " + " ".join(f"{r:04X}" for r in regs),
             f"{'type':8} {'order':5} {'value':>24}  plausible"]
    for typ, order, v, ok in decode_table(regs):
        vs = f"{v:.6g}" if isinstance(v, float) else str(v)
        lines.append(f"{typ:8} {order:5} {vs:>24}  {'*' if ok else ''}")
    return "\n".join(lines)


def build_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("port", nargs="?", help="serial port of the RS-485 adapter (e.g. /dev/ttyUSB0)")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--parity", choices=("N", "E", "O"), default="N")
    p.add_argument("--stop-bits", type=int, choices=(1, 2), default=1)
    p.add_argument("--timeout-ms", type=int, default=200)
    p.add_argument("--slave", type=int, default=1)
    p.add_argument("--scan-ids", metavar="A-B", help="scan slave ids, e.g. 1-247")
    p.add_argument("--scan-regs", metavar="A-B", help="scan register ranges of --slave")
    p.add_argument("--decode", type=int, metavar="ADDR",
                   help="read 4 registers at ADDR and show every type/order")
    p.add_argument("--fc", type=int, choices=(3, 4), default=3, help="for --decode")
    p.add_argument("--regs", help="decode these hex registers instead of reading (e.g. 4366 8000)")
    return p


def run(args: argparse.Namespace) -> int:
    if args.regs:
        print(format_decode([int(x, 16) for x in args.regs.replace(",", " ").split()]))
        return 0
    if not args.port:
        print("otlink: modbus probe: a serial port is required (or --regs)", file=sys.stderr)
        return 1
    m = SerialMaster(args.port, args.baud, args.parity, args.stop_bits, args.timeout_ms)
    try:
        if args.scan_ids:
            found = scan_ids(m, _range(args.scan_ids))
            print(f"{len(found)} slave(s): {' '.join(map(str, found)) or '-'}")
        if args.scan_regs:
            scan_regs(m, args.slave, _range(args.scan_regs))
        if args.decode is not None:
            try:
                regs = m.read_regs(args.slave, args.fc, args.decode, 4)
            except ProbeError:
                regs = m.read_regs(args.slave, args.fc, args.decode, 2)
            print(format_decode(regs))
    except ProbeError as e:
        print(f"otlink: modbus probe: {e}", file=sys.stderr)
        return 1
    finally:
        m.close()
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `probe` subcommand to an argparse subparsers object (the `modbus` group)."""
    p = subparsers.add_parser("probe", help="scan slaves/registers, show every word order",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    build_parser(p)
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser(argparse.ArgumentParser(prog="otlink modbus probe", description=__doc__,
                                             formatter_class=argparse.RawDescriptionHelpFormatter))
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
