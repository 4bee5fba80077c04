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


# -- what the course is made of ----------------------------------------------------------
@dataclass
class Page:
    path: Path          #: the repository file it comes from
    docname: str        #: where it lives in the book, without suffix: notebooks/01_architecture
    number: str         #: "01", "08a"
    title: str
    minutes: int
    estimated: bool     #: True: the notebook states no time; minutes are estimated from its length

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

    def __init__(self, source: Path, stage: Path, root: Path = ROOT):
        self.source, self.stage, self.root = source, stage, root
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
        if not (repo_file.exists() or (self.root / "solutions" / repo_file.name).exists()):
            return href   # left as it is: Sphinx warns, the browser test fails on it
        if not (rel.startswith(("notebooks/", "labs/")) and rel.endswith(".ipynb")) \
                and not (rel.startswith("docs/") and rel.endswith(".md")) and repo_file.is_file():
            self.copy(rel)
        page_dir = self.source.parent.relative_to(self.root).as_posix() if self.source.is_relative_to(self.root) else ""
        new = _relpath(rel, page_dir)
        return new + (f"#{fragment}" if sep else "")

    def copy(self, rel: str) -> None:
        dest = self.stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / rel, dest)
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


def widget_kind(text: str) -> str | None:
    """Which kind of live widget a text/plain is (a key of FINALS), or None (quiz, other widgets)."""
    return next((kind for kind in FINALS if text.startswith(kind)), None)


def final_kind(outputs) -> str | None:
    """The kind of live widget whose final state these outputs show, or None."""
    for o in outputs:
        plain = _text(o.get("data", {}).get("text/plain", ""))
        for kind, start in FINALS.items():
            if plain.startswith(start) and PLOTLY in o.get("data", {}):
                return kind
    return None


def widget_note(text: str, final_state: str | None) -> str:
    """What replaces a live widget: its stored notebook keeps no widget state, only this text.

    ``final_state``: the html id of the output that shows the widget's final state (None: none)."""
    if text.startswith("celerylab live view"):
        where = (f'Its final counts are shown <a href="#{final_state}">below</a>, in the static figures the '
                 "lesson displays when it stops the view (counts only: the times of the timeline's bars and the "
                 "queue-depth curves are live only, they vary from run to run)."
                 if final_state else "")
        return note_html("Live view", "In JupyterLab this cell shows the live view (task flow, timeline, "
                         "queue depth), redrawn from Celery's events while the cells run. A stored notebook "
                         f"keeps no picture of a widget. {where}")
    if text.startswith("celerylab live metrics plot"):
        where = (f'The values it ended at are shown <a href="#{final_state}">below</a> as a static chart (the '
                 "curves over time are drawn live only: their times vary from run to run)."
                 if final_state else "")
        return note_html("Live metrics plot", "In JupyterLab this cell shows a chart of the exporter's "
                         "metrics, redrawn while the cells run. The stored notebook keeps no picture of a "
                         f"widget. {where}")
    if text.startswith("quiz:"):
        return note_html("Quiz", "In JupyterLab these questions are interactive (pick an answer, press "
                         "Check). Here they follow with their answers folded away.", "tip")
    return note_html("Widget", "An interactive widget, shown while the kernel runs; the stored notebook "
                     "keeps no picture of it.")


def external_html(html: str) -> bool:
    """HTML that loads something from a server (e.g. an IFrame of Flower on the kernel's port)."""
    return bool(re.search(r"""\bsrc\s*=\s*["']?(?:https?:)?//""", html))


def count_plotly_outputs(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []) if PLOTLY in o.get("data", {}))


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def convert_outputs(cell, stem: str, counter: list[int], final_state: str | dict | None) -> None:
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
            data = {"text/html": widget_note(plain, target), "text/plain": plain}
        elif PLOTLY in data:
            counter[0] += 1
            fallback = _text(data.get("text/html", ""))
            chart = plotly_html(data.pop(PLOTLY), f"plot-{stem}-{counter[0]}".replace("_", "-"))
            data["text/html"] = fallback + chart
        elif "text/html" in data and external_html(_text(data["text/html"])):
            data = {"text/html": note_html("Live only", "This output loads a page from a server the notebook "
                                           "started (on 127.0.0.1 of the machine running it): run the lesson "
                                           "to see it. " + _escape(plain)), "text/plain": plain}
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


