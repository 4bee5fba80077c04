"""The course as a static HTML book: ``make book`` (``python book/build.py``).

Stages a Sphinx source tree in ``build/book-src`` from the repository's files, then runs Sphinx
(myst-nb, execution off: the pages show the notebooks' stored outputs) into ``build/book``:

* every lesson in ``notebooks/`` (found by glob, in file-name order) as a page, with a note on
  how to run it live; plotly outputs become interactive charts drawn by the plotly.js copied from
  the plotly package into ``_static`` (no CDN); live widgets, which keep no state in a stored
  notebook, are replaced by a note linking to the static chart of their final state that the
  lesson displays after them (``view.stop(show_final=True)``, ``plot.stop(show_final=True)``;
  see final_targets); quiz widgets by their questions with folded answers;
* every lab, from its solution notebook in ``solutions/``: the exercise code as learners get it
  (answers blanked the way ``celerylab.grading.labs`` blanks them), then the hints and the
  solution folded away;
* the quiz (every question of ``celerylab.quiz``, answers folded), the cheat sheet
  (``docs/cheatsheet.md``), and a contents page with the course order and time per lesson.

The same book in Chinese goes to ``build/book/zh`` (``EDITIONS``), staged from the edition ``make zh``
writes (``zh/notebooks``, ``zh/solutions``; built here, unexecuted, when missing) with the kit's
catalog for the hints and the quiz, ``zh/docs/cheatsheet.md`` when there is one, and Sphinx's
``language = "zh_CN"``: the same pages, order and navigation (a page the edition lacks shows the
English with a note), and every page links to the same page in the other language. Both Sphinx
builds run at once.

Nothing is fetched at build or view time. ``build/book/book-stamp.json`` records a digest of the
inputs; ``tests/test_book.py`` reuses a build whose digest matches.
"""
from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from celerylab.i18n import N_

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
STAGE = ROOT / "build" / "book-src"
OUT = ROOT / "build" / "book"
STAMP = "book-stamp.json"

PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"
TIME = re.compile(r"\*\*Time:?\*\*:?\s*(?:about\s+)?(\d+)\s*min", re.IGNORECASE)
#: reading speed and per-code-cell time used when a notebook states no time (see estimate_minutes).
#: Fitted to the lessons that state theirs: over lessons 00-08a their stated minutes sum to 1.01x
#: what these two numbers give (tests/test_book.py re-checks the fit stays within 25 %).
WORDS_PER_MINUTE = 200
MINUTES_PER_CODE_CELL = 0.25

#: the book's languages: English at the site's root, each translated edition (``make zh``) in a
#: folder of it, staged from the edition's notebooks (zh/notebooks, zh/solutions) with the same
#: pages, navigation and docnames, so every page links to the same page in the other language.
EDITIONS = {"en": "", "zh_CN": "zh"}
LANG_NAMES = {"en": "English", "zh_CN": "中文"}
SPHINX_LANG = {"en": "en", "zh_CN": "zh_CN"}

