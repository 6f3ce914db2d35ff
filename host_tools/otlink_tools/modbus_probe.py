"""`otlink modbus probe`: find slaves, readable register ranges and the word order of a value.

Runs on a technician's laptop with a USB RS-485 adapter (pyserial). Three modes:

* ``--scan-ids 1-247``: which slave ids answer (any answer, even an exception, counts);
* ``--scan-regs 0-999``: which register blocks of a slave can be read (FC 03 and 04);
* ``--decode ADDR``: read 4 registers at ADDR and print the value under every type and
  word/byte order (ABCD, CDAB, BADC, DCBA), marking the plausible ones; with
  ``--length N``, read a string of N characters at ADDR and print it in both byte orders
  (AB: first character in the high byte of each register, BA: in the low byte).

The codec (``encode`` / ``decode``) is shared with the simulated meter.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import struct
import sys
import time
from collections.abc import Iterable

from otlink_tools.decode import error_name
from otlink_tools.errors import CommandError

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
         "int64": 4, "uint64": 4, "float64": 4}
_FMT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
        "int64": ">q", "uint64": ">Q", "float64": ">d"}


def swaps(order: str) -> tuple[bool, bool]:
    """(word swap, byte swap) of an order name: the host's one word-order rule. An order's
    index in ORDERS has the firmware's bits (core/points.py ORDERS: bit 0 word swap, bit 1
    byte swap); tests/host/test_one_rule.py checks both sides agree."""
    try:
        i = ORDERS.index(order)
    except ValueError:
        raise ValueError(f"word order {order!r}: want one of {', '.join(ORDERS)}") from None
    return bool(i & 1), bool(i & 2)


def to_wire(value_bytes: bytes, order: str, words: bool = True) -> bytes:
    """Big-endian value bytes -> the bytes as they sit in consecutive registers. words=False:
    byte swap only (strings keep their register order). Both swaps are their own inverse, so
    the same call turns register bytes back into value bytes."""
    wswap, bswap = swaps(order)
    ws = [value_bytes[i:i + 2] for i in range(0, len(value_bytes), 2)]
    if wswap and words:
        ws.reverse()
    if bswap:
        ws = [w[::-1] for w in ws]
    return b"".join(ws)


def string_regs(length: int) -> int:
    """Registers a string of length characters (bytes) takes: two characters each."""
    return (length + 1) // 2


def encode(value, typ: str, order: str = "ABCD", length: int | None = None) -> list[int]:
    """Registers (16-bit ints) holding value as typ in the given word/byte order. A string
    takes length characters (NUL-padded; default: its own length)."""
    if typ == "string":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if length:
            raw = raw[:length]
        raw = raw.ljust(2 * string_regs(length or len(raw)), b"\0")
        wire = to_wire(raw, order, words=False)
    else:
        wire = to_wire(struct.pack(_FMT[typ], value), order)
    return [int.from_bytes(wire[i:i + 2], "big") for i in range(0, len(wire), 2)]


def decode(regs: Iterable[int], typ: str, order: str = "ABCD", length: int | None = None):
    """Value of typ read from registers regs in the given order. A string: its first length
    characters (default: all the registers hold), up to the first NUL, as the firmware does."""
    wire = b"".join(int(r).to_bytes(2, "big") for r in regs)
    if typ == "string":
        raw = to_wire(wire, order, words=False)
        if length is not None:
            raw = raw[:length]
        return raw.split(b"\0", 1)[0].decode("latin-1")
    n = 2 * WORDS[typ]
    return struct.unpack(_FMT[typ], to_wire(wire[:n], order))[0]


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
            if WORDS[typ] == 1 and swaps(order)[0]:
                continue
            v = decode(regs[:WORDS[typ]], typ, order)
            out.append((typ, order, v, plausible(typ, v)))
    return out


# ---- a tiny RTU master over pyserial (the firmware's is MicroPython) ---------------------------

def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (serial line section 6.2.2): the host's one implementation
    (tests/host/test_one_rule.py checks it against the firmware's core/modbus.crc16)."""
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
            # "Modbus exception 2: illegal data address": the decoder's one table of names
            raise ProbeError(error_name(0x80 | buf[2])[len("Modbus "):])
        return buf[3:-2]

    def read_regs(self, slave: int, fc: int, addr: int, count: int) -> list[int]:
        data = self.request(slave, fc, addr, count)
        return [int.from_bytes(data[2 * i:2 * i + 2], "big") for i in range(len(data) // 2)]


# ---- argument checking: every bad value is one argparse error naming the option -----------

SLAVE_IDS = (1, 247)      # 0 is broadcast (no answer), 248..255 are reserved
REG_ADDRS = (0, 65535)
BAUDS = (300, 4_000_000)
TIMEOUTS_MS = (1, 60_000)


def _int_in(text: str, lo: int, hi: int, what: str, note: str = "") -> int:
    try:
        v = int(text.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be an integer {lo}..{hi}{note}, "
                                         f"not {text!r}")
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError(f"{what} {v} is out of range: {lo}..{hi}{note}")
    return v


def _range(s: str, lo: int = REG_ADDRS[0], hi: int = REG_ADDRS[1],
           what: str = "register address") -> range:
    """'A-B' or 'A' -> range(A, B + 1), with lo <= A <= B <= hi (ArgumentTypeError otherwise)."""
    a, dash, b = s.strip().partition("-")
    try:
        start, end = int(a, 10), int(b if dash else a, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a range: use A-B (or A) with {what}s "
                                         f"{lo}..{hi}, e.g. {lo}-{min(hi, lo + 9)}")
    for v in (start, end):
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} {v} in {s!r} is out of range: {lo}..{hi}")
    if end < start:
        raise argparse.ArgumentTypeError(f"{s!r} is empty: the first {what} must not be larger "
                                         f"than the last (e.g. {end}-{start})")
    return range(start, end + 1)


def _id_range(s: str) -> range:
    return _range(s, *SLAVE_IDS, what="slave id")


def _slave(s: str) -> int:
    return _int_in(s, *SLAVE_IDS, "slave id", " (0 is broadcast: no slave answers it)")


def _address(s: str) -> int:
    return _int_in(s, *REG_ADDRS, "register address")


def _baud(s: str) -> int:
    return _int_in(s, *BAUDS, "baud rate")


STRING_LEN = (1, 250)  # characters: 125 registers, one FC 03/04 read


def _length(s: str) -> int:
    return _int_in(s, *STRING_LEN, "string length", " characters")


def _timeout_ms(s: str) -> int:
    return _int_in(s, *TIMEOUTS_MS, "timeout")


_HEX_REG = re.compile(r"(0[xX])?[0-9a-fA-F]{1,4}")


def _hex_regs(s: str) -> list[int]:
    """'4366 8000' (spaces or commas) -> [0x4366, 0x8000]: 1 to 4 digit hex words."""
    words = s.replace(",", " ").split()
    if not words:
        raise argparse.ArgumentTypeError("give 1 or more registers in hex (0000..FFFF), "
                                         "e.g. --regs '4366 8000'")
    for w in words:
        if not _HEX_REG.fullmatch(w):
            raise argparse.ArgumentTypeError(f"{w!r} is not a register in hex: each must be "
                                             "0000..FFFF, e.g. --regs '4366 8000'")
    return [int(w, 16) for w in words]


def scan_ids(m: SerialMaster, ids: Iterable[int], out=print, progress=None) -> list[int]:
    """Slave ids that answer FC 03 at register 0 (an exception answer counts).
    progress(i, sid), if given, is called before the i-th (0-based) id is tried."""
    found = []
    for i, sid in enumerate(ids):
        if progress:
            progress(i, sid)
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
              out=print, progress=None) -> dict[int, list[tuple[int, int]]]:
    """{fc: [(start, end)]} register blocks that read without error, per FC 03 / 04.
    progress(i, (fc, start, end)), if given, is called before the i-th (0-based) read."""
    spans: dict[int, list[tuple[int, int]]] = {3: [], 4: []}
    i = 0
    for fc in (3, 4):
        for a in range(regs.start, regs.stop, block):
            n = min(block, regs.stop - a)
            if progress:
                progress(i, (fc, a, a + n - 1))
            i += 1
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


