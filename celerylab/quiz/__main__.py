"""``python -m celerylab.quiz cheatsheet [--check]``: write (or verify) docs/cheatsheet.md.

``python -m celerylab.quiz evidence``: list the questions whose evidence (tagged cell or test) is missing.
"""
from __future__ import annotations

import argparse
import sys

from . import cheatsheet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m celerylab.quiz")
    sub = parser.add_subparsers(dest="command", required=True)
    sheet = sub.add_parser("cheatsheet", help="generate docs/cheatsheet.md from the question bank")
    sheet.add_argument("--check", action="store_true", help="exit 1 if the committed cheat sheet is stale")
    sub.add_parser("evidence", help="list quiz questions whose evidence cell or test is missing (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.command == "evidence":
        from . import evidence

        found = evidence.problems()
        print(evidence.report(found))
        return 1 if found else 0
    if args.check:
        if cheatsheet.is_current():
            print("docs/cheatsheet.md is up to date")
            return 0
        print("docs/cheatsheet.md is out of date: run `python -m celerylab.quiz cheatsheet`", file=sys.stderr)
        return 1
    target = cheatsheet.write()
    print(f"wrote {target.relative_to(target.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
