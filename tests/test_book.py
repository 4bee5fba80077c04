"""The course as a static book (``make book``, book/build.py).

Unit tests check the staging (lessons found by glob, times, outputs made renderable offline,
labs with folded hints and solutions, the quiz with folded answers). The browser test serves the
built site on 127.0.0.1, opens every page in headless Chromium with every other address blocked,
and checks: no console error, no failed request, every internal link and anchor resolves, every
lesson page draws as many plotly charts as its notebook stores, search finds a lesson. The same
checks run on each translated edition (the Chinese book in build/book/zh, from ``make zh``), and
every page of each language links to the same page in the other one.
"""
from __future__ import annotations

import functools
import html.parser
import importlib.util
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from test_browser import CHROMIUM_FLAGS, chromium, sync_playwright  # noqa: F401 (Debian's Chromium, playwright)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load_book():
    spec = importlib.util.spec_from_file_location("celerylab_book_build", ROOT / "book" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


book = _load_book()


# -- staging -----------------------------------------------------------------------------
def _nb(path: Path, *cells, **meta):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    nb.metadata.update(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_every_notebook_is_a_lesson_in_file_name_order_with_its_time(tmp_path):
    md = nbformat.v4.new_markdown_cell
    _nb(tmp_path / "notebooks" / "10_workflows.ipynb", md("# 10 · Workflows\n\n**Time:** about 35 minutes."))
    _nb(tmp_path / "notebooks" / "08a_workers.ipynb", md("# 08a · Workers\n\n**Time:** about 20 minutes."))
    _nb(tmp_path / "notebooks" / "08_production.ipynb", md("# 08 · Production\n\n**Time:** about 20 minutes."))
    _nb(tmp_path / "notebooks" / "00_start.ipynb", md("# 00 · Start\n\n" + "word " * 1200),
        nbformat.v4.new_code_cell("x = 1"))
    pages = book.lessons(tmp_path)
    assert [p.docname for p in pages] == ["notebooks/00_start", "notebooks/08_production",
                                         "notebooks/08a_workers", "notebooks/10_workflows"]
    assert [p.minutes for p in pages[1:]] == [20, 20, 35] and not any(p.estimated for p in pages[1:])
    # no stated time: 1200 words at 200 words a minute + a quarter minute per code cell, up to 5 minutes
    assert pages[0].estimated and pages[0].minutes == 10
    assert pages[3].title == "10 · Workflows" and pages[3].number == "10"


def test_the_time_estimate_agrees_with_the_lessons_that_state_their_time():
    stated = [(p.minutes, nbformat.read(p.path, as_version=4)) for p in book.lessons()
              if not p.estimated and "interview" not in p.path.name]   # the quiz: minutes per answer, not words
    assert len(stated) >= 5
    raw = lambda nb: (sum(len(c.source.split()) for c in nb.cells) / book.WORDS_PER_MINUTE
                      + book.MINUTES_PER_CODE_CELL * sum(c.cell_type == "code" for c in nb.cells))
    ratio = sum(minutes for minutes, _ in stated) / sum(raw(nb) for _, nb in stated)
    assert 0.75 <= ratio <= 1.25, ratio


def test_the_contents_page_lists_every_lesson_of_the_repository_in_order():
    pages = book.lessons()
    assert [p.path.name for p in pages] == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    index = book.index_md(pages, book.labs(), {})
    positions = [index.index(f"]({p.docname}.ipynb)") for p in pages]
    assert positions == sorted(positions)
    assert all(f"| {p.minutes} min" in index for p in pages)


def test_plotly_outputs_become_charts_drawn_by_the_sites_own_plotly_js():
    cell = nbformat.v4.new_code_cell("fig")
    figure = {"data": [{"type": "bar", "x": [1, 2], "y": [3, 4]}], "layout": {"height": 300}}
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        book.PLOTLY: figure, "text/html": "<div class='celerylab-flow'>final</div>", "text/plain": "Final state"})]
    book.convert_outputs(cell, "05_retries", [0], None)
    data = cell.outputs[0]["data"]
    assert book.PLOTLY not in data
    html = data["text/html"]
    assert html.startswith("<div class='celerylab-flow'>final</div>")       # the static fallback kept
    assert 'id="plot-05-retries-1"' in html and "Plotly.newPlot" in html
    assert "cdn" not in html.lower() and "<script src" not in html          # plotly.js comes from _static


