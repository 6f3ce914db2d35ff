"""TLS: a mosquitto TLS listener with a CA generated at test time; the node verifies it."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from otlink_tools.broker import TlsMaterial, tls_broker
from otlink_tools.monitor import Monitor
from uplink_helpers import expected_raw, result, start_agent


@pytest.fixture(scope="module")
def pki():
    # Own temp folders (not pytest's 0700 tree): mosquitto reads them after dropping root.
    good = TlsMaterial().generate()
    other = TlsMaterial().generate(ca_cn="some other CA")
    yield good, other
    shutil.rmtree(good.dir, ignore_errors=True)
    shutil.rmtree(other.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_brokers(pki):
    good, _ = pki
    b, port = tls_broker(good)
    b.start()
    b2, port2 = tls_broker(good, require_certificate=True)
    b2.start()
    yield b, port, port2
    b.stop()
    b2.stop()


def agent_tls(port: int, tls: dict, **kw) -> dict:
    opts = {"port": port, "tls": tls, "seconds": 2, "backoff_ms": [200, 400]}
    opts.update(kw)
    return result(start_agent(opts))


def test_tls_delivers_exact_values(pki, tls_brokers):
    good, _ = pki
    b, port, _ = tls_brokers
    out = io.StringIO()
    mon = Monitor(port=port, fmt="jsonl", out=out, cafile=str(good.ca_cert)).start()
    try:
        res = agent_tls(port, {"ca_file": str(good.ca_cert), "server_hostname": "localhost"},
                        total=300, until_acked=True, seconds=20)
        assert mon.wait(count=300, seconds=20)
    finally:
        mon.stop()
    assert res["last_error"] is None and res["depth"] == 0
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["raw"] for r in got] == [expected_raw(s)[1] for s in range(1, 301)]


def test_tls_ip_literal_matches_san(pki, tls_brokers):
    good, _ = pki
    _, port, _ = tls_brokers
    res = agent_tls(port, {"ca_file": str(good.ca_cert)}, total=10, until_acked=True)
    assert res["last_error"] is None and res["connects"] == 1


def test_wrong_ca_refused_clearly(pki, tls_brokers):
    good, other = pki
    _, port, _ = tls_brokers
    res = agent_tls(port, {"ca_file": str(other.ca_cert), "server_hostname": "localhost"})
    assert res["connects"] == 0 and res["failures"] >= 2  # kept retrying with backoff
    assert res["last_error"] == f"TLS: server certificate not trusted by ca_file '{other.ca_cert}'"


def test_wrong_hostname_refused_clearly(pki, tls_brokers):
    good, _ = pki
    _, port, _ = tls_brokers
    res = agent_tls(port, {"ca_file": str(good.ca_cert), "server_hostname": "wrong.example"})
    assert res["connects"] == 0
    assert res["last_error"] == ("TLS: hostname mismatch: the server certificate is not for "
                                 "'wrong.example'")


def test_client_certificate(pki, tls_brokers):
    good, _ = pki
    _, _, port2 = tls_brokers
    base = {"ca_file": str(good.ca_cert), "server_hostname": "localhost"}
    res = agent_tls(port2, dict(base, cert_file=str(good.client_cert),
                                key_file=str(good.client_key)), total=10, until_acked=True)
    assert res["last_error"] is None and res["connects"] == 1
    res = agent_tls(port2, base)  # the broker demands a certificate we do not have
    assert res["connects"] == 0 and res["last_error"].startswith(("TLS:", "MQTT:"))


def test_tls_without_ca_is_a_config_error(pki, tls_brokers):
    _, port, _ = tls_brokers
    from mp import run
    import tempfile
    from pathlib import Path

    script = Path(tempfile.mkdtemp()) / "t.py"
    script.write_text(
        "from otlink.hal.clock import Clock\nfrom otlink.uplink import Uplink\n"
        "from otlink.hal.tls import TlsError\nfrom otlink.core.config import parse_mqtt\n"
        f"m = parse_mqtt({{'host': '127.0.0.1', 'port': {port}, 'ack': 'broker'}})\n"
        "m['tls'] = {'ca_file': None}  # past the schema: the TLS layer checks it again\n"
        "try:\n"
        "    Uplink(m, {'id': 'n', 'site': 's'}, Clock())\n"
        "except TlsError as e:\n    print('ERR', e)\n")
    res = run(script, heap="256K")
    assert "ERR TLS: mqtt.tls.ca_file is required" in res.stdout, res.stdout + res.stderr


def test_monitor_refuses_wrong_ca(pki, tls_brokers):
    _, other = pki
    _, port, _ = tls_brokers
    with pytest.raises(ConnectionError, match="TLS: broker certificate refused"):
        Monitor(port=port, cafile=str(other.ca_cert)).start(timeout=5)
