"""Every node analytics feature against numpy, on both MicroPython builds.

tests/host/analytics_mp.py runs synthetic signals of known content (sines at known
amplitudes on and off FFT bins, a bearing-fault-like impulse train, Gaussian noise) through the
simulated ADXL345, the driver's FIFO bursts and the vibration features, and random readings
through a window; it prints the integer samples the part delivered and what the node computed.
Here numpy recomputes each feature from the same samples with the definitions of
docs/analytics.md. Tolerance: float32 (the 32-bit build's floats), relative 2e-5, and for a
band RMS also 1e-5 of the axis RMS (a band holding only quantisation noise).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mp import BUILDS, ROOT, run

G = 9.80665
RTOL = 2e-5


@pytest.fixture(scope="module", params=BUILDS)
def cases(request):
    from mp import interpreter

    interpreter(request.param)
    res = run(ROOT / "tests" / "host" / "analytics_mp.py", heap="4M",
              extra=(ROOT / "tests" / "firmware",), build=request.param, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def close(got, want, what, rtol=RTOL, atol=0.0):
    assert abs(got - want) <= rtol * abs(want) + atol, f"{what}: node {got!r}, numpy {want!r}"


def reference(c):
    """The features of docs/analytics.md, computed by numpy in float64 from the samples."""
    out = {}
    per_g = 256.0
    for ax in "xyz":
        a = np.asarray(c[ax], dtype=np.float64)
        d = a - a.mean()
        m2 = np.mean(d ** 2)
        rms = math.sqrt(m2)
        pk = np.max(np.abs(d))
        out["rms_" + ax] = rms / per_g
        out["peak_" + ax] = pk / per_g
        out["crest_" + ax] = pk / rms if rms else 0.0
        out["kurtosis_" + ax] = np.mean(d ** 4) / m2 ** 2 if m2 else 0.0
    z = np.asarray(c["z"], dtype=np.float64)
    n = len(z)
    fs = c["fs"]
    spec = np.fft.rfft(z)
    p = np.abs(spec) ** 2
    df = fs / n
    for i, (lo, hi) in enumerate(c["bands"]):
        k0 = max(1, math.ceil(lo / df))
        k1 = min(n // 2, math.floor(hi / df) + 1)
        out["band%d" % i] = math.sqrt(2 * p[k0:k1].sum()) / n / per_g
    k0 = max(1, math.ceil(10 / df))
    k1 = min(n // 2, math.floor(1000 / df) + 1)
    f = np.arange(k0, k1) * df
    v = math.sqrt(2 * np.sum(p[k0:k1] / (2 * np.pi * f) ** 2)) / n / per_g * G * 1000
    out["velocity"] = v
    return out


def test_vibration_features_match_numpy(cases):
    vib = [c for c in cases if c["case"] != "window"]
    assert {c["case"] for c in vib} == {"sines", "bearing", "noise"}
    for c in vib:
        assert c["overruns"] == 0, "the FIFO was read before it filled"
        assert len(c["z"]) == 1024
        ref = reference(c)
        got = c["features"]
        for k, want in ref.items():
            atol = 1e-5 * ref["rms_z"] if k.startswith("band") else 0.0
            close(got[k], want, f"{c['case']} {k}", atol=atol)


def test_known_content_is_measured(cases):
    """The signal chain, not only the arithmetic: amplitudes in, RMS out (quantisation of
    1/256 g allows 0.3 %)."""
    s = {c["case"]: c for c in cases}["sines"]["features"]
    close(s["rms_x"], 0.2 / math.sqrt(2), "50 Hz sine", rtol=3e-3)
    close(s["rms_y"], math.hypot(0.3, 0.1) / math.sqrt(2), "two sines", rtol=3e-3)
    close(s["band1"], 0.5 / math.sqrt(2), "156.25 Hz in 100-200 Hz", rtol=3e-3)
    # velocity 10-1000 Hz of z: 0.5 g at 156.25 Hz and 0.05 g at 900 Hz
    v = math.hypot(0.5 * G / (2 * math.pi * 156.25), 0.05 * G / (2 * math.pi * 900)) \
        / math.sqrt(2) * 1000
    close(s["velocity"], v, "velocity RMS", rtol=3e-3)
    assert s["zone"] == "C"  # 3.53 mm/s: group 2 rigid, B/C 2.8, C/D 4.5
    b = {c["case"]: c for c in cases}["bearing"]["features"]
    n = {c["case"]: c for c in cases}["noise"]["features"]
    assert b["kurtosis_z"] > 10 and b["crest_z"] > 5, "impulses: peaky"
    close(n["kurtosis_z"], 3.0, "Gaussian noise kurtosis", rtol=0.15)
    close(n["rms_z"], 0.3, "noise RMS", rtol=0.05)


def test_window_stats_match_numpy(cases):
    wins = [c for c in cases if c["case"] == "window"]
    assert len(wins) == 2
    for c in wins:
        a = np.asarray(c["values"], dtype=np.float64) * c["scale"] + c["offset"]
        st = c["stats"]
        assert st["1"] == len(a)
        want = {"2": a.min(), "3": a.max(), "4": a.mean(), "5": math.sqrt(np.mean(a ** 2)),
                "6": a.std(), "7": a[0], "8": a[-1]}
        for k, v in want.items():
            close(st[k], v, f"window kind {c['kind']} stat {k}")