def test_live_widgets_become_notes_pointing_at_the_final_state_and_iframes_to_servers_are_dropped():
    cell = nbformat.v4.new_code_cell("view = celerylab.watch(app)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={
            book.WIDGET: {"model_id": "abc", "version_major": 2, "version_minor": 0},
            "text/plain": "celerylab live view (widgets: shown while the kernel runs)"}),
        nbformat.v4.new_output("execute_result", execution_count=1, data={
            "text/html": '<iframe src="http://127.0.0.1:33019/"></iframe>', "text/plain": "<IPython.lib.display.IFrame>"}),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
    ]
    book.convert_outputs(cell, "01_architecture", [0], "cell-01-architecture-final-state")
    first, second, third = cell.outputs
    assert book.WIDGET not in first["data"] and 'href="#cell-01-architecture-final-state"' in first["data"]["text/html"]
    assert "iframe" not in second["data"]["text/html"] and "127.0.0.1:33019" not in second["data"]["text/html"]
    assert third["text"] == "kept\n"


def _widget(text):
    return nbformat.v4.new_output("display_data", data={
        book.WIDGET: {"model_id": "m", "version_major": 2, "version_minor": 0}, "text/plain": text})


def _final(text):
    return nbformat.v4.new_output("display_data", data={book.PLOTLY: {"data": [], "layout": {}}, "text/plain": text})


def test_each_live_widget_links_to_the_next_chart_of_its_own_final_state():
    code = nbformat.v4.new_code_cell
    cells = [code("plot"), code("view"), code("plot.stop(show_final=True)"), code("view.stop(show_final=True)"),
             code("plot2"), code("quiz.show()")]
    cells[0].outputs = [_widget("celerylab live metrics plot (a widget: shown while the kernel runs)")]
    cells[1].outputs = [_widget("celerylab live view (widgets: shown while the kernel runs)")]
    cells[2].outputs = [_final("Final values of the live metrics plot 'Live metrics': sent 3")]
    cells[3].outputs = [_final("Final state of 'x': 3 tasks")]
    cells[4].outputs = [_widget("celerylab live metrics plot (a widget: shown while the kernel runs)")]  # never stopped
    cells[5].outputs = [_widget("quiz: 2 questions")]
    nb = nbformat.v4.new_notebook(cells=cells)
    finals = book.final_targets(nb, "07_x")
    assert finals["targets"] == {2: "cell-07_x-final-values", 3: "cell-07_x-final-state"}
    assert finals["links"] == {0: {"celerylab live metrics plot": "cell-07_x-final-values"},
                               1: {"celerylab live view": "cell-07_x-final-state"}}
    assert '<a href="#' not in book.widget_note(cells[4].outputs[0]["data"]["text/plain"], None)


def test_every_live_widget_of_the_course_is_followed_by_a_chart_of_its_final_state():
    """A stored notebook keeps no picture of a widget: each live view / live plot a lesson shows must be
    followed by the static chart of its final state (the book links the widget's note to it)."""
    missing, widgets = [], 0
    for page in book.lessons():
        nb = nbformat.read(page.path, as_version=4)
        links = book.final_targets(nb, page.path.stem)["links"]
        for i, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
                kind = book.widget_kind(book._text(out.get("data", {}).get("text/plain", "")))
                if book.WIDGET in out.get("data", {}) and kind:
                    widgets += 1
                    if kind not in links.get(i, {}):
                        missing.append(f"{page.path.name} cell {i}: {kind} with no final-state chart after it")
    assert widgets >= 10           # the course's live views and live plot; else this test checks nothing
    assert missing == []


def test_the_live_metrics_plot_of_lesson_07_links_to_its_final_values(tmp_path):
    page = next(p for p in book.lessons() if p.path.name.startswith("07_"))
    charts = book.stage_lesson(page, tmp_path)
    nb = nbformat.read(tmp_path / f"{page.docname}.ipynb", as_version=4)
    assert charts >= 1
    notes = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
             if "Live metrics plot" in str(o.get("data", {}).get("text/html", ""))]
    assert len(notes) == 1 and 'href="#cell-07-monitoring-final-values"' in notes[0]
    at = next(i for i, c in enumerate(nb.cells) if c.source == "(cell-07_monitoring-final-values)=")
    final = nb.cells[at + 1]
    assert final.source.startswith("burst = ") and "plot.stop(show_final=True)" in final.source
    assert any("Plotly.newPlot" in str(o.get("data", {}).get("text/html", "")) for o in final.outputs)


