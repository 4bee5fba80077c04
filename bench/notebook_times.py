"""How long each lesson (and solution) takes under nbval, against the course's budget of 25 s.

Runs ``pytest --nbval`` on one notebook at a time, as ``make test`` does, and reports for each
the wall time of the run (kernel start included) and the time pytest reports for its cells,
with PASS/FAIL against the budget. Run it on a quiet machine: the budget is for a notebook
alone on 2 cores, and the load average at the start and end of each run is printed beside it.

    python bench/notebook_times.py [notebooks/03_scheduling.ipynb ...] [--budget 25] [--json FILE]

Without paths: every notebook in notebooks/ and solutions/. Exit status 1 when one is over.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 25.0
PYTEST_TIME = re.compile(r"passed(?:, \d+ \w+)* in ([\d.]+)s")


def time_notebook(path: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "--nbval", "--nbval-current-env",
           "--nbval-sanitize-with", str(ROOT / "tests" / "sanitize.cfg"), str(path)]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    last = (done.stdout.strip().splitlines() or [""])[-1]
    cells = PYTEST_TIME.search(last)
    return {"notebook": str(path.relative_to(ROOT)), "passed": done.returncode == 0,
            "wall_s": round(wall, 1), "pytest_s": float(cells.group(1)) if cells else None,
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "summary": last}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--budget", type=float, default=BUDGET)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.paths] or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")) + sorted(
        (ROOT / "solutions").glob("[0-9]*.ipynb"))
    rows, over = [], 0
    print(f"{'notebook':42} {'wall':>7} {'pytest':>7}  load  verdict", flush=True)
    for i, path in enumerate(paths, 1):
        row = time_notebook(path)
        rows.append(row)
        ok = row["passed"] and row["wall_s"] <= args.budget
        over += not ok
        verdict = "PASS" if ok else ("FAIL (over budget)" if row["passed"] else f"FAIL ({row['summary']})")
        print(f"{row['notebook']:42} {row['wall_s']:6.1f}s {row['pytest_s'] or 0:6.1f}s  "
              f"{row['load_before']:.1f}→{row['load_after']:.1f}  {verdict}   [{i}/{len(paths)}]", flush=True)
    print(f"{len(rows) - over} of {len(rows)} within {args.budget:.0f} s (wall time, kernel start included)")
    if args.json:
        args.json.write_text(json.dumps({"budget_s": args.budget, "runs": rows}, indent=1) + "\n")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