#: the book's own text (the notebooks' text comes from the notebooks themselves), in English, marked
#: for the kit's catalog (locale/<lang>/kit.po, context "book/build.py"): `make zh` translates it with the rest
TEXTS = {
    "title": N_('Celery Lab Kit'),
    "run_title": N_('Run it live'),
    "run_lab": N_("`make lab` (in the kit's folder) starts JupyterLab; open `{lab}`, write your answers and"
              ' run each check cell (`q1.check()`). `make grade LABS={lab}` prints a scorecard. The '
              'solved notebook is `{solved}`.'),
    "run_lesson": N_("`make lab` (in the kit's folder) starts JupyterLab; open `{path}` and run the cells from"
              ' top to bottom (Shift-Enter). This page shows the outputs stored when the lesson last '
              'ran.'),
    "minutes": N_('about {minutes} minutes'),
    "estimated": N_(' (estimated from its length)'),
    "time": N_('Time: {minutes}.'),
    "untranslated": N_('This page is not translated yet: the English original follows.'),
    "live_view": N_('Live view'),
    "live_view_where": N_('Its final counts are shown <a href="#{target}">below</a>, in the static figures the '
              "lesson displays when it stops the view (counts only: the times of the timeline's bars "
              'and the queue-depth curves are live only, they vary from run to run).'),
    "live_view_body": N_('In JupyterLab this cell shows the live view (task flow, timeline, queue depth), redrawn '
              "from Celery's events while the cells run. A stored notebook keeps no picture of a "
              'widget. {where}'),
    "live_plot": N_('Live metrics plot'),
    "live_plot_where": N_('The values it ended at are shown <a href="#{target}">below</a> as a static chart (the '
              'curves over time are drawn live only: their times vary from run to run).'),
    "live_plot_body": N_("In JupyterLab this cell shows a chart of the exporter's metrics, redrawn while the cells"
              ' run. The stored notebook keeps no picture of a widget. {where}'),
    "quiz": N_('Quiz'),
    "quiz_body": N_('In JupyterLab these questions are interactive (pick an answer, press Check). Here they '
              'follow with their answers folded away.'),
    "widget": N_('Widget'),
    "widget_body": N_('An interactive widget, shown while the kernel runs; the stored notebook keeps no picture'
              ' of it.'),
    "live_only": N_('Live only'),
    "live_only_body": N_('This output loads a page from a server the notebook started (on 127.0.0.1 of the machine'
              ' running it): run the lesson to see it. '),
    "hint": N_('{q}: hint {n} of {total}'),
    "solution": N_('{q}: solution'),
    "check_prints": N_('With it, the check prints:'),
    "answer_to": N_('Answer to {n}'),
    "passes": N_('An answer that passes:'),
    "right": N_('**{letter}. {answer}.**'),
    "fact": N_('Fact'),
    "myth": N_('Myth'),
    "taught": N_('Taught in [{where}]({href}).'),
    "where": N_('{title}, section “{section}”'),
    "evidence_cell": N_('Evidence: {{ref}}`{label} <{target}>`.'),
    "cell_label": N_('cell `{name}` in {file}'),
    "evidence_test": N_('Evidence: [{label}]({href}), a test against the installed Celery.'),
    "test_label": N_('test `{file}::{name}`'),
    "quiz_title": N_('Quiz: every question, answers folded'),
    "quiz_intro": N_("The questions of lesson 09's self-check quiz, from the question bank in "
              '`celerylab/quiz/`. Each answer names the lesson section that teaches it and its '
              'evidence: a lesson cell whose stored output shows it, or a test against the installed '
              'Celery. To answer them interactively, run [09 · Interview '
              'prep](notebooks/09_interview_prep.ipynb) with `make lab`.'),
    "round_faq": N_("The seed article's interview questions"),
    "round_myths": N_("Myth or fact: the seed article's claims"),
    "index_title": N_('Celery Lab Kit: the course'),
    "index_intro": N_('Learn Celery by running it: lessons where every claim is shown live on real Celery '
              'workers, graded labs, and a self-check quiz. This book shows each notebook as it last '
              'ran, with its stored outputs: charts are interactive, live views show their final state.'),
    "index_run": N_("In the kit's folder, `make lab` installs the kit (pinned packages, in `.venv`) and "
              'starts JupyterLab on 127.0.0.1 at `notebooks/00_start_here.ipynb`. Each page of this '
              'book names the notebook to open. `make book` rebuilds this book.'),
    "contents": N_('Contents'),
    "table": N_('| # | Lesson | Time | Lab | Lab time |'),
    "min": N_('{minutes} min'),
    "est": N_(' (est.)'),
    "contents_intro": N_('The course in order, with the time each part takes, as each notebook states it (*est.*: '
              'the notebook states none; estimated from its length, {wpm} words a minute plus {mpc} min'
              ' per code cell). In all about {hours} hours.'),
    "then": N_('Then check yourself: the [quiz](quiz.md) (every question, answers folded){cheatsheet}.'),
    "then_cheatsheet": N_(' and the [cheat sheet](docs/cheatsheet.md)'),
    "toc_lessons": N_('Lessons'),
    "toc_labs": N_('Labs'),
    "toc_check": N_('Check yourself'),
}
CONTEXT = "book/build.py"   # the catalog entries' msgctxt


def tr(lang: str, key: str, **fields) -> str:
    """The book's own text ``key`` in ``lang``, from the kit's catalog (English when it has none), formatted."""
    text = translate(TEXTS[key], lang, context=CONTEXT)
    return text.format(**fields) if fields else text


def translate(text: str, lang: str, context: str | None = None) -> str:
    """A kit string (a hint, a quiz question's text) in ``lang``, from the kit's catalog (English if
    missing); ``context``: the catalog entry's msgctxt to prefer (a quiz question's id: a short
    choice such as "Nothing" is translated per question), where celerylab.i18n takes one."""
    if lang == "en" or not text:
        return text
    from celerylab.i18n import translate as kit_translate

    if context is not None:
        try:
            return kit_translate(text, lang, context=context)
        except TypeError:        # an i18n without contexts
            pass
    return kit_translate(text, lang)


# -- what the course is made of ----------------------------------------------------------
@dataclass
class Page:
    path: Path          #: the repository file it comes from
    docname: str        #: where it lives in the book, without suffix: notebooks/01_architecture
    number: str         #: "01", "08a"
    title: str
    minutes: int
    estimated: bool     #: True: the notebook states no time; minutes are estimated from its length
    translated: bool = True   #: False: a translated edition shows the English notebook (no translation yet)

    @property
    def repo_path(self) -> str:
        return self.path.relative_to(ROOT).as_posix() if self.path.is_relative_to(ROOT) else self.path.name


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "Untitled"


def estimate_minutes(nb) -> int:
    """Reading time (words of text and code at WORDS_PER_MINUTE) plus MINUTES_PER_CODE_CELL per
    code cell (run it, look at the output), rounded up to 5 minutes."""
    words = sum(len(c.source.split()) for c in nb.cells)
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    minutes = words / WORDS_PER_MINUTE + MINUTES_PER_CODE_CELL * code_cells
    return max(5, 5 * math.ceil(minutes / 5))


def stated_minutes(nb) -> int | None:
    """The "**Time:** about N minutes" line of the notebook's first two markdown cells."""
    for cell in [c for c in nb.cells if c.cell_type == "markdown"][:2]:
        match = TIME.search(cell.source)
        if match:
            return int(match.group(1))
    return None


def page_for(path: Path, folder: str) -> Page:
    nb = nbformat.read(path, as_version=4)
    stated = stated_minutes(nb)
    number = path.stem.split("_", 1)[0]
    return Page(path, f"{folder}/{path.stem}", number, title_of(nb),
                stated if stated is not None else estimate_minutes(nb), stated is None)


