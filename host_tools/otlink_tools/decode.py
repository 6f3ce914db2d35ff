"""Decode otlink payloads (docs/payload.md, version 1) on the host.

`decode_message(topic, payload)` turns one MQTT message into a plain dict. Any payload that
is not a valid otlink message raises `PayloadError` with a message naming what is wrong; no
other exception escapes (the monitor must survive whatever a broker delivers). A text value
in a data batch that is not UTF-8 does not fail the batch: that reading gets the text with
U+FFFD for each bad byte and a "note" naming the bytes.
"""

from __future__ import annotations

import io
import json
import math
import struct
from decimal import Context, Decimal, localcontext
from typing import Any

import cbor2

VERSION = 1
KINDS = ("birth", "data", "state", "ack", "cmd", "reply")
SEQ_MOD = 1 << 32
FLAG_HISTORICAL = 1
FLAG_UNTIMED = 2
_NUM_MAX = 1e12  # largest |scale| or |offset| a birth may carry (the node config's bound)

#: Error codes carried in place of a value (docs/payload.md, "Error codes").
ERROR_CODES: dict[int, str] = {
    1: "timeout",
    2: "CRC error",
    3: "bad or garbled frame",
    4: "reply from the wrong slave",
    5: "reply with the wrong function code",
    6: "echo mismatch (transceiver echo expected)",
    7: "write not confirmed (address or quantity differs)",
    8: "serial port failed (adapter unplugged or device gone)",
    9: "out of range (outside the point's configured plausibility range)",
    10: "4-20 mA loop below 3.8 mA (open loop or failed transmitter, NAMUR NE 43)",
    11: "4-20 mA loop above 20.5 mA (over range or short circuit, NAMUR NE 43)",
    12: "sensor not ready (no valid measurement yet, e.g. DS18B20 power-on 85 degC)",
    16: "sensor absent or not answering",
    17: "sensor CRC error",
    18: "sensor bus stuck (line held low or timing out)",
    32: "slave offline (skipped during backoff)",
    0x81: "Modbus exception 1: illegal function",
    0x82: "Modbus exception 2: illegal data address",
    0x83: "Modbus exception 3: illegal data value",
    0x84: "Modbus exception 4: slave device failure",
    0x85: "Modbus exception 5: acknowledge",
    0x86: "Modbus exception 6: slave device busy",
    0x87: "Modbus exception 7: negative acknowledge",
    0x88: "Modbus exception 8: memory parity error",
    0x8A: "Modbus exception 10: gateway path unavailable",
    0x8B: "Modbus exception 11: gateway target failed to respond",
}

#: State fields and the Python types their values must have.
STATE_FIELDS: dict[str, type] = {
    "online": bool,
    "boot": int,
    "uptime_s": int,
    "t": int,
    "queue_depth": int,
    "oldest_unsent_s": int,
    "drops": int,
    "free_heap": int,
    "reset_cause": str,
    "slave_errors": dict,
    "mqtt_reconnects": int,
    "clock_set": bool,
    "queue_corrupt": int,  # unacknowledged readings lost to flash damage found at recovery
    "sensor_errors": int,  # failed local sensor reads since boot
    "task_errors": int,  # agent tasks that failed and were restarted since boot
    "bus_errors": int,  # times the serial port itself failed since boot
    "msgs_refused": int,  # ack/cmd messages discarded unread (over 2 KiB) since boot
    "insecure": str,  # explicit insecure options in force, e.g. "plaintext_auth" (security.md)
    "cmd_forged": int,  # commands refused since boot: unsigned or a tag that does not verify
    "cmd_replayed": int,  # signed commands refused since boot: counter already used
    "acks_forged": int,  # consumer acks refused since boot: unsigned or forged
    "point_errors": dict,  # point id -> error code, points whose last report is an error
    "stopped": bool,  # True in the state of a node that stopped cleanly (not the last will)
    "config": str,  # ok, trial (committed, not yet healthy), rolled_back (console_config.py)
    "safe_mode": str,  # why the node runs in safe mode: no polling (bootguard.py); absent: normal
}



