# heapsize: 192K 32:128K
# Fuzzing the service console (docs/reliability.md, "Fuzzing"): generated input into
# Console.feed() - random bytes (control characters, ESC/CSI sequences, bytes >= 0x80,
# over-long lines, Ctrl-C, Backspace), command lines from the console's own vocabulary with
# random and hostile arguments, @-lines (machine mode) with garbage. Not generated: commit,
# rollback and reboot (they change the running config by design; test_console.py covers
# them). What must hold: feed() never raises, every @-line gets exactly one @-reply that is
# JSON, the running config file is unchanged, secrets never appear in the output, and the
# heap does not grow. Count: FUZZ_CONSOLE_N lines (small here; `make fuzz` runs 10^6).
import gc
import json
import os
import random

import mptest
from console_helpers import Ticks, View, console
from mptest import eq, true

from otlink import console_config as cc
from otlink.console import LINE_MAX

N = int(os.getenv("FUZZ_CONSOLE_N") or "3000")
SEED = int(os.getenv("FUZZ_SEED") or "1")
SECRET = "fuzz-s3cret-q7"
CFG = {"version": 1, "node": {"id": "n1", "site": "s1"},
       "mqtt": {"host": "127.0.0.1", "port": 1883, "user": "u", "password": SECRET,
                "ack_key": mptest.ACK_KEY},
       "serial": {"port": "/dev/null", "baud": 9600},
       "points": [{"id": 1, "name": "v", "slave": 1, "table": "input", "address": 0,
                   "type": "float32", "order": "ABCD", "unit": "V"}]}
WORDS = ("help", "status", "show", "show config", "show points", "show queue", "show slaves",
         "show log", "get", "set", "unset", "diff", "validate", "modbus read", "unlock", "lock",
         "get mqtt.port", "get points[0].address", "get points[99]", "get mqtt.password",
         "set mqtt.port", "set points[0].address", "set node.id", "set mqtt.password",
         "unset mqtt.user", "set points[0]", "set x.y.z", "get []", "get points[-1]",
         "get a..b", "set mqtt", "modbus read 1 holding 0 2", "modbus read 999 foo -1 99999")
ARGS = ("", "1", "-1", "1e999", "NaN", "null", "true", '"x"', "[]", "{}", "[1,", "{\"a\":",
        "65536", "0x10", "\"" + "y" * 300 + "\"", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]", "{\"id\": 1, \"name\": \"v\"}", "planted", "\x00", "é")


class Out:
    """The console's write function: keeps only counts and the @-replies' validity."""

    def __init__(self):
        self.buf = []
        self.secret_seen = 0

    def __call__(self, s):
        if SECRET in s:
            self.secret_seen += 1
        self.buf.append(s)

    def take(self):
        t = "".join(self.buf)
        self.buf = []
        return t


def line(g):
    k = g.getrandbits(3)
    if k == 0:  # random bytes, any of them, and sometimes far too many
        n = g.getrandbits(6) if g.getrandbits(3) else LINE_MAX + g.getrandbits(9)
        return bytes(g.getrandbits(8) for _ in range(n)), False
    if k == 1:  # editing keys and escape sequences mixed into a command
        parts = [b"sta", b"\x7f", b"\x08", b"\x15", b"\x1b[A", b"\x1b[1;5C", b"\x1bO", b"\x03",
                 b"tus", b"\x1b", b"\x1b[99999999999999999999m", b"\t", b"\x00", b"\xff"]
        return b"".join(parts[g.getrandbits(4) % len(parts)] for _ in range(g.getrandbits(3)
                                                                             + 1)), False
    w = WORDS[g.getrandbits(8) % len(WORDS)]
    a = " ".join(ARGS[g.getrandbits(8) % len(ARGS)] for _ in range(g.getrandbits(2)))
    text = (w + " " + a).encode()
    if k < 5:
        return b"@" + text, True
    return text, False


def _con(name):
    out = Out()
    con, path = console(name, CFG, out, View(may_reboot=False), Ticks(step=1))
    return con, out, path, cc.file_hash(path)


def test_an_unfinished_escape_sequence_does_not_eat_the_next_line():
    # found by the fuzzer: garbage ending in ESC or ESC [ swallowed the Enter and the next
    # line's "@" (CSI ends at any byte 0x40..0x7e), so a host tool's @-command got a human
    # answer and waited for its @-reply forever
    for junk in (b"\x1b", b"\x1b[", b"\x1b[12;", b"\x1bO"):
        con, out, _, _ = _con("esc")
        con.feed(junk + b"\r")
        out.take()
        con.feed(b"@status\r")
        replies = [x for x in out.take().split("\n") if x.startswith("@")]
        eq(len(replies), 1, "@-replies after %r" % junk)
        true(json.loads(replies[0][1:])["ok"], "status after %r" % junk)


def test_console_takes_any_input():
    con, out, path, h0 = _con("fuzzcon")
    g = random.Random(SEED) if hasattr(random, "Random") else random
    if g is random:
        random.seed(SEED)
    stats = {"lines": 0, "at_lines": 0, "bytes": 0, "refused": 0}
    free0 = None
    for i in range(N):
        data, at = line(g)
        end = (b"\r", b"\n", b"\r\n")[g.getrandbits(8) % 3]
        out.take()
        try:
            con.feed(data + end)
        except Exception as e:
            raise mptest.Fail("line %d %r: %s %s" % (i, data[:80], type(e).__name__, e))
        text = out.take()
        stats["lines"] += 1
        stats["bytes"] += len(data) + len(end)
        if con.pending is not None:  # modbus read: the adapter awaits it, then done()
            con.pending = None
            con.done([0])
            text += out.take()
        if at and b"\x0d" not in data and b"\x0a" not in data and b"\x03" not in data:
            replies = [x for x in text.split("\n") if x.startswith("@")]
            true(len(replies) == 1, "line %d %r: %d @-replies: %r" % (i, data[:60], len(replies),
                                                                     text[:200]))
            r = json.loads(replies[0][1:])
            true(r["ok"] in (True, False), "reply")
            stats["at_lines"] += 1
            if not r["ok"]:
                stats["refused"] += 1
        if i == N // 4:
            gc.collect()
            free0 = gc.mem_free()
    gc.collect()
    grew = free0 - gc.mem_free() if free0 is not None else 0
    print("FUZZ_CONSOLE lines=%d at_lines=%d refused=%d bytes=%d heap_delta=%d secrets_out=%d"
          % (stats["lines"], stats["at_lines"], stats["refused"], stats["bytes"], grew,
             out.secret_seen))
    eq(cc.file_hash(path), h0, "running config file")
    eq(out.secret_seen, 0, "outputs carrying the password")
    true(stats["at_lines"] > N // 4 and stats["refused"] > 0, "both sides reached")
    # staged edits live in the store (bounded by the config's own limits): a little slack
    true(grew <= 2048, "heap grew by %d bytes" % grew)


mptest.main(globals())