def lessons(root: Path = ROOT) -> list[Page]:
    """Every notebook in notebooks/ whose name starts with a digit, in file-name order (the course's order: 00, 01, ..., 08, 08a, 08b, 09, 10...)."""
    return [page_for(p, "notebooks") for p in sorted((root / "notebooks").glob("[0-9]*.ipynb"))]


def labs(root: Path = ROOT) -> list[Page]:
    """Every lab, from its master copy in solutions/."""
    return [page_for(p, "labs") for p in sorted((root / "solutions").glob("[0-9]*.ipynb"))]


def edition_root(lang: str, root: Path = ROOT) -> Path:
    """Where an edition's notebooks/ and solutions/ are: the repository (English), zh/ (``make zh``)..."""
    return root / EDITIONS[lang] if EDITIONS[lang] else root


def edition_pages(english: list[Page], lang: str, root: Path = ROOT) -> list[Page]:
    """The English pages in an edition: the same docnames, order and times (a translated notebook's
    time line is not in English), the title and file from the edition's notebook; a notebook the
    edition lacks (lesson 09, generated from the quiz bank) stays English, marked untranslated."""
    if lang == "en":
        return english
    base, pages = edition_root(lang, root), []
    for p in english:
        folder = "solutions" if p.docname.startswith("labs/") else "notebooks"
        path = base / folder / p.path.name
        if path.is_file():
            title = title_of(nbformat.read(path, as_version=4))
            pages.append(Page(path, p.docname, p.number, title, p.minutes, p.estimated, True))
        else:
            pages.append(Page(p.path, p.docname, p.number, p.title, p.minutes, p.estimated, False))
    return pages


# -- anchors and links -------------------------------------------------------------------
def anchor(fragment: str) -> str:
    """A JupyterLab anchor (the heading's source, spaces as dashes) as the book's heading id.

    The book's ids are the heading's *rendered* text with spaces as dashes (bookext.slug), so
    the markup goes: `code` keeps its content, **bold** and *emphasis* their text.
    """
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parseInline(fragment)
    parts = []
    for token in tokens:
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
    return "".join(parts)


def label(stem: str, name: str) -> str:
    """A MyST target name for a cell: unique in the book (the page's stem and a name)."""
    return f"cell-{stem}-{name}".replace(":", "-")


def html_id(target: str) -> str:
    from docutils.nodes import make_id

    return make_id(target)


class Linker:
    """Rewrites the relative links of one page, written for the repository, for the book.

    ``notebooks/*.ipynb`` are pages; ``labs/X.ipynb`` and ``solutions/X.ipynb`` are both the lab
    page (staged as ``labs/X.ipynb``); ``docs/*.md`` are pages; any other repository file that
    exists is copied into the staging tree, so Sphinx serves it as a download.
    """

    def __init__(self, source: Path, stage: Path, root: Path = ROOT, files_root: Path | None = None,
                 lang: str = "en"):
        self.source, self.stage, self.root, self.lang = source, stage, root, lang
        #: where other repository files (tests, docs, data) are: a translated edition's root has only notebooks
        self.files_root = files_root or root
        if not source.is_relative_to(root) and source.is_relative_to(self.files_root):
            self.root = self.files_root      # an English notebook shown in a translated edition
        self.copied: set[str] = set()

    def target(self, href: str) -> str:
        if "://" in href or href.startswith(("mailto:", "#")):
            return href
        path, sep, fragment = href.partition("#")
        fragment = anchor(fragment) if sep else ""
        repo_file = (self.source.parent / path).resolve()
        try:
            rel = repo_file.relative_to(self.root).as_posix()
        except ValueError:
            return href
        if rel.startswith("solutions/"):
            rel = "labs/" + rel[len("solutions/"):]
            repo_file = self.root / rel
        if not (repo_file.exists() or (self.root / "solutions" / repo_file.name).exists()
                or (self.files_root / rel).exists()):
            return href   # left as it is: Sphinx warns, the browser test fails on it
        if not (rel.startswith(("notebooks/", "labs/")) and rel.endswith(".ipynb")) \
                and not (rel.startswith("docs/") and rel.endswith(".md")) and repo_file.is_file():
            self.copy(rel)
        page_dir = self.source.parent.relative_to(self.root).as_posix() if self.source.is_relative_to(self.root) else ""
        new = _relpath(rel, page_dir)
        if fragment and self.lang != "en" and rel.startswith("notebooks/"):
            fragment = section_anchors(Path(rel).name, self.lang, self.files_root).get(fragment, fragment)
        return new + (f"#{fragment}" if sep else "")

    def copy(self, rel: str) -> None:
        dest = self.stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / rel if (self.root / rel).is_file() else self.files_root / rel, dest)
        self.copied.add(rel)

    def markdown(self, text: str) -> str:
        """Every inline link target ``](...)`` rewritten (balanced parentheses inside it kept)."""
        out, pos = [], 0
        while (start := text.find("](", pos)) != -1:
            depth, end = 1, start + 2
            while end < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            href = text[start + 2:end - 1]
            if depth or not href or any(ch.isspace() for ch in href):
                out.append(text[pos:start + 2])
                pos = start + 2
                continue
            out.append(text[pos:start + 2] + self.target(href) + ")")
            pos = end
        out.append(text[pos:])
        return "".join(out)


def _relpath(rel: str, page_dir: str) -> str:
    import posixpath

    return posixpath.relpath(rel, page_dir or ".")


