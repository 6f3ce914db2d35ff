"""The `otlink` command table (cli._COMMANDS): every command in it is reachable with its own
--help, listed in table order, and whatever a handler raises as CommandError is one
`otlink: <message>` line with exit status 1."""

from __future__ import annotations

import pytest

from otlink_tools import cli
from otlink_tools.errors import CommandError


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:  # argparse: --help, usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", list(cli._COMMANDS))
def test_every_command_has_its_help(capsys, name):
    handler, builder = cli._COMMANDS[name]
    rc, out, _ = run(capsys, *name.split(), "--help")
    assert rc == 0 and out.startswith(f"usage: otlink {name}"), out
    words = name.split()
    # listed with its builder's help line, at the top or in its group
    rc, listing, _ = run(capsys, *words[:-1], "--help")
    assert rc == 0
    assert " ".join(cli._help(builder).split()[:4]) in " ".join(listing.split())


def test_top_level_help_lists_the_table_in_order(capsys):
    _, out, _ = run(capsys, "--help")
    firsts = list(dict.fromkeys(name.split()[0] for name in cli._COMMANDS))
    where = [out.index(f"\n    {w} ") for w in firsts]
    assert where == sorted(where), firsts


def test_a_command_error_is_one_line_and_exit_1(capsys, monkeypatch):
    def fails(args):
        raise CommandError("--port /dev/x: no such device")

    _, builder = cli._COMMANDS["deploy"]
    monkeypatch.setitem(cli._COMMANDS, "deploy", (fails, builder))
    rc, out, err = run(capsys, "deploy", "--board", "esp32")
    assert (rc, out, err) == (1, "", "otlink: --port /dev/x: no such device\n")


def test_no_command_prints_help_and_exit_2(capsys):
    rc, out, _ = run(capsys)
    assert rc == 2 and out.startswith("usage: otlink")
