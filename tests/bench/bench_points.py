"""How many Modbus points the agent holds in a board-sized heap (tools/points_fit.py).

The agent frozen into the 32-bit build (the boards' object model, bytecode in flash) against
the strongest simple rival a user would pick: the same agent deployed as .mpy files on stock
firmware (the same 32-bit build loading the modules from a .mpy tree, so their bytecode sits
in the heap). Only the boot is judged; the running agent's own ~3 KiB (tasks, MQTT session)
and WiFi/TLS are excluded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mp
from otlink_tools.mpy import compile_tree, tree

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import points_fit  # noqa: E402

EXCL = ("WiFi and TLS buffers (an ESP32 keeps them outside the Python heap), the running "
        "agent's ~3 KiB (tasks, MQTT session: boot only), the NOR emulator modules (~2 KiB "
        "that a board does not load)")


def run(ctx: dict) -> list[dict]:
    if mp.mp32() is None:
        return []
    mpy = ctx["build"] / "bench_points_mpy"
    compile_tree(tree(ROOT / "firmware") + tree(ROOT / "build" / "lib"), mpy)
    heaps = (64, 96) if ctx.get("quick") else (64, 80, 96, 128)
    rows = []
    for h in heaps:
        frozen = points_fit.largest(h)
        deployed = points_fit.largest(h, mpy_dir=mpy)
        rows.append({
            "name": f"Modbus points that boot in a {h} KiB heap (32-bit, agent frozen)",
            "value": frozen, "unit": "points", "rival": deployed,
            "rival_is": "same agent deployed as .mpy on stock firmware (32-bit)",
            "target": ">= 60 (the reference map)" if h == 64 else "-",
            "met": frozen >= 60 if h == 64 else None, "excludes": EXCL,
            "note": "float32 input points, 100 per slave, plus an SHT3x's 2 points, "
                    "batch_bytes 1024; largest count whose boot completes, bisected"})
    return rows