# -- outputs -----------------------------------------------------------------------------
def plotly_html(figure: dict, div_id: str) -> str:
    """An interactive chart: plotly.js itself is loaded once per page from _static (conf.py)."""
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def note_html(title: str, body: str, kind: str = "note") -> str:
    return (f'<div class="admonition {kind} book-output-note"><p class="admonition-title">{title}</p>'
            f"<p>{body}</p></div>")


#: text/plain of a live widget -> the start of the text/plain of the static output that shows its
#: final state (LiveWatch.show_final, LivePlot.stop(show_final=True)).
FINALS = {"celerylab live view": "Final state of", "celerylab live metrics plot": "Final values of the live metrics plot"}


#: the kit's templates of those text/plain lines (celerylab.widgets, celerylab.metrics, the quiz): a
#: translated edition whose notebooks ran in its language (``make zh``) stores them translated
LIVE_TEMPLATES = {
    "celerylab live view": ("celerylab live view (widgets: shown while the kernel runs)",),
    "celerylab live metrics plot": ("celerylab live metrics plot (a widget: shown while the kernel runs)",),
    "quiz:": ("quiz: {count} questions ({detail}); interactive in JupyterLab",),
}
FINAL_TEMPLATES = {
    "celerylab live view": ("Final state of the timeline of {app}: {runs}", "Final state of the queue depth of {app}: {lines}",
                            "Final state of {app}", "Final state"),
    "celerylab live metrics plot": ("Final values of the live metrics plot {title}: {values}",),
}


def _template_regex(template: str) -> str:
    import string

    out = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if field is not None:
            out.append(".*?")
    return "".join(out)


def says(text: str, templates) -> bool:
    """``text`` starts with one of the kit's ``templates`` (fields filled in), in English or in a
    translated edition's language."""
    return any(re.match(_template_regex(translate(t, lang)), text, re.S)
               for lang in EDITIONS for t in templates if translate(t, lang))


def widget_kind(text: str) -> str | None:
    """Which kind of live widget a text/plain is (a key of FINALS), or None (quiz, other widgets)."""
    return next((kind for kind in FINALS if text.startswith(kind)), None) \
        or next((kind for kind in FINALS if says(text, LIVE_TEMPLATES[kind])), None)


def final_kind(outputs) -> str | None:
    """The kind of live widget whose final state these outputs show, or None."""
    for o in outputs:
        if PLOTLY not in o.get("data", {}):
            continue
        plain = _text(o.get("data", {}).get("text/plain", ""))
        for kind, start in FINALS.items():
            if plain.startswith(start):
                return kind
        for kind in FINALS:
            if says(plain, FINAL_TEMPLATES[kind]):
                return kind
    return None


def widget_note(text: str, final_state: str | None, lang: str = "en") -> str:
    """What replaces a live widget: its stored notebook keeps no widget state, only this text.

    ``final_state``: the html id of the output that shows the widget's final state (None: none)."""
    kind = widget_kind(text)
    if kind == "celerylab live view":
        where = tr(lang, "live_view_where", target=final_state) if final_state else ""
        return note_html(tr(lang, "live_view"), tr(lang, "live_view_body", where=where))
    if kind == "celerylab live metrics plot":
        where = tr(lang, "live_plot_where", target=final_state) if final_state else ""
        return note_html(tr(lang, "live_plot"), tr(lang, "live_plot_body", where=where))
    if text.startswith("quiz:") or says(text, LIVE_TEMPLATES["quiz:"]):
        return note_html(tr(lang, "quiz"), tr(lang, "quiz_body"), "tip")
    return note_html(tr(lang, "widget"), tr(lang, "widget_body"))


def external_html(html: str) -> bool:
    """HTML that loads something from a server (e.g. an IFrame of Flower on the kernel's port)."""
    return bool(re.search(r"""\bsrc\s*=\s*["']?(?:https?:)?//""", html))


def count_plotly_outputs(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []) if PLOTLY in o.get("data", {}))


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def convert_outputs(cell, stem: str, counter: list[int], final_state: str | dict | None, lang: str = "en") -> None:
    """Make a code cell's stored outputs renderable offline (in place).

    ``final_state``: the html id its live widgets' notes link to, or ``{widget kind: html id}``."""
    outputs = []
    for out in cell.get("outputs", []):
        data = out.get("data")
        if data is None:
            outputs.append(out)
            continue
        data = dict(data)
        plain = _text(data.get("text/plain", ""))
        if WIDGET in data:
            target = final_state.get(widget_kind(plain)) if isinstance(final_state, dict) else final_state
            data = {"text/html": widget_note(plain, target, lang), "text/plain": plain}
        elif PLOTLY in data:
            counter[0] += 1
            fallback = _text(data.get("text/html", ""))
            chart = plotly_html(data.pop(PLOTLY), f"plot-{stem}-{counter[0]}".replace("_", "-"))
            data["text/html"] = fallback + chart
        elif "text/html" in data and external_html(_text(data["text/html"])):
            data = {"text/html": note_html(tr(lang, "live_only"), tr(lang, "live_only_body") + _escape(plain)),
                    "text/plain": plain}
        new = copy.deepcopy(out)
        new["data"] = data
        new.setdefault("metadata", {})
        outputs.append(new)
    cell["outputs"] = outputs


def _escape(text: str) -> str:
    import html

    return html.escape(text) if not text.startswith("<IPython") else ""


