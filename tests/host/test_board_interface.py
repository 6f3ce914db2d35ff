"""Every board class defines the whole Board interface (firmware/otlink/hal/board.py).

Board classes import machine/network/esp32/rp2, which neither CPython nor the Unix port has, so
the check reads their source: a class's methods are its own plus those of its bases in hal/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HAL = Path(__file__).resolve().parents[2] / "firmware" / "otlink" / "hal"


def classes() -> dict[str, ast.ClassDef]:
    out = {}
    for f in HAL.rglob("*.py"):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ClassDef):
                out[f"{f.relative_to(HAL)}:{node.name}"] = node
    return out


def methods(node: ast.ClassDef) -> set[str]:
    return {n.name for n in node.body if isinstance(n, ast.FunctionDef)}


def interface() -> set[str]:
    return methods(classes()["board.py:Board"]) - {"close"}


def resolved(key: str, allc: dict[str, ast.ClassDef]) -> set[str]:
    """Methods a class defines itself or inherits from a hal class (not the interface)."""
    node = allc[key]
    have = methods(node)
    for b in node.bases:
        name = b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
        if name in ("Board", "_Board"):  # the interface itself: it defines nothing real
            continue
        for k in allc:
            if k.endswith(":" + name):
                have |= resolved(k, allc)
    return have


BOARDS = ["esp32.py:Board", "rp2.py:Board", "unix/board.py:Board"]


@pytest.mark.parametrize("key", BOARDS)
def test_board_defines_the_whole_interface(key):
    allc = classes()
    assert key in allc, sorted(allc)
    missing = interface() - resolved(key, allc)
    assert not missing, f"{key} lacks {sorted(missing)}"


def test_interface_lists_what_the_app_asks_of_a_board():
    app = (HAL.parent / "app.py").read_text()
    asked = {n.attr for n in ast.walk(ast.parse(app)) if isinstance(n, ast.Attribute)
             and isinstance(n.value, ast.Name) and n.value.id == "board"}
    asked |= {n.attr for n in ast.walk(ast.parse(app)) if isinstance(n, ast.Attribute)
              and isinstance(n.value, ast.Attribute) and n.value.attr == "board"}
    assert asked - {"clock", "name"} <= interface() | {"close"}, asked - interface()
