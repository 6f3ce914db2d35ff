# Transactional configuration: staged changes, one validator, atomic commit, the previous
# config kept, and the trial after a commit that rolls back by itself (docs/config.md,
# "Changing the config on a running node").
#
# Files beside the config file P (/config.json on a board):
#   P            the running config: what the agent boots with
#   P.prev       the config before the last commit (what `rollback` and the trial go back to)
#   P.new        a commit being written; renamed over P when complete (never read at boot)
#   P.trial      {"hash", "prev", "boots"}: P was committed and has not yet proved healthy
#   P.bad        the config an automatic rollback replaced (kept to look at)
#   P.rollback   {"reason", "bad", "restored"}: the last automatic rollback (until a commit)
#
# Commit order, each step a whole file made by write-then-rename: P.new, P.prev (copy of P),
# P.trial (naming the hash of P.new), then P.new renamed over P: the commit point. A cut
# before the rename leaves P as it was and a P.trial whose hash is not P's: stale, removed at
# boot. After it, every boot of P counts in P.trial until the agent is healthy (a poll or a
# publish succeeded) and removes P.trial; more than TRIAL_BOOTS boots, a boot that cannot
# load P, a crash, or no success within console.commit_check_s: P.prev goes back over P.
import json
import os

from otlink.core.compat import const

TRIAL_BOOTS = const(3)  # boots of a committed config without a healthy run: a crash loop


class StoreError(Exception):
    pass