# -- the quiz ----------------------------------------------------------------------------
def quiz_call(source: str) -> dict | None:
    """The keyword arguments of a ``quiz.show(...)`` call in a cell, or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "show" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "quiz":
            try:
                return {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
            except ValueError:
                return None
    return None


def _headings(source: str) -> list[str]:
    return [line.lstrip("#").strip() for line in source.splitlines() if re.match(r"#{1,6} ", line)]


_SECTIONS: dict[tuple, dict[str, str]] = {}


def section_names(notebook: str, lang: str, root: Path = ROOT) -> dict[str, str]:
    """``{English heading: the edition's heading}`` of a lesson, pairing the headings of the cells
    with the same id (a translated notebook keeps the English cell ids)."""
    key = (notebook, lang, root)
    if key not in _SECTIONS:
        english, translated = root / "notebooks" / notebook, edition_root(lang, root) / "notebooks" / notebook
        names = {}
        if lang != "en" and english.is_file() and translated.is_file():
            cells = {c.get("id"): c for c in nbformat.read(translated, as_version=4).cells if c.cell_type == "markdown"}
            for cell in nbformat.read(english, as_version=4).cells:
                if cell.cell_type == "markdown" and cell.get("id") in cells:
                    en, other = _headings(cell.source), _headings(cells[cell["id"]].source)
                    if len(en) == len(other):
                        names.update(zip(en, other))
        _SECTIONS[key] = names
    return _SECTIONS[key]


def section_anchors(notebook: str, lang: str, root: Path = ROOT) -> dict[str, str]:
    """``{English heading's anchor: the edition's heading's anchor}`` of a lesson (links written
    for the English lesson, e.g. in the cheat sheet, land on the same section of the translation)."""
    return {anchor(en.replace(" ", "-")): anchor(other.replace(" ", "-"))
            for en, other in section_names(notebook, lang, root).items()}


QUIZ_SECTIONS = "celerylab/quiz/sections"   #: the catalog's context of the quiz's lesson titles


def questions_md(questions, page_dir: str, lang: str = "en", root: Path = ROOT) -> str:
    """Questions as MyST: prompt and choices visible, the answer and its evidence folded.

    In a translated edition the question's text comes from the kit's catalog, the section it is
    taught in is the translated lesson's heading (English when the lesson has no translation)."""
    from celerylab.quiz import TITLES

    out = []
    for n, q in enumerate(questions, start=1):
        t = lambda text, q=q: translate(text, lang, f"celerylab/quiz/{q.id}")
        out.append(f"**{n}.** {t(q.prompt)}\n")
        if q.kind in ("choice", "myth"):
            out += [f"- **{chr(65 + i)}.** {t(choice)}" for i, choice in enumerate(q.choices)]
            out.append("")
        else:
            out += ["```python", q.stub.rstrip() or "# your code", "```", ""]
        out.append(f":::{{dropdown}} {tr(lang, 'answer_to', n=n)}")
        if q.kind == "code":
            out += [tr(lang, "passes"), "", "```python", q.solution.strip(), "```", ""]
        else:
            letter = chr(65 + q.answer) if q.kind == "choice" else chr(65 + int(bool(q.answer)))
            if lang == "en":
                out.append(f"**{letter}. {q.right_answer}.**\n")
            else:
                right = t(q.choices[q.answer]) if q.kind == "choice" else tr(lang, "fact" if q.answer else "myth")
                out.append(tr(lang, "right", letter=letter, answer=right.rstrip("。.")) + "\n")
        out.append(f"{t(q.explanation)}\n")
        if lang == "en":
            where, fragment = q.where, anchor(q.anchor) if q.anchor else ""
        else:
            title = f"{q.lesson} · {translate(TITLES[q.lesson], lang, QUIZ_SECTIONS)}"
            heading = section_names(q.notebook, lang, root).get(q.section, q.section) if q.section else ""
            where = tr(lang, "where", title=title, section=heading) if heading else title
            fragment = anchor(heading.replace(" ", "-")) if heading else ""
        section = f"notebooks/{q.notebook}" + (f"#{fragment}" if fragment else "")
        out.append(tr(lang, "taught", where=where, href=_relpath(section, page_dir)))
        proof = q.proof
        if proof.kind == "cell":
            stem = Path(proof.path).stem
            text = proof.label if lang == "en" else tr(lang, "cell_label", name=proof.name, file=Path(proof.path).name)
            out.append(tr(lang, "evidence_cell", label=text.replace("`", ""), target=label(stem, proof.name)))
        else:
            text = proof.label if lang == "en" else tr(lang, "test_label", name=proof.name, file=Path(proof.path).name)
            out.append(tr(lang, "evidence_test", label=text, href=_relpath(proof.path, page_dir)))
        out += [":::", ""]
    return "\n".join(out)


def quiz_page(stage: Path, lang: str = "en", root: Path = ROOT) -> str:
    from celerylab.quiz import QUESTIONS, TITLES, rounds

    linker_files = {q.proof.path for q in QUESTIONS if q.proof.kind == "test"}
    for rel in sorted(linker_files):
        dest = stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest)
    parts = [f"# {tr(lang, 'quiz_title')}\n", tr(lang, "quiz_intro") + "\n"]
    by_round = rounds()
    parts += [f"## {tr(lang, 'round_faq')}\n", questions_md(by_round["faq"], "", lang, root)]
    lessons_seen = []
    for q in by_round["lessons"]:
        if q.lesson not in lessons_seen:
            lessons_seen.append(q.lesson)
    for lesson in sorted(lessons_seen, key=lambda n: list(TITLES).index(n) if n in TITLES else 999):
        qs = [q for q in by_round["lessons"] if q.lesson == lesson]
        parts += [f"## {lesson} · {translate(TITLES.get(lesson, ''), lang, QUIZ_SECTIONS)}\n", questions_md(qs, "", lang, root)]
    parts += [f"## {tr(lang, 'round_myths')}\n", questions_md(by_round["myths"], "", lang, root)]
    return "\n".join(parts)