class _Progress:
    """How far a long scan is, on stderr (stdout keeps only the results).

    On a terminal, one status line rewritten in place before every exchange; otherwise (a log,
    a pipe) a 'scanned N of M ...' line every `every` exchanges and at the end."""

    def __init__(self, total: int, unit: str, label, stream=None, every: int = 10):
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.total, self.unit, self.label, self.every = total, unit, label, every
        self.shown = False

    def __call__(self, i: int, item) -> None:
        if self.tty:
            self.stream.write(f"\r\x1b[K{self.label(item)} ({i + 1} of {self.total})")
            self.stream.flush()
            self.shown = True
        elif i and i % self.every == 0:
            print(f"scanned {i} of {self.total} {self.unit}", file=self.stream, flush=True)

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def out(self, line: str) -> None:
        """Print one result line to stdout without mixing it into the status line."""
        self.clear()
        print(line, flush=True)

    def done(self) -> None:
        self.clear()
        if not self.tty:
            print(f"scanned {self.total} of {self.total} {self.unit}", file=self.stream,
                  flush=True)


def _seconds(n: int, m: SerialMaster) -> int:
    """Upper bound of n exchanges that all time out: request, t3.5, answer timeout."""
    return math.ceil(n * (m.timeout + m.t35 + 2 * 8 * 11 / m.baud))


