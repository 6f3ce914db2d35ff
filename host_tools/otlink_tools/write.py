"""`otlink write`: sign a write command, send it to a node's cmd topic, wait for its reply.

A command is the JSON object, one line feed, and the 64 hex digits of
HMAC-SHA256(key, cmd topic + LF + JSON) under the node's command key (`commands.key` in the
node config, docs/security.md). The JSON carries `ctr`, a counter above every one the node
has accepted; this tool keeps the last one it used per node in a counter file and, when the
node says a counter is used ("ctr_min" in its signed refusal, e.g. after the node rebooted
and skipped its persisted window), sends the command once more with the counter it names.
The reply is signed by the node over the reply topic and checked before it is believed.

The key comes from --key-file (hex text) or the environment variable OTLINK_CMD_KEY; it is
never printed, not even in an error.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import queue
import ssl
import time
import uuid
from hashlib import sha256
from pathlib import Path

from otlink_tools.errors import CommandError

__all__ = ["KEY_ENV", "new_key_file", "cmd_key_new", "build_key_new", "load_key", "sign",
           "open_reply", "run", "build_parser"]

KEY_ENV = "OTLINK_CMD_KEY"
TAG_HEX = 64


def parse_hex_key(text: str, where: str) -> bytes:
    """Key bytes from hex text, checked as the node checks commands.key; the error names
    where the key came from, never the key."""
    from otlink_tools import paths

    paths.firmware_import_path()
    from otlink.core.auth import parse_key

    try:
        return parse_key(text.strip())
    except ValueError as e:
        raise CommandError(f"{where}: the key {e}") from None


def key_file_name(key_file: str) -> str:
    """How messages name a key file: never a key pasted where its file was wanted."""
    import re

    if re.fullmatch(r"\s*[0-9A-Fa-f]{32,}\s*", key_file):
        return "(a key, not a file name: not shown; give the file that holds it)"
    return key_file


def read_key_file(key_file: str, opt: str) -> bytes:
    """The key in a key file (hex text), checked as the node checks its keys; errors name
    the option and the file, never the key."""
    warn_if_shared(key_file)
    where = f"{opt} {key_file_name(key_file)}"
    try:
        text = Path(key_file).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"{where}: cannot read it "
                           f"({getattr(e, 'strerror', None) or type(e).__name__})") from None
    return parse_hex_key(text, where)


def warn_if_shared(key_file: str) -> None:
    """Say so (on stderr, never the key) when other users may read a key file, as ssh does
    for private keys: whoever reads the command key can move the machine."""
    import stat
    import sys

    try:
        mode = os.stat(key_file).st_mode
    except OSError:
        return  # the read below names the problem
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"otlink: warning: {key_file_name(key_file)} is accessible to other users "
              f"(mode {stat.S_IMODE(mode):03o}): chmod 600 it", file=sys.stderr)


def load_key(key_file: str | None, env: dict | None = None) -> bytes:
    env = os.environ if env is None else env
    if key_file:
        return read_key_file(key_file, "--key-file")
    if env.get(KEY_ENV):
        return parse_hex_key(env[KEY_ENV], f"${KEY_ENV}")
    raise CommandError(f"no command key: give --key-file FILE or set {KEY_ENV} (the node's "
                       "commands.key, hex)")


def new_key_file(path: str) -> None:
    """A fresh 256-bit key as 64 hex digits in a new file only its owner may read (mode
    600). An existing file is never overwritten: it may be the key a node holds."""
    import secrets

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path}: exists; a key file is never overwritten (a node may "
                           "hold that key): choose another name") from None
    except OSError as e:
        raise CommandError(f"{path}: cannot create it ({e.strerror})") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    except OSError as e:  # a full disk: no empty key file left behind to refuse next time
        os.unlink(path)
        raise CommandError(f"{path}: cannot write it ({e.strerror})") from None


def cmd_key_new(args) -> int:
    new_key_file(args.file)
    print(f"otlink: new key in {args.file} (mode 600; the key is not shown). Give it to the "
          "node as mqtt.ack_key or commands.key (its config file), and to the consumer "
          "(--ack-key-file) or operator (--key-file) as this file")
    return 0


def build_key_new(p: argparse.ArgumentParser) -> None:
    """make a new random key file (ack key, command key)"""
    p.description = ("A new 256-bit key as 64 hex digits in FILE (mode 600; the key is not "
                     "shown). A node takes it as mqtt.ack_key (its consumer of record then "
                     "signs acks with --ack-key-file FILE) or as commands.key (the operator "
                     "signs writes with otlink write --key-file FILE); docs/security.md.")
    p.add_argument("file", help="the key file to create (never overwritten)")


def sign(key: bytes, topic: str, body: bytes) -> bytes:
    """The signed message: body, LF, hex HMAC-SHA256 over topic + LF + body."""
    tag = hmac.new(key, topic.encode() + b"\n" + body, sha256).hexdigest()
    return body + b"\n" + tag.encode()


def open_reply(key: bytes, topic: str, payload: bytes) -> dict:
    """The reply object when its signature verifies; ValueError otherwise."""
    if len(payload) < TAG_HEX + 3 or payload[-TAG_HEX - 1] != 0x0A:
        raise ValueError("reply is not signed")
    body, tag = payload[:-TAG_HEX - 1], payload[-TAG_HEX:]
    want = hmac.new(key, topic.encode() + b"\n" + body, sha256).hexdigest().encode()
    if not hmac.compare_digest(want, tag.lower()):
        raise ValueError("reply signature does not verify")
    r = json.loads(body)
    if not isinstance(r, dict):
        raise ValueError("reply is not a JSON object")
    return r


def _counter_file(args) -> Path:
    if args.counter_file:
        return Path(args.counter_file)
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "otlink" / f"{args.prefix}_{args.site}_{args.node}.ctr".replace("/", "_")


def _read_counter(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, IndexError) as e:
        raise CommandError(f"counter file {path}: unreadable ({e}); remove it or give "
                           "--counter-file") from None


def _save_counter(path: Path, ctr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{ctr}\n")
    os.replace(tmp, path)


def _value(text: str):
    """The value as JSON number text (kept exact: the node converts the decimal digits)."""
    t = text.strip().lower()
    if t in ("true", "false"):
        return t
    try:
        float(t)
    except ValueError:
        raise CommandError(f"value {text!r}: a number (or true/false for a coil) wanted") from None
    if t in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity") or "n" in t:
        raise CommandError(f"value {text!r}: a finite number wanted")
    return t.lstrip("+")


def run(args) -> int:
    import paho.mqtt.client as mqtt

    key = load_key(args.key_file)
    value = _value(args.value)
    base = f"{args.prefix}/{args.site}/{args.node}/"
    t_cmd, t_reply = base + "cmd", base + "reply"
    ctr_path = _counter_file(args)
    ctr = _read_counter(ctr_path) + 1
    password = args.password or os.environ.get("OTLINK_MQTT_PASSWORD")
    replies: queue.Queue = queue.Queue()
    subscribed = queue.Queue()
    cli = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    cli.on_message = lambda c, u, m: replies.put(m.payload)
    cli.on_subscribe = lambda c, u, mid, rc, p: subscribed.put(mid)
    if args.user is not None:
        cli.username_pw_set(args.user, password)
    if args.cafile:
        ctx = ssl.create_default_context(cafile=args.cafile)
        if args.cert:
            ctx.load_cert_chain(args.cert, args.key)
        cli.tls_set_context(ctx)
    elif password is not None and not args.insecure_plaintext_auth:
        raise CommandError("a password over plain TCP: give --cafile (TLS), or "
                           "--insecure-plaintext-auth to send it in clear on purpose")
    port = args.port or (8883 if args.cafile else 1883)
    try:
        cli.connect(args.host, port, 30)
    except (OSError, ssl.SSLError) as e:
        raise CommandError(f"cannot connect to {args.host}:{port}: {e}") from None
    cli.loop_start()
    try:
        cli.subscribe(t_reply, 1)
        try:
            subscribed.get(timeout=args.timeout)
        except queue.Empty:
            raise CommandError(f"broker {args.host}:{port} did not answer the subscription "
                               f"to {t_reply}") from None
        rid = args.id or f"w-{uuid.uuid4().hex[:8]}"
        for attempt in range(2):
            body = ('{"id": %s, "op": "write", "point": %d, "value": %s, "ctr": %d}'
                    % (json.dumps(rid), args.point, value, ctr)).encode()
            _save_counter(ctr_path, ctr)  # used once sent, whatever the answer
            cli.publish(t_cmd, sign(key, t_cmd, body), qos=1).wait_for_publish(args.timeout)
            r = _wait_reply(replies, key, t_reply, rid, ctr, args.timeout)
            if r.get("ok"):
                extra = ""
                if r.get("rounded"):
                    extra = " (rounded" + (f": raw {r['raw']} written)" if "raw" in r else ")")
                print(f"{args.node}: point {args.point} written{extra}")
                return 0
            nxt = r.get("ctr_min")
            if attempt == 0 and isinstance(nxt, int) and nxt > ctr:
                ctr = nxt  # the node rebooted past its persisted window, or another sender
                continue
            raise CommandError(f"{args.node} refused the write: {r.get('error')}")
    finally:
        cli.loop_stop()
        cli.disconnect()
    return 1


def _wait_reply(replies: queue.Queue, key: bytes, t_reply: str, rid: str, ctr: int,
                timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    ignored = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            more = f" ({ignored} unsigned, forged or unrelated replies ignored)" if ignored else ""
            raise CommandError(f"no signed reply from the node within {timeout:g} s{more}: is "
                               "it online, with commands on and this key?")
        try:
            payload = replies.get(timeout=left)
        except queue.Empty:
            continue
        try:
            r = open_reply(key, t_reply, payload)
        except ValueError:
            ignored += 1
            continue
        if r.get("id") == rid and r.get("ctr") == ctr:
            return r
        ignored += 1


def build_parser(p: argparse.ArgumentParser) -> None:
    """sign and send a write to a node's point, wait for its signed reply"""
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--site", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--point", type=int, required=True, help="point id (commands.writable)")
    p.add_argument("value", help="value in the point's unit (true/false for a coil)")
    p.add_argument("--key-file", help=f"node command key, hex (or set {KEY_ENV})")
    p.add_argument("--counter-file", help="last counter used for this node (default: "
                   "~/.local/state/otlink/PREFIX_SITE_NODE.ctr)")
    p.add_argument("--id", help="request id (default: random)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default 1883, 8883 with TLS")
    p.add_argument("--prefix", default="otlink")
    p.add_argument("--cafile", help="CA certificate to verify the broker (enables TLS)")
    p.add_argument("--cert", help="client certificate (with --key)")
    p.add_argument("--key", help="client private key (TLS)")
    p.add_argument("--user")
    p.add_argument("--password", help="or set OTLINK_MQTT_PASSWORD (preferred)")
    p.add_argument("--insecure-plaintext-auth", action="store_true",
                   help="allow the password over plain TCP (lab only)")