def test_a_lesson_page_says_how_to_run_it_and_targets_its_evidence_cells(tmp_path):
    page = next(p for p in book.lessons() if p.path.name.startswith("01_"))
    charts = book.stage_lesson(page, tmp_path)
    nb = nbformat.read(tmp_path / f"{page.docname}.ipynb", as_version=4)
    assert charts == book.count_plotly_outputs(nbformat.read(page.path, as_version=4)) >= 1
    assert "Run it live" in nb.cells[1].source and "`make lab`" in nb.cells[1].source
    assert "`notebooks/01_architecture.ipynb`" in nb.cells[1].source
    sources = "\n".join(c.source for c in nb.cells)
    assert "(cell-01_architecture-evidence-l01-pending)=" in sources
    assert "(cell-01_architecture-final-state)=" in sources
    assert not any(book.WIDGET in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_a_lab_page_shows_the_blanks_and_folds_hints_and_solution(tmp_path):
    page = next(p for p in book.labs() if p.path.name.startswith("01_"))
    book.stage_lab(page, tmp_path)
    nb = nbformat.read(tmp_path / "labs" / "01_architecture.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    folded = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown" and ":::{dropdown}" in c.source)
    assert "BEGIN SOLUTION" not in code and "raise NotImplementedError()" in code
    assert "lindex(queue, -1)" not in code and "lindex(queue, -1)" in folded    # q1's answer: folded only
    from celerylab.exercises.l01_architecture import q1
    assert q1.hints and q1.hints[0].split(".")[0] in folded
    for label in ("q1", "q2", "q3", "q4"):
        assert f":::{{dropdown}} {label}: hint 1 of" in folded and f":::{{dropdown}} {label}: solution" in folded
    checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert len(checks) == 4 and not any(c.outputs for c in checks)
    assert "`labs/01_architecture.ipynb`" in nb.cells[1].source


def test_links_written_for_the_repository_point_into_the_book(tmp_path):
    linker = book.Linker(ROOT / "notebooks" / "09_interview_prep.ipynb", tmp_path)
    assert linker.target("../solutions/01_architecture.ipynb") == "../labs/01_architecture.ipynb"
    assert linker.target("05_retries.ipynb#5.-The-seed-article's-manual-backoff:-`countdown=2-**-self.request.retries`") \
        == "05_retries.ipynb#5.-The-seed-article's-manual-backoff:-countdown=2-**-self.request.retries"
    assert linker.target("../tests/test_claims.py") == "../tests/test_claims.py"
    assert (tmp_path / "tests" / "test_claims.py").exists()            # served as a download
    text = "see [a](03_scheduling.ipynb#2.-Gotcha:-naive-datetimes-(the-seed-article's-`datetime.utcnow()`)) ok"
    assert linker.markdown(text) == \
        "see [a](03_scheduling.ipynb#2.-Gotcha:-naive-datetimes-(the-seed-article's-datetime.utcnow())) ok"


def test_quiz_questions_show_the_prompt_and_fold_the_answer_with_its_evidence():
    from celerylab.quiz import QUESTIONS

    q = next(q for q in QUESTIONS if q.kind == "choice" and not q.evidence)
    text = book.questions_md([q], "")
    before, _, folded = text.partition(":::{dropdown}")
    assert q.prompt in before and q.right_answer not in before.replace(f"**{chr(65 + q.answer)}.** {q.right_answer}", "")
    assert f"{q.right_answer}.**" in folded and q.explanation in folded
    assert f"<cell-{Path(q.notebook).stem}-evidence-{q.id}>" in folded


# -- the translated edition (build/book/zh) ----------------------------------------------
@pytest.fixture(scope="session")
def zh_edition() -> Path:
    """zh/notebooks and zh/solutions (``make zh``; built here, not strict, when missing)."""
    book.ensure_edition("zh_CN")
    return book.edition_root("zh_CN")


def test_the_chinese_edition_has_every_page_of_the_english_in_the_same_order(zh_edition):
    for english, pages in ((book.lessons(), None), (book.labs(), None)):
        pages = book.edition_pages(english, "zh_CN")
        assert [p.docname for p in pages] == [p.docname for p in english]
        assert [p.minutes for p in pages] == [p.minutes for p in english]       # times as the English states them
        for p, en in zip(pages, english):
            if p.translated:
                assert p.path.is_relative_to(zh_edition) and p.title != en.title, p.path
    translated = [p for p in book.edition_pages(book.lessons() + book.labs(), "zh_CN") if p.translated]
    assert len(translated) >= 20          # every lesson and lab but 09 (generated from the quiz bank)


def test_the_books_own_text_comes_from_the_kit_catalog_in_every_edition():
    """The book's notes and headings are English in book/build.py and Chinese from locale/zh_CN/kit.po
    (context book/build.py): each key reads Chinese in the zh edition, with the same {fields}."""
    import re
    import string

    def fields(text):
        return {f for _, f, _, _ in string.Formatter().parse(text) if f}

    for key, english in book.TEXTS.items():
        chinese = book.translate(english, "zh_CN", context=book.CONTEXT)
        words = re.search(r"[A-Za-z]{2,}", re.sub(r"\{[^}]*\}", "", english))   # not just "**{letter}. {answer}.**"
        assert chinese != english and (re.search(r"[\u4e00-\u9fff]", chinese) or not words), key
        assert fields(chinese) == fields(english), key


def test_a_chinese_lesson_page_keeps_the_outputs_and_speaks_chinese(zh_edition, tmp_path):
    page = next(p for p in book.edition_pages(book.lessons(), "zh_CN") if p.path.name.startswith("01_"))
    assert page.translated
    charts = book.stage_lesson(page, tmp_path, lang="zh_CN")
    nb = nbformat.read(tmp_path / f"{page.docname}.ipynb", as_version=4)
    english = nbformat.read(ROOT / "notebooks" / page.path.name, as_version=4)
    assert charts == book.count_plotly_outputs(english) >= 1
    assert book.tr("zh_CN", "run_title") in nb.cells[1].source and "`zh/notebooks/01_architecture.ipynb`" in nb.cells[1].source
    notes = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
             if "book-output-note" in str(o.get("data", {}).get("text/html", ""))]
    assert notes and all("In JupyterLab" not in n for n in notes)
    assert any(book.tr("zh_CN", "live_view") in n and 'href="#cell-01-architecture-final-state"' in n for n in notes)


