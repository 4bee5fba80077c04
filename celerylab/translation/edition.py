"""Build a translated edition: ``<edition>/notebooks``, ``<edition>/solutions``, ``<edition>/labs``.

Each English notebook is copied with its markdown cells and code comments replaced by the
catalog's translations (``catalogs``); code, cell ids and tags stay as they are (code stays code),
and so do the stored outputs, until ``build(execute=True)`` (``make zh``) runs the lessons and
solutions in the edition's language (:mod:`.execute`), so that the kit's lines in them (verdicts,
final states, chart titles) are the ones a learner of that edition sees, and nbval checks those. The labs are generated from the translated
solutions by the same generator as the English ones, and name their edition's solution as the
master copy, so grading a translated lab works exactly as grading an English one.
An entry that is missing or stale (fuzzy) keeps the English text and is reported; ``strict``
makes it an error.
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import i18n
from ..errors import CeleryLabError
from ..grading import labs as lab_generator
from . import catalogs

#: where each language's edition is written, from the repository root
EDITION_DIRS = {"zh_CN": "zh"}


def edition_dir(lang: str) -> Path:
    return catalogs.repo_root() / EDITION_DIRS.get(lang, lang)


@dataclass
class Built:
    written: list[Path] = field(default_factory=list)
    untranslated: list[str] = field(default_factory=list)  # "<notebook>: <cell id>"


def translate_comments(source: str, lookup) -> str:
    """``source`` with each ``#`` comment whose text ``lookup`` translates replaced, code untouched."""
    found = catalogs.code_comments(source)
    if not found:
        return source
    lines = source.splitlines(keepends=True)
    for row, col, text in reversed(found):
        translation = lookup(text)
        if translation is None or translation == text:
            continue  # untranslated, or kept as is (a tag like ### BEGIN SOLUTION): the line stays byte for byte
        line = lines[row - 1]
        ending = line[len(line.rstrip("\r\n")):]
        lines[row - 1] = f"{line[:col]}# {translation}{ending}"
    return "".join(lines)


def translate_notebook(source: Path, lang: str, report: Built):
    """The translated copy of ``source`` (an nbformat node), from its catalog."""
    nb = nbformat.read(source, as_version=4)
    path = catalogs.catalog_path(source, lang)
    catalog = catalogs.read(path, lang) if path.exists() else None
    rel = str(source.relative_to(catalogs.repo_root()))

    def translation(text: str, context: str) -> str | None:
        message = catalog.get(text, context=context) if catalog is not None else None
        if message is not None and catalogs.translated(message):
            return message.string
        report.untranslated.append(f"{rel}: {context}")
        return None

    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "markdown" and cell.source.strip():
            cell.source = translation(cell.source, cell.id) or cell.source
        elif cell.cell_type == "code":
            cell.source = translate_comments(cell.source, lambda text, c=cell: translation(text, c.id + catalogs.COMMENT_CONTEXT))
    # outputs_lang: the language of the stored outputs (English, as copied; a run in the edition's
    # language changes it, see .execute): what the labs' grader runs the kernel in
    out.metadata["celerylab_edition"] = {"lang": lang, "translated_from": rel, "outputs_lang": "en"}
    return out


def _built_from(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        return (nbformat.read(path, as_version=4).metadata.get("celerylab_edition", {}) or {}).get("built_from")
    except Exception:  # a damaged file is simply rebuilt
        return None


def build(lang: str, strict: bool = False, execute: bool = False, jobs: int = 2) -> Built:
    """Write the edition of ``lang`` from the English notebooks and the catalogs.

    ``execute``: then run its lessons and solutions in a kernel speaking ``lang`` (see
    :mod:`.execute`; only those whose sources changed since they last ran), before the labs are
    made from the solutions. A notebook whose sources did not change is left as it is, outputs and all.
    """
    from .execute import build_key, run_all

    report = Built()
    root, target = catalogs.repo_root(), edition_dir(lang)
    target.mkdir(parents=True, exist_ok=True)
    # a kernel started in the edition's folders (JupyterLab starts it beside the notebook) speaks its language
    (target / i18n.MARKER).write_text(lang + "\n", encoding="utf-8")
    lessons = []
    for source in catalogs.sources():
        out_path = target / source.parent.name / source.name
        nb = translate_notebook(source, lang, report)
        key = build_key(lab_generator.render(nb), lang)
        nb.metadata["celerylab_edition"]["built_from"] = key
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if _built_from(out_path) != key:
            out_path.write_text(lab_generator.render(nb), encoding="utf-8")
        report.written.append(out_path)
        lessons.append(out_path)
    if strict and report.untranslated:
        raise CeleryLabError(f"{len(report.untranslated)} entries are not translated (or stale), e.g. "
                             f"{report.untranslated[0]}: run `python -m celerylab.translation coverage`")
    if execute:
        run_all(lessons, jobs=jobs)
    # the kit's recordings and the labs' grading hook sit beside the notebooks, as in English
    if (root / "notebooks" / "recorded").is_dir():
        shutil.copytree(root / "notebooks" / "recorded", target / "notebooks" / "recorded", dirs_exist_ok=True)
    labs_out = target / "labs"
    labs_out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "labs" / "conftest.py", labs_out / "conftest.py")
    for solution in sorted((target / "solutions").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(solution, as_version=4)
        origin = str(solution.relative_to(root))
        outputs_lang = (nb.metadata.get("celerylab_edition", {}) or {}).get("outputs_lang", "en")
        lab = lab_generator.make_lab(nb, solution.stem, where=origin, origin=origin, lang=lang,
                                     outputs_lang=outputs_lang)
        lab_path = labs_out / solution.name
        lab_path.write_text(lab_generator.render(lab), encoding="utf-8")
        report.written.append(lab_path)
    # the cheat sheet the lessons link to (../docs/cheatsheet.md), from the quiz bank and the kit's catalog
    from ..quiz import cheatsheet

    report.written.append(cheatsheet.write(target / "docs" / "cheatsheet.md", lang=lang))
    return report
