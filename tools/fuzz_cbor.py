"""Fuzzing the host decoder: generated CBOR (and JSON on cmd/reply) into decode_message, and
every decoded data batch on through the monitor's row path (make_row: apply_scale with the
fuzzed birth's scale and offset). The contract (decode.py): anything that is not a valid
otlink message raises PayloadError naming what is wrong, and nothing else.

Cases, drawn from one seeded generator (no hypothesis): well-formed messages of every kind
with hostile field values (NaN, +-inf, -0.0, 2**64 and beyond, negative, wrong types, tags,
undefined, simple values, surrogates in text), the same mutated byte-wise (bit flips,
truncation, insertion of CBOR heads with huge lengths, indefinite-length starts), deep
nesting (arrays, maps and tags up to 100,000 levels), and raw random bytes.

    .venv/bin/python tools/fuzz_cbor.py [-n COUNT] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tools"))

import cbor2  # noqa: E402

from otlink_tools.decode import PayloadError, decode_message  # noqa: E402
from otlink_tools.monitor_formats import make_row  # noqa: E402

KINDS = ("data", "birth", "state", "ack", "cmd", "reply")
NASTY_FLOATS = (math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, 3.4e38,
                1e-45, 1.0, 0.001, 1e300, -1e-300)
NASTY_INTS = (0, 1, -1, 255, 256, 65535, 65536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 63,
              2 ** 64 - 1, -(2 ** 64), 2 ** 64, 2 ** 100, -(2 ** 100), 10 ** 40)
TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
         "bool", "bit", "string", "", "x" * 300)
HEADS = (b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff", b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
         b"\x7b\x00\x00\x00\x01\x00\x00\x00\x00", b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",
         b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff", b"\x9f", b"\xbf", b"\x5f", b"\x7f", b"\xff",
         b"\xf9\x7e\x00", b"\xf9\x7c\x00", b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",
         b"\xc0", b"\xc1", b"\xc2", b"\xc3", b"\xc4", b"\xd8\x1e", b"\xd9\xd9\xf7", b"\xf7",
         b"\xf8\x20", b"\xfc", b"\x1c", b"\x3f", b"\x62\xff\xfe", b"\x63\xed\xa0\x80")


class Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.bad = 0.2  # share of fields given a hostile value (drawn per case)

    def num(self):
        r = self.r
        k = r.random()
        if k < 0.35:
            return r.choice(NASTY_FLOATS)
        if k < 0.7:
            return r.choice(NASTY_INTS) * r.choice((1, -1, 1))
        if k < 0.85:
            return r.uniform(-1e6, 1e6)
        return r.randint(-70000, 70000)

    def any(self, depth: int = 0):
        r = self.r
        k = r.randrange(14 if depth < 3 else 9)
        if k < 2:
            return self.num()
        if k == 2:
            return r.choice(("", "a", "x" * r.randrange(200), "é", "modbus:1:holding:7",
                             "modbus:999:coil:99999.99", "modbus::::", "\x00"))
        if k == 3:
            return bytes(r.randrange(256) for _ in range(r.randrange(12)))
        if k == 4:
            return r.choice((None, True, False, cbor2.undefined, cbor2.CBORSimpleValue(
                r.choice((0, 16, 19, 32, 255)))))
        if k == 5:
            return cbor2.CBORTag(r.choice((0, 1, 2, 3, 4, 5, 24, 30, 258, 55799, 2 ** 40)),
                                 self.any(depth + 1))
        if k < 9:
            return r.choice(NASTY_INTS)
        if k < 12:
            return [self.any(depth + 1) for _ in range(r.randrange(6))]
        return {self.key(): self.any(depth + 1) for _ in range(r.randrange(5))}

    def key(self):
        r = self.r
        if r.random() < 0.85:
            return r.choice(("v", "b", "s", "e", "f", "t", "r", "node", "fw", "cfg", "boot", "pts",
                             "online", "queue_depth", "slave_errors", "free_heap", "x"))
        return self.any(3)

    def val(self, good):
        """Mostly the good value, sometimes a hostile one."""
        return good if self.r.random() >= self.bad else self.any(1)

    def data(self):
        r = self.r
        n = r.randrange(1, 8)
        first = r.choice((0, 1, 2 ** 32 - 2, r.randrange(2 ** 32)))
        rs = []
        for _ in range(n):
            if r.random() < 0.15:
                rs.append(-r.choice((1, 1000, 2 ** 40, 2 ** 70)))
            rs.append(self.val(r.randrange(8)))
            v = r.choice((self.num(), r.randrange(-50, 50), "txt",
                          cbor2.CBORSimpleValue(r.choice((1, 2, 9, 16, 32, 19)))))
            rs.append(self.val(v))
        m = {"v": self.val(1), "b": self.val(r.randrange(1, 5)), "s": self.val(first),
             "e": self.val((first + n - 1) % 2 ** 32), "f": self.val(r.choice((0, 1, 2, 3))),
             "t": self.val(r.choice((1700000000000, 0, 2 ** 63, -5))), "r": self.val(rs)}
        return self.drop(m)

    def birth(self, node: str = "n1"):
        r = self.r
        pts = []
        for pid in range(r.randrange(8)):
            pts.append(self.val([self.val(pid), self.val("p%d" % pid), self.val(r.choice(("V",
                                 None))), self.val(r.choice(TYPES)), self.val(self.num()),
                                 self.val(self.num()), self.val(r.choice((
                                     None, "modbus:1:holding:%d" % pid, "modbus:1:holding:3.%d"
                                     % r.randrange(20), "i2c:cab")))]))
        m = {"v": self.val(1), "node": self.val(node), "fw": self.val("0.1"),
             "cfg": self.val(b"\x01\x02"), "boot": self.val(r.randrange(1, 5)),
             "pts": self.val(pts), "t": self.val(1700000000000)}
        return self.drop(m)

    def state(self):
        r = self.r
        m = {"v": self.val(1)}
        for k in ("online", "boot", "uptime_s", "t", "queue_depth", "free_heap", "reset_cause",
                  "slave_errors", "clock_set", "msgs_refused"):
            if r.random() < 0.6:
                m[k] = self.val(self.any(2) if k == "slave_errors" else r.randrange(100))
        return m

    def ack(self):
        return self.drop({"v": self.val(1), "b": self.val(1), "s": self.val(self.r.randrange(9))})

    def drop(self, m: dict) -> dict:
        if self.r.random() < 0.1 and m:
            m.pop(self.r.choice(list(m)))
        return m

    def deep(self) -> bytes:
        r = self.r
        depth = r.choice((100, 1000, 5000, 20000, 100000))
        head = r.choice((b"\x81", b"\xa1\x61a", b"\xc1", b"\x9f", b"\xd8\x1e"))
        body = head * depth + r.choice((b"\x00", b"", b"\xff"))
        if r.random() < 0.5:  # inside a data message's readings array
            body = cbor2.dumps({"v": 1, "b": 1, "s": 0, "e": 0, "f": 0, "t": 0})[:-0 or None]
            body = b"\xa7" + body[1:] + b"\x61r" + head * depth + b"\x00"
        return body

    def mutate(self, b: bytes) -> bytes:
        r = self.r
        b = bytearray(b)
        for _ in range(r.randrange(1, 4)):
            k = r.randrange(5)
            if k == 0 and b:
                i = r.randrange(len(b))
                b[i] ^= 1 << r.randrange(8)
            elif k == 1 and b:
                del b[r.randrange(len(b)):]
            elif k == 2:
                i = r.randrange(len(b) + 1)
                b[i:i] = r.choice(HEADS)
            elif k == 3 and b:
                b[r.randrange(len(b))] = r.randrange(256)
            else:
                i = r.randrange(len(b) + 1)
                b[i:i] = bytes(r.randrange(256) for _ in range(r.randrange(1, 6)))
        return bytes(b)

    def json_body(self) -> bytes:
        r = self.r
        k = r.randrange(6)
        if k == 0:
            return bytes(r.randrange(256) for _ in range(r.randrange(40)))
        if k == 1:
            return b"[" * r.choice((10, 1000, 100000)) + b"]" * r.randrange(3)
        if k == 2:
            return r.choice((b"1e999999", b"-1e400", b"NaN", b"Infinity", b"\"\\ud800\"",
                             b"{\"id\": 1e309}", b"{\"value\": 1" + b"0" * 5000 + b"}", b"",
                             b"\xff\xfe", b"{\"a\":" * 50000))
        body = {"id": self.any(2), "op": r.choice(("write", "read", None, 1)),
                "point": self.val(r.randrange(10)), "value": self.any(1)}
        try:
            return json.dumps(body, allow_nan=True, default=repr).encode(errors="surrogatepass")
        except (TypeError, ValueError):
            return repr(body).encode(errors="surrogatepass")

    def case(self) -> tuple[str, bytes]:
        r = self.r
        kind = r.choice(KINDS)
        self.bad = r.choice((0.0, 0.05, 0.2))
        topic = f"otlink/site/n1/{kind}"
        if kind in ("cmd", "reply"):
            return topic, self.json_body()
        k = r.random()
        if k < 0.05:
            return topic, bytes(r.randrange(256) for _ in range(r.randrange(64)))
        if k < 0.08:
            return topic, self.deep()
        obj = {"data": self.data, "birth": self.birth, "state": self.state,
               "ack": self.ack}[kind]()
        try:
            b = cbor2.dumps(obj)
        except (ValueError, TypeError, OverflowError):
            b = b"\xa1\x61v" + r.choice(HEADS)
        if k < 0.45:
            b = self.mutate(b)
        return topic, b


def run(n: int, seed: int = 1, keep: int = 5) -> dict:
    g = Gen(seed)
    births: list[dict] = []
    res = {"cases": 0, "payload_errors": 0, "decoded": 0, "rows": 0, "other_exceptions": 0,
           "by_type": {}, "examples": [], "max_case_ms": 0.0, "seed": seed}
    t_all = time.perf_counter()
    for _ in range(n):
        topic, payload = g.case()
        t0 = time.perf_counter()
        try:
            m = decode_message(topic, payload)
            res["decoded"] += 1
            if m["kind"] == "birth":
                births = (births + [m])[-4:]
            elif m["kind"] == "data":
                birth = g.r.choice(births) if births else None
                for r in m["readings"]:
                    # the monitor's row path: the birth's scale/offset applied
                    make_row(("site", "n1"), m, r, birth)
                    res["rows"] += 1
        except PayloadError:
            res["payload_errors"] += 1
        except Exception as e:  # noqa: BLE001 (what the fuzzer is looking for)
            res["other_exceptions"] += 1
            name = type(e).__name__
            first = name not in res["by_type"]
            res["by_type"][name] = res["by_type"].get(name, 0) + 1
            if first or len(res["examples"]) < keep:
                res["examples"].append({"topic": topic, "payload_hex": payload[:200].hex(),
                                        "error": f"{name}: {e}"[:300],
                                        "where": traceback.format_exc().splitlines()[-3][:200]})
        dt = (time.perf_counter() - t0) * 1000
        if dt > res["max_case_ms"]:
            res["max_case_ms"] = round(dt, 2)
        res["cases"] += 1
    res["seconds"] = round(time.perf_counter() - t_all, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    sys.setrecursionlimit(1000)
    res = run(a.n, a.seed)
    print(json.dumps(res, indent=2))
    return 1 if res["other_exceptions"] else 0


if __name__ == "__main__":
    sys.exit(main())