def test_a_chinese_lab_page_folds_the_translated_hints(zh_edition, tmp_path):
    from celerylab.exercises.l01_architecture import q1
    from celerylab.i18n import translate

    page = next(p for p in book.edition_pages(book.labs(), "zh_CN") if p.path.name.startswith("01_"))
    book.stage_lab(page, tmp_path, lang="zh_CN")
    nb = nbformat.read(tmp_path / "labs" / "01_architecture.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    folded = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown" and ":::{dropdown}" in c.source)
    assert "BEGIN SOLUTION" not in code and "lindex(queue, -1)" in folded
    assert f":::{{dropdown}} {book.tr('zh_CN', 'hint', q='q1', n=1, total=len(q1.hints))}" in folded
    hint = translate(q1.hints[0], "zh_CN")
    if hint == q1.hints[0]:
        pytest.skip("the kit catalog has no Chinese for lab 01's hints yet")
    assert hint.strip().splitlines()[0] in folded and q1.hints[0].strip().splitlines()[0] not in folded
    assert "`zh/labs/01_architecture.ipynb`" in nb.cells[1].source


def test_live_widgets_of_a_notebook_run_in_chinese_still_link_to_their_final_state():
    """``make zh`` runs the Chinese notebooks with CELERYLAB_LANG=zh_CN: the widgets' and final
    states' text lines are then Chinese (the kit's templates, from its catalog)."""
    from celerylab.i18n import translate

    live = translate("celerylab live view (widgets: shown while the kernel runs)", "zh_CN")
    final = translate("Final state of {app}", "zh_CN")
    plot = translate("celerylab live metrics plot (a widget: shown while the kernel runs)", "zh_CN")
    values = translate("Final values of the live metrics plot {title}: {values}", "zh_CN")
    if live.startswith("celerylab live view (") or final.startswith("Final state"):
        pytest.skip("the kit catalog has no Chinese for the live view's lines yet")
    code = nbformat.v4.new_code_cell
    cells = [code("view"), code("plot"), code("view.stop(show_final=True)"), code("plot.stop(show_final=True)")]
    cells[0].outputs = [_widget(live)]
    cells[1].outputs = [_widget(plot)]
    cells[2].outputs = [_final(final.format(app="'lesson05'") + "：3 个任务")]
    cells[3].outputs = [_final(values.format(title="'实时指标'", values="sent 3"))]
    finals = book.final_targets(nbformat.v4.new_notebook(cells=cells), "05_x")
    assert finals["links"] == {0: {"celerylab live view": "cell-05_x-final-state"},
                               1: {"celerylab live metrics plot": "cell-05_x-final-values"}}
    note = book.widget_note(live, "cell-05-x-final-state", "zh_CN")
    assert book.tr("zh_CN", "live_view") in note and 'href="#cell-05-x-final-state"' in note


