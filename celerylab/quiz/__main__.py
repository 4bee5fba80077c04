"""``python -m celerylab.quiz cheatsheet [--check]``: write (or verify) docs/cheatsheet.md.

``python -m celerylab.quiz cheatsheet --lang zh_CN --output zh/docs/cheatsheet.md``: the sheet in
another language, from the same bank and the kit's catalog (the edition's copy is not committed).

``python -m celerylab.quiz evidence``: list the questions whose evidence (tagged cell or test) is missing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..i18n import ALIASES, DEFAULT, _, catalog_path
from . import cheatsheet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m celerylab.quiz")
    sub = parser.add_subparsers(dest="command", required=True)
    sheet = sub.add_parser("cheatsheet", help=_("generate docs/cheatsheet.md from the question bank"))
    sheet.add_argument("--check", action="store_true", help=_("exit 1 if the committed cheat sheet is stale"))
    sheet.add_argument("--lang", default=DEFAULT,
                       help=_("the sheet's language (default: {default}; zh_CN: Chinese, from the kit's catalog)",
                              default=DEFAULT))
    sheet.add_argument("--output", type=Path, default=None,
                       help=_("where to write it (default: docs/cheatsheet.md, or the edition's "
                              "docs/cheatsheet.md for another language, e.g. zh/docs/cheatsheet.md)"))
    sub.add_parser("evidence", help=_("list quiz questions whose evidence cell or test is missing (exit 1 if any)"))
    args = parser.parse_args(argv)
    if args.command == "evidence":
        from . import evidence

        found = evidence.problems()
        print(evidence.report(found))
        return 1 if found else 0
    lang = ALIASES.get(args.lang.strip().lower(), args.lang.strip())
    if lang != DEFAULT and not catalog_path(lang).exists():
        parser.error(_("no catalog for {lang}: {path} does not exist", lang=lang, path=catalog_path(lang)))
    if args.check:
        target = args.output or (cheatsheet.path() if lang == DEFAULT else
                                 cheatsheet.path().parents[1] / cheatsheet.edition_path(lang))
        shown = cheatsheet._shown(target)
        if cheatsheet.is_current(target, lang):
            print(_("{path} is up to date", path=shown))
            return 0
        print(_("{path} is out of date: run `{command}`", path=shown, command=cheatsheet.command(lang, shown)),
              file=sys.stderr)
        return 1
    target = cheatsheet.write(args.output, lang)
    print(_("wrote {path}", path=cheatsheet._shown(target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