def seq_add(a: int, k: int) -> int:
    """a + k modulo 2**32 (k may be negative): sequence numbers and boot counters wrap."""
    return (a + k) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit serial arithmetic (RFC 1982): in -2**31 .. 2**31-1, negative when a
    is older than b."""
    half = SEQ_MOD >> 1
    return (a - b + half) % SEQ_MOD - half


_MAX_PAYLOAD = 1 << 20  # far above anything a node sends; refuses absurd inputs early


class PayloadError(ValueError):
    """A payload or topic is not a valid otlink message; str() says what is wrong."""


def error_name(code: int) -> str:
    """Human-readable name of a per-point error code."""
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if code & 0x80:
        return f"Modbus exception {code & 0x7F}"
    return f"error {code}"


# -- topics -------------------------------------------------------------------------------


def valid_level(value: str) -> bool:
    """One topic level (site, node, share group): not empty, without / + # or NUL."""
    return bool(value) and not any(c in value for c in "/+#\0")


def valid_prefix(prefix: str) -> bool:
    """A topic prefix: one or more valid levels joined by /, not starting with $ (topics the
    broker reserves, such as $SYS). The firmware's rule (core/config.py, topic_prefix_ok) is
    the same; tests/host/test_config_fuzz.py checks that they agree."""
    return (bool(prefix) and not prefix.startswith("$")
            and all(valid_level(p) for p in prefix.split("/")))


def _check_segment(value: str, what: str) -> None:
    if not valid_level(value):
        raise PayloadError(f"topic {what} {value!r}: empty or contains / + # NUL")


def topic(prefix: str, site: str, node: str, kind: str) -> str:
    """Topic of one message kind: `<prefix>/<site>/<node>/<kind>` (prefix usually "otlink")."""
    if not valid_prefix(prefix):
        raise PayloadError(f"topic prefix {prefix!r}")
    _check_segment(site, "site")
    _check_segment(node, "node")
    if kind not in KINDS:
        raise PayloadError(f"topic kind {kind!r}: one of {', '.join(KINDS)} wanted")
    return f"{prefix}/{site}/{node}/{kind}"


def parse_topic(t: str) -> tuple[str, str, str, str]:
    """(prefix, site, node, kind) of a topic; the prefix may itself contain slashes."""
    if not isinstance(t, str):
        raise PayloadError("topic: str wanted")
    parts = t.split("/")
    if len(parts) < 4 or not all(parts):
        raise PayloadError(f"topic {t!r}: <prefix>/<site>/<node>/<kind> wanted")
    kind = parts[-1]
    if kind not in KINDS:
        raise PayloadError(f"topic {t!r}: unknown kind {kind!r}")
    return "/".join(parts[:-3]), parts[-3], parts[-2], kind


# -- CBOR ---------------------------------------------------------------------------------


def _loads(payload: bytes, lenient_text: bool = False) -> Any:
    """The one CBOR item of payload. lenient_text: text strings that are not valid UTF-8
    decode with their bad bytes as lone surrogates (surrogateescape) instead of failing the
    whole payload; the caller then flags the item that holds one (see _text_value)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise PayloadError("payload: bytes wanted")
    payload = bytes(payload)
    if not payload:
        raise PayloadError("payload is empty")
    if len(payload) > _MAX_PAYLOAD:
        raise PayloadError(f"payload of {len(payload)} bytes is too large")
    fp = io.BytesIO(payload)
    try:
        dec = cbor2.CBORDecoder(fp, str_errors="surrogateescape") if lenient_text \
            else cbor2.CBORDecoder(fp)
        obj = dec.decode()
    except cbor2.CBORDecodeEOF:
        raise PayloadError("payload truncated: CBOR item ends past the payload") from None
    except Exception as e:  # cbor2 raises several types on garbage; report them all as one
        raise PayloadError(f"payload is not valid CBOR: {e}") from None
    if fp.tell() != len(payload):
        raise PayloadError(f"payload has {len(payload) - fp.tell()} trailing bytes after the "
                           "CBOR item")
    return obj


def _text_value(s: str) -> tuple[str, str | None]:
    """(text, note) of a text value decoded leniently: text that is not UTF-8 becomes
    readable text with U+FFFD for each bad byte, and the note names the exact bytes."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raw = s.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "replace"), f"text value is not UTF-8: bytes {raw.hex()}"
    return s, None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _uint(m: dict, key: str, what: str, limit: int = SEQ_MOD) -> int:
    if key not in m:
        raise PayloadError(f"{what}: field {key!r} missing")
    v = m[key]
    if not _is_int(v) or v < 0 or v >= limit:
        raise PayloadError(f"{what}: field {key!r} must be an integer in 0..{limit - 1}, "
                           f"got {v!r}")
    return v