def test_links_to_an_english_section_land_on_the_same_section_of_the_translation(zh_edition, tmp_path):
    anchors = book.section_anchors("05_retries.ipynb", "zh_CN")
    english = "3.-Automatic-retries-and-exponential-backoff"
    assert english in anchors and anchors[english] != english
    linker = book.Linker(ROOT / "docs" / "cheatsheet.md", tmp_path, zh_edition, ROOT, "zh_CN")
    assert linker.target(f"../notebooks/05_retries.ipynb#{english}") == f"../notebooks/05_retries.ipynb#{anchors[english]}"
    assert linker.target("../notebooks/09_interview_prep.ipynb") == "../notebooks/09_interview_prep.ipynb"


def test_chinese_search_indexes_pairs_of_characters():
    bookext = _load_bookext()
    assert bookext.han_pairs("死信队列，和 Broker") == ["死信", "信队", "队列", "和"]
    search = bookext.ChineseSearch({})
    assert search.split("死信队列 acks_late") == ["死信", "信队", "队列", "acks_late"]
    assert "splitQuery" in search.js_splitter_code


def _load_bookext():
    sys.path.insert(0, str(ROOT / "book"))
    try:
        return importlib.import_module("bookext")
    finally:
        sys.path.remove(str(ROOT / "book"))


def test_every_page_links_to_the_same_page_in_the_other_language(site):
    """Read from the built files (no browser): each page of each language has one language-switch
    link per other language, to the same page there, and that page exists."""
    import posixpath
    import re

    link = re.compile(r'<a class="[^"]*\blang-switch\b[^"]*" href="([^"]+)" hreflang="([^"]+)"')
    checked = {}
    for lang in book.EDITIONS:
        pages = _edition_pages(site, lang)
        checked[lang] = pages
        for rel in pages:
            text = (site / rel).read_text(encoding="utf-8")
            found = dict((code, href) for href, code in link.findall(text))
            for other in book.EDITIONS:
                if other == lang:
                    continue
                href = found.get(other.replace("_", "-"))
                assert href, f"{rel}: no link to the {other} page"
                target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), href))
                assert target == _counterpart(rel, lang, other), (rel, href)
                assert (site / target).is_file(), (rel, target)
            if lang != "en":
                assert f'<html lang="{lang.replace("_", "-")}"' in text, rel
    english = {p for p in checked["en"]}
    assert {_counterpart(p, "zh_CN", "en") for p in checked["zh_CN"]} == english   # the same pages, both ways
    assert {f"zh/{p.docname}.html" for p in book.lessons() + book.labs()} <= set(checked["zh_CN"])


# -- the built site in a browser -----------------------------------------------------------
@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """build/book when its stamp matches the current sources (make book ran), else a fresh build.

    CELERYLAB_BOOK_HTML=DIR tests the site in DIR as it is (e.g. one built with --allow-warnings)."""
    if os.environ.get("CELERYLAB_BOOK_HTML"):
        return Path(os.environ["CELERYLAB_BOOK_HTML"]).resolve()
    stamp = book.OUT / book.STAMP
    if stamp.exists() and json.loads(stamp.read_text()).get("digest") == book.digest():
        return book.OUT
    out = tmp_path_factory.mktemp("book")
    book.build(out / "html", out / "src")
    return out / "html"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def served(site):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", site
    finally:
        server.shutdown()
        server.server_close()


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def _edition_pages(site: Path, lang: str) -> list[str]:
    """The html pages of one language of the built book, as paths from the site's root ("zh/quiz.html")."""
    prefix = _prefix(lang)
    others = tuple(_prefix(other) for other in book.EDITIONS if other != lang and _prefix(other))
    pages = []
    for p in (site / prefix).rglob("*.html"):
        rel = p.relative_to(site / prefix).as_posix()
        if not rel.startswith(("_static/", "_sources/") + others):
            pages.append(prefix + rel)
    return sorted(pages)


