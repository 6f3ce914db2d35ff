"""The MQTT broker connection options, defined once for every command that connects to a
broker (`otlink monitor`, `otlink store`): the same flags, defaults and help everywhere, and
one check of their values.
"""

from __future__ import annotations

import os
import ssl

__all__ = ["PASSWORD_ENV", "add_broker_args", "broker_password", "broker_port", "refusal",
           "tls_context"]

PASSWORD_ENV = "OTLINK_MQTT_PASSWORD"


def add_broker_args(p, client_id_help: str = "MQTT client id (default: one the broker "
                                              "or client library makes up)") -> None:
    """Add --host, --port, --cafile, --cert, --key, --user, --password and --client-id."""
    p.add_argument("--host", default="127.0.0.1", help="MQTT broker (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default 1883, 8883 with TLS")
    p.add_argument("--cafile", help="CA certificate to verify the broker (enables TLS)")
    p.add_argument("--cert", help="client certificate (with --key; enables TLS)")
    p.add_argument("--key", help="client private key")
    p.add_argument("--user", help="user name (the password from --password or "
                                  f"{PASSWORD_ENV})")
    p.add_argument("--password", help=f"or set {PASSWORD_ENV} (preferred: a command line "
                                      "is visible to every user of the machine)")
    p.add_argument("--client-id", default="", help=client_id_help)


def broker_port(args) -> int:
    """The port to connect to: --port, else 8883 with TLS, 1883 without. ValueError for a
    port out of range."""
    if args.port is not None and not 1 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: out of range, 1..65535 wanted")
    return args.port or (8883 if (args.cafile or args.cert) else 1883)


def broker_password(args) -> str | None:
    return args.password or os.environ.get(PASSWORD_ENV)


def _reason(e: ssl.SSLError) -> str:
    r = getattr(e, "reason", None)
    return f" ({r.lower().replace('_', ' ')})" if r else ""


def tls_context(cafile: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """A verifying client TLS context (the broker's certificate checked against --cafile,
    else the system CAs; hostname checked), with the client certificate when given.
    ValueError naming the option whose file is missing or wrong."""
    if (cert is None) != (key is None):
        raise ValueError("--cert and --key go together")
    for opt, path in (("--cafile", cafile), ("--cert", cert), ("--key", key)):
        if path and not os.access(path, os.R_OK):
            raise ValueError(f"{opt} {path}: cannot read it")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        what = f"--cafile {cafile}" if cafile else "the system CA certificates"
        raise ValueError(f"{what}: not a PEM CA certificate"
                         f"{_reason(e) if isinstance(e, ssl.SSLError) else f' ({e})'}") from None
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            try:  # which of the two is wrong: the certificate alone must load
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
            except (OSError, ssl.SSLError):
                raise ValueError(f"--cert {cert}: not a PEM certificate") from None
            raise ValueError(f"--key {key}: not a PEM private key matching --cert {cert}"
                             f"{_reason(e) if isinstance(e, ssl.SSLError) else ''}") from None
    return ctx


def refusal(host: str, port: int, reason_code, user: str | None) -> str:
    """The message for a CONNACK that refuses: what to check, never the password."""
    msg = f"broker {host}:{port} refused the connection: {reason_code}"
    if getattr(reason_code, "value", None) in (134, 135):  # bad user name or password
        msg += (f" (give --user and --password or {PASSWORD_ENV})" if user is None
                else f" (check --user {user!r} and its password)")
    return msg
