"""The host tools installed outside the checkout (their files in a folder of their own, not
an editable install) and run from another working directory: they find the checkout from
OTLINK_HOME or the current folder, commands that need no checkout run anywhere, and one that
needs it and finds none says how to point otlink at it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A site folder outside the checkout holding the package as an install lays it out:
    the otlink_tools files, and an `otlink` script calling otlink_tools.cli:main (the
    project's console script). (A pip install would do the same, but building a wheel
    needs the `wheel` package, which this environment does not have offline.)"""
    site = tmp_path_factory.mktemp("install") / "site"
    shutil.copytree(ROOT / "host_tools" / "otlink_tools", site / "otlink_tools",
                    ignore=shutil.ignore_patterns("__pycache__"))
    entry = tomllib.loads((ROOT / "host_tools" / "pyproject.toml").read_text())
    module, func = entry["project"]["scripts"]["otlink"].split(":")
    (site / "bin").mkdir()
    (site / "bin" / "otlink").write_text(f"import sys\nfrom {module} import {func}\n"
                                         f"sys.exit({func}())\n")
    return site


def otlink(site: Path, *args: str, cwd: Path, home: str | None = None
           ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OTLINK_HOME", "OTLINK_FIRMWARE", "OTLINK_BOARDS")}
    env["PYTHONPATH"] = str(site)
    if home is not None:
        env["OTLINK_HOME"] = home
    return subprocess.run([sys.executable, str(site / "bin" / "otlink"), *args], cwd=str(cwd),
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_installed_copy_is_the_one_that_runs(installed, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(installed))
    code = "import otlink_tools; print(otlink_tools.__file__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True)
    assert Path(res.stdout.strip()).is_relative_to(installed), res.stdout + res.stderr


def test_no_checkout_needed_for_monitor_probe_and_help(installed, tmp_path):
    res = otlink(installed, "--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("otlink "), res.stderr
    res = otlink(installed, "monitor", "--help", cwd=tmp_path)
    assert res.returncode == 0 and "--format" in res.stdout, res.stderr
    res = otlink(installed, "modbus", "probe", "--regs", "4366 8000", cwd=tmp_path)
    assert res.returncode == 0 and "float32" in res.stdout, res.stderr


def test_outside_any_checkout_deploy_says_how_to_find_one(installed, tmp_path):
    res = otlink(installed, "deploy", "--board", "esp32", "--dry-run", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"otlink: no otlink checkout here ({tmp_path.resolve()})")
    assert "OTLINK_HOME" in lines[0]


def test_otlink_home_names_the_checkout(installed, tmp_path):
    out = tmp_path / "tree"
    res = otlink(installed, "deploy", "--board", "pico_w", "--dry-run", "--out", str(out),
                 cwd=tmp_path, home=str(ROOT))
    assert res.returncode == 0, res.stderr
    assert (out / "main.py").read_bytes() == (ROOT / "firmware" / "main.py").read_bytes()
    assert (out / "otlink" / "app.mpy").exists()
    # the board list comes from that checkout too
    res = otlink(installed, "deploy", "--board", "nope", "--dry-run", cwd=tmp_path,
                 home=str(ROOT))
    assert res.returncode == 1 and "unknown board 'nope'" in res.stderr
    assert "esp32" in res.stderr and "pico_w" in res.stderr


def test_otlink_home_that_is_not_a_checkout_is_named(installed, tmp_path):
    res = otlink(installed, "deploy", "--board", "esp32", "--dry-run", cwd=tmp_path,
                 home=str(tmp_path))
    assert res.returncode == 1
    assert res.stderr.strip() == (f"otlink: OTLINK_HOME={tmp_path}: not an otlink checkout "
                                  "(it needs firmware/main.py, firmware/manifest.py and boards/)")


def test_found_from_a_folder_inside_the_checkout(installed, tmp_path):
    out = tmp_path / "tree"
    res = otlink(installed, "deploy", "--board", "esp32", "--dry-run", "--out", str(out),
                 cwd=ROOT / "docs")
    assert res.returncode == 0, res.stderr
    assert (out / "boards" / "esp32.json").read_bytes() == \
        (ROOT / "boards" / "esp32.json").read_bytes()
