"""`otlink modbus probe` against the simulated meter (pyserial on the agent end of the pty)."""

from __future__ import annotations

import struct

import pytest

from otlink_tools import cli
from otlink_tools import modbus_probe as probe
from otlink_tools.sim_meter import REFERENCE_POINTS, reference_value


def test_codec_round_trips_every_type_and_order():
    for typ, v in (("int16", -5), ("uint16", 65000), ("int32", -70000), ("uint32", 4e9),
                   ("float32", 230.25), ("int64", -(2 ** 40)), ("uint64", 2 ** 63 + 1),
                   ("float64", 49.97)):
        v = int(v) if not typ.startswith("float") else v
        for order in probe.ORDERS:
            regs = probe.encode(v, typ, order)
            assert probe.decode(regs, typ, order) == v, (typ, order)
    assert probe.encode(230.0, "float32", "ABCD") == [0x4366, 0x0000]
    assert probe.encode(230.0, "float32", "CDAB") == [0x0000, 0x4366]
    assert probe.encode(230.0, "float32", "BADC") == [0x6643, 0x0000]
    assert probe.encode(230.0, "float32", "DCBA") == [0x0000, 0x6643]
    assert probe.decode(probe.encode("AB-1", "string", "BADC", 6), "string", "BADC") == "AB-1"
    # length counts characters: 11 characters take 6 registers and decode to 11
    regs = probe.encode("SERIAL-4711", "string", "ABCD", 11)
    assert len(regs) == 6 and probe.string_regs(11) == 6
    assert probe.decode(regs + [0x5858], "string", "ABCD", 11) == "SERIAL-4711"


def test_decode_table_marks_the_plausible_reading():
    regs = probe.encode(230.5, "float32", "CDAB") + [0, 0]
    rows = probe.decode_table(regs)
    hit = [r for r in rows if r[0] == "float32" and r[1] == "CDAB"][0]
    assert hit[2] == 230.5 and hit[3]
    wrong = [r for r in rows if r[0] == "float32" and r[1] == "ABCD"][0]
    assert not wrong[3]  # 0x0000 4366 read big-endian is a denormal: not plausible
    out = probe.format_decode(regs)
    assert "float32  CDAB" in out and "*" in out


def test_scan_ids_and_registers_over_the_pty(reference_meter):
    m = probe.SerialMaster(reference_meter.agent_port, 115200, timeout_ms=100)
    try:
        lines = []
        assert probe.scan_ids(m, range(1, 6), out=lines.append) == [1, 2, 3]
        spans = probe.scan_regs(m, 1, range(0, 40), block=10, out=lines.append)
        assert spans[4] == [(0, 40)] and spans[3] == [(0, 40)]
        regs = m.read_regs(1, 4, 0, 2)
        v = probe.decode(regs, "float32", "ABCD")
        want = reference_meter.expected(1, "input", 0, "float32", "ABCD")
        assert v == struct.unpack(">f", struct.pack(">f", want))[0]
        with pytest.raises(probe.ProbeError, match="exception 2"):
            m.read_regs(1, 3, 5000, 2)  # beyond the device: illegal address
        with pytest.raises(probe.ProbeError, match="timeout"):
            m.read_regs(9, 3, 0, 1)  # nobody home
    finally:
        m.close()


def test_cli_decode_and_register(reference_meter, capsys):
    assert probe.main([reference_meter.agent_port, "--baud", "115200", "--slave", "2",
                       "--decode", "20"]) == 0
    out = capsys.readouterr().out
    want = reference_meter.expected(2, "holding", 20, "float32", "CDAB")
    line = [ln for ln in out.splitlines() if ln.startswith("float32  CDAB")][0]
    assert f"{want:.6g}" in line and line.rstrip().endswith("*")
    # the same command through the CLI's table
    assert cli.main(["modbus", "probe", "--regs", "4366 0000"]) == 0
    assert "230" in capsys.readouterr().out


def test_cli_decodes_a_string_in_both_byte_orders(reference_meter, capsys):
    # the reference map's string: slave 1, holding 210, 16 characters (8 registers)
    p = [q for q in REFERENCE_POINTS if q["type"] == "string"][0]
    assert (p["slave"], p["table"], p["address"], p["length"]) == (1, "holding", 210, 16)
    want = reference_value(p)  # "METER-20", NUL padded
    assert probe.main([reference_meter.agent_port, "--baud", "115200", "--slave", "1",
                       "--decode", "210", "--length", "16"]) == 0
    out = capsys.readouterr().out
    swapped = "".join(want[i + 1] + want[i] for i in range(0, len(want), 2))
    assert f'string AB (order ABCD): "{want}" ({len(want)} of 16 characters)' in out, out
    assert f'string BA (order BADC): "{swapped}"' in out, out
    assert len(out.splitlines()[0].split()) == 9  # "registers:" and the 8 registers read
    # one register early (the off-by-one check of docs/modbus.md): the text starts with
    # the register before it, which is no character
    assert probe.main([reference_meter.agent_port, "--baud", "115200", "--slave", "1",
                       "--decode", "209", "--length", "16"]) == 0
    out = capsys.readouterr().out
    assert f'"{want}"' not in out, out