def questions_md(questions, page_dir: str) -> str:
    """Questions as MyST: prompt and choices visible, the answer and its evidence folded."""
    out = []
    for n, q in enumerate(questions, start=1):
        out.append(f"**{n}.** {q.prompt}\n")
        if q.kind in ("choice", "myth"):
            out += [f"- **{chr(65 + i)}.** {choice}" for i, choice in enumerate(q.choices)]
            out.append("")
        else:
            out += ["```python", q.stub.rstrip() or "# your code", "```", ""]
        out.append(f":::{{dropdown}} Answer to {n}")
        if q.kind == "code":
            out += ["An answer that passes:", "", "```python", q.solution.strip(), "```", ""]
        else:
            letter = chr(65 + q.answer) if q.kind == "choice" else chr(65 + int(bool(q.answer)))
            out.append(f"**{letter}. {q.right_answer}.**\n")
        out.append(f"{q.explanation}\n")
        section = f"notebooks/{q.notebook}" + (f"#{anchor(q.anchor)}" if q.anchor else "")
        out.append(f"Taught in [{q.where}]({_relpath(section, page_dir)}).")
        proof = q.proof
        if proof.kind == "cell":
            stem = Path(proof.path).stem
            out.append(f"Evidence: {{ref}}`{proof.label.replace('`', '')} <{label(stem, proof.name)}>`.")
        else:
            out.append(f"Evidence: [{proof.label}]({_relpath(proof.path, page_dir)}), a test against the "
                       "installed Celery.")
        out += [":::", ""]
    return "\n".join(out)


def quiz_page(stage: Path) -> str:
    from celerylab.quiz import QUESTIONS, TITLES, rounds

    linker_files = {q.proof.path for q in QUESTIONS if q.proof.kind == "test"}
    for rel in sorted(linker_files):
        dest = stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, dest)
    parts = ["# Quiz: every question, answers folded\n",
             "The questions of lesson 09's self-check quiz, from the question bank in `celerylab/quiz/`. "
             "Each answer names the lesson section that teaches it and its evidence: a lesson cell whose "
             "stored output shows it, or a test against the installed Celery. To answer them interactively, "
             "run [09 · Interview prep](notebooks/09_interview_prep.ipynb) with `make lab`.\n"]
    by_round = rounds()
    parts += ["## The seed article's interview questions\n", questions_md(by_round["faq"], "")]
    lessons_seen = []
    for q in by_round["lessons"]:
        if q.lesson not in lessons_seen:
            lessons_seen.append(q.lesson)
    for lesson in sorted(lessons_seen, key=lambda n: list(TITLES).index(n) if n in TITLES else 999):
        qs = [q for q in by_round["lessons"] if q.lesson == lesson]
        parts += [f"## {lesson} · {TITLES.get(lesson, '')}\n", questions_md(qs, "")]
    parts += ["## Myth or fact: the seed article's claims\n", questions_md(by_round["myths"], "")]
    return "\n".join(parts)


# -- pages -------------------------------------------------------------------------------
def run_live_md(page: Page, kind: str) -> str:
    if kind == "lab":
        lab = f"labs/{page.path.name}"
        how = (f"`make lab` (in the kit's folder) starts JupyterLab; open `{lab}`, write your answers and run "
               f"each check cell (`q1.check()`). `make grade LABS={lab}` prints a scorecard. The solved "
               f"notebook is `{page.repo_path}`.")
    else:
        how = (f"`make lab` (in the kit's folder) starts JupyterLab; open `{page.repo_path}` and run the cells "
               "from top to bottom (Shift-Enter). This page shows the outputs stored when the lesson last ran.")
    minutes = f"about {page.minutes} minutes" + (" (estimated from its length)" if page.estimated else "")
    return f":::{{admonition}} Run it live\n:class: tip\n\n{how} Time: {minutes}.\n:::\n"


def md_cell(source: str, **metadata):
    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata.update(metadata)
    cell.pop("id", None)
    return cell