def _map(obj: Any, what: str) -> dict:
    if not isinstance(obj, dict):
        raise PayloadError(f"{what}: CBOR map wanted, got {type(obj).__name__}")
    for k in obj:
        if not isinstance(k, str):
            raise PayloadError(f"{what}: keys must be text, got {k!r}")
    v = obj.get("v")
    if v is None:
        raise PayloadError(f"{what}: version field 'v' missing")
    if v != VERSION or not _is_int(v):
        raise PayloadError(f"{what}: unsupported version {v!r} (this decoder reads {VERSION})")
    return obj


# -- messages -----------------------------------------------------------------------------


def decode_data(obj: Any) -> dict:
    """Data batch dict from a decoded CBOR object (see decode_message)."""
    m = _map(obj, "data")
    boot = _uint(m, "b", "data")
    first = _uint(m, "s", "data")
    last = _uint(m, "e", "data")
    flags = _uint(m, "f", "data", 256)
    if flags & ~(FLAG_HISTORICAL | FLAG_UNTIMED):
        raise PayloadError(f"data: unknown flags 0x{flags:02x}")
    if "t" not in m or not _is_int(m["t"]):
        raise PayloadError("data: base time 't' must be an integer (ms)")
    t = m["t"]
    r = m.get("r")
    if not isinstance(r, list):
        raise PayloadError("data: readings 'r' must be an array")
    untimed = bool(flags & FLAG_UNTIMED)
    readings = []
    last_int: dict[int, int] = {}
    i = 0
    n = len(r)
    while i < n:
        x = r[i]
        if _is_int(x) and x < 0:  # time advance of -x ms
            if i + 1 >= n:
                raise PayloadError(f"data: r[{i}]: time advance at the end of the readings")
            if _is_int(r[i + 1]) and r[i + 1] < 0:
                raise PayloadError(f"data: r[{i}]: two time advances in a row")
            t -= x
            i += 1
            continue
        if not _is_int(x) or x > 0xFFFF:
            raise PayloadError(f"data: r[{i}]: point id (0..65535) wanted, got {x!r}")
        if i + 1 >= n:
            raise PayloadError(f"data: r[{i}]: point {x} has no value")
        v = r[i + 1]
        seq = seq_add(first, len(readings))
        rd: dict[str, Any] = {"seq": seq, "pid": x, "t_ms": t, "untimed": untimed,
                              "value": None, "err": None}
        if _is_int(v):
            if x in last_int:
                v = last_int[x] + v
            last_int[x] = v
            rd["value"] = v
        elif isinstance(v, float):
            rd["value"] = v
        elif isinstance(v, str):
            # one bad string register must not cost the rest of the batch (with consumer
            # acks a batch refused whole would be resent and refused forever)
            rd["value"], note = _text_value(v)
            if note is not None:
                rd["note"] = note
        elif isinstance(v, cbor2.CBORSimpleValue):
            rd["err"] = int(v.value)
        else:
            raise PayloadError(f"data: r[{i + 1}]: value of point {x} has unsupported type "
                               f"{type(v).__name__}")
        readings.append(rd)
        i += 2
    if not readings:
        raise PayloadError("data: batch holds no readings")
    span = seq_add(last, -first) + 1
    if span != len(readings):
        raise PayloadError(f"data: sequence range {first}..{last} covers {span} readings "
                           f"but the batch holds {len(readings)}")
    return {"kind": "data", "v": VERSION, "boot": boot, "seq_first": first, "seq_last": last,
            "historical": bool(flags & FLAG_HISTORICAL), "untimed": untimed, "t_base": m["t"],
            "readings": readings}


def _opt_text(p: list, i: int, what: str) -> str | None:
    v = p[i]
    if v is not None and not isinstance(v, str):
        raise PayloadError(f"{what}: text or null wanted, got {v!r}")
    return v