_OPEN_HINTS = {
    errno.ENOENT: "no such port (is the RS-485 adapter plugged in?)",
    errno.EACCES: "permission denied (add your user to the 'dialout' group, then log in again)",
    errno.EPERM: "permission denied (add your user to the 'dialout' group, then log in again)",
    errno.EISDIR: "it is a directory, not a serial port",
    errno.ENOTTY: "not a serial port",
    errno.EBUSY: "port busy: another program has it open",
}


def _port_error(e: BaseException) -> str:
    """The reason an OSError / serial.SerialException gives, in a few words."""
    code = getattr(e, "errno", None)
    if not isinstance(code, int):
        # pyserial's 'Could not configure port' chains the termios.error (errno, text)
        ctx = e.__cause__ or e.__context__
        args = getattr(ctx, "args", ())
        code = getattr(ctx, "errno", None) or (args[0] if args and isinstance(args[0], int)
                                               else None)
    if isinstance(code, int):
        return _OPEN_HINTS.get(code) or os.strerror(code)
    return str(e) or type(e).__name__


def format_decode(regs: list[int]) -> str:
    lines = ["registers: " + " ".join(f"{r:04X}" for r in regs),
             f"{'type':8} {'order':5} {'value':>24}  plausible"]
    for typ, order, v, ok in decode_table(regs):
        vs = f"{v:.6g}" if isinstance(v, float) else str(v)
        lines.append(f"{typ:8} {order:5} {vs:>24}  {'*' if ok else ''}")
    return "\n".join(lines)


def format_string(regs: list[int], length: int) -> str:
    """A string of length characters in regs, in both byte orders: AB (order ABCD: first
    character in the high byte) and BA (order BADC: in the low byte). Characters outside
    printable ASCII show as escapes, so a wrong order or address stands out."""
    lines = ["registers: " + " ".join(f"{r:04X}" for r in regs)]
    for name, order in (("AB", "ABCD"), ("BA", "BADC")):
        raw = to_wire(b"".join(r.to_bytes(2, "big") for r in regs), order, words=False)
        raw = raw[:length].split(b"\0", 1)[0]
        text = "".join(chr(c) if 32 <= c < 127 else f"\\x{c:02x}" for c in raw)
        lines.append(f"string {name} (order {order}): \"{text}\" ({len(raw)} of {length} "
                     "characters)")
    return "\n".join(lines)


FRAMING_HELP = """\
serial framing: the defaults are 9600 baud, 8N1 (8 data bits, no parity, 1 stop bit).
Most meters use 8E1 (--parity E) or 8N2 (--stop-bits 2): the Modbus RTU spec asks for
11-bit characters (start + 8 data + parity + stop, or no parity and 2 stop bits).
Check the meter's communication settings; a wrong framing looks like "no answer".
"""


def build_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.epilog = FRAMING_HELP
    p.add_argument("port", nargs="?", help="serial port of the RS-485 adapter (e.g. /dev/ttyUSB0)")
    p.add_argument("--baud", type=_baud, default=9600,
                   help=f"bits per second, {BAUDS[0]}..{BAUDS[1]} (default 9600)")
    p.add_argument("--parity", choices=("N", "E", "O"), default="N",
                   help="N none, E even, O odd (default N; many meters use E)")
    p.add_argument("--stop-bits", type=int, choices=(1, 2), default=1,
                   help="stop bits per character (default 1; 8N2 meters need 2)")
    p.add_argument("--timeout-ms", type=_timeout_ms, default=200,
                   help=f"answer timeout per request, {TIMEOUTS_MS[0]}..{TIMEOUTS_MS[1]} ms "
                        "(default 200)")
    p.add_argument("--slave", type=_slave, default=1,
                   help=f"slave id for --scan-regs / --decode, {SLAVE_IDS[0]}..{SLAVE_IDS[1]} "
                        "(default 1)")
    p.add_argument("--scan-ids", metavar="A-B", type=_id_range,
                   help=f"scan slave ids, e.g. 1-247 ({SLAVE_IDS[0]}..{SLAVE_IDS[1]})")
    p.add_argument("--scan-regs", metavar="A-B", type=_range,
                   help=f"scan register ranges of --slave, e.g. 0-999 "
                        f"({REG_ADDRS[0]}..{REG_ADDRS[1]})")
    p.add_argument("--decode", type=_address, metavar="ADDR",
                   help="read 4 registers at ADDR and show every type/order")
    p.add_argument("--length", type=_length, metavar="N",
                   help=f"with --decode or --regs: read a string of N characters "
                        f"({STRING_LEN[0]}..{STRING_LEN[1]}, two per register) and show it "
                        "in both byte orders")
    p.add_argument("--fc", type=int, choices=(3, 4), default=3,
                   help="function code for --decode: 3 holding, 4 input registers (default 3)")
    p.add_argument("--regs", type=_hex_regs,
                   help="decode these hex registers instead of reading (e.g. 4366 8000)")
    return p


