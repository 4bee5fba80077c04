"""``python -m celerylab.translation update|coverage|export|import`` (see the package docstring)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import catalogs

DEFAULT_LANG = "zh_CN"


def _sources(names: list[str]) -> list[Path]:
    """The named notebooks (``kit``: the kit's messages); none named: all of them and the kit."""
    if not names:
        return catalogs.every_source()
    if "kit" in names:
        return [catalogs.kit_source(), *(_sources([n for n in names if n != "kit"]) if len(names) > 1 else [])]
    every = catalogs.sources()
    chosen = [s for s in every if s.name in names or str(s.relative_to(catalogs.repo_root())) in names]
    for name in names:
        both = [s for s in every if s.name == name]
        if len(both) > 1:
            raise SystemExit(f"{name} is in {' and '.join(s.parent.name for s in both)}: "
                             f"name it with its folder, e.g. {both[0].parent.name}/{name}")
    missing = set(names) - {s.name for s in chosen} - {str(s.relative_to(catalogs.repo_root())) for s in chosen}
    if missing:
        raise SystemExit(f"no such notebook: {', '.join(sorted(missing))}")
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m celerylab.translation")
    parser.add_argument("--lang", default=DEFAULT_LANG)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("update", help="re-extract the English into the catalogs (changed entries become fuzzy)")
    up.add_argument("notebooks", nargs="*")
    cov = sub.add_parser("coverage", help="print each catalog's coverage; exit 1 below --min percent")
    cov.add_argument("notebooks", nargs="*")
    cov.add_argument("--min", type=float, default=0.0)
    ex = sub.add_parser("export", help="a catalog's entries as JSON (context, english, translation, stale)")
    ex.add_argument("notebook")
    im = sub.add_parser("import", help="set translations from JSON made by export; clears 'stale' on each entry set")
    im.add_argument("notebook")
    im.add_argument("json_file")
    bd = sub.add_parser("build", help="write the edition (zh/notebooks, zh/solutions, zh/labs) from the catalogs")
    bd.add_argument("--strict", action="store_true", help="fail when an entry is untranslated or stale")
    bd.add_argument("--execute", action="store_true",
                    help="then run the lessons and solutions in the edition's language (those changed since they ran)")
    bd.add_argument("--jobs", type=int, default=2, help="notebooks run at once with --execute (default 2)")
    rn = sub.add_parser("run", help="run one notebook of a translated edition in place, in its language")
    rn.add_argument("notebook")
    args = parser.parse_args(argv)

    if args.command == "build":
        from ..errors import CeleryLabError
        from . import edition

        try:
            built = edition.build(args.lang, strict=args.strict, execute=args.execute, jobs=args.jobs)
        except CeleryLabError as exc:
            print(f"celerylab: {exc}", file=sys.stderr)
            return 2
        where = edition.edition_dir(args.lang).relative_to(catalogs.repo_root())
        print(f"{where}: {len(built.written)} notebooks written; {len(built.untranslated)} entries still in English "
              f"(untranslated or stale)")
        return 0

    if args.command == "run":
        from ..errors import CeleryLabError
        from .execute import run_one

        try:
            elapsed = run_one(Path(args.notebook))
        except CeleryLabError as exc:
            print(f"celerylab: {exc}", file=sys.stderr)
            return 2
        print(f"{args.notebook}: ran in {elapsed:.1f} s")
        return 0

    if args.command == "update":
        for source in _sources(args.notebooks):
            catalogs.update(source, args.lang)
            c = catalogs.coverage(source, args.lang)
            print(f"{c.path.relative_to(catalogs.repo_root())}: {c.done}/{c.total} translated, {c.stale} stale")
        return 0
    if args.command == "coverage":
        low = []
        for source in _sources(args.notebooks):
            c = catalogs.coverage(source, args.lang)
            print(f"{c.percent:5.1f}%  {c.done:3}/{c.total:<3} stale {c.stale:<3} {source.relative_to(catalogs.repo_root())}")
            if c.percent < args.min:
                low.append(source.name)
        if low:
            print(f"below {args.min:g}%: {', '.join(low)}", file=sys.stderr)
            return 1
        return 0
    source = _sources([args.notebook])[0]
    path = catalogs.catalog_path(source, args.lang)
    catalog = catalogs.read(path, args.lang)
    if args.command == "export":
        rows = [{"context": m.context, "english": m.id, "translation": m.string, "stale": m.fuzzy,
                 **({"previous_english": catalogs.previous_english(m)} if m.fuzzy and catalogs.previous_english(m) else {})}
                for m in catalog if m.id]
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    rows = json.loads(Path(args.json_file).read_text(encoding="utf-8"))
    unknown = 0
    for row in rows:
        message = catalog.get(row["english"], context=row["context"])
        if message is None:
            unknown += 1
            continue
        if row.get("translation"):
            message.string = row["translation"]
            message.flags.discard("fuzzy")
            message.user_comments = []
    catalogs.write(catalog, path)
    print(f"{path.relative_to(catalogs.repo_root())}: {len(rows) - unknown} entries read"
          + (f", {unknown} not in the catalog (the English changed: run update, then export again)" if unknown else ""))
    return 0 if not unknown else 1


if __name__ == "__main__":
    sys.exit(main())
