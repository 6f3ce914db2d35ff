# Node configuration: the one schema. One JSON file, validated once at boot before anything
# touches the bus or the network; the same module runs on CPython for `otlink node validate`.
#
# validate() returns a complete, normalized config: every default is filled in here, next to
# its range, so runtime modules index it (cfg["mqtt"]["batch_max"]) and never carry a default
# of their own. It reports every error of the file, not only the first: ConfigErrors holds a
# list of ConfigError(field, problem), each naming its path ("points[3].address").
# Reference (defaults, ranges, messages): docs/config.md.
import json

from otlink.core import modbus
from otlink.core.compat import const
from otlink.core.errors import ConfigError, ConfigErrors
from otlink.core.points import (ORDERS, T_BIT, T_BOOL, T_STRING, TABLES, TYPES, WORDS,
                                Points, raw_range)

SCHEMA_VERSION = 1

# boards/<name>.json: the board files (tests/host/test_boards.py checks this list against them)
BOARDS = ("unix", "esp32", "esp32_s3_devkitc", "olimex_esp32_poe", "pico_w", "pico2_w",
          "w5500_evb_pico")
_WIRED = ("olimex_esp32_poe", "w5500_evb_pico")  # boards on Ethernet: no wifi section
POLICIES = ("drop_oldest", "drop_newest")
ACK_MODES = ("broker", "consumer")
PARITIES = ("N", "E", "O")
DEFAULT_GROUP = "default"
DEFAULT_INTERVAL_MS = const(1000)

# Numbers (scale, offset, deadband) are finite and |x| <= NUM_MAX: the boards hold single
# floats (3.4e38 max, 7 digits); a nonzero scale is at least SCALE_MIN so it stays nonzero there.
NUM_MAX = 1e12
SCALE_MIN = 1e-12
MS_MAX = const(86400000)  # one day: every ms figure stays a small int on 32-bit boards
# The node's topics live in the heap for its life and each incoming message's topic is read
# into the heap to be compared: 256 bytes bound both. (Uplink.subscribe writes a multi-byte
# remaining length itself; umqtt.simple's own subscribe() stops at 122 bytes, micropython-lib#284.)
TOPIC_MAX = const(256)
QUEUE_MIN = const(8192)  # two 4 KiB sectors: the smallest queue (core/queue)
BATCH_BYTES_MIN = const(128)  # data header (48) + the largest text reading (78)
BATCH_BYTES_MAX = const(8192)  # see docs/config.md, "batch_bytes"
_MAX_ERRORS = const(20)
_MAX_STRING = const(64)  # characters (bytes) of a string point: MAX_TEXT of the reading record

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"
_IPV6_CHARS = "0123456789abcdefABCDEF:."
# Modicon register numbers (1-based, table digit first) people paste as "address":
# holding 4xxxx, input 3xxxx, discrete 1xxxx; coils (0xxxx) cannot be told apart.
_MODICON = {"holding": 40001, "input": 30001, "discrete": 10001}

_REQ = "(required)"  # default marker: the field must be given


# ---- topic rule (the host decoder's valid_level/valid_prefix is the same rule) -------------

def topic_level_ok(s):
    """One topic level (site, node, one level of a prefix): not empty, no / + # or NUL
    (MQTT 3.1.1 section 4.7)."""
    if not isinstance(s, str) or not s:
        return False
    for c in s:
        if c == "/" or c == "+" or c == "#" or c == "\0":
            return False
    return True


def topic_prefix_ok(s):
    """A topic prefix: one or more levels joined by /, none empty, no wildcards or NUL, and not
    starting with $ (broker-reserved topics such as $SYS, MQTT 3.1.1 section 4.7.2)."""
    if not isinstance(s, str) or not s or s[0] == "$":
        return False
    for lv in s.split("/"):
        if not topic_level_ok(lv):
            return False
    return True


# ---- the checker ------------------------------------------------------------------------------

class _Check:
    """Collects every error of one config (the first _MAX_ERRORS, then only counts)."""

    def __init__(self):
        self.errors = []
        self.more = 0

    def bad(self, path, problem):
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(ConfigError(path, problem))
        else:
            self.more += 1

    def done(self):
        if self.errors:
            if self.more:
                self.errors.append(ConfigError("(file)", "%d more errors not shown" % self.more))
            raise ConfigErrors(self.errors)


def _join(path, k):
    k = str(k) or '""'  # an empty key still gets a visible name
    return "%s.%s" % (path, k) if path else k


def _show(v):
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _obj(ck, d, path, required=False):
    """An object section: absent or null is {} (or an error when required)."""
    if d is None:
        if required:
            ck.bad(path, "is required")
        return {}
    if not isinstance(d, dict):
        ck.bad(path or "(top level)", "must be an object, got %s" % _show(d))
        return {}
    return d


def _keys(ck, d, path, allowed):
    for k in d:
        if k not in allowed:
            ck.bad(_join(path, k), "unknown field (allowed: %s)" % ", ".join(sorted(allowed)))


def _get(ck, d, key, path, default):
    """d[key], default when absent; an explicit null is a mistake, not "use the default"."""
    if key not in d:
        if default is _REQ:
            ck.bad(_join(path, key), "is required")
            return None
        return default
    v = d[key]
    if v is None:
        ck.bad(_join(path, key), "must not be null (leave the field out for its default)")
    return v


