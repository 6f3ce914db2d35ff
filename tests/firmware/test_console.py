# The service console's pure core (console.py) and the config store (console_config.py) inside
# MicroPython: line editing, refusals, secrets, PIN lockout, transactional commit, the trial
# and its rollback; then 600+ generated malformed inputs, each refused with a message while
# the running config's hash stays what it was.
# heapsize: 200K 32:64K
import json
import os

import mptest
from otlink import console_config as cc
from otlink.console import LINE_MAX

from console_helpers import console  # loaded after the console: 6 KiB lower peak on 32-bit

SECRET = "planted-s3cret-xyz"
BASE = {
    "version": 1,
    "node": {"id": "n1", "site": "s1"},
    "mqtt": {"host": "127.0.0.1", "port": 1883, "user": "u", "password": SECRET,
             "tls": {"ca_file": "/ca.pem"}, "ack_key": mptest.ACK_KEY},
    "serial": {"port": "/dev/null", "baud": 9600},
    "points": [{"id": 1, "name": "v", "slave": 1, "table": "input", "address": 0,
                "type": "float32", "order": "ABCD", "unit": "V"}],
    "console": {"commit_check_s": 30},
}


def fresh(name, pin=None, cfg=None):
    out = []
    con, path = console(name, cfg or BASE, out.append, pin=pin)
    return con, out, path


def say(con, out, line):
    """One @-line; its decoded reply."""
    del out[:]
    con.feed(b"@" + line.encode() + b"\r")
    text = "".join(out)
    mptest.true(text.startswith("@"), "reply to %r: %r" % (line, text))
    return json.loads(text[1:])


def test_set_validate_diff_commit_keep_the_previous_config():
    con, out, path = fresh("c1")
    h0 = cc.file_hash(path)
    mptest.eq(say(con, out, "set mqtt.port 1884")["ok"], True, "set")
    r = say(con, out, "diff")
    mptest.eq(r["data"], ["mqtt.port: 1883 -> 1884"], "diff")
    mptest.eq(say(con, out, "validate")["data"], "ok (staged config)", "validate")
    mptest.eq(cc.file_hash(path), h0, "nothing written before commit")
    r = say(con, out, "commit")
    mptest.true(r["ok"] and "committed config" in r["data"], r)
    mptest.eq(con.node.reboots, ["commit"], "commit reboots")
    with open(path) as f:
        mptest.eq(json.load(f)["mqtt"]["port"], 1884, "new config")
    mptest.eq(cc.file_hash(path + ".prev"), h0, "previous kept")
    t = cc.read_json(path + ".trial")
    mptest.eq((t["hash"], t["prev"], t["boots"]), (cc.file_hash(path), h0, 0), "trial")
    mptest.true(not _exists(path + ".new"), "no half file left")


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def test_secrets_never_leave_the_console():
    con, out, path = fresh("c2")
    seen = []
    for line in ("show config", "get mqtt.password", "get mqtt", "status"):
        seen.append(json.dumps(say(con, out, line)))
    say(con, out, "set mqtt.password \"other-secret-1\"")
    seen.append(json.dumps(say(con, out, "diff")))
    del out[:]
    con.feed(b"show config\r")  # human mode too
    seen.append("".join(out))
    con.feed(b"@set mqtt.password \"unterminated-secret\r")
    seen.append("".join(out))
    del out[:]
    con.feed(b"set wifi.password hunter2-typed\r")  # a person typing: the echo is masked
    seen.append("".join(out))
    mptest.true("set wifi.password " + "*" * 13 + "\r\n" in seen[-1], seen[-1])
    for s in seen:
        mptest.true(SECRET not in s and "other-secret" not in s and "unterminated-secret" not in s
                    and "hunter2" not in s,
                    "secret in %r" % s[:200])
    mptest.true("******" in seen[0], "masked, not dropped")


def test_dumb_terminal_line_editing():
    con, out, path = fresh("c3")
    con.feed(b"statxx\x08\x08us\r")  # backspaces
    text = "".join(out)
    mptest.true("node: s1/n1" in text and "\b \b" in text, text)
    del out[:]
    con.feed(b"garbage here\x15help\r")  # Ctrl-U erases the line
    mptest.true("status" in "".join(out) and "unknown" not in "".join(out), "".join(out))
    del out[:]
    con.feed(b"reboot\x03")  # Ctrl-C cancels the typed line: nothing runs
    con.feed(b"\r")
    mptest.eq(con.node.reboots, [], "cancelled")
    mptest.true("^C" in "".join(out), "^C shown")
    con.feed(b"\x03")  # on an empty line: the break (a board's REPL)
    mptest.eq(con.node.breaks, 1, "break")
    del out[:]
    con.feed(b"sta\x1b[Dtus\r")  # an arrow key's escape sequence is skipped
    mptest.true("node: s1/n1" in "".join(out), "".join(out))
    del out[:]
    con.feed(b"status\r\n")  # CR LF is one line end
    mptest.eq("".join(out).count("node: s1/n1"), 1, "one reply")