def _open(args: argparse.Namespace) -> SerialMaster:
    import serial  # pyserial

    try:
        return SerialMaster(args.port, args.baud, args.parity, args.stop_bits, args.timeout_ms)
    except (serial.SerialException, OSError) as e:
        raise CommandError(f"modbus probe: cannot open {args.port}: {_port_error(e)}") from None


def _decode_at(m: SerialMaster, slave: int, fc: int, addr: int) -> list[int]:
    """4 registers at addr (as many as fit below 65536), else 2 (a device refusing 4)."""
    n = min(4, REG_ADDRS[1] + 1 - addr)
    try:
        return m.read_regs(slave, fc, addr, n)
    except ProbeError:
        if n <= 2:
            raise
        return m.read_regs(slave, fc, addr, 2)


def run(args: argparse.Namespace) -> int:
    if args.regs:
        regs = args.regs if isinstance(args.regs, list) else _hex_regs(args.regs)
        length = getattr(args, "length", None)
        print(format_string(regs, length) if length else format_decode(regs))
        return 0
    if not args.port:
        raise CommandError("modbus probe: a serial port is required (or --regs)")
    if getattr(args, "length", None) and args.decode is None:
        raise CommandError("modbus probe: --length N reads a string at --decode ADDR (or "
                           "decodes --regs): give --decode ADDR")
    if not (args.scan_ids or args.scan_regs or args.decode is not None):
        raise CommandError("modbus probe: nothing to do: use --scan-ids A-B, --scan-regs A-B "
                           "or --decode ADDR (see --help)")
    import serial  # pyserial

    m = _open(args)
    line = f"{args.baud} baud 8{args.parity}{args.stop_bits}"
    prog = None
    try:
        if args.scan_ids:
            ids = args.scan_ids
            print(f"scanning slave ids {ids[0]}..{ids[-1]} at {line} "
                  f"(up to about {_seconds(len(ids), m)} s)", file=sys.stderr, flush=True)
            prog = _Progress(len(ids), "ids", lambda sid: f"trying slave id {sid}")
            found = scan_ids(m, ids, out=prog.out, progress=prog)
            prog.done()
            print(f"{len(found)} slave(s): {' '.join(map(str, found)) or '-'}")
            if not found:
                print(f"no slave answered ids {ids[0]}..{ids[-1]} at {line}: check the A/B "
                      "wiring, ground, baud, parity and termination", file=sys.stderr)
        if args.scan_regs:
            regs = args.scan_regs
            n = 2 * math.ceil(len(regs) / 10)
            print(f"scanning registers {regs[0]}..{regs[-1]} of slave {args.slave} with FC03 "
                  f"and FC04 at {line} (up to about {_seconds(n, m)} s)", file=sys.stderr,
                  flush=True)
            prog = _Progress(n, "blocks", lambda b: f"reading FC{b[0]:02d} {b[1]}..{b[2]}")
            scan_regs(m, args.slave, regs, out=prog.out, progress=prog)
            prog.done()
        if args.decode is not None and getattr(args, "length", None):
            n = string_regs(args.length)
            if args.decode + n > REG_ADDRS[1] + 1:
                raise CommandError(f"modbus probe: a string of {args.length} characters at "
                                   f"{args.decode} runs past register {REG_ADDRS[1]}")
            try:
                regs = m.read_regs(args.slave, args.fc, args.decode, n)
            except ProbeError as e:
                raise ProbeError(f"slave {args.slave} FC{args.fc:02d} registers {args.decode}.."
                                 f"{args.decode + n - 1}: {e}") from None
            print(format_string(regs, args.length))
        elif args.decode is not None:
            try:
                regs = _decode_at(m, args.slave, args.fc, args.decode)
            except ProbeError as e:
                raise ProbeError(f"slave {args.slave} FC{args.fc:02d} register {args.decode}: "
                                 f"{e}") from None
            print(format_decode(regs))
    except ProbeError as e:
        raise CommandError(f"modbus probe: {e}") from None
    except (serial.SerialException, OSError) as e:
        raise CommandError(f"modbus probe: {args.port}: {_port_error(e)}") from None
    finally:
        if prog:
            prog.clear()
        m.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = build_parser(argparse.ArgumentParser(prog="otlink modbus probe", description=__doc__,
                                             formatter_class=argparse.RawDescriptionHelpFormatter))
    try:
        return run(p.parse_args(argv))
    except CommandError as e:
        print(f"otlink: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