# -- pages -------------------------------------------------------------------------------
def run_live_md(page: Page, kind: str, lang: str = "en") -> str:
    if kind == "lab":
        folder = Path(page.repo_path).parent.parent.as_posix()       # "." or "zh"
        lab = f"labs/{page.path.name}" if folder == "." else f"{folder}/labs/{page.path.name}"
        how = tr(lang, "run_lab", lab=lab, solved=page.repo_path)
    else:
        how = tr(lang, "run_lesson", path=page.repo_path)
    minutes = tr(lang, "minutes", minutes=page.minutes) + (tr(lang, "estimated") if page.estimated else "")
    note = "" if page.translated else f"\n\n{tr(lang, 'untranslated')}"
    return f":::{{admonition}} {tr(lang, 'run_title')}\n:class: tip\n\n{how} {tr(lang, 'time', minutes=minutes)}{note}\n:::\n"


def md_cell(source: str, **metadata):
    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata.update(metadata)
    cell.pop("id", None)
    return cell


def stage_lesson(page: Page, stage: Path, root: Path = ROOT, lang: str = "en") -> int:
    """Write the lesson's page; returns how many plotly charts it has."""
    nb = nbformat.read(page.path, as_version=4)
    stem = page.path.stem
    linker = Linker(page.path, stage, edition_root(lang, root), root, lang)
    cells, counter = [], [0]
    finals = final_targets(nb, stem)
    for i, cell in enumerate(nb.cells):
        cell = copy.deepcopy(cell)
        if cell.cell_type == "markdown":
            cell.source = linker.markdown(cell.source)
            cells.append(cell)
            if i == 0:
                cells.append(md_cell(run_live_md(page, "lesson", lang)))
            continue
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        targets = [label(stem, t) for t in cell.metadata.get("tags", []) if t.startswith("evidence:")]
        if i in finals["targets"]:
            targets.append(finals["targets"][i])
        if targets:
            cells.append(md_cell("\n".join(f"({t})=" for t in targets)))
        convert_outputs(cell, stem, counter, {kind: html_id(t) for kind, t in finals["links"].get(i, {}).items()}, lang)
        cells.append(cell)
        call = quiz_call(cell.source)
        if call is not None and any(WIDGET in o.get("data", {}) for o in nb.cells[i].get("outputs", [])):
            from celerylab.quiz import select

            questions = select(call.get("round"), call.get("lesson"), call.get("ids"))
            cells.append(md_cell(questions_md(questions, "notebooks", lang, root)))
    nb.cells = cells
    _write(nb, stage / f"{page.docname}.ipynb")
    return counter[0]


def final_targets(nb, stem: str) -> dict:
    """Where each live widget's final state is: ``{"targets": {cell index: target name}, "links":
    {cell index: {widget kind: target name}}}``. A widget's final state is the first output at or
    after its cell that shows the final state of that kind of widget; the first such output of a
    kind is named ``final-state`` (live views) or ``final-values`` (live plots), later ones get -2, -3..."""
    names = {"celerylab live view": "final-state", "celerylab live metrics plot": "final-values"}
    finals, seen = {}, {}
    for i, cell in enumerate(nb.cells):
        kind = final_kind(cell.get("outputs", [])) if cell.cell_type == "code" else None
        if kind:
            seen[kind] = seen.get(kind, 0) + 1
            finals[i] = (kind, label(stem, names[kind] + (f"-{seen[kind]}" if seen[kind] > 1 else "")))
    links = {}
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            kind = widget_kind(_text(o.get("data", {}).get("text/plain", ""))) if WIDGET in o.get("data", {}) else None
            target = next((t for j, (k, t) in sorted(finals.items()) if j >= i and k == kind), None) if kind else None
            if target:
                links.setdefault(i, {})[kind] = target
    return {"targets": {i: t for i, (_, t) in finals.items()}, "links": links}


HINT_CELL = re.compile(r"^\s*#\s*(q\d+)\.(?:hint|solution)\(", re.MULTILINE)


