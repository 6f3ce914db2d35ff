"""`make bench`: run every tests/bench/bench_*.py, print one table, write build/bench.json.

Each bench module has `run(ctx) -> list[dict]`; a record is
{name, value, unit, baseline, baseline_name, target, met, note}. Baselines are
measured in the same run by the module itself, never written down.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fmt(v) -> str:
    if v is None:
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


def table(records: list[dict]) -> str:
    cols = ["name", "value", "unit", "baseline", "baseline_name", "target", "met"]
    heads = ["benchmark", "value", "unit", "baseline", "baseline is", "target", "met"]
    rows = [[_fmt(r.get(c)) for c in cols] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(heads)]
    out = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    notes = [f"  [{r['name']}] {r['note']}" for r in records if r.get("note")]
    if notes:
        out += ["", "notes:"] + notes
    return "\n".join(out)


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "tests"))
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="otlink bench", description=__doc__)
    ap.add_argument("--sweep", action="store_true", help="include the full power-cut sweeps")
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke check)")
    ap.add_argument("-k", dest="only", help="run only bench files whose name contains this")
    args = ap.parse_args(argv)
    build = ROOT / "build"
    build.mkdir(exist_ok=True)
    ctx = {"root": ROOT, "build": build, "sweep": args.sweep, "quick": args.quick}
    records: list[dict] = []
    failed = []
    for path in sorted((ROOT / "tests" / "bench").glob("bench_*.py")):
        if args.only and args.only not in path.stem:
            continue
        t0 = time.monotonic()
        print(f"running {path.stem} ...", flush=True)
        try:
            recs = load(path).run(ctx)
        except Exception:
            traceback.print_exc()
            failed.append(path.stem)
            continue
        for r in recs:
            r.setdefault("baseline", None)
            r.setdefault("baseline_name", "")
            r.setdefault("target", "")
            r.setdefault("met", None)
            r.setdefault("note", "")
            r["suite"] = path.stem
        records += recs
        print(f"  {path.stem}: {len(recs)} rows in {time.monotonic() - t0:.1f} s", flush=True)
    (build / "bench.json").write_text(json.dumps(records, indent=1, default=str))
    print()
    print(table(records))
    missed = [r["name"] for r in records if r.get("met") is False]
    print(f"\n{len(records)} figures, {len(missed)} targets missed"
          + (f": {', '.join(missed)}" if missed else "")
          + (f"; suites failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