def test_a_line_longer_than_the_buffer_is_refused_and_the_session_goes_on():
    con, out, path = fresh("c4")
    buf = con.buf
    con.feed(b"@set node.site ")
    chunk = b"x" * 100
    for _i in range(100):  # 10,000 bytes, as a terminal would send them
        con.feed(chunk)
    con.feed(b"\r")
    text = "".join(out)
    mptest.true("line longer than %d bytes refused" % LINE_MAX in text, text)
    mptest.true(con.buf is buf and len(con.buf) == LINE_MAX, "buffer did not grow")
    mptest.eq(say(con, out, "get node.site")["data"], "s1", "session goes on")


def test_pin_lockout_grows_and_ends():
    con, out, path = fresh("c5", pin="4711")
    clk = con.clock
    r = say(con, out, "show config")
    mptest.true(not r["ok"] and "locked" in r["error"], r)
    for _i in range(2):
        r = say(con, out, "unlock 0000")
        mptest.true("wrong PIN" in r["error"] and "locked out" not in r["error"], r)
    r = say(con, out, "unlock 1234")
    mptest.true("locked out for 5 s" in r["error"], r)
    r = say(con, out, "unlock 4711")  # the right PIN during the lockout: not even tried
    mptest.true("locked out: try again in 5 s" in r["error"], r)
    clk.ms += 5000
    r = say(con, out, "unlock 9999")
    mptest.true("locked out for 10 s" in r["error"], r)  # grows
    clk.ms += 9000
    mptest.true("try again in 1 s" in say(con, out, "unlock 4711")["error"], "still out")
    clk.ms += 1000
    mptest.eq(say(con, out, "unlock 4711")["data"], "unlocked", "unlocked")
    mptest.true(say(con, out, "show config")["ok"], "open now")
    mptest.eq(say(con, out, "lock")["data"], "locked", "lock")
    mptest.true(not say(con, out, "get mqtt.port")["ok"], "locked again")
    say(con, out, "unlock 4711")
    clk.ms += 599000
    mptest.true(say(con, out, "get mqtt.port")["ok"], "still open after 599 s")
    clk.ms += 600000
    r = say(con, out, "get mqtt.port")
    mptest.true(not r["ok"] and "locked" in r["error"], "idle lock after 10 min")


def test_trial_counts_boots_then_rolls_back():
    con, out, path = fresh("c6")
    h0 = cc.file_hash(path)
    say(con, out, "set node.site s2")
    say(con, out, "commit")
    h1 = cc.file_hash(path)
    logs = []
    for boot in range(1, cc.TRIAL_BOOTS + 1):
        t = cc.boot_check(path, logs.append)
        mptest.eq(t["boots"], boot, "boot counted")
    mptest.eq(cc.boot_check(path, logs.append), None, "rolled back")
    mptest.eq(cc.file_hash(path), h0, "previous config back")
    mptest.eq(cc.file_hash(path + ".bad"), h1, "bad config kept")
    note = cc.read_json(path + ".rollback")
    mptest.true("crash loop" in note["reason"] and note["bad"] == h1, note)
    mptest.true(any("rolled back" in x for x in logs), logs)
    store = cc.ConfigStore(path, h0)
    mptest.eq(store.state(), "rolled_back", "state message")


def test_a_commit_cut_before_its_rename_leaves_a_stale_trial():
    con, out, path = fresh("c7")
    with open(path + ".trial", "w") as f:
        f.write(json.dumps({"hash": "0123456789abcdef", "prev": "x", "boots": 0}))
    mptest.eq(cc.boot_check(path, print), None, "stale")
    mptest.true(not _exists(path + ".trial"), "removed")


def test_rollback_drops_staged_then_swaps_configs():
    con, out, path = fresh("c8")
    h0 = cc.file_hash(path)
    say(con, out, "set node.site s9")
    mptest.eq(say(con, out, "rollback")["data"], "staged changes dropped", "staged")
    mptest.true(not say(con, out, "rollback")["ok"], "nothing to roll back")
    say(con, out, "set node.site s9")
    say(con, out, "commit")
    h1 = cc.file_hash(path)
    r = say(con, out, "rollback")
    mptest.true(r["ok"] and h0 in r["data"], r)
    mptest.eq((cc.file_hash(path), cc.file_hash(path + ".prev")), (h0, h1), "swapped")


def test_file_hash_is_the_config_hash():
    from otlink.core.config import config_hash

    con, out, path = fresh("c9")
    with open(path, "rb") as f:
        mptest.eq(cc.file_hash(path), config_hash(f.read()), "hash")


# ---- generated malformed inputs ---------------------------------------------------------------