def stage_lab(page: Page, stage: Path, root: Path = ROOT, lang: str = "en") -> None:
    """The lab as learners get it (answers blanked), with each exercise's hints and solution folded."""
    import importlib

    from celerylab.grading.exercise import exercises_in
    from celerylab.grading.labs import BEGIN, END, SOLUTION_ONLY_TAG, exercise_label, exercise_module, is_check, \
        strip_solutions, tags

    nb = nbformat.read(page.path, as_version=4)
    module_name = exercise_module(nb)
    exercises = exercises_in(importlib.import_module(module_name)) if module_name else {}
    linker = Linker(page.path, stage, edition_root(lang, root), root, lang)
    cells, solutions, checks = [], [], {}
    for i, cell in enumerate(nb.cells):
        cell = copy.deepcopy(cell)
        if SOLUTION_ONLY_TAG in tags(cell):
            solutions.append(cell.source)
            continue
        if cell.cell_type == "markdown":
            cell.source = linker.markdown(cell.source)
            cells.append(cell)
            if i == 0:
                cells.append(md_cell(run_live_md(page, "lab", lang)))
            continue
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        if BEGIN in cell.source:
            solutions.append("\n".join(line for line in cell.source.splitlines()
                                       if line.strip() not in (BEGIN, END)))
            cell.source = strip_solutions(cell.source, f"{page.path.name} cell {i}")
            cell.outputs, cell.execution_count = [], None
        if is_check(cell):
            checks[exercise_label(cell)] = "".join(o.get("text", "") for o in cell.outputs
                                                   if o.get("output_type") == "stream")
            cell.outputs, cell.execution_count = [], None
        hint = HINT_CELL.search(cell.source)
        if hint and all(not line.strip() or line.lstrip().startswith("#") for line in cell.source.splitlines()):
            q = hint.group(1)
            cells.append(md_cell(folded_help(q, exercises.get(q), solutions, checks.get(q, ""), lang)))
            solutions = []
            continue
        convert_outputs(cell, page.path.stem, [0], None, lang)
        cells.append(cell)
    nb.cells = cells
    _write(nb, stage / f"{page.docname}.ipynb")


def folded_help(q: str, exercise, solutions: list[str], check_output: str, lang: str = "en") -> str:
    import textwrap

    out = []
    hints = [textwrap.dedent(translate(h, lang)).strip() for h in getattr(exercise, "hints", ())]
    for n, hint in enumerate(hints, start=1):
        out += [f":::{{dropdown}} {tr(lang, 'hint', q=q, n=n, total=len(hints))}", hint, ":::", ""]
    out.append(f":::{{dropdown}} {tr(lang, 'solution', q=q)}")
    for code in solutions:
        out += ["```python", code.strip(), "```", ""]
    if not solutions and getattr(exercise, "solution_text", ""):
        out += ["```python", textwrap.dedent(exercise.solution_text).strip(), "```", ""]
    if check_output.strip():
        out += [tr(lang, "check_prints"), "", "```text", check_output.strip(), "```"]
    out += [":::", ""]
    return "\n".join(out)


def _write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat_minor = 4
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


def stage_doc(rel: str, stage: Path, root: Path = ROOT, lang: str = "en") -> None:
    """A markdown page of docs/: the edition's own (zh/docs/...) or, until it has one, the English
    with a note (the page is there in every language, so the language switch always lands)."""
    source = edition_root(lang, root) / rel
    translated = source.is_file()
    if not translated:
        source = root / rel
    text = Linker(source, stage, edition_root(lang, root), root, lang).markdown(source.read_text(encoding="utf-8"))
    if not translated:
        lines = text.splitlines(keepends=True)
        at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
        lines.insert(at, f"\n:::{{note}}\n{tr(lang, 'untranslated')}\n:::\n\n")
        text = "".join(lines)
    dest = stage / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")


def index_md(lesson_pages: list[Page], lab_pages: list[Page], charts: dict[str, int], lang: str = "en") -> str:
    labs_by_number = {p.number: p for p in lab_pages}
    rows = [tr(lang, "table"), "|---|---|---|---|---|"]
    for p in lesson_pages:
        lab = labs_by_number.get(p.number)
        est = tr(lang, "est") if p.estimated else ""
        rows.append(f"| {p.number} | [{p.title}]({p.docname}.ipynb) | {tr(lang, 'min', minutes=p.minutes)}{est} | "
                    + (f"[{lab.title}]({lab.docname}.ipynb) | {tr(lang, 'min', minutes=lab.minutes)}" if lab else "– | –")
                    + " |")
    total = sum(p.minutes for p in lesson_pages) + sum(p.minutes for p in lab_pages)
    toc = lambda caption, docs: "\n".join([f"```{{toctree}}", f":caption: {caption}", ":maxdepth: 1", ""]
                                          + docs + ["```", ""])
    return "\n".join([
        f"# {tr(lang, 'index_title')}\n",
        tr(lang, "index_intro") + "\n",
        f":::{{admonition}} {tr(lang, 'run_title')}\n:class: tip\n\n{tr(lang, 'index_run')}\n:::\n",
        f"## {tr(lang, 'contents')}\n",
        tr(lang, "contents_intro", wpm=WORDS_PER_MINUTE, mpc=MINUTES_PER_CODE_CELL, hours=round(total / 60, 1)) + "\n",
        "\n".join(rows), "",
        tr(lang, "then", cheatsheet=tr(lang, "then_cheatsheet")) + "\n",
        toc(tr(lang, "toc_lessons"), [p.docname for p in lesson_pages]),
        toc(tr(lang, "toc_labs"), [p.docname for p in lab_pages]),
        toc(tr(lang, "toc_check"), ["quiz", "docs/cheatsheet"]),
    ])


def inputs(root: Path = ROOT) -> list[Path]:
    """Every file the book is made from (for the stamp's digest): the English sources and the
    translated editions' (zh/, the kit's catalogs)."""
    files = [*sorted((root / "notebooks").glob("[0-9]*.ipynb")), *sorted((root / "solutions").glob("[0-9]*.ipynb")),
             root / "docs" / "cheatsheet.md", *sorted((root / "book").rglob("*")),
             *sorted((root / "celerylab" / "quiz").rglob("*.py")),
             *sorted((root / "celerylab" / "exercises").glob("*.py")), root / "pyproject.toml",
             root / "celerylab" / "i18n.py"]
    for lang, folder in EDITIONS.items():
        if folder:
            base = root / folder
            files += [*sorted((base / "notebooks").glob("[0-9]*.ipynb")), *sorted((base / "solutions").glob("[0-9]*.ipynb")),
                      base / "docs" / "cheatsheet.md", root / "locale" / lang / "kit.po"]
    return [f for f in files if f.is_file() and "__pycache__" not in f.parts]


