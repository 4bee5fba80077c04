"""Gettext catalogs of the notebooks' text, with Babel.

One catalog per notebook: ``locale/<lang>/<folder>/<stem>.po``. Its entries:

* a markdown cell: ``msgctxt`` the cell id, ``msgid`` the cell's whole source;
* a comment in a code cell: ``msgctxt`` ``<cell id>#comment``, ``msgid`` the comment's text
  without its ``#`` (code, identifiers and strings are never extracted: code stays code).

``update`` merges a fresh extraction into the existing catalog with Babel's
``Catalog.update``: unchanged entries keep their translation, an entry whose English changed is
marked fuzzy (stale) with its old translation kept as a starting point, and entries whose cell
is gone become obsolete. A fuzzy or empty entry counts as untranslated.
"""
from __future__ import annotations

import difflib
import io
import json
import tokenize
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

#: the folders whose notebooks are translated (labs are generated from solutions)
FOLDERS = ("notebooks", "solutions")
#: the notebooks that are generated from other sources, not translated cell by cell (none today:
#: notebook 09's markdown is its own; its quiz comes from the bank, translated in the kit's catalog)
GENERATED: set[str] = set()
COMMENT_CONTEXT = "#comment"
#: the first translator-comment line of a stale entry; the next holds the English it was
#: translated from, as one JSON string
PREVIOUS = "English before the change:"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def locale_dir(lang: str) -> Path:
    return repo_root() / "locale" / lang


def sources() -> list[Path]:
    """The English notebooks that have a catalog, in course order."""
    root = repo_root()
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).glob("*.ipynb")):
            if str(path.relative_to(root)) not in GENERATED:
                found.append(path)
    return found


def kit_source() -> Path:
    """The kit's own messages: the ``_()``/``N_()`` strings of the package (see celerylab.i18n)."""
    return repo_root() / "celerylab"


def kit_folders() -> list[Path]:
    """The code whose ``_()``/``N_()`` strings make the kit's catalog: the package, and the book's
    builder (its page notes, headings and contents table: ``book/build.py``)."""
    return [kit_source(), repo_root() / "book"]


def is_kit(source: Path) -> bool:
    return source == kit_source()


def every_source() -> list[Path]:
    """Everything with a catalog: the notebooks, then the kit's messages."""
    return [*sources(), kit_source()]


def catalog_path(source: Path, lang: str) -> Path:
    if is_kit(source):
        from ..i18n import catalog_path as kit_catalog

        return kit_catalog(lang)
    return locale_dir(lang) / source.parent.name / f"{source.stem}.po"