class Rand:
    def __init__(self, seed):
        self.s = seed

    def next(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return self.s % n

    def pick(self, seq):
        return seq[self.next(len(seq))]


BAD_VALUES = {
    "mqtt.port": ("abc", "-1", "70000", "1.5", "true", "null", "[]", "{}", "\"1883\"", "1e99"),
    "mqtt.qos": ("2", "-1", "\"1\"", "0.5"),
    "mqtt.host": ("\"mqtt://x\"", "\"h:1883\"", "\"\"", "5", "\"a b\""),
    "mqtt.batch_bytes": ("1", "100000", "\"x\""),
    "queue.commit_ms": ("-5", "99999999", "false"),
    "queue.policy": ("\"drop_all\"", "1"),
    "node.id": ("\"a b\"", "\"" + "x" * 40 + "\"", "\"\"", "7", "[1]"),
    "node.site": ("\"a/b\"", "{}", "null"),
    "serial.baud": ("\"fast\"", "-9600", "{}"),
    "serial.parity": ("\"X\"", "0"),
    "points[0].address": ("70000", "-1", "\"0\"", "30001", "1.5"),
    "points[0].type": ("\"float33\"", "3", "null"),
    "points[0].order": ("\"ABDC\"", "\"\""),
    "points[0].table": ("\"holdings\"", "true"),
    "points[0].slave": ("0", "300", "\"1\""),
    "points[0].id": ("-1", "70000", "\"one\""),
    "console.pin": ("\"12\"", "1234", "\"abcd\""),
    "console.commit_check_s": ("1", "999999", "\"x\""),
    "mqtt.bogus": ("1",), "points[0].bogus": ("1",), "bogus": ("1",), "node.bogus": ("\"x\"",),
    "foo.bar": ("1",), "points[5].address": ("1",), "points.x": ("1",), "mqtt.port.x": ("1",),
    "a..b": ("1",), "mqtt.p%rt": ("1",), "[0]": ("1",),
}


def _bad_object(r):
    """A point or section object with one thing wrong."""
    pt = dict(BASE["points"][0])
    k = r.pick(list(pt))
    choice = r.next(4)
    if choice == 0:
        pt[k] = [1, 2]
    elif choice == 1:
        pt["x%d" % r.next(99)] = 1
    elif choice == 2:
        del pt[k]
        if k in ("unit", "order"):  # optional fields: make it wrong another way
            pt["type"] = "float99"
    else:
        pt[k] = {"nested": True}
    return "set points[0] " + json.dumps(pt)


def cases():
    """The generated inputs, one at a time (a list of them all would take the heap)."""
    r = Rand(14)
    n = 0
    for path in BAD_VALUES:  # wrong types, ranges, unknown keys, bad paths
        for v in BAD_VALUES[path]:
            n += 1
            yield ("@set %s %s\r" % (path, v)).encode()
    while n < 200:  # whole objects with one thing wrong
        n += 1
        yield ("@" + _bad_object(r) + "\r").encode()
    for _i in range(170):  # binary garbage, ends with CR
        n = 1 + r.next(40)
        b = bytearray(n)
        for j in range(n):
            b[j] = r.next(256)
        # at least one byte the console refuses (not printable ASCII, not an editing key)
        b[r.next(n)] = r.pick((0x00, 0x01, 0x07, 0x80, 0xC3, 0xFF, 0x1F, 0x9B))
        for j in range(n):
            if b[j] in (0x0D, 0x0A, 0x03, 0x15, 0x1B, 0x08, 0x7F):
                b[j] = 0x80
        yield b"@" + bytes(b) + b"\r"
    full = b'@set points[0] {"id": 1, "name": "v", "slave": 1, "table": "input"}'
    for _i in range(80):  # truncated lines: a JSON value cut short
        yield full[:16 + r.next(len(full) - 17)] + b"\r"
    for _i in range(60):  # a command cut by Ctrl-C (cancelled), the rest typed after it
        cut = 4 + r.next(20)
        yield b"@set mqtt.port 1884"[:cut] + b"\x03" + b"@set mqtt.port \"x\"\r"
    for _i in range(60):  # huge values and over-long lines
        n = LINE_MAX + r.next(3000)
        yield b"@set node.site " + b"9" * n + b"\r"
    for _i in range(40):  # huge numbers that fit the line
        yield ("@set mqtt.port %d\r" % (10 ** (20 + r.next(60)))).encode()


def test_600_malformed_inputs_are_refused_and_the_running_config_never_changes():
    con, out, path = fresh("fuzz")
    h0 = cc.file_hash(path)
    i = 0
    for c in cases():
        del out[:]
        con.feed(c)
        text = "".join(out)
        replies = [x for x in text.split("\r\n") if x.startswith("@")]
        mptest.true(replies, "case %d %r: no reply: %r" % (i, c[:60], text))
        for rep in replies:
            d = json.loads(rep[1:])
            mptest.true(d["ok"] is False and len(d["error"]) > 10,
                        "case %d %r accepted: %r" % (i, c[:60], d))
        mptest.true(con.store.staged is None, "case %d staged a change" % i)
        mptest.eq(con.store.changes(), [], "case %d" % i)
        i += 1
    mptest.true(i >= 600, "%d cases" % i)
    mptest.eq(cc.file_hash(path), h0, "running config hash")
    mptest.eq(say(con, out, "get mqtt.port")["data"], 1883, "session alive")
    mptest.true(say(con, out, "commit")["ok"] is False, "nothing to commit")
    mptest.eq(cc.file_hash(path), h0, "still the same config")


mptest.main(globals())
