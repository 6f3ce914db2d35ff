"""`make bench`: run every tests/bench/bench_*.py, print one table, write build/bench.json.

Each bench module has `run(ctx) -> list[dict]`. A row is
  {name, value, unit, rival, rival_is, target, met, excludes, note}
value: the median of the suite's runs; rival: the strongest simple rival, measured in the
same run by the suite itself (never written down), rival_is: what it is; excludes: what the
figure leaves out (flash timing, the network, ...). Older suites' `baseline` /
`baseline_name` are read as rival / rival_is. Every row goes to build/bench.json, with the
host's load average before and after its suite (timing figures move with it).

Usage: .venv/bin/python tools/bench.py [-k SUBSTRING] [--quick] [--sweep]
       .venv/bin/python tools/bench.py --render docs/figures.md   (build/bench.json as a page)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("name", "value", "unit", "rival", "rival_is", "target", "met", "excludes", "note")


def _fmt(v) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def normalise(r: dict, suite: str) -> dict:
    """The row with every field of FIELDS (and suite), baseline keys read as rival keys."""
    out = dict(r)
    if "rival" not in out and "baseline" in out:
        out["rival"] = out.pop("baseline")
    if "rival_is" not in out and "baseline_name" in out:
        out["rival_is"] = out.pop("baseline_name")
    for k in FIELDS:
        out.setdefault(k, None if k in ("rival", "met") else "")
    if not out["excludes"]:
        out["excludes"] = "not stated by the suite"
    out["suite"] = suite
    return out


def table(records: list[dict]) -> str:
    cols = ["name", "value", "unit", "rival", "rival_is", "target", "met"]
    heads = ["benchmark", "value", "unit", "rival", "rival is", "target", "met"]
    rows = [[_fmt(r.get(c)) for c in cols] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(heads)]
    out = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    out += ["", "excludes / notes:"]
    for r in records:
        out.append(f"  [{r['name']}] excludes: {r['excludes']}"
                   + (f". {r['note']}" if r.get("note") else ""))
    return "\n".join(out)


def markdown(records: list[dict]) -> str:
    """build/bench.json as the figures page: one table per suite, then what each excludes."""
    def cell(v) -> str:
        return _fmt(v).replace("|", "\\|")

    out = ["# Figures", "",
           "What `make bench` measured for this revision: each figure beside the strongest "
           "simple rival a user would pick, measured in the same run (medians of the suite's "
           "runs). Written by `.venv/bin/python tools/bench.py --render docs/figures.md` from "
           "`build/bench.json`; the design documents name the rows that bound their choices. "
           "Timing figures move with the host's load, given per suite.", ""]
    suites: dict[str, list[dict]] = {}
    for r in records:
        suites.setdefault(r.get("suite", "?"), []).append(r)
    for suite, rows in suites.items():
        out += [f"## {suite.removeprefix('bench_')}", "",
                f"Host load average during the suite: {rows[0].get('host_load', '?')}.", "",
                "| benchmark | value | unit | rival | rival is | target | met |",
                "|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append("| " + " | ".join(cell(r.get(c)) for c in
                                          ("name", "value", "unit", "rival", "rival_is",
                                           "target", "met")) + " |")
        out += ["", "What each figure leaves out, and how it was taken:", ""]
        for r in rows:
            note = f" {r['note']}" if r.get("note") else ""
            out.append(f"- **{r['name']}**: excludes {r['excludes']}.{note}")
        out.append("")
    return "\n".join(out)


def load(path: Path):
    for p in (ROOT / "tests", ROOT / "tests" / "bench"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tools/bench.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", action="store_true", help="include the full power-cut sweeps")
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke check)")
    ap.add_argument("-k", dest="only", help="run only bench files whose name contains this")
    ap.add_argument("--render", metavar="PATH",
                    help="write build/bench.json as a markdown page to PATH and run nothing")
    args = ap.parse_args(argv)
    build = ROOT / "build"
    if args.render:
        try:
            rows = json.loads((build / "bench.json").read_text())
        except (OSError, ValueError) as e:
            print(f"tools/bench.py: build/bench.json: {e} (run `make bench` first)",
                  file=sys.stderr)
            return 1
        Path(args.render).write_text(markdown(rows) + "\n")
        print(f"{args.render}: {len(rows)} figures")
        return 0
    build.mkdir(exist_ok=True)
    ctx = {"root": ROOT, "build": build, "sweep": args.sweep, "quick": args.quick}
    records: list[dict] = []
    failed = []
    for path in sorted((ROOT / "tests" / "bench").glob("bench_*.py")):
        if args.only and args.only not in path.stem:
            continue
        t0 = time.monotonic()
        load_before = os.getloadavg()[0]
        print(f"running {path.stem} ... (host load average {load_before:.2f})", flush=True)
        try:
            recs = load(path).run(ctx)
        except Exception:
            traceback.print_exc()
            failed.append(path.stem)
            continue
        recs = [normalise(r, path.stem) for r in recs]
        hl = f"{load_before:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
        for r in recs:  # timing figures move with what else the machine runs
            r["host_load"] = hl
        records += recs
        print(f"  {path.stem}: {len(recs)} rows in {time.monotonic() - t0:.1f} s", flush=True)
    out = build / "bench.json"
    if args.only and out.exists():
        # a partial run replaces only the suites it ran; the other rows stay
        ran = {r["suite"] for r in records} | set(failed)
        try:
            kept = [r for r in json.loads(out.read_text()) if r.get("suite") not in ran]
        except (ValueError, TypeError):
            kept = []
        allrows = kept + records
    else:
        allrows = records
    out.write_text(json.dumps(allrows, indent=1, default=str))
    print()
    print(table(records))
    missed = [r["name"] for r in records if r.get("met") is False]
    print(f"\n{len(records)} figures, {len(missed)} targets missed"
          + (f": {', '.join(missed)}" if missed else "")
          + (f"; suites failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
