# Security posture: what the node's birth message says about how it is protected, so a
# consumer (or an auditor) reads it from the wire instead of trusting a config file
# (docs/security.md, docs/payload.md "sec"). Built once at boot from the validated config.
#
# Firmware hash: SHA-256 over the agent's module files as deployed (sorted by path; each
# file contributes its path, a NUL, its length as 4 bytes big-endian and its bytes), the same
# figure `otlink_tools.fwhash.tree_hash` computes over a deploy folder. A firmware frozen
# into the image has no files to hash: "frozen" (its integrity is the image's, checked by the
# board's boot loader when secure boot is on).
import hashlib
import os

_CHUNK = 512  # bytes read at a time: the hash never holds a whole file


def _files(root, rel, out):
    for ent in os.ilistdir(root + "/" + rel if rel else root):
        name, kind = ent[0], ent[1]
        sub = rel + "/" + name if rel else name
        if kind == 0x4000:  # directory
            _files(root, sub, out)
        elif name.endswith(".py") or name.endswith(".mpy"):
            out.append(sub)


def firmware_hash():
    """Hex SHA-256 of the otlink package's files, "frozen" when it has none on a filesystem."""
    import otlink

    f = getattr(otlink, "__file__", None)
    if not f:
        return "frozen"
    root = f.rsplit("/", 1)[0] if "/" in f else "."
    try:
        paths = []
        _files(root, "", paths)
    except OSError:
        return "frozen"
    if not paths:
        return "frozen"
    paths.sort()
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    mv = memoryview(buf)
    size = bytearray(4)
    for p in paths:
        try:
            st = os.stat(root + "/" + p)
        except OSError:
            return "frozen"  # a frozen module's path: it is not on the filesystem
        n = st[6]
        h.update(p.encode())
        h.update(b"\0")
        for i in range(4):
            size[i] = (n >> (24 - 8 * i)) & 0xFF
        h.update(size)
        with open(root + "/" + p, "rb") as fh:
            while True:
                k = fh.readinto(buf)
                if not k:
                    break
                h.update(mv[:k])
    d = h.digest()
    return "".join(["%02x" % b for b in d])


def posture(cfg, cfg_hash, fw_hash):
    """The birth message's "sec" map (docs/payload.md). Every field is a fact of the
    validated config or the running firmware; nothing secret."""
    m = cfg["mqtt"]
    tls = m["tls"]
    pw = m["password"] is not None
    cmds = cfg["commands"]
    con = cfg.get("console") or {}
    auth = "none"
    if tls is not None and tls.get("cert_file"):
        auth = "cert+password" if pw else "cert"
    elif pw:
        auth = "password"
    return {
        "tls": tls is not None,
        "tls_verify": tls is not None,  # verification cannot be turned off (hal/tls.py)
        "auth": auth,
        "plaintext_auth": pw and tls is None,  # only with mqtt.insecure_plaintext_auth
        "cmd": "signed" if cmds["writable"] else "off",
        "ack": ("signed" if m.get("ack_key") else "unsigned") if m["ack"] == "consumer"
        else "broker",
        "console_lock": bool(con.get("pin")),
        "fw": fw_hash,
        "cfg": cfg_hash,
    }


def insecure(cfg):
    """The explicit insecure options in force, comma separated ("" when none): the state
    message repeats them so they cannot be on silently."""
    m = cfg["mqtt"]
    out = []
    if m["password"] is not None and m["tls"] is None:
        out.append("plaintext_auth")
    if m.get("insecure_unsigned_acks"):
        out.append("unsigned_acks")
    return ",".join(out)