def _int(ck, d, key, path, default, lo, hi):
    v = _get(ck, d, key, path, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        ck.bad(_join(path, key), "must be an integer in %d..%d, got %s" % (lo, hi, _show(v)))
        return None
    if v < lo or v > hi:
        ck.bad(_join(path, key), "must be in %d..%d, got %d" % (lo, hi, v))
        return None
    return v


def _num(ck, d, key, path, default):
    """A finite number, |x| <= NUM_MAX, returned as float."""
    v = _get(ck, d, key, path, default)
    if v is None:
        return None
    p = _join(path, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        ck.bad(p, "must be a number, got %s" % _show(v))
        return None
    # ints first: float() of a huge int overflows; v - v is nan for inf and nan
    if v != v or (isinstance(v, float) and v - v != 0) or v > NUM_MAX or v < -NUM_MAX:
        ck.bad(p, "must be a finite number with |x| <= 1e12, got %s" % _show(v))
        return None
    return float(v)


def _str(ck, d, key, path, default, choices=None):
    v = _get(ck, d, key, path, default)
    if v is None:
        return None
    p = _join(path, key)
    if choices is not None:
        if not isinstance(v, str) or v not in choices:
            ck.bad(p, "must be one of %s, got %s" % (", ".join(choices), _show(v)))
            return None
        return v
    if not isinstance(v, str) or not v:
        ck.bad(p, "must be a non-empty string, got %s" % _show(v))
        return None
    return v


def _ident(ck, d, key, path):
    v = _str(ck, d, key, path, _REQ)
    if v is None:
        return None
    p = _join(path, key)
    if len(v) > 32:
        ck.bad(p, "at most 32 characters, got %d" % len(v))
        return None
    for c in v:
        if c not in _ID_CHARS:
            ck.bad(p, "may only hold letters, digits, '_', '-', '.' (got %r)" % c)
            return None
    return v


def _bool(ck, d, key, path, default):
    v = _get(ck, d, key, path, default)
    if v is None:
        return None
    if not isinstance(v, bool):
        ck.bad(_join(path, key), "must be true or false, got %s" % _show(v))
        return None
    return v


def _backoff(ck, d, key, path, default):
    v = _get(ck, d, key, path, default)
    if v is None:
        return default
    ok = isinstance(v, (list, tuple)) and len(v) == 2
    if ok:
        for x in v:
            if isinstance(x, bool) or not isinstance(x, int) or x < 1 or x > MS_MAX:
                ok = False
    if not ok or v[0] > v[1]:
        ck.bad(_join(path, key), "must be [first_ms, max_ms] with 1 <= first_ms <= max_ms "
               "<= 86400000, got %s" % _show(v))
        return default
    return (v[0], v[1])


# ---- sections ---------------------------------------------------------------------------------

def _node(ck, d):
    d = _obj(ck, d, "node", True)
    _keys(ck, d, "node", ("id", "site", "description"))
    return {
        "id": _ident(ck, d, "id", "node"),
        "site": _ident(ck, d, "site", "node"),
        "description": _text(ck, d, "description", "node"),
    }


def _text(ck, d, key, path):
    """Free text, "" allowed (units, descriptions)."""
    v = _get(ck, d, key, path, "")
    if not isinstance(v, str):
        ck.bad(_join(path, key), "must be a string, got %s" % _show(v))
        return ""
    return v


def _host(ck, d, path):
    h = _str(ck, d, "host", path, _REQ)
    if h is None:
        return None
    p = path + ".host"
    if "://" in h:
        ck.bad(p, "a host name or address, not a URL (got %s): the port goes in %s.port, TLS "
               "in %s.tls" % (_show(h), path, path))
        return None
    if h.count(":") == 1:
        ck.bad(p, "%s holds a port: give the host alone and the port in %s.port"
               % (_show(h), path))
        return None
    chars = _IPV6_CHARS if ":" in h else _HOST_CHARS  # an IPv6 address, or a name / IPv4 address
    for c in h:
        if c not in chars:
            ck.bad(p, "a host name or IP address wanted, got %s (%r is not allowed)"
                   % (_show(h), c))
            return None
    if len(h) > 253:
        ck.bad(p, "a host name has at most 253 characters, got %d" % len(h))
        return None
    return h


def _tls(ck, d, path):
    if d is None:
        return None
    if not isinstance(d, dict):
        ck.bad(path, "must be an object with ca_file, got %s" % _show(d))
        return None
    _keys(ck, d, path, ("ca_file", "cert_file", "key_file", "server_hostname"))
    t = {"ca_file": _str(ck, d, "ca_file", path, _REQ)}
    for k in ("cert_file", "key_file", "server_hostname"):
        t[k] = _str(ck, d, k, path, None)
    if ("cert_file" in d) != ("key_file" in d):
        ck.bad(path + ".key_file", "cert_file and key_file go together")
    return t


def _mqtt(ck, d, node_id, site):
    p = "mqtt"
    d = _obj(ck, d, p, True)
    _keys(ck, d, p, ("host", "port", "client_id", "user", "password", "keepalive_s", "qos",
                     "prefix", "ack", "batch_max", "batch_bytes", "linger_ms", "replay_rate",
                     "state_interval_s", "tls", "backoff_ms", "insecure_plaintext_auth",
                     "ack_key", "insecure_unsigned_acks"))
    tls = _tls(ck, d.get("tls"), "mqtt.tls")
    m = {
        "host": _host(ck, d, p),
        "port": _int(ck, d, "port", p, 8883 if tls else 1883, 1, 65535),
        "client_id": _str(ck, d, "client_id", p, node_id),
        "user": _str(ck, d, "user", p, None),
        "password": None,
        "keepalive_s": _int(ck, d, "keepalive_s", p, 30, 0, 65535),
        "qos": _int(ck, d, "qos", p, 1, 0, 1),
        "prefix": _str(ck, d, "prefix", p, "otlink"),
        "ack": _str(ck, d, "ack", p, "consumer", ACK_MODES),
        "batch_max": _int(ck, d, "batch_max", p, 50, 1, 500),
        "batch_bytes": _int(ck, d, "batch_bytes", p, 1024, BATCH_BYTES_MIN, BATCH_BYTES_MAX),
        "linger_ms": _int(ck, d, "linger_ms", p, 200, 0, 60000),
        "replay_rate": _int(ck, d, "replay_rate", p, 20, 0, 10000),
        "state_interval_s": _int(ck, d, "state_interval_s", p, 60, 1, 86400),
        "tls": tls,
        "backoff_ms": _backoff(ck, d, "backoff_ms", p, (500, 60000)),
    }
    pw = d.get("password")
    if pw is not None and not isinstance(pw, str):
        ck.bad("mqtt.password", "must be a string")  # never echo a secret
    else:
        m["password"] = pw
    if ("user" in d) != ("password" in d):
        ck.bad("mqtt.password", "user and password go together")
    _secure_mqtt(ck, d, m)
    if m["qos"] == 0 and m["ack"] == "broker":
        # QoS0 has no PUBACK: nothing would ever confirm delivery to the queue.
        ck.bad("mqtt.qos", "qos 0 cannot confirm delivery; use qos 1 or ack 'consumer'")
    pre = m["prefix"]
    if pre is not None:
        if not topic_prefix_ok(pre):
            ck.bad("mqtt.prefix", "topic levels joined by / wanted, none empty, without + # "
                   "or NUL, not starting with $ (got %s)" % _show(pre))
        elif node_id and site:
            # the longest topic the node subscribes to: <prefix>/<site>/<node>/ack (or cmd)
            n = len(("%s/%s/%s/ack" % (pre, site, node_id)).encode())
            if n > TOPIC_MAX:
                ck.bad("mqtt.prefix", "topics would be %d bytes, the node's MQTT client "
                       "subscribes to at most %d: shorten the prefix, site or node id"
                       % (n, TOPIC_MAX))
    return m


# Passwords anyone would try first (vendor and broker defaults, the top of leaked-password
# lists): refused, so a node never runs on a credential an attacker guesses in a few tries
# (EN 303 645 provision 5.1-1; docs/security.md). Compared in lower case.
_WELL_KNOWN = ("password", "passw0rd", "password1", "admin", "administrator", "public",
               "private", "guest", "mosquitto", "mqtt", "changeme", "default", "root", "toor",
               "12345678", "123456789", "1234567890", "qwertyui", "qwerty123", "letmein",
               "secret", "otlink", "raspberry", "iloveyou", "welcome1", "abcd1234")
PASSWORD_MIN = const(8)


def _weak(pw, user):
    """Why pw is a guessable credential, or None (the password itself never in the text)."""
    if len(pw) < PASSWORD_MIN:
        return "must have at least %d characters" % PASSWORD_MIN
    low = pw.lower()
    if low in _WELL_KNOWN:
        return "is a well-known default password: set a unique one (docs/security.md)"
    if user is not None and low == user.lower():
        return "must not be the user name"
    return None


def _secure_mqtt(ck, d, m):
    # Transport rules (docs/security.md): a password never crosses plain TCP unless
    # insecure_plaintext_auth says so; no guessable password; ack_key signs consumer acks.
    ins = _bool(ck, d, "insecure_plaintext_auth", "mqtt", False)
    m["insecure_plaintext_auth"] = bool(ins)
    pw = m["password"]
    if isinstance(pw, str):
        why = _weak(pw, m["user"])
        if why:
            ck.bad("mqtt.password", why)
        if m["tls"] is None and not ins:
            ck.bad("mqtt.password", "would cross the network in clear over plain TCP: "
                   "configure mqtt.tls, or set mqtt.insecure_plaintext_auth: true (a lab "
                   "only; the birth and state messages report it)")
    # Consumer acks delete readings: only the consumer holding ack_key may send them, unless
    # insecure_unsigned_acks says otherwise out loud.
    key = d.get("ack_key")
    m["ack_key"] = None
    unsigned = _bool(ck, d, "insecure_unsigned_acks", "mqtt", False)
    m["insecure_unsigned_acks"] = bool(unsigned)
    if key is not None:
        from otlink.core.auth import parse_key

        try:
            parse_key(key)
            m["ack_key"] = key
        except ValueError as e:
            ck.bad("mqtt.ack_key", str(e) + " (otlink key new FILE makes one)")
        if m["ack"] != "consumer":
            ck.bad("mqtt.ack_key", "signs consumer acks: only with ack 'consumer'")
        if unsigned:
            ck.bad("mqtt.insecure_unsigned_acks", "contradicts mqtt.ack_key: keep one")
    elif m["ack"] == "consumer" and unsigned is False:
        ck.bad("mqtt.ack_key", "missing: a consumer ack makes the node delete readings, so "
               "only the consumer holding this key may send one (32 to 128 hex digits: "
               "otlink key new FILE makes one; the consumer gets --ack-key-file FILE), or set "
               "mqtt.insecure_unsigned_acks: true (a lab only; the birth and state messages "
               "report it)")
    elif unsigned and m["ack"] != "consumer":
        ck.bad("mqtt.insecure_unsigned_acks", "only with ack 'consumer'")


def _groups(ck, d, path="groups"):
    """{name: {"interval_ms": n}} -> {name: n}; absent: one group "default", every second."""
    if d is None:
        return {DEFAULT_GROUP: DEFAULT_INTERVAL_MS}
    if not isinstance(d, dict):
        ck.bad(path, "must be an object of name -> {interval_ms}")
        return {}
    out = {}
    for name in d:
        p = _join(path, name)
        g = _obj(ck, d[name], p, True)
        _keys(ck, g, p, ("interval_ms",))
        v = _int(ck, g, "interval_ms", p, _REQ, 0, MS_MAX)  # 0: back to back
        if v is not None:
            out[name] = v
    return out


def _queue(ck, d):
    p = "queue"
    d = _obj(ck, d, p)
    _keys(ck, d, p, ("commit_ms", "commit_count", "policy", "capacity"))
    cap = _int(ck, d, "capacity", p, 0, 0, 0x3FFFFFFF)  # 0: the whole flash region
    if cap is not None and 0 < cap < QUEUE_MIN:
        ck.bad("queue.capacity", "must be 0 (the whole region) or at least %d bytes (two "
               "sectors), got %d" % (QUEUE_MIN, cap))
        cap = 0
    return {
        "commit_ms": _int(ck, d, "commit_ms", p, 1000, 0, 60000),
        "commit_count": _int(ck, d, "commit_count", p, 64, 1, 255),
        "policy": _str(ck, d, "policy", p, "drop_oldest", POLICIES),
        "capacity": cap or 0,
    }


_SERIAL_KEYS = ("backoff_ms", "baud", "char_timeout_ms", "echo", "frame_gap_us",
                "high_addresses", "max_bits", "max_gap_bits", "max_gap_regs", "max_regs",
                "offline_after", "parity", "port", "retries", "stop_bits", "timeout_ms",
                "turnaround_ms")


def _serial(ck, d, groups, need_port):
    w = "serial"
    d = _obj(ck, d, w)
    if "groups" in d:
        ck.bad("serial.groups", "poll groups are the top-level \"groups\" object, not part "
               "of serial")
    _keys(ck, d, w, _SERIAL_KEYS + ("groups",))
    port = d.get("port")
    if port is None:
        if need_port:
            ck.bad("serial.port", "is required on board unix (a pty or tty path such as "
                   "/dev/ttyUSB0); on a board the UART comes from the board file")
    elif not isinstance(port, str) or not port:
        ck.bad("serial.port", "must be a device path such as /dev/ttyUSB0, got %s" % _show(port))
        port = None
    return {
        "port": port,
        "baud": _int(ck, d, "baud", w, 9600, 300, 4000000),
        "parity": _str(ck, d, "parity", w, "N", PARITIES),
        "stop_bits": _int(ck, d, "stop_bits", w, 1, 1, 2),
        "timeout_ms": _int(ck, d, "timeout_ms", w, 200, 1, 60000),
        "turnaround_ms": _int(ck, d, "turnaround_ms", w, 100, 0, 60000),
        "char_timeout_ms": _int(ck, d, "char_timeout_ms", w, 5, 0, 1000),
        "frame_gap_us": _int(ck, d, "frame_gap_us", w, 0, 0, 1000000),
        "retries": _int(ck, d, "retries", w, 0, 0, 10),
        "offline_after": _int(ck, d, "offline_after", w, 2, 1, 1000000),
        "backoff_ms": _backoff(ck, d, "backoff_ms", w, (1000, 30000)),
        "echo": _bool(ck, d, "echo", w, False),
        "max_gap_regs": _int(ck, d, "max_gap_regs", w, 10, -1, modbus.MAX_REGS - 1),
        "max_regs": _int(ck, d, "max_regs", w, modbus.MAX_REGS, 1, modbus.MAX_REGS),
        "max_bits": _int(ck, d, "max_bits", w, modbus.MAX_BITS, 1, modbus.MAX_BITS),
        "max_gap_bits": _int(ck, d, "max_gap_bits", w, 64, -1, modbus.MAX_BITS - 1),
        "high_addresses": _bool(ck, d, "high_addresses", w, False),
        "groups": groups,  # the top-level poll groups, {name: interval_ms} (the planner's)
    }


_POINT_KEYS = ("id", "name", "slave", "table", "address", "type", "order", "bit", "length",
               "scale", "offset", "unit", "group", "deadband", "range")


def _point(ck, cfg, w, ser, first_group):
    """One Modbus point; None when it has an error (reported to ck)."""
    n0 = len(ck.errors) + ck.more
    cfg = _obj(ck, cfg, w, True)
    _keys(ck, cfg, w, _POINT_KEYS)
    pid = _int(ck, cfg, "id", w, _REQ, 0, 65535)
    name = _str(ck, cfg, "name", w, "p%d" % pid if pid is not None else "p")
    slave = _int(ck, cfg, "slave", w, _REQ, 1, 247)
    table = _str(ck, cfg, "table", w, _REQ, TABLES)
    bits_table = table == "coil" or table == "discrete"
    tname = _str(ck, cfg, "type", w, "bool" if bits_table else _REQ, TYPES)
    typ = TYPES.index(tname) if tname is not None else None
    if typ is not None and table is not None:
        if bits_table and typ != T_BOOL:
            ck.bad(w + ".type", "a %s point is a single bit: type must be bool" % table)
        if not bits_table and typ == T_BOOL:
            ck.bad(w + ".type", "bool is for coil/discrete; use bit with \"bit\": 0..15")
    address = _address(ck, cfg, w, table, ser)
    order = _str(ck, cfg, "order", w, "ABCD", ORDERS)
    bit = 0
    if typ == T_BIT:
        bit = _int(ck, cfg, "bit", w, _REQ, 0, 15)
    elif "bit" in cfg:
        ck.bad(w + ".bit", "only for type bit")
    words = WORDS[typ] if typ is not None else 1
    if typ == T_STRING:
        # length: characters (bytes), two to a register; the bit byte of the row holds it
        bit = _int(ck, cfg, "length", w, _REQ, 1, _MAX_STRING)
        words = (bit + 1) // 2 if bit is not None else None
    elif "length" in cfg:
        ck.bad(w + ".length", "only for type string (its length in characters)")
    if address is not None and words is not None:
        if address + words > 65536:
            ck.bad(w + ".address", "%d + %d registers runs past 65535" % (address, words))
    scale = _num(ck, cfg, "scale", w, 1.0)
    if scale is not None and -SCALE_MIN < scale < SCALE_MIN:
        ck.bad(w + ".scale", "must not be 0 (|scale| >= 1e-12)")
    offset = _num(ck, cfg, "offset", w, 0.0)
    unit = _text(ck, cfg, "unit", w)
    group = _get(ck, cfg, "group", w, first_group)
    if ser["groups"] and (not isinstance(group, str) or group not in ser["groups"]):
        ck.bad(w + ".group", "unknown group %s (declared: %s)"
               % (_show(group), ", ".join(sorted(ser["groups"])) or "none"))
    deadband = None  # absent: report every poll
    if "deadband" in cfg:
        deadband = _num(ck, cfg, "deadband", w, None)
        if deadband is not None and deadband < 0:
            ck.bad(w + ".deadband", "must be >= 0")
    rng = None  # absent: every value is plausible
    if "range" in cfg:
        rng = _range(ck, cfg, w, typ, scale, offset)
    if len(ck.errors) + ck.more != n0:
        return None
    return (pid, name, slave, table, address, typ, ORDERS.index(order), bit, words, scale,
            offset, unit, group, deadband, rng)


def _range(ck, cfg, w, typ, scale, offset):
    """"range": [min, max] in engineering units -> raw bound keys (points.raw_range), so the
    poll compares raw values; None (reported) when wrong."""
    p = w + ".range"
    v = cfg["range"]
    if v is None:
        ck.bad(p, "must not be null (leave the field out for no range)")
        return None
    if typ is None:
        return None
    if typ == T_STRING or typ == T_BIT or typ == T_BOOL:
        ck.bad(p, "only for number types, not %s" % TYPES[typ])
        return None
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        ck.bad(p, "must be [min, max] in engineering units, got %s" % _show(v))
        return None
    lo = _num(ck, {"min": v[0]}, "min", p, _REQ)
    hi = _num(ck, {"max": v[1]}, "max", p, _REQ)
    if lo is None or hi is None or scale is None or offset is None:
        return None
    if not lo < hi:
        ck.bad(p, "min must be below max, got %s" % _show(v))
        return None
    if -SCALE_MIN < scale < SCALE_MIN:
        return None
    r = raw_range(typ, scale, offset, lo, hi)
    if r is None:
        ck.bad(p, "%s..%s holds no %s value (after scale %s, offset %s)"
               % (_show(v[0]), _show(v[1]), TYPES[typ], _show(scale), _show(offset)))
    return r


def _address(ck, cfg, w, table, ser):
    a = cfg.get("address")
    base = _MODICON.get(table)
    if base and isinstance(a, int) and not isinstance(a, bool):
        # 40001..49999 (or 400001..465536) on a holding point: a Modicon register number
        if base * 10 - 9 <= a <= base * 10 + 65535:
            base = base * 10 - 9
        elif not (base <= a < base + 9999) or ser["high_addresses"]:
            base = None
        if base:
            ck.bad(w + ".address", "%d looks like a 1-based register number (%dxxxx: %s "
                   "register 1), not an address: address is the 0-based PDU address the "
                   "request carries, so register %d is address %d; if the device really "
                   "uses address %d (SunSpec maps from 40000), set serial.high_addresses: "
                   "true" % (a, base // 10000 if base < 100000 else base // 100000, table, a,
                             a - base, a))
            return None
    return _int(ck, cfg, "address", w, _REQ, 0, 65535)


def _overlaps(ck, pts, where):
    """Two points of one slave and table reading the same register (or bit) is a mistake;
    type bit points may share a register with each other (other bits) and with a number."""
    spans = sorted((pts.slave(i), pts.fc(i), pts.address(i), pts.address(i) + pts.words(i), i)
                   for i in range(len(pts)) if pts.b[i * 8 + 2] != T_BIT)
    for k in range(1, len(spans)):
        a = spans[k - 1]
        b = spans[k]
        if a[0] == b[0] and a[1] == b[1] and b[2] < a[3]:
            ck.bad(where[b[4]] + ".address", "registers %d..%d overlap %s (slave %d %s %d..%d): "
                   "two points read the same register" % (b[2], b[3] - 1, where[a[4]], a[0],
                                                           TABLES[a[1] - 1], a[2], a[3] - 1))
            spans[k] = a if a[3] > b[3] else b  # compare the next one with the longer span
    seen = {}
    for i in range(len(pts)):
        if pts.b[i * 8 + 2] == T_BIT:
            bit = pts.b[i * 8 + 4]
            k = (pts.slave(i), pts.fc(i), pts.address(i), bit)
            if k in seen:
                ck.bad(where[i] + ".bit", "bit %d of register %d is also %s"
                       % (bit, pts.address(i), where[seen[k]]))
            seen[k] = i


def _points(ck, lst, ser, ids, names, consume=False):
    if lst is None:
        return Points(0).seal()
    if not isinstance(lst, list):
        ck.bad("points", "must be a list")
        return Points(0).seal()
    groups = ser["groups"]
    first_group = DEFAULT_GROUP
    if first_group not in groups and groups:
        first_group = sorted(groups, key=lambda n: (groups[n], n))[0]
    out = Points(len(lst))  # the table's rows, preallocated (core/points.py)
    where = []
    for i, cfg in enumerate(lst):
        w = "points[%d]" % i
        p = _point(ck, cfg, w, ser, first_group)
        if consume:
            lst[i] = cfg = None  # the raw dict is garbage now (validate(consume=True))
        if p is None:
            continue
        _unique(ck, ids, p[0], w + ".id", "point id %d" % p[0])
        _unique(ck, names, p[1], w + ".name", "name %s" % _show(p[1]))
        try:
            out.add(*p)
        except ValueError as e:  # a unit or group index past one byte
            ck.bad(w + ".unit", str(e))
            continue
        where.append(w)
    _overlaps(ck, out, where)
    return out.seal()


def _unique(ck, seen, key, path, what):
    if key in seen:
        ck.bad(path, "%s is used twice (also %s)" % (what, seen[key]))
    else:
        seen[key] = path


def _sensors(ck, lst, groups, ids, names, buses):
    """Sensors, each read by a driver module (otlink/drivers/<driver>.py) that declares its
    bus kind, options and channels; the rules for all of them are here (docs/sensors.md)."""
    if lst is None:
        return []
    if not isinstance(lst, list):
        ck.bad("sensors", "must be a list")
        return []
    from otlink.drivers import load

    out = []
    for i, s in enumerate(lst):
        p = "sensors[%d]" % i
        s = _obj(ck, s, p, True)
        mod = None
        drv = _str(ck, s, "driver", p, _REQ)
        if drv is not None:
            try:
                mod = load(drv)
            except ValueError as e:
                ck.bad(p + ".driver", str(e))
        opts = mod.OPTIONS if mod else ()
        if mod is not None or drv is None:  # an unknown driver's own keys are not errors too
            _keys(ck, s, p, ("name", "driver", "bus", "group", "points") +
                  tuple(o[0] for o in opts))
        group = _str(ck, s, "group", p, _REQ)
        if group is not None and group not in groups:
            ck.bad(p + ".group", "unknown poll group %s (defined: %s)"
                   % (_show(group), ", ".join(sorted(groups)) or "none"))
        sc = {"name": _str(ck, s, "name", p, drv), "driver": drv,
              "bus": _str(ck, s, "bus", p, _REQ), "group": group}
        n0 = len(ck.errors) + ck.more
        for o in opts:
            sc[o[0]] = _option(ck, s, p, o)
        if mod is not None and len(ck.errors) + ck.more == n0 and hasattr(mod, "check"):
            for key, problem in mod.check(sc):
                ck.bad(_join(p, key), problem)
        _bus_known(ck, p, sc["bus"], mod, buses)
        pts = _get(ck, s, "points", p, _REQ)
        if pts is not None and (not isinstance(pts, list) or not pts):
            ck.bad(p + ".points", "must be a non-empty list")
            pts = None
        plist = []
        for j, pt in enumerate(pts or ()):
            pp = "%s.points[%d]" % (p, j)
            pt = _obj(ck, pt, pp, True)
            _keys(ck, pt, pp, ("id", "name", "channel", "scale", "offset"))
            pid = _int(ck, pt, "id", pp, _REQ, 0, 65535)
            if pid is not None:
                _unique(ck, ids, pid, pp + ".id", "point id %d" % pid)
            name = _str(ck, pt, "name", pp, _REQ)
            if name is not None:
                _unique(ck, names, name, pp + ".name", "name %s" % _show(name))
            ch = _str(ck, pt, "channel", pp, _REQ)
            conv = None
            if ch is not None and mod is not None:
                try:
                    conv = mod.channel(sc, ch)
                except (KeyError, TypeError, ValueError):
                    conv = None  # an option it needs was wrong (reported above)
                if conv is None:
                    ck.bad(pp + ".channel", "driver %s has no channel %s (it has: %s)"
                           % (drv, _show(ch), mod.CHANNELS))
            plist.append({"id": pid, "name": name, "channel": ch,
                          "unit": conv[0] if conv else "",
                          "scale": _num(ck, pt, "scale", pp, 1.0),
                          "offset": _num(ck, pt, "offset", pp, 0.0)})
        sc["points"] = plist
        out.append(sc)
    return out


def _bus_known(ck, p, bus, mod, buses):
    """The sensor's bus against the board file's names of its kind, when known (a tuple:
    the board's I2C bus names; a dict: kind -> names)."""
    if bus is None or mod is None or buses is None:
        return
    kind = mod.BUS
    if isinstance(buses, dict):
        names = buses.get(kind)
    else:
        names = buses if kind == "i2c" else None
    if names is not None and bus not in names:
        what = {"i2c": "I2C bus", "onewire": "1-Wire pin", "adc": "ADC input",
                "pin": "input pin"}[kind]
        ck.bad(p + ".bus", "the board has no %s %s (its board file names: %s)"
               % (what, _show(bus), ", ".join(names) or "none"))


def _option(ck, s, p, o):
    """One driver option (key, kind, default, a, b), kinds as otlink/drivers/__init__.py
    lists them; default "!" marks a required option."""
    key, kind, default = o[0], o[1], o[2]
    if default == "!":
        default = _REQ
    if kind == "int":
        return _int(ck, s, key, p, default, o[3], o[4])
    if kind == "choice":
        v = _get(ck, s, key, p, default)
        if v is not None and v not in o[3]:
            ck.bad(_join(p, key), "must be one of %s, got %s"
                   % (", ".join([str(c) for c in o[3]]), _show(v)))
            return None
        return v
    if kind == "text":
        return _text(ck, s, key, p) if key in s else default
    if kind == "num":
        v = _num(ck, s, key, p, default)
        if v is not None and not o[3] <= v <= o[4]:
            ck.bad(_join(p, key), "must be in %s..%s, got %s" % (o[3], o[4], _show(v)))
            return None
        return v
    v = _get(ck, s, key, p, default)
    if v is None or v is default:
        return v
    pk = _join(p, key)
    if kind == "range":
        ok = isinstance(v, list) and len(v) == 2
        lo = _num(ck, {"min": v[0]}, "min", pk, _REQ) if ok else None
        hi = _num(ck, {"max": v[1]}, "max", pk, _REQ) if ok else None
        if lo is None or hi is None or not lo < hi:
            ck.bad(pk, "must be [min, max] with min < max, got %s" % _show(v))
            return None
        return (lo, hi)
    # "pairs": [[x, y], ...], at least two, x increasing
    if not isinstance(v, list) or len(v) < 2 or len(v) > 16:
        ck.bad(pk, "must be a list of 2..16 [x, y] pairs, got %s" % _show(v))
        return None
    out = []
    for k, xy in enumerate(v):
        pkk = "%s[%d]" % (pk, k)
        if not isinstance(xy, list) or len(xy) != 2:
            ck.bad(pkk, "must be a pair [x, y], got %s" % _show(xy))
            return None
        x = _num(ck, {"x": xy[0]}, "x", pkk, _REQ)
        y = _num(ck, {"y": xy[1]}, "y", pkk, _REQ)
        if x is None or y is None:
            return None
        if out and not x > out[-1][0]:
            ck.bad(pkk, "x must increase from pair to pair, got %s after %s"
                   % (_show(xy[0]), _show(out[-1][0])))
            return None
        out.append((x, y))
    return tuple(out)


def _commands(ck, d, points):
    # Writes from the cmd topic are off unless points are listed here (docs/config.md), each
    # number point with the range a write may set; commands are signed with "key"
    # (docs/security.md). The key is never repeated in an error.
    d = _obj(ck, d, "commands")
    _keys(ck, d, "commands", ("writable", "key"))
    off = {"writable": [], "limits": {}, "key": None}
    w = _get(ck, d, "writable", "commands", [])
    if not isinstance(w, list):
        ck.bad("commands.writable", "must be a list of point ids")
        return off
    ids = []
    limits = {}
    for i, ent in enumerate(w):
        pp = "commands.writable[%d]" % i
        lo = hi = None
        pid = ent
        if isinstance(ent, dict):
            _keys(ck, ent, pp, ("point", "min", "max"))
            pid = ent.get("point")
            if "min" in ent or "max" in ent:
                lo = _num(ck, ent, "min", pp, _REQ)
                hi = _num(ck, ent, "max", pp, _REQ)
                if lo is not None and hi is not None and not lo <= hi:
                    ck.bad(pp + ".max", "must not be below min")
            pp += ".point"
        if isinstance(pid, bool) or not isinstance(pid, int):
            ck.bad(pp, "must be a point id, got %s" % _show(pid))
            continue
        k = points.find(pid)
        t = points[k].table if k >= 0 else None
        if t is None:
            ck.bad(pp, "%d is not a Modbus point id" % pid)
            continue
        if t != "holding" and t != "coil":
            ck.bad(pp, "point %d is a read-only %s point" % (pid, t))
            continue
        if pid in ids:
            ck.bad(pp, "point %d is listed twice" % pid)
            continue
        if t == "holding" and (lo is None or hi is None):
            if not isinstance(ent, dict) or ("min" not in ent and "max" not in ent):
                ck.bad(pp, "point %d: give {\"point\": %d, \"min\": ..., \"max\": ...}: a "
                       "write is limited to a stated range" % (pid, pid))
            continue
        ids.append(pid)
        if lo is not None and hi is not None:
            limits[pid] = (lo, hi)
    key = d.get("key")
    if key is not None or w:
        from otlink.core.auth import parse_key

        if key is None:
            ck.bad("commands.key", "is required when commands.writable lists points: "
                   "commands are signed (otlink key new FILE makes one; otlink write "
                   "--key-file FILE; docs/security.md)")
        else:
            try:
                parse_key(key)
            except ValueError as e:
                ck.bad("commands.key", str(e) + " (otlink key new FILE makes one)")
                key = None
    return {"writable": ids, "limits": limits, "key": key}


def _wifi(ck, w, board):
    if w is None:
        if board != "unix" and board is not None and board not in _WIRED:
            ck.bad("wifi", "is required on board %r" % board)
        return None
    w = _obj(ck, w, "wifi")
    _keys(ck, w, "wifi", ("ssid", "password", "country"))
    pw = w.get("password")
    # WPA2-PSK: a passphrase of 8..63 characters; absent or "" for an open network
    if pw is not None and (not isinstance(pw, str) or 0 < len(pw) < 8 or len(pw) > 63):
        ck.bad("wifi.password", "must be a string of 8..63 characters (WPA2), or absent for "
               "an open network")  # never echo a secret
        pw = None
    elif pw and pw.lower() in _WELL_KNOWN:
        ck.bad("wifi.password", "is a well-known default password: set a unique one")
    ssid = _str(ck, w, "ssid", "wifi", _REQ)
    if ssid is not None and len(ssid.encode()) > 32:
        ck.bad("wifi.ssid", "at most 32 bytes (802.11)")
    return {"ssid": ssid, "password": pw or None, "country": _str(ck, w, "country", "wifi", None)}


def _console(ck, d):
    # The service console (console.py): an optional PIN, and how long a committed config may
    # run without a successful poll or publish before it is rolled back (console_config.py).
    d = _obj(ck, d, "console")
    _keys(ck, d, "console", ("pin", "commit_check_s"))
    pin = d.get("pin")
    if pin is not None and (not isinstance(pin, str) or not 4 <= len(pin) <= 12
                            or not pin.isdigit()):
        ck.bad("console.pin", "must be a string of 4..12 digits")  # never echo a secret
        pin = None
    return {"pin": pin, "commit_check_s": _int(ck, d, "commit_check_s", "console", 600, 5,
                                               86400)}


_TOP = ("version", "node", "board", "wifi", "mqtt", "serial", "groups", "points", "sensors",
        "queue", "flash", "commands", "console")


def validate(cfg, buses=None, consume=False):
    """Check a decoded config dict; return it normalized with every default filled in.
    buses: the I2C bus names of the board file, when known (otlink node validate).
    consume: cfg is not used afterwards: its "points" entries are dropped (set to None) as
    they are validated, so the heap never holds both whole point lists.

    Raises ConfigErrors (a ConfigError: field/problem of the first) listing every wrong field."""
    ck = _Check()
    if not isinstance(cfg, dict):
        ck.bad("(top level)", "must be a JSON object")
        ck.done()
    _keys(ck, cfg, "", _TOP)
    ver = _int(ck, cfg, "version", "", SCHEMA_VERSION, 1, 0x3FFFFFFF)
    if ver is not None and ver != SCHEMA_VERSION:
        ck.bad("version", "this firmware reads config version %d, got %d" % (SCHEMA_VERSION, ver))
    node = _node(ck, cfg.get("node"))
    board = _str(ck, cfg, "board", "", "unix", BOARDS)
    groups = _groups(ck, cfg.get("groups"))
    out = {
        "version": SCHEMA_VERSION,
        "node": node,
        "board": board,
        "wifi": _wifi(ck, cfg.get("wifi"), board),
        "mqtt": _mqtt(ck, cfg.get("mqtt"), node["id"], node["site"]),
        "groups": {},
        "queue": _queue(ck, cfg.get("queue")),
        "serial": None,
    }
    for name in groups:
        out["groups"][name] = {"interval_ms": groups[name]}
    f = _obj(ck, cfg.get("flash"), "flash")
    _keys(ck, f, "flash", ("image",))
    out["flash"] = {"image": _str(ck, f, "image", "flash", None)}
    ids = {}
    names = {}
    points = cfg.get("points")
    if points is not None and not isinstance(points, list):
        ck.bad("points", "must be a list of points, got %s" % _show(points))
        points = None
    ser = cfg.get("serial")
    need_port = board == "unix" and bool(points)
    if points:
        if ser is None:
            ck.bad("serial", "is required when Modbus points are configured")
            ser = {}
            need_port = False
        elif not groups and isinstance(cfg.get("groups"), dict):
            ck.bad("groups", "is empty: Modbus points need at least one poll group")
    if points or ser is not None:
        out["serial"] = _serial(ck, ser, groups, need_port)
    out["points"] = (_points(ck, points, out["serial"], ids, names, consume) if points
                     else Points(0).seal())
    out["sensors"] = _sensors(ck, cfg.get("sensors"), groups, ids, names, buses)
    out["analytics"] = None
    if cfg.get("analytics") is not None:
        from otlink.core.config_analytics import analytics

        out["analytics"] = analytics(ck, cfg["analytics"], out["points"], out["sensors"], ids,
                                     names)
    out["commands"] = _commands(ck, cfg.get("commands"), out["points"])
    out["console"] = _console(ck, cfg.get("console"))
    if not ids and not ck.errors:
        ck.bad("points", "no points configured: add Modbus points or sensors")
    ck.done()
    return out


# analytics (docs/analytics.md): its validator is core/config_analytics.py, imported only
# when a config has the section (its bytecode stays out of the heap of a node without it)
_TOP += ("analytics",)


def parse_serial(serial_cfg, groups=None):
    """The serial section alone (tools, tests), normalized; groups in the top-level form
    ({name: {"interval_ms": n}}, default: "default" every second) become ser["groups"].
    A "groups" key inside serial_cfg is taken as that argument. Raises ConfigErrors."""
    ck = _Check()
    if isinstance(serial_cfg, dict) and "groups" in serial_cfg:
        serial_cfg = dict(serial_cfg)
        groups = serial_cfg.pop("groups")
    ser = _serial(ck, serial_cfg, _groups(ck, groups, "serial.groups"), False)
    ck.done()
    return ser


def parse_points(points_cfg, serial_cfg):
    """The points list alone (tools, tests): a Points table, validated against serial_cfg
    (raw, or parse_serial()'s output). Raises ConfigErrors."""
    ser = serial_cfg
    if not (isinstance(ser, dict) and "high_addresses" in ser and "max_regs" in ser):
        ser = parse_serial(serial_cfg)  # a raw section (its own "groups" allowed)
    ck = _Check()
    if not isinstance(points_cfg, list):
        ck.bad("points", "must be a list")
        ck.done()
    pts = _points(ck, points_cfg, ser, {}, {})
    ck.done()
    return pts


def parse_mqtt(mqtt_cfg, node_id="node", site="site"):
    """The mqtt section alone (tools, tests), normalized. Raises ConfigErrors."""
    ck = _Check()
    m = _mqtt(ck, mqtt_cfg, node_id, site)
    ck.done()
    return m


def loads(text, buses=None):
    """Parse and validate config text; JSON syntax errors become ConfigError too."""
    return _parsed(json.loads, text, buses)


def load_stream(f, buses=None):
    """Parse and validate the config read from the open file f: the JSON is parsed from the
    stream, so the file's text (KiBs on a board) is never in the heap as one string."""
    return _parsed(json.load, f, buses)


def _parsed(parse, src, buses):
    try:
        cfg = parse(src)
    except ValueError as e:
        raise ConfigError("(file)", "not valid JSON: %s" % (e,))
    src = None
    try:
        # the decoded JSON is ours: validation drops each raw point once it is checked, so
        # the raw and the normalized point list are never in the heap whole at once
        return validate(cfg, buses, consume=True)
    except MemoryError:  # name the size of what did not fit (app.py says what to do)
        n = 0
        for k in ("points", "sensors"):
            v = cfg.get(k) if isinstance(cfg, dict) else None
            if isinstance(v, list):
                n += len(v) if k == "points" else sum(
                    [len(s["points"]) for s in v
                     if isinstance(s, dict) and isinstance(s.get("points"), list)])
        cfg = None
        raise MemoryError("validating %d points" % n)


def load(path, buses=None):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("(file)", "cannot read %s: %s" % (path, e))
    except ValueError:  # UnicodeDecodeError: not a text file
        raise ConfigError("(file)", "%s is not UTF-8 text (a JSON file is expected)" % path)
    return loads(text, buses)


def errors_of(e):
    """The list of ConfigError an exception from validate()/load() carries."""
    return getattr(e, "errors", None) or [e]


def config_hash(text):
    """Short hash of the config file bytes, reported in the birth message. text: str or
    bytes, or an open binary file (read in 256-byte chunks: the text is never held whole)."""
    import hashlib
    import binascii

    h = hashlib.sha256()
    if hasattr(text, "readinto"):
        buf = bytearray(256)
        mv = memoryview(buf)
        while True:
            n = text.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    else:
        h.update(text.encode() if isinstance(text, str) else text)
    return binascii.hexlify(h.digest()[:8]).decode()