def _number(v: Any, what: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PayloadError(f"{what}: number wanted, got {v!r}")
    # what a node can send: its config holds scale and offset finite, |x| <= 1e12
    # (firmware core/config.py NUM_MAX); NaN, inf or 1e300 would poison every value
    if not (-_NUM_MAX <= v <= _NUM_MAX):
        raise PayloadError(f"{what}: a finite number of at most {_NUM_MAX:g} wanted, got {v!r}")
    return v


_SOURCE_TABLES = ("coil", "discrete", "holding", "input")


def parse_source(source: str | None) -> dict | None:
    """Where a birth point is read, from its source text: a Modbus point's
    ``modbus:<slave>:<table>:<address>`` (``.<bit>`` added for a type bit point, e.g.
    ``modbus:1:holding:100.3``) as {"slave", "table", "address", "bit"} (bit None when the
    point reads the whole register). None for other sources (local sensors) and no source;
    PayloadError for a modbus source that does not parse."""
    if not isinstance(source, str) or not source.startswith("modbus:"):
        return None
    parts = source.split(":")
    addr, dot, bit = parts[-1].partition(".")
    try:
        if len(parts) != 4 or parts[2] not in _SOURCE_TABLES:
            raise ValueError
        out = {"slave": int(parts[1], 10), "table": parts[2], "address": int(addr, 10),
               "bit": int(bit, 10) if dot else None}
    except ValueError:
        raise PayloadError(f"source {source!r}: modbus:<slave>:<table>:<address>[.<bit>] "
                           "wanted") from None
    if not (0 <= out["slave"] <= 247 and 0 <= out["address"] <= 0xFFFF
            and (out["bit"] is None or (0 <= out["bit"] <= 15
                                        and parts[2] in ("holding", "input")))):
        raise PayloadError(f"source {source!r}: slave 0..247, address 0..65535, bit 0..15 "
                           "of a holding or input register")
    return out


def format_source(source: str | None) -> str:
    """A birth point's source for people: "slave 1 holding 100 bit 3"; other sources as
    they are, "" for none."""
    s = parse_source(source)
    if s is None:
        return source or ""
    bit = "" if s["bit"] is None else f" bit {s['bit']}"
    return f"slave {s['slave']} {s['table']} {s['address']}{bit}"


def decode_birth(obj: Any) -> dict:
    """Birth dict from a decoded CBOR object (see decode_message)."""
    m = _map(obj, "birth")
    for key in ("node", "fw"):
        if not isinstance(m.get(key), str):
            raise PayloadError(f"birth: field {key!r} must be text")
    cfg = m.get("cfg")
    if isinstance(cfg, bytes):
        cfg = cfg.hex()
    if not isinstance(cfg, str):
        raise PayloadError("birth: field 'cfg' (config hash) must be text or bytes")
    boot = _uint(m, "boot", "birth")
    pts = m.get("pts")
    if not isinstance(pts, list):
        raise PayloadError("birth: field 'pts' (point table) must be an array")
    points = []
    seen = set()
    for j, p in enumerate(pts):
        what = f"birth: pts[{j}]"
        if not isinstance(p, list) or len(p) != 7:
            raise PayloadError(f"{what}: array of 7 wanted (id, name, unit, type, scale, "
                               "offset, source)")
        pid = p[0]
        if not _is_int(pid) or not 0 <= pid <= 0xFFFF:
            raise PayloadError(f"{what}: id must be 0..65535, got {pid!r}")
        if pid in seen:
            raise PayloadError(f"{what}: id {pid} appears twice")
        seen.add(pid)
        if not isinstance(p[1], str) or not isinstance(p[3], str):
            raise PayloadError(f"{what}: name and type must be text")
        pt = {"id": pid, "name": p[1], "unit": _opt_text(p, 2, what + ".unit"),
              "type": p[3], "scale": _number(p[4], what + ".scale"),
              "offset": _number(p[5], what + ".offset"),
              "source": _opt_text(p, 6, what + ".source")}
        try:
            where = parse_source(pt["source"])
        except PayloadError as e:
            raise PayloadError(f"{what}: {e}") from None
        if where is not None and where["bit"] is not None:
            pt["bit"] = where["bit"]  # a type bit point: which bit of its register
        points.append(pt)
    out = {"kind": "birth", "v": VERSION, "node": m["node"], "fw": m["fw"],
           "config_hash": cfg, "boot": boot, "points": points}
    if "t" in m:
        if not _is_int(m["t"]):
            raise PayloadError("birth: field 't' must be an integer (ms)")
        out["t"] = m["t"]
    if "sec" in m:  # the node's security posture (docs/payload.md, docs/security.md)
        sec = m["sec"]
        if not isinstance(sec, dict) or not all(
                isinstance(k, str) and isinstance(v, (bool, str)) for k, v in sec.items()):
            raise PayloadError("birth: field 'sec' (security posture) must map text to "
                               "true/false or text")
        out["sec"] = dict(sec)
    return out


def decode_state(obj: Any) -> dict:
    """State dict from a decoded CBOR object: {"kind": "state", "v": 1, <fields>}."""
    m = _map(obj, "state")
    out: dict[str, Any] = {"kind": "state", "v": VERSION}
    for k, v in m.items():
        if k == "v":
            continue
        typ = STATE_FIELDS.get(k)
        if typ is None:
            out[k] = v  # a newer node may add fields; keep them visible
            continue
        if typ is int:
            ok = _is_int(v)
        elif typ is dict:
            ok = isinstance(v, dict) and all(_is_int(a) and _is_int(c) for a, c in v.items())
        else:
            ok = isinstance(v, typ)
        if not ok:
            raise PayloadError(f"state: field {k!r} must be {typ.__name__}, got {v!r}")
        out[k] = dict(v) if typ is dict else v
    return out


def decode_ack(obj: Any) -> dict:
    """Ack dict: {"kind": "ack", "v": 1, "boot": int, "seq": int}."""
    m = _map(obj, "ack")
    return {"kind": "ack", "v": VERSION, "boot": _uint(m, "b", "ack"),
            "seq": _uint(m, "s", "ack")}


def encode_ack(boot: int, seq: int) -> bytes:
    """Ack payload a consumer publishes: it has stored every reading of `boot` up to `seq`."""
    if not (0 <= boot < SEQ_MOD and 0 <= seq < SEQ_MOD):
        raise ValueError("ack: boot and seq must be u32")
    return cbor2.dumps({"v": VERSION, "b": boot, "s": seq})


_DECODERS = {"data": decode_data, "birth": decode_birth, "state": decode_state,
             "ack": decode_ack}


def decode_message(topic: str, payload: bytes) -> dict:
    """Decode one message. The kind comes from the topic's last segment; the result also
    carries "site" and "node" from the topic. Raises PayloadError only."""
    prefix, site, node, kind = parse_topic(topic)
    if kind in ("cmd", "reply"):  # JSON, so that any MQTT tool can send and read them
        raw = bytes(payload)
        tag = None
        # signed (docs/security.md): JSON, LF, 64 hex digits of HMAC-SHA256; shown, not
        # checked here (the key is the operator's: otlink write checks replies)
        if len(raw) > 65 and raw[-65] == 0x0A and all(
                c in b"0123456789abcdefABCDEF" for c in raw[-64:]):
            raw, tag = raw[:-65], raw[-64:].decode()
        try:
            body = json.loads(raw)
        except (ValueError, TypeError, RecursionError) as e:  # nesting deeper than the parser
            raise PayloadError(f"{kind}: not JSON: {e}") from None
        if not isinstance(body, dict):
            raise PayloadError(f"{kind}: a JSON object wanted")
        out = {"kind": kind, "site": site, "node": node, "body": body}
        if tag is not None:
            out["tag"] = tag
        return out
    obj = _loads(payload, lenient_text=kind == "data")
    try:
        out = _DECODERS[kind](obj)
    except PayloadError:
        raise
    except Exception as e:  # a decoder bug must still not kill the monitor
        raise PayloadError(f"{kind}: cannot decode: {type(e).__name__}: {e}") from None
    if kind == "birth" and out["node"] != node:
        raise PayloadError(f"birth: node {out['node']!r} does not match the topic's node "
                           f"{node!r}")
    out["site"] = site
    out["node"] = node
    return out


def _decimals(x: float) -> int:
    """Decimal places of x's shortest repr: 0.001 -> 3, 2.0 -> 0, 273.15 -> 2."""
    r = repr(float(x))
    if "e" in r:
        mant, exp = r.split("e")
        frac = mant.split(".")[1].rstrip("0") if "." in mant else ""
        return max(0, len(frac) - int(exp))
    return len(r.split(".")[1].rstrip("0"))


def _short_f32(v: float) -> float:
    """The shortest decimal that reads back as the same float32: what the device holds
    (230.10000610351562 -> 230.1)."""
    if v != v or v in (float("inf"), float("-inf")):
        return v
    try:
        want = struct.pack(">f", v)
    except OverflowError:
        return v  # beyond float32: not a float32 register's value, shown as it came
    for digits in range(1, 10):
        c = float(f"{v:.{digits}g}")
        if struct.pack(">f", c) == want:
            return c
    return v


# wide enough for any int64/uint64 raw times a scale of up to 1e12 to 15 decimals: exact
_EXACT = Context(prec=80)


def _as_f32(x: float) -> float | None:
    """x read back from a float32, or None when it does not fit one."""
    try:
        return struct.unpack(">f", struct.pack(">f", x))[0]
    except OverflowError:
        return None


def exact_number(x: int | float) -> int | float:
    """A birth scale or offset as the config meant it. Nodes hold every scale and offset as a
    float (1.0, 0.0; a single float on the boards): an integral one is the integer it names,
    so integer registers stay integers end to end (1234567, not 1234567.0, and an int64
    above 2**53 exact); a float32 one is its shortest decimal (0.1, not 0.10000000149011612)."""
    if isinstance(x, bool):
        return int(x)
    if not isinstance(x, float) or not math.isfinite(x):
        return x
    if x.is_integer():
        return int(x)
    if _as_f32(x) == x:
        return _short_f32(x)
    return x


def apply_scale(reading: dict, point: dict) -> int | float | str | None:
    """Engineering value of a reading: raw * scale + offset from the birth point table.

    Integers stay integers, exact at any size, when scale and offset are whole numbers
    (exact_number); errors give None. The result carries no more digits than the data has:
    an integer register times 0.001 is rounded to 3 decimals (0.944, not 0.9440000000000001;
    computed in decimal, then rounded once to the nearest float; a scale that is not a
    decimal step, 175/65535, keeps one digit below its step); a float32 register is read as
    the shortest decimal that is the same float32 (230.1, not 230.10000610351562)."""
    v = reading.get("value")
    if reading.get("err") is not None or v is None or isinstance(v, str):
        return v if reading.get("err") is None else None
    scale = exact_number(point.get("scale", 1))
    offset = exact_number(point.get("offset", 0))
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int) and isinstance(scale, int) and isinstance(offset, int):
        return v * scale + offset
    if isinstance(v, float):
        if point.get("type") != "float32":
            return v * scale + offset  # float64: all its digits are data
        v = _short_f32(v)
        if scale == 1 and offset == 0:
            return v
        return float(f"{v * scale + offset:.7g}")  # float32 carries ~7 significant digits
    if not (math.isfinite(scale) and math.isfinite(offset)):
        return v * scale + offset
    d = _decimals(offset) if offset else 0
    if scale:
        step = abs(scale)
        d = max(d, min(_decimals(step), max(0, math.ceil(-math.log10(step))) + 1))
    with localcontext(_EXACT):
        exact = Decimal(v) * Decimal(repr(scale)) + Decimal(repr(offset))
        return float(round(exact, min(d, 15)))