def stage_lesson(page: Page, stage: Path, root: Path = ROOT) -> int:
    """Write the lesson's page; returns how many plotly charts it has."""
    nb = nbformat.read(page.path, as_version=4)
    stem = page.path.stem
    linker = Linker(page.path, stage, root)
    cells, counter = [], [0]
    finals = final_targets(nb, stem)
    for i, cell in enumerate(nb.cells):
        cell = copy.deepcopy(cell)
        if cell.cell_type == "markdown":
            cell.source = linker.markdown(cell.source)
            cells.append(cell)
            if i == 0:
                cells.append(md_cell(run_live_md(page, "lesson")))
            continue
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        targets = [label(stem, t) for t in cell.metadata.get("tags", []) if t.startswith("evidence:")]
        if i in finals["targets"]:
            targets.append(finals["targets"][i])
        if targets:
            cells.append(md_cell("\n".join(f"({t})=" for t in targets)))
        convert_outputs(cell, stem, counter, {kind: html_id(t) for kind, t in finals["links"].get(i, {}).items()})
        cells.append(cell)
        call = quiz_call(cell.source)
        if call is not None and any(WIDGET in o.get("data", {}) for o in nb.cells[i].get("outputs", [])):
            from celerylab.quiz import select

            questions = select(call.get("round"), call.get("lesson"), call.get("ids"))
            cells.append(md_cell(questions_md(questions, "notebooks")))
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


def stage_lab(page: Page, stage: Path, root: Path = ROOT) -> None:
    """The lab as learners get it (answers blanked), with each exercise's hints and solution folded."""
    import importlib

    from celerylab.grading.exercise import exercises_in
    from celerylab.grading.labs import BEGIN, END, SOLUTION_ONLY_TAG, exercise_label, exercise_module, is_check, \
        strip_solutions, tags

    nb = nbformat.read(page.path, as_version=4)
    module_name = exercise_module(nb)
    exercises = exercises_in(importlib.import_module(module_name)) if module_name else {}
    linker = Linker(page.path, stage, root)
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
                cells.append(md_cell(run_live_md(page, "lab")))
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
            cells.append(md_cell(folded_help(q, exercises.get(q), solutions, checks.get(q, ""))))
            solutions = []
            continue
        convert_outputs(cell, page.path.stem, [0], None)
        cells.append(cell)
    nb.cells = cells
    _write(nb, stage / f"{page.docname}.ipynb")


def folded_help(q: str, exercise, solutions: list[str], check_output: str) -> str:
    import textwrap

    out = []
    hints = [textwrap.dedent(h).strip() for h in getattr(exercise, "hints", ())]
    for n, hint in enumerate(hints, start=1):
        out += [f":::{{dropdown}} {q}: hint {n} of {len(hints)}", hint, ":::", ""]
    out.append(f":::{{dropdown}} {q}: solution")
    for code in solutions:
        out += ["```python", code.strip(), "```", ""]
    if not solutions and getattr(exercise, "solution_text", ""):
        out += ["```python", textwrap.dedent(exercise.solution_text).strip(), "```", ""]
    if check_output.strip():
        out += ["With it, the check prints:", "", "```text", check_output.strip(), "```"]
    out += [":::", ""]
    return "\n".join(out)


def _write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat_minor = 4
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


def stage_doc(rel: str, stage: Path, root: Path = ROOT) -> None:
    source = root / rel
    text = Linker(source, stage, root).markdown(source.read_text(encoding="utf-8"))
    dest = stage / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")