def code_comments(source: str) -> list[tuple[int, int, str]]:
    """``(row, column, text)`` of each ``#`` comment in ``source`` (rows from 1), via tokenize.

    IPython magics (``%`` / ``!`` lines) are not Python: they are read as blank lines.
    """
    lines = source.splitlines(keepends=True)
    python = "".join("\n" if line.lstrip().startswith(("%", "!")) else line for line in lines)
    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(python).readline):
            if token.type == tokenize.COMMENT:
                text = token.string[1:].strip()
                if text and not text.startswith(("noqa", "type:", "!")):
                    found.append((token.start[0], token.start[1], text))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a deliberately broken cell (a lab's blank): its comments stay English
    return found


@dataclass(frozen=True)
class Entry:
    context: str
    text: str
    where: tuple[str, int]  # (notebook path, cell index)


#: the marks celerylab.i18n defines; only their first argument is the message
KIT_KEYWORDS = {"_": (1,), "N_": (1,)}


def kit_entries() -> list[Entry]:
    """The kit's marked messages, extracted with Babel; the context is the module's path."""
    from babel.messages.extract import extract_from_dir

    found: dict[tuple[str, str], Entry] = {}
    for folder in kit_folders():
        for filename, line, message, _comments, _context in extract_from_dir(
                str(folder), method_map=[("**.py", "python")], keywords=KIT_KEYWORDS,
                comment_tags=(), strip_comment_tags=True):
            if not message:
                continue  # an f-string inside _(): Babel warns, and a test fails on it
            where = f"{folder.name}/{filename}"
            found.setdefault((where, message), Entry(where, message, (where, None)))  # no line: edits elsewhere in a module change no catalog
    for entry in quiz_entries():
        found.setdefault((entry.context, entry.text), entry)
    return list(found.values())


#: the context of the quiz's lesson titles and section headings (a question's texts: celerylab/quiz/<id>)
QUIZ_SECTIONS = "celerylab/quiz/sections"


def quiz_entries() -> list[Entry]:
    """The quiz's texts, which are data (Question objects), not ``_()`` calls: read from the loaded bank.

    One entry per distinct text of each question (prompt, choices, claim, explanation, cheat line),
    with the context ``celerylab/quiz/<question id>`` and the module that defines it as its place;
    then the lesson titles and the section headings the questions link to (``celerylab/quiz/sections``).
    """
    from ..quiz import bank, topics

    defined_in = {}
    for name in sorted(m for m in vars(topics) if not m.startswith("_")):
        module = getattr(topics, name)
        for question in getattr(module, "QUESTIONS", ()):
            defined_in[question.id] = f"celerylab/quiz/topics/{name}.py"
    found: dict[tuple[str, str], Entry] = {}
    for question in bank.QUESTIONS:
        context = f"celerylab/quiz/{question.id}"
        where = defined_in.get(question.id, "celerylab/quiz/bank.py")
        for text in question.strings():
            found.setdefault((context, text), Entry(context, text, (where, None)))
    where = ("celerylab/quiz/bank.py", None)
    for text in [*bank.TITLES.values(), *(q.section for q in bank.QUESTIONS if q.section)]:
        found.setdefault((QUIZ_SECTIONS, text), Entry(QUIZ_SECTIONS, text, where))
    return list(found.values())


def entries(source: Path) -> list[Entry]:
    """The translatable text of one notebook, in cell order (or of the kit, see kit_entries)."""
    if is_kit(source):
        return kit_entries()
    nb = nbformat.read(source, as_version=4)
    rel = str(source.relative_to(repo_root()))
    found: list[Entry] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.strip():
            found.append(Entry(cell.id, cell.source, (rel, index)))
        elif cell.cell_type == "code":
            seen = set()
            for _row, _col, text in code_comments(cell.source):
                if text not in seen:
                    seen.add(text)
                    found.append(Entry(cell.id + COMMENT_CONTEXT, text, (rel, index)))
    return found


HEADER = """# Celery Lab Kit: {lang} translation of {source}.
# Generated from the English (notebook or package) by `python -m celerylab.translation update`; edit msgstr only."""
#: a fixed date in the header: regenerating an unchanged catalog changes no byte
EPOCH = datetime(2026, 12, 3, tzinfo=timezone.utc)


def template(source: Path, lang: str) -> Catalog:
    rel = source.relative_to(repo_root())
    catalog = Catalog(locale=lang, project="Celery Lab Kit", version="1", fuzzy=False,
                      header_comment=HEADER.format(lang=lang, source=rel),
                      creation_date=EPOCH, revision_date=EPOCH, language_team="Celery Lab Kit",
                      last_translator="Celery Lab Kit")
    for entry in entries(source):
        catalog.add(entry.text, context=entry.context, locations=[entry.where])
    return catalog


def read(path: Path, lang: str) -> Catalog:
    with open(path, "rb") as f:
        return read_po(f, locale=lang)


def write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        write_po(f, catalog, width=0, sort_output=False, include_previous=True)


def update(source: Path, lang: str) -> Catalog:
    """Write ``source``'s catalog for ``lang``: new entries empty, changed ones fuzzy (stale).

    An entry is found again by its exact English and cell id; failing that, by its cell id (for a
    comment, the most similar comment of the same cell), and then it keeps its old translation,
    marked fuzzy, with the old English as ``#| msgid`` so a translator sees what changed.
    Entries of cells that are gone are dropped.
    """
    path = catalog_path(source, lang)
    catalog = template(source, lang)
    if path.exists():
        old = read(path, lang)
        by_context: dict[str, list] = {}
        for message in old:
            if message.id:
                by_context.setdefault(message.context, []).append(message)
        for message in catalog:
            if not message.id:
                continue
            same = old.get(message.id, context=message.context)
            if same is not None:
                message.string = same.string
                if same.fuzzy:
                    message.flags.add("fuzzy")
                    message.user_comments = list(same.user_comments)
                continue
            candidates = [m for m in by_context.get(message.context, []) if m.string]
            if not candidates:
                continue
            closest = max(candidates, key=lambda m: difflib.SequenceMatcher(None, m.id, message.id).ratio())
            message.string = closest.string
            message.flags.add("fuzzy")
            # the English the translation was made from, for the translator (Babel's reader drops
            # gettext's "#| msgid" lines, so it goes in translator comments)
            # one JSON string with no whitespace at all, so that Babel's comment wrapping (76 columns,
            # at spaces) leaves it on one line; `export` shows it decoded, as previous_english
            message.user_comments = [PREVIOUS, json.dumps(closest.id, ensure_ascii=False).replace(" ", "\\u0020")]
    write(catalog, path)
    return catalog


def previous_english(message) -> str | None:
    """The English a stale entry's translation was made from (kept by :func:`update`)."""
    comments = list(message.user_comments or [])
    if comments and comments[0] == PREVIOUS:
        try:
            return json.loads("".join(comments[1:]))
        except ValueError:
            return None
    return None


def translated(message) -> bool:
    return bool(message.id) and bool(message.string) and not message.fuzzy


@dataclass
class Coverage:
    path: Path
    total: int
    done: int
    stale: int

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


def coverage(source: Path, lang: str) -> Coverage:
    """How much of ``source`` its catalog translates (a missing catalog: nothing)."""
    path = catalog_path(source, lang)
    wanted = {(e.text, e.context) for e in entries(source)}
    if not path.exists():
        return Coverage(path, len(wanted), 0, 0)
    catalog = read(path, lang)
    done = stale = 0
    for text, context in wanted:
        message = catalog.get(text, context=context)
        if message is not None and translated(message):
            done += 1
        elif message is not None and message.fuzzy:
            stale += 1
    return Coverage(path, len(wanted), done, stale)
