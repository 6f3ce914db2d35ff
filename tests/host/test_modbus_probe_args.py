"""`otlink modbus probe`: bad arguments and ports are one line naming what is wrong (no
traceback); long scans say how far they are."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from otlink_tools import modbus_probe as probe

OTLINK = str(Path(sys.executable).with_name("otlink"))


def otlink(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OTLINK, "modbus", "probe", *args], capture_output=True, text=True,
                          timeout=30)


def last_line(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines, r
    return lines[-1]


# ---- ports that cannot be opened -----------------------------------------------------------

def _port(kind: str, tmp_path: Path) -> tuple[str, str]:
    if kind == "missing":
        return str(tmp_path / "ttyUSB9"), "no such port"
    if kind == "directory":
        return str(tmp_path), "is a directory"
    if kind == "file":
        f = tmp_path / "notaport"
        f.write_text("x")
        return str(f), "not a serial port"
    return "/dev/null", "not a serial port"


@pytest.mark.parametrize("kind", ["missing", "directory", "file", "devnull"])
def test_a_port_that_cannot_be_opened_is_one_line(kind, tmp_path):
    port, why = _port(kind, tmp_path)
    r = otlink(port, "--scan-ids", "1-5")
    assert r.returncode == 1
    assert r.stderr.strip() == last_line(r)  # exactly one line
    assert last_line(r).startswith(f"otlink: modbus probe: cannot open {port}: ")
    assert why in last_line(r)
    assert r.stdout == ""


# ---- argument checks -----------------------------------------------------------------------

BAD_ARGS = [
    (["--scan-ids", "banana"], "--scan-ids", "1..247"),
    (["--scan-ids", "0-300"], "--scan-ids", "1..247"),
    (["--scan-ids", "5-1"], "--scan-ids", "must not be larger"),
    (["--scan-ids", "5-"], "--scan-ids", "1..247"),
    (["--slave", "999", "--decode", "0"], "--slave", "1..247"),
    (["--slave", "0", "--decode", "0"], "--slave", "broadcast"),
    (["--decode", "70000"], "--decode", "0..65535"),
    (["--decode", "-1"], "--decode", "0..65535"),
    (["--scan-regs", "65530-65600"], "--scan-regs", "0..65535"),
    (["--scan-regs", "x-9"], "--scan-regs", "0..65535"),
    (["--baud", "0", "--decode", "0"], "--baud", "300..4000000"),
    (["--baud", "-5", "--decode", "0"], "--baud", "300..4000000"),
    (["--baud", "fast", "--decode", "0"], "--baud", "300..4000000"),
    (["--timeout-ms", "0", "--decode", "0"], "--timeout-ms", "1..60000"),
    (["--decode", "0", "--length", "0"], "--length", "1..250"),
    (["--decode", "0", "--length", "251"], "--length", "1..250"),
    (["--decode", "0", "--length", "ten"], "--length", "1..250"),
]


@pytest.mark.parametrize("args,option,accepted", BAD_ARGS,
                         ids=[" ".join(a[0]) for a in BAD_ARGS])
def test_bad_argument_names_the_option_and_the_accepted_range(args, option, accepted, tmp_path):
    # the port does not exist: the argument is refused before anything is opened
    r = otlink(str(tmp_path / "ttyUSB9"), *args)
    assert r.returncode == 2
    line = last_line(r)
    assert f"argument {option}:" in line and accepted in line, line


@pytest.mark.parametrize("regs", ["zz", "12345", "-1", "", "4366 banana"])
def test_bad_regs_are_refused(regs):
    r = otlink("--regs", regs)
    assert r.returncode == 2
    line = last_line(r)
    assert "argument --regs:" in line and "0000..FFFF" in line, line


def test_valid_edges_are_accepted():
    p = probe.build_parser(probe.argparse.ArgumentParser())
    a = p.parse_args(["/dev/x", "--scan-ids", "1-247", "--scan-regs", "65530-65535",
                      "--decode", "65535", "--baud", "300", "--slave", "247",
                      "--regs", "0x4366,8000 1"])
    assert a.scan_ids == range(1, 248)
    assert a.scan_regs == range(65530, 65536)
    assert (a.decode, a.baud, a.slave) == (65535, 300, 247)
    assert a.regs == [0x4366, 0x8000, 1]
    assert p.parse_args(["/dev/x", "--scan-ids", "7", "--baud", "4000000"]).scan_ids == range(7, 8)


def test_decode_near_the_top_reads_only_registers_that_exist():
    calls = []

    class Fake:
        def read_regs(self, slave, fc, addr, count):
            calls.append((addr, count))
            return [0] * count

    assert probe._decode_at(Fake(), 1, 3, 65535) == [0]
    assert probe._decode_at(Fake(), 1, 3, 65533) == [0, 0, 0]
    assert probe._decode_at(Fake(), 1, 3, 100) == [0, 0, 0, 0]
    assert calls == [(65535, 1), (65533, 3), (100, 4)]


def test_no_action_says_what_to_use(tmp_path):
    r = otlink(str(tmp_path / "ttyUSB9"))
    assert r.returncode == 1
    line = last_line(r)
    assert r.stderr.strip() == line
    assert "--scan-ids" in line and "--scan-regs" in line and "--decode" in line


# ---- over the simulated meter --------------------------------------------------------------

def test_scan_ids_reports_progress_and_a_summary(reference_meter, capsys):
    rc = probe.main([reference_meter.agent_port, "--baud", "115200", "--timeout-ms", "50",
                     "--scan-ids", "1-12"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.splitlines() == ["slave 1: answers", "slave 2: answers", "slave 3: answers",
                                "3 slave(s): 1 2 3"]
    assert "scanning slave ids 1..12 at 115200 baud 8N1" in err
    assert "scanned 10 of 12 ids" in err and "scanned 12 of 12 ids" in err


def test_scan_with_no_answer_says_so(reference_meter, capsys):
    rc = probe.main([reference_meter.agent_port, "--baud", "115200", "--timeout-ms", "50",
                     "--scan-ids", "20-21"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.strip() == "0 slave(s): -"
    assert "scanned 2 of 2 ids" in err
    assert "no slave answered ids 20..21 at 115200 baud 8N1" in err


def test_decode_failure_names_slave_and_register(reference_meter, capsys):
    rc = probe.main([reference_meter.agent_port, "--baud", "115200", "--decode", "5000"])
    err = capsys.readouterr().err
    assert rc == 1
    assert ("otlink: modbus probe: slave 1 FC03 register 5000: exception 2: illegal data address"
            in err)


def test_serial_error_during_a_scan_is_one_line(reference_meter, capsys, monkeypatch):
    import serial

    def unplugged(self, *a):
        raise serial.SerialException("device reports readiness to read but returned no data")

    monkeypatch.setattr(probe.SerialMaster, "read_regs", unplugged)
    rc = probe.main([reference_meter.agent_port, "--baud", "115200", "--scan-ids", "1-3"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"otlink: modbus probe: {reference_meter.agent_port}: device reports readiness" in err


def test_progress_on_a_terminal_is_one_line_rewritten_in_place(capsys):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    prog = probe._Progress(3, "ids", lambda sid: f"trying slave id {sid}", stream=tty)
    prog(0, 1)
    prog.out("slave 1: answers")
    prog(1, 2)
    prog(2, 3)
    prog.done()
    assert capsys.readouterr().out == "slave 1: answers\n"
    shown = tty.getvalue()
    assert "trying slave id 2 (2 of 3)" in shown and "\n" not in shown
    assert shown.endswith("\r\x1b[K")  # the status line is gone at the end
    assert "scanned" not in shown


def test_progress_without_a_terminal_prints_every_n():
    s = io.StringIO()
    prog = probe._Progress(25, "ids", str, stream=s, every=10)
    for i in range(25):
        prog(i, i + 1)
    prog.done()
    assert s.getvalue().splitlines() == ["scanned 10 of 25 ids", "scanned 20 of 25 ids",
                                         "scanned 25 of 25 ids"]


def test_length_without_decode_is_refused(tmp_path):
    r = otlink(str(tmp_path / "ttyUSB9"), "--length", "8")
    assert r.returncode == 1
    assert "--length N reads a string at --decode ADDR" in last_line(r)


def test_string_from_regs_in_both_byte_orders(capsys):
    assert probe.main(["--regs", "4142 2D31 3200", "--length", "5"]) == 0
    out = capsys.readouterr().out
    assert 'string AB (order ABCD): "AB-12" (5 of 5 characters)' in out
    assert 'string BA (order BADC): "BA1-" (4 of 5 characters)' in out  # its NUL ends it