def file_hash(path):
    """The config hash of a file (core/config.py config_hash: the first 8 bytes of its
    SHA-256, hex), read in 256-byte chunks. None when the file cannot be read."""
    import binascii
    import hashlib

    h = hashlib.sha256()
    buf = bytearray(256)
    mv = memoryview(buf)
    try:
        with open(path, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(mv[:n])
    except OSError:
        return None
    return binascii.hexlify(h.digest()[:8]).decode()


def text_hash(text):
    import binascii
    import hashlib

    return binascii.hexlify(hashlib.sha256(text.encode()).digest()[:8]).decode()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _replace(src, dst):
    """rename src over dst: atomic on POSIX and littlefs; FAT refuses an existing dst, so
    there dst is removed first (the window is covered by P.prev)."""
    try:
        os.rename(src, dst)
    except OSError:
        _remove(dst)
        os.rename(src, dst)


def _write(path, text):
    """A whole file, or nothing: written beside as path.tmp, then renamed over path."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    _replace(tmp, path)


def _copy(src, dst):
    tmp = dst + ".tmp"
    buf = bytearray(256)
    mv = memoryview(buf)
    with open(src, "rb") as fi:
        with open(tmp, "wb") as fo:
            while True:
                n = fi.readinto(buf)
                if not n:
                    break
                fo.write(mv[:n])
    _replace(tmp, dst)


def read_json(path):
    try:
        with open(path) as f:
            v = json.load(f)
        return v if isinstance(v, dict) else None
    except (OSError, ValueError):
        return None


def boot_check(path, log):
    """At boot, before the config is read: count this boot of a committed config on trial,
    or roll it back after TRIAL_BOOTS. Returns the trial record, or None (no trial)."""
    t = read_json(path + ".trial")
    if t is None:
        _remove(path + ".trial")  # absent, or torn: a trial record is written whole
        return None
    if t.get("hash") != file_hash(path):
        _remove(path + ".trial")  # a commit cut before its rename: P is the old config
        return None
    boots = t.get("boots", 0)
    t["boots"] = boots + 1 if isinstance(boots, int) else TRIAL_BOOTS + 1
    if t["boots"] > TRIAL_BOOTS:
        auto_rollback(path, "crash loop: %d boots of config %s without a healthy run"
                      % (t["boots"] - 1, t["hash"]), log)
        return None
    _write(path + ".trial", json.dumps(t))
    return t


def auto_rollback(path, reason, log):
    """Put P.prev back over P (keeping the replaced config as P.bad) and record why in
    P.rollback. False when there is no previous config to go back to."""
    if not _exists(path + ".prev"):
        _remove(path + ".trial")
        log("config: cannot roll back (%s): no previous config %s.prev" % (reason, path))
        return False
    bad = file_hash(path)
    try:
        _copy(path, path + ".bad")
    except OSError:
        pass
    restored = file_hash(path + ".prev")
    _replace(path + ".prev", path)
    _write(path + ".rollback", json.dumps({"reason": reason, "bad": bad,
                                           "restored": restored}))
    _remove(path + ".trial")
    log("config rolled back to %s: %s" % (restored, reason))
    return True


def confirm(path):
    """The config on trial proved healthy: it stays."""
    _remove(path + ".trial")


def check(raw, unload=True):
    """Every error of a raw config as [(field, problem)], by the one validator
    (core/config.py). unload: drop the schema module again afterwards (as app.read_config
    does: on the Unix port its bytecode holds ~25 KiB of the heap)."""
    import sys

    had = "otlink.core.config" in sys.modules
    from otlink.core import config as cm

    try:
        cm.validate(raw)
        return []
    except cm.ConfigError as e:
        return [(x.field, x.problem) for x in cm.errors_of(e)]
    finally:
        cm = None
        if unload and not had:
            sys.modules.pop("otlink.core.config", None)
            core = sys.modules.get("otlink.core")
            if core is not None and hasattr(core, "config"):
                delattr(core, "config")


def _copy_obj(v):
    return json.loads(json.dumps(v))


def _within(field, path):
    return field == path or field.startswith(path + ".") or field.startswith(path + "[")


class ConfigStore:
    """The config of one node as the console sees it: the running file, staged changes,
    commit and rollback. running_hash: the hash the agent booted with."""

    def __init__(self, path, running_hash, check_s=600, trial=None, note=None, unload=True):
        self.path = path
        self.running_hash = running_hash
        self.check_s = check_s
        self.trial = trial  # boot_check()'s record while the running config is on trial
        self.note = note if note is not None else read_json(path + ".rollback")
        self.unload = unload
        self.staged = None  # the raw config with staged changes, or None
        self.committed = None  # hash written by commit (the agent reboots into it)
        self._running = None

    def running(self):
        """The running config as its file holds it (raw JSON, defaults not filled in)."""
        if self._running is None:
            v = read_json(self.path)
            if v is None:
                raise StoreError("cannot read %s" % self.path)
            self._running = v
        return self._running

    def release(self):
        """Drop the cached running config unless changes are staged on it (after each
        command: a board's heap does not carry the raw config between commands)."""
        if self.staged is None:
            self._running = None

    def current(self):
        return self.staged if self.staged is not None else self.running()

    def state(self):
        """ok, trial or rolled_back: the state message's "config" field."""
        if self.trial is not None:
            return "trial"
        return "rolled_back" if self.note is not None else "ok"

    def state_text(self):
        if self.trial is not None:
            return "trial (committed, not yet healthy: rolled back unless a poll or publish " \
                   "succeeds within %d s)" % self.check_s
        if self.note is not None:
            return "rolled_back (%s; running %s, the bad config kept as %s.bad)" % (
                self.note.get("reason"), self.note.get("restored"), self.path)
        return "ok"

    def validate(self):
        return check(self.current(), self.unload)

    def changes(self):
        if self.staged is None:
            return []
        from otlink.console import diff

        return diff(self.running(), self.staged)

    def _edit(self, parts, path, value, remove):
        from otlink.console import CmdError, lookup

        cand = _copy_obj(self.current())
        parent = lookup(cand, parts[:-1], path) if len(parts) > 1 else cand
        key = parts[-1]
        if isinstance(key, int):
            if not isinstance(parent, list):
                raise CmdError("%s: not a list" % path)
            if remove:
                if key >= len(parent):
                    raise CmdError("%s: no such item" % path)
                parent.pop(key)
            elif key < len(parent):
                parent[key] = value
            elif key == len(parent):
                parent.append(value)
            else:
                raise CmdError("%s: the list has %d items (append at [%d])" % (
                    path, len(parent), len(parent)))
        else:
            if not isinstance(parent, dict):
                raise CmdError("%s: the parent is not a section" % path)
            if remove:
                if key not in parent:
                    raise CmdError("%s: not set in the config" % path)
                del parent[key]
            else:
                parent[key] = value
        return cand

    def set(self, parts, path, value, force=False):
        return self._stage(parts, path, self._edit(parts, path, value, False), "set", force)

    def unset(self, parts, path, force=False):
        return self._stage(parts, path, self._edit(parts, path, None, True), "removed", force)

    def _stage(self, parts, path, cand, what, force=False):
        """Stage cand unless the change itself is wrong: an error at or under the path
        refuses it (nothing staged); errors elsewhere (a change that needs another, such as
        user and password) are staged with a note."""
        from otlink.console import CmdError, path_text

        p = path_text(parts)
        if force:
            self.staged = cand
            return "%s %s (staged unchecked; validate or commit checks it)" % (what, p)
        errs = check(cand, self.unload)
        mine = [e for e in errs if _within(e[0], p)]
        if mine:
            raise CmdError("%s refused: %s" % (p, "; ".join("%s: %s" % e for e in mine)))
        self.staged = cand
        msg = "%s %s (staged; commit applies it)" % (what, p)
        if errs:
            msg += "; the config is not valid yet: " + "; ".join("%s: %s" % e for e in errs)
        return msg

    def commit(self):
        """Write the staged config (validated) and start its trial; returns its hash."""
        from otlink.console import CmdError

        if self.staged is None:
            raise CmdError("nothing staged to commit (set a value first)")
        errs = check(self.staged, self.unload)
        if errs:
            raise CmdError("not committed, %d config error(s): %s" % (len(errs), "; ".join(
                "%s: %s" % e for e in errs)))
        text = json.dumps(self.staged)
        h = text_hash(text)
        p = self.path
        _write(p + ".new", text)
        _copy(p, p + ".prev")
        _write(p + ".trial", json.dumps({"hash": h, "prev": self.running_hash, "boots": 0}))
        _replace(p + ".new", p)  # the commit point
        _remove(p + ".rollback")
        self.note = None
        self.staged = None
        self._running = None
        self.committed = h
        return h

    def rollback(self):
        """Drop staged changes ("staged"); with none, put P.prev back over P (P becomes
        P.prev) and return the restored hash. The caller reboots."""
        from otlink.console import CmdError

        if self.staged is not None:
            self.staged = None
            return "staged"
        p = self.path
        if not _exists(p + ".prev"):
            raise CmdError("nothing to roll back: no staged changes and no previous config")
        restored = file_hash(p + ".prev")
        _copy(p, p + ".new")
        _replace(p + ".prev", p)
        _replace(p + ".new", p + ".prev")
        _remove(p + ".trial")
        self._running = None
        self.committed = restored
        return restored