def _prefix(lang: str) -> str:
    return f"{book.EDITIONS[lang]}/" if book.EDITIONS[lang] else ""


def _counterpart(rel: str, lang: str, other: str) -> str:
    """The same page in the other language: "notebooks/05_retries.html" <-> "zh/notebooks/05_retries.html"."""
    return _prefix(other) + rel[len(_prefix(lang)):]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("lang", list(book.EDITIONS))
def test_every_page_opens_offline_with_working_links_and_its_charts(served, chromium, sync_playwright, tmp_path, lang):
    base, site = served
    prefix = _prefix(lang)
    pages = _edition_pages(site, lang)
    lessons = book.edition_pages(book.lessons(), lang)
    assert {f"{prefix}{p.docname}.html" for p in lessons} <= set(pages)
    assert {f"{prefix}{p.docname}.html" for p in book.labs()} <= set(pages)
    assert {prefix + p for p in ("index.html", "quiz.html", "docs/cheatsheet.html", "search.html")} <= set(pages)
    # the charts each page must draw: those its edition's notebook stores (a translation keeps the outputs)
    expected_charts = {f"{prefix}{p.docname}.html": book.count_plotly_outputs(nbformat.read(p.path, as_version=4))
                       for p in lessons}
    assert sum(expected_charts.values()) >= 5       # the course has charts; else this test checks nothing
    # lessons with a live widget show at least the chart of its final state (a notebook that lost it fails)
    for rel, least in FINAL_STATE_CHARTS.items():
        rel = prefix + rel
        assert expected_charts.get(rel, 0) >= least, f"{rel}: {expected_charts.get(rel)} charts, want >= {least}"
    switches = {other: [] for other in book.EDITIONS if other != lang}

    problems, blocked, charts = [], [], {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")

            def only_localhost(route):
                if route.request.url.startswith(base + "/") or route.request.url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    blocked.append(route.request.url)
                    route.abort()

            context.route("**/*", only_localhost)
            page = context.new_page()
            current = {"url": ""}
            page.on("console", lambda msg: msg.type == "error" and problems.append(
                f"{current['url']}: console error: {msg.text}"))
            page.on("pageerror", lambda exc: problems.append(f"{current['url']}: page error: {exc}"))
            page.on("requestfailed", lambda req: problems.append(
                f"{current['url']}: request failed: {req.url} ({req.failure})"))
            page.on("response", lambda resp: resp.status >= 400 and problems.append(
                f"{current['url']}: HTTP {resp.status} for {resp.url}"))

            for rel in pages:
                current["url"] = rel
                page.goto(f"{base}/{rel}", wait_until="load", timeout=60_000)
                want = expected_charts.get(rel)
                if want:
                    try:
                        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {want}",
                                               timeout=30_000)
                    except Exception:    # counted and reported below
                        pass
                charts[rel] = page.locator("div.plotly-graph-div.js-plotly-plot").count()
                if rel in expected_charts:
                    problems += _check_widget_notes(page, rel, lang)
                links = page.eval_on_selector_all(
                    "a[href], link[href], script[src], img[src], iframe[src]",
                    "els => els.map(e => e.href || e.src)")
                for url in links:
                    problems += _check_internal(url, base, site, rel)
                # the language switch: one link per other language, to this very page in it
                for other in switches:
                    want = f"{base}/{_counterpart(rel, lang, other)}"
                    got = page.eval_on_selector_all(f'a.lang-switch[hreflang="{other.replace("_", "-")}"]',
                                                    "els => els.map(e => e.href)")
                    switches[other].append(rel)
                    if got != [want]:
                        problems.append(f"{rel}: language switch to {other}: {got}, want [{want}]")
                if rel in expected_charts or rel.startswith(f"{prefix}labs/"):
                    text = page.locator("article").inner_text()
                    if book.tr(lang, "run_title") not in text or "make lab" not in text:
                        problems.append(f"{rel}: no '{book.tr(lang, 'run_title')}' note with make lab")
                if rel.startswith((f"{prefix}notebooks/", f"{prefix}labs/")):
                    if not page.locator("a.right-next, a.left-prev").count():
                        problems.append(f"{rel}: no previous/next link")

            # search works offline: the index is the site's own searchindex.js
            for query, want in SEARCHES[lang]:
                current["url"] = f"{prefix}search.html?q={query}"
                page.goto(f"{base}/{prefix}search.html?q={urllib.parse.quote(query)}", wait_until="load")
                page.wait_for_selector("#search-results ul.search li", timeout=30_000)
                hits = page.locator("#search-results ul.search li a").evaluate_all("els => els.map(e => e.href)")
                # Sphinx then fetches each hit's page for its summary: let those finish before the next
                # page, or leaving aborts them and they read as failed requests (net::ERR_ABORTED)
                page.wait_for_load_state("networkidle", timeout=30_000)
                assert any(f"/{prefix}{want}" in h for h in hits), (query, hits)
            page.screenshot(path=str(tmp_path / "search.png"))
        finally:
            browser.close()

    problems += [f"{rel}: {charts[rel]} charts drawn, the notebook stores {want}"
                 for rel, want in expected_charts.items() if charts[rel] != want]
    assert blocked == [], f"requests to other hosts: {blocked[:10]}"
    assert problems == [], "\n".join(problems[:40])
    assert all(len(seen) == len(pages) for seen in switches.values())
    assert charts[f"{prefix}index.html"] == 0 and "_static/plotly.min.js" not in (site / prefix / "index.html").read_text()
    # no CDN: each language's pages load plotly.js from that language's own _static
    assert (site / prefix / "_static" / "plotly.min.js").is_file()


