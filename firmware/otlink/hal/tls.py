# TLS seam for the MQTT uplink: umqtt.simple does `import ussl; ussl.wrap_socket(sock, **p)`
# inside connect(). install() registers this module as "ussl" so that call lands here, where
# the server is always verified: CERT_REQUIRED against the configured CA, the host name checked.
# There is no option that turns verification off: TLS without a CA is a configuration error.
#
# mbedTLS in the Unix port (and some board builds) parses DER only, so PEM files are converted
# here (one certificate/key per file; the first PEM block is used).
import sys
import binascii
import ssl


class TlsError(Exception):
    """One line naming what failed: "TLS: <what>"."""


def install():
    """Make `import ussl` (inside umqtt.simple.connect) resolve to this module."""
    sys.modules["ussl"] = sys.modules[__name__]


def _der(data, what):
    i = data.find(b"-----BEGIN")
    if i < 0:
        return data  # already DER
    j = data.find(b"\n", i)
    k = data.find(b"-----END", j)
    if j < 0 or k < 0:
        raise TlsError("TLS: %s is not a complete PEM block" % what)
    body = data[j + 1:k].replace(b"\r", b"").replace(b"\n", b"")
    try:
        return binascii.a2b_base64(body)
    except ValueError:
        raise TlsError("TLS: %s has bad base64" % what)


def _load(path, what):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TlsError("TLS: cannot read %s %r (errno %s)" % (what, path, e.args[0]))
    return _der(data, "%s %r" % (what, path))


class Tls:
    """Verified client TLS from the config section mqtt.tls:
    {"ca_file": path (required), "cert_file": null, "key_file": null, "server_hostname": null}.
    host: the broker host, checked against the certificate unless server_hostname says otherwise.
    """

    def __init__(self, cfg, host):
        if not isinstance(cfg, dict):
            raise TlsError("TLS: mqtt.tls must be an object with ca_file")
        ca = cfg.get("ca_file")
        if not ca:
            raise TlsError("TLS: mqtt.tls.ca_file is required "
                           "(server verification is not optional)")
        self.ca_file = ca
        self.cadata = _load(ca, "ca_file")
        self.hostname = cfg.get("server_hostname") or host
        cert = cfg.get("cert_file")
        key = cfg.get("key_file")
        if bool(cert) != bool(key):
            raise TlsError("TLS: mqtt.tls.cert_file and key_file go together (client certificate)")
        self.cert = _load(cert, "cert_file") if cert else None
        self.key = _load(key, "key_file") if key else None
        self._ctx = None

    def context(self):
        # Built once and kept: parsing the CA and the client key again on every reconnect
        # costs heap and time. (The "uncaught NLR" once blamed on collecting a context with
        # a client key was a >=255-byte argv item: docs/uplink.md.)
        if self._ctx is not None:
            return self._ctx
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cadata=self.cadata)
        except ValueError:
            raise TlsError("TLS: ca_file %r holds no usable certificate" % self.ca_file)
        if self.cert is not None:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except ValueError as e:
                raise TlsError("TLS: client cert_file/key_file rejected: %s" % _text(e))
        self._ctx = ctx
        return ctx

    def wrap(self, raw, timeout_ms):
        """Handshake on the connected socket `raw` within timeout_ms; returns the TLS stream."""
        ctx = self.context()
        # The handshake runs blocking with a receive/send timeout on the raw socket: each
        # step is bounded, and the handshake is a handful of steps.
        raw.setblocking(True)
        raw.settimeout(max(timeout_ms, 1) / 1000)
        try:
            t = ctx.wrap_socket(raw, server_hostname=self.hostname)
        except ValueError as e:
            raise TlsError(self.explain(_text(e)))
        except OSError as e:
            raise TlsError("TLS: handshake with %s failed or timed out (%s)"
                           % (self.hostname, e.args[0] if e.args else e))
        raw.setblocking(False)
        t.setblocking(False)
        return t

    def explain(self, text):
        low = text.lower()
        if "common name" in low or "cn" in low.split() or "hostname" in low:
            return ("TLS: hostname mismatch: the server certificate is not for %r"
                    % self.hostname)
        if "not correctly signed" in low or "trusted" in low or "verify" in low:
            return "TLS: server certificate not trusted by ca_file %r" % self.ca_file
        if "expired" in low or "future" in low:
            return "TLS: server certificate outside its validity period (%s)" % text
        return "TLS: handshake with %s failed: %s" % (self.hostname, text)


def _text(e):
    return " ".join(str(a).strip() for a in e.args) or repr(e)


def wrap_socket(sock, tls=None, **params):
    """The ussl.wrap_socket umqtt calls. `tls` is a Tls given through ssl_params; plain
    ussl-style params (cadata is then a file path in "ca_file") build one on the spot."""
    if tls is None:
        tls = Tls(params, params.get("server_hostname"))
    start = getattr(sock, "start_tls", None)
    if start is not None:  # the uplink's deadline socket: swap its stream in place
        start(tls)
        return sock
    return tls.wrap(sock, 10000)