def index_md(lesson_pages: list[Page], lab_pages: list[Page], charts: dict[str, int]) -> str:
    labs_by_number = {p.number: p for p in lab_pages}
    rows = ["| # | Lesson | Time | Lab | Lab time |", "|---|---|---|---|---|"]
    for p in lesson_pages:
        lab = labs_by_number.get(p.number)
        est = " (est.)" if p.estimated else ""
        rows.append(f"| {p.number} | [{p.title}]({p.docname}.ipynb) | {p.minutes} min{est} | "
                    + (f"[{lab.title}]({lab.docname}.ipynb) | {lab.minutes} min" if lab else "– | –") + " |")
    total = sum(p.minutes for p in lesson_pages) + sum(p.minutes for p in lab_pages)
    toc = lambda caption, docs: "\n".join([f"```{{toctree}}", f":caption: {caption}", ":maxdepth: 1", ""]
                                          + docs + ["```", ""])
    return "\n".join([
        "# Celery Lab Kit: the course\n",
        "Learn Celery by running it: lessons where every claim is shown live on real Celery workers, "
        "graded labs, and a self-check quiz. This book shows each notebook as it last ran, with its stored "
        "outputs: charts are interactive, live views show their final state.\n",
        ":::{admonition} Run it live\n:class: tip\n\nIn the kit's folder, `make lab` installs the kit "
        "(pinned packages, in `.venv`) and starts JupyterLab on 127.0.0.1 at `notebooks/00_start_here.ipynb`. "
        "Each page of this book names the notebook to open. `make book` rebuilds this book.\n:::\n",
        "## Contents\n",
        "The course in order, with the time each part takes, as each notebook states it (*est.*: the notebook "
        f"states none; estimated from its length, {WORDS_PER_MINUTE} words a minute plus "
        f"{MINUTES_PER_CODE_CELL} min per code cell). In all about {round(total / 60, 1)} hours.\n",
        "\n".join(rows), "",
        "Then check yourself: the [quiz](quiz.md) (every question, answers folded) and the "
        "[cheat sheet](docs/cheatsheet.md).\n",
        toc("Lessons", [p.docname for p in lesson_pages]),
        toc("Labs", [p.docname for p in lab_pages]),
        toc("Check yourself", ["quiz", "docs/cheatsheet"]),
    ])


def inputs(root: Path = ROOT) -> list[Path]:
    """Every file the book is made from (for the stamp's digest)."""
    files = [*sorted((root / "notebooks").glob("[0-9]*.ipynb")), *sorted((root / "solutions").glob("[0-9]*.ipynb")),
             root / "docs" / "cheatsheet.md", *sorted((root / "book").rglob("*")),
             *sorted((root / "celerylab" / "quiz").rglob("*.py")),
             *sorted((root / "celerylab" / "exercises").glob("*.py")), root / "pyproject.toml"]
    return [f for f in files if f.is_file() and "__pycache__" not in f.parts]


def digest(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for f in inputs(root):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def stage(stage_dir: Path = STAGE, root: Path = ROOT) -> dict:
    """Write the Sphinx source tree; returns {docname: number of plotly charts} for the lessons."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    lesson_pages, lab_pages = lessons(root), labs(root)
    charts = {p.docname: stage_lesson(p, stage_dir, root) for p in lesson_pages}
    for p in lab_pages:
        stage_lab(p, stage_dir, root)
    stage_doc("docs/cheatsheet.md", stage_dir, root)
    (stage_dir / "quiz.md").write_text(quiz_page(stage_dir), encoding="utf-8")
    (stage_dir / "index.md").write_text(index_md(lesson_pages, lab_pages, charts), encoding="utf-8")
    return {"charts": charts, "lessons": [p.docname for p in lesson_pages], "labs": [p.docname for p in lab_pages]}


def build(out: Path = OUT, stage_dir: Path = STAGE, root: Path = ROOT, quiet: bool = True,
          strict: bool = True) -> dict:
    """Stage and run Sphinx; raises RuntimeError on a Sphinx error, or a warning (a broken link...) when strict."""
    started = time.monotonic()
    source_digest = digest(root)     # before staging: what this build is made from
    info = stage(stage_dir, root)
    if out.exists():
        shutil.rmtree(out)
    warnings = out.parent / f"{out.name}-warnings.txt"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-c", str(root / "book"),
           "-w", str(warnings), "--keep-going", *(["-q"] if quiet else []), str(stage_dir), str(out)]
    proc = subprocess.run(cmd, cwd=root)
    problems = warnings.read_text(encoding="utf-8").strip() if warnings.exists() else ""
    if proc.returncode != 0 or (problems and strict):
        raise RuntimeError(f"sphinx-build failed (exit {proc.returncode}); warnings:\n{problems}")
    if problems:
        print(f"sphinx warnings (not strict):\n{problems}", file=sys.stderr)
    info["digest"] = source_digest
    info["warnings"] = problems.splitlines() if problems else []
    info["seconds"] = round(time.monotonic() - started, 1)
    (out / STAMP).write_text(json.dumps(info, indent=1), encoding="utf-8")
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
    print(f"book: {len(info['lessons'])} lessons, {len(info['labs'])} labs, quiz, cheat sheet -> "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}/index.html "
          f"({info['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