# -- annotated hex dump (docs/payload.md examples, `otlink monitor --hex`) -----------------

_MT_NAMES = ("uint", "nint", "bytes", "text", "array", "map", "tag", "simple/float")


def annotate(payload: bytes) -> list[str]:
    """One line per CBOR head: its bytes in hex, indented by nesting, and what it is.
    Raises PayloadError on malformed input (same checks as decoding)."""
    _loads(payload)  # validates well-formedness first: the walk below may then trust lengths
    b = bytes(payload)
    lines: list[str] = []
    pos = 0
    stack: list[int] = []  # items left in each open container

    def item_done() -> None:
        while stack:
            stack[-1] -= 1
            if stack[-1] > 0:
                return
            stack.pop()

    while pos < len(b):
        start = pos
        ib = b[pos]
        mt, ai = ib >> 5, ib & 0x1F
        pos += 1
        size = {24: 1, 25: 2, 26: 4, 27: 8}.get(ai, 0)
        arg = int.from_bytes(b[pos:pos + size], "big") if size else ai
        pos += size
        depth = len(stack)
        if mt in (2, 3):
            content = b[pos:pos + arg]
            pos += arg
            what = repr(content.decode()) if mt == 3 else "h'" + content.hex() + "'"
            desc = f"{_MT_NAMES[mt]}({arg}) {what}"
        elif mt == 0:
            desc = f"uint {arg}"
        elif mt == 1:
            desc = f"nint {-1 - arg}"
        elif mt in (4, 5):
            desc = f"{_MT_NAMES[mt]}({arg})"
        elif mt == 6:
            desc = f"tag {arg}"
        elif ai in (25, 26, 27):
            fmt = {25: ">e", 26: ">f", 27: ">d"}[ai]
            desc = f"float{size * 8} {struct.unpack(fmt, b[start + 1:pos])[0]!r}"
        else:
            desc = {20: "false", 21: "true", 22: "null", 23: "undefined"}.get(
                arg, f"simple({arg})")
        lines.append(f"{'  ' * depth}{b[start:pos].hex(' ')}".ljust(40) + f" # {desc}")
        if mt in (4, 5) and arg:
            stack.append(arg * (2 if mt == 5 else 1))
        elif mt == 6:
            pass  # the tagged item follows and completes the parent
        else:
            item_done()
    return lines
