"""A short `make chaos` (tools/chaos.py): the whole node under every fault source at once,
then the consumer's (boot, seq) check. The full run (1,000 agent kills, 200 broker kills,
docs/reliability.md) is `make chaos`; this one proves the machinery and the invariant."""

from __future__ import annotations

import json
import subprocess
import sys

from mp import ROOT


def test_short_chaos_run_loses_nothing(tmp_path):
    out = tmp_path / "chaos.json"
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "chaos.py"), "--agent-kills", "6",
                          "--broker-kills", "2", "--proxy-faults", "4", "--slave-outages", "2",
                          "--kill-min", "0.3", "--kill-max", "1.2", "--flash-cuts", "45",
                          "--seed", "3", "--json", str(out)],
                         capture_output=True, text=True, timeout=150, cwd=str(ROOT))
    print(res.stdout)
    assert out.exists(), res.stdout + res.stderr
    r = json.loads(out.read_text())
    assert r["agent_kills"] == 6 and r["broker_kills"] == 2 and r["slave_outages"] == 2
    assert sum(r[f"proxy_{m}"] for m in ("stall", "drop", "reset", "halfclose")) == 4
    # the first boot delivered before the faults began, the last one drained 50 more
    assert r["boots"] >= 2 and r["readings_stored"] > 50, r
    assert r["lost"] == 0, r["lost_first"]
    assert r["duplicates_stored"] == 0
    assert r["drain_s"] is not None, "the node did not deliver its backlog after the faults"
    assert r["agent_exits"] == 0 and r["agent_memory_errors"] == 0
    assert r["flash_cuts"] >= 40 and r["flash_lost"] == 0, r["flash_runs"]
    assert r["pass"] and res.returncode == 0, res.stdout + res.stderr


def test_proxy_faults_do_what_they_say():
    """The proxy between agent and broker (an echo server stands in for the broker)."""
    import socket
    import threading
    import time

    sys.path.insert(0, str(ROOT / "tools"))
    from chaos import Proxy

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve(c):
        try:
            for d in iter(lambda: c.recv(100), b""):
                c.sendall(d)
        except OSError:
            pass  # reset by the proxy
        finally:
            c.close()

    def echo():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=echo, daemon=True).start()
    p = Proxy(srv.getsockname()[1])
    try:
        def conn():
            s = socket.create_connection(("127.0.0.1", p.port), timeout=1)
            s.sendall(b"hi")
            assert s.recv(10) == b"hi"  # passes through
            return s

        for mode in ("stall", "drop"):
            s = conn()
            p.set(mode)
            s.sendall(b"lost?")
            s.settimeout(0.4)
            try:
                got = s.recv(10)
            except socket.timeout:
                got = None
            assert got is None, f"{mode}: {got!r} came through"
            p.set("pass")
            if mode == "stall":  # held bytes go on once the stall ends
                s.settimeout(1)
                assert s.recv(10) == b"lost?"
            s.close()
        s = conn()
        p.set("halfclose")
        s.settimeout(1)
        assert s.recv(10) == b""  # FIN towards the agent
        s.sendall(b"x")  # its own direction is still open
        p.set("pass")
        s.close()
        s = conn()
        p.set("reset")
        s.settimeout(1)
        t0 = time.monotonic()
        try:
            s.recv(10)
            reset = False
        except ConnectionResetError:
            reset = True
        assert reset and time.monotonic() - t0 < 1
    finally:
        p.close()
        srv.close()