#: searches the built site's own index must answer: (query, a page among the hits), per language
SEARCHES = {
    "en": [("acks_late", "notebooks/08_production.html")],
    "zh_CN": [("acks_late", "notebooks/08_production.html"), ("死信队列", "notebooks/06_dead_letter.html")],
}


#: lesson pages with a live view or live plot -> the least number of charts: each widget's final state
#: (2: the live view's flow and timeline panels, stop(show_final=True, panels=("flow", "timeline")))
FINAL_STATE_CHARTS = {
    **{f"notebooks/{stem}.html": 2 for stem in ("01_architecture", "02_serialization", "03_scheduling",
                                                 "04_priority_routing", "05_retries", "06_dead_letter", "08_production",
                                                 "10_workflows", "11_testing")},
    **{f"notebooks/{stem}.html": 1 for stem in ("07_monitoring",)}}

_NOTES_JS = """() => Array.from(document.querySelectorAll('.book-output-note')).map(note => {
    const title = (note.querySelector('.admonition-title') || {}).textContent || '';
    const targets = Array.from(note.querySelectorAll('a[href^="#"]')).map(a => {
        const id = decodeURIComponent(a.getAttribute('href').slice(1));
        const el = document.getElementById(id);
        return {id, exists: !!el, cell: !!el && el.classList.contains('cell'),
                charts: el ? el.querySelectorAll('div.plotly-graph-div.js-plotly-plot').length : 0};
    });
    return {title, targets};
})"""


def _check_widget_notes(page, rel: str, lang: str = "en") -> list[str]:
    """Every live-widget note links to a cell of this page that draws a chart (its final state)."""
    problems = []
    for note in page.evaluate(_NOTES_JS):
        if note["title"] not in (book.tr(lang, "live_view"), book.tr(lang, "live_plot")):
            continue
        if len(note["targets"]) != 1:
            problems.append(f"{rel}: a '{note['title']}' note with {len(note['targets'])} links to its final state")
        for t in note["targets"]:
            if not (t["exists"] and t["cell"] and t["charts"] >= 1):
                problems.append(f"{rel}: '{note['title']}' note links to #{t['id']}: exists={t['exists']}, "
                                f"a cell={t['cell']}, charts drawn in it={t['charts']}")
    return problems


def _check_internal(url: str, base: str, site: Path, page: str) -> list[str]:
    if not url.startswith(base + "/"):
        if url.startswith(("http://", "https://")) and "127.0.0.1" in url:
            return [f"{page}: link to another local server: {url}"]
        return []           # external links (the seed article, projects' sites) are not followed
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path)
    target = site / path.lstrip("/")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return [f"{page}: broken link to {path}"]
    fragment = urllib.parse.unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in _ids(target):
        return [f"{page}: link to {path}#{fragment}: no such anchor"]
    return []