def digest(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for f in inputs(root):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


EDITION_FILE = "_edition.json"   #: in a staged tree: its language and where the other languages' pages are


def stage(stage_dir: Path = STAGE, root: Path = ROOT, lang: str = "en") -> dict:
    """Write the Sphinx source tree of one language; returns {"charts": {docname: plotly charts}, "lessons", "labs"}."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    lesson_pages, lab_pages = edition_pages(lessons(root), lang, root), edition_pages(labs(root), lang, root)
    charts = {p.docname: stage_lesson(p, stage_dir, root, lang) for p in lesson_pages}
    for p in lab_pages:
        stage_lab(p, stage_dir, root, lang)
    stage_doc("docs/cheatsheet.md", stage_dir, root, lang)
    (stage_dir / "quiz.md").write_text(quiz_page(stage_dir, lang, root), encoding="utf-8")
    (stage_dir / "index.md").write_text(index_md(lesson_pages, lab_pages, charts, lang), encoding="utf-8")
    # every page links to the same page in the other languages: "zh/" from the English root, "../" back
    here = EDITIONS[lang]
    others = {other: (f"{'../' if here else ''}{folder + '/' if folder else ''}", LANG_NAMES[other])
              for other, folder in EDITIONS.items() if other != lang}
    (stage_dir / EDITION_FILE).write_text(json.dumps({"lang": lang, "others": others}, ensure_ascii=False),
                                          encoding="utf-8")
    return {"charts": charts, "lessons": [p.docname for p in lesson_pages], "labs": [p.docname for p in lab_pages],
            "untranslated": [p.docname for p in lesson_pages + lab_pages if not p.translated]}


def ensure_edition(lang: str, root: Path = ROOT) -> None:
    """A translated edition's notebooks (``make zh``): built here, not strict, when they are missing."""
    if lang == "en" or (edition_root(lang, root) / "notebooks").is_dir():
        return
    from celerylab.translation import edition

    print(f"book: no {EDITIONS[lang]}/notebooks, building the {lang} edition first (make zh)", file=sys.stderr)
    edition.build(lang)


def build(out: Path = OUT, stage_dir: Path = STAGE, root: Path = ROOT, quiet: bool = True,
          strict: bool = True) -> dict:
    """Stage every language and run Sphinx on each (at once: two processes); the English at ``out``,
    each translation in its folder of it (``out/zh``). Raises RuntimeError on a Sphinx error, or a
    warning (a broken link...) when strict."""
    started = time.monotonic()
    for lang in EDITIONS:
        ensure_edition(lang, root)
    source_digest = digest(root)     # before staging: what this build is made from
    if out.exists():
        shutil.rmtree(out)
    runs, info = [], {}
    for lang, folder in EDITIONS.items():
        src = stage_dir if not folder else stage_dir.with_name(f"{stage_dir.name}-{folder}")
        dest = out / folder if folder else out
        staged = stage(src, root, lang)
        if not folder:
            info.update(staged)
        else:
            info.setdefault("editions", {})[lang] = {**staged, "path": folder}
        warnings = out.parent / f"{out.name}-warnings{'-' + folder if folder else ''}.txt"
        warnings.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-c", str(root / "book"),
               "-D", f"language={SPHINX_LANG[lang]}", "-D", f"html_title={tr(lang, 'title')}",
               "-d", str(src.with_name(src.name + "-doctrees")),
               "-w", str(warnings), "--keep-going", *(["-q"] if quiet else []), str(src), str(dest)]
        runs.append((lang, subprocess.Popen(cmd, cwd=root), warnings))
    problems = []
    for lang, proc, warnings in runs:
        code = proc.wait()
        text = warnings.read_text(encoding="utf-8").strip() if warnings.exists() else ""
        if code != 0 or (text and strict):
            problems.append(f"sphinx-build ({lang}) failed (exit {code}); warnings:\n{text}")
        elif text:
            print(f"sphinx warnings ({lang}, not strict):\n{text}", file=sys.stderr)
        info.setdefault("warnings", []).extend(text.splitlines() if text else [])
    if problems:
        raise RuntimeError("\n".join(problems))
    info["digest"] = source_digest
    info["seconds"] = round(time.monotonic() - started, 1)
    (out / STAMP).write_text(json.dumps(info, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / ".nojekyll").write_text("")
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--allow-warnings", action="store_true",
                        help="build even when Sphinx warns (a broken link, a missing anchor); default: fail")
    args = parser.parse_args(argv)
    try:
        info = build(args.out, quiet=not args.verbose, strict=not args.allow_warnings)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    zh = ", ".join(f"{lang} in {e['path']}/" + (f" ({len(e['untranslated'])} pages still English)" if e["untranslated"] else "")
                   for lang, e in info.get("editions", {}).items())
    print(f"book: {len(info['lessons'])} lessons, {len(info['labs'])} labs, quiz, cheat sheet; {zh} -> "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}/index.html "
          f"({info['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
