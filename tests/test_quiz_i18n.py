"""The quiz and the cheat sheet in the learner's language (issue 18).

The questions are data (Question objects), not ``_()`` calls: ``catalogs.kit_entries()`` extracts
their texts from the loaded bank, and the widgets, the checkers' verdicts, the links and the cheat
sheet show them through ``celerylab.i18n``. The Chinese tests use a temporary catalog in which every
kit message is translated as ``〔English〕``, so that each shown text proves it went through the
catalog (the real translations are merged into locale/zh_CN/kit.po separately).
"""
from __future__ import annotations

import ast
import html
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from celerylab import i18n, quiz
from celerylab.quiz import __main__ as cli
from celerylab.quiz import bank, cheatsheet
from celerylab.quiz.check import Verdict
from celerylab.quiz.widgets import _md_code, shown_title
from celerylab.translation import catalogs

ROOT = Path(__file__).resolve().parents[1]
LANG = "zh_CN"


def zh(text: str) -> str:
    """The temporary catalog's translation of ``text``."""
    return f"〔{text}〕"


@pytest.fixture(scope="module")
def kit_entries():
    return catalogs.kit_entries()


@pytest.fixture
def marked(kit_entries, tmp_path, monkeypatch):
    """CELERYLAB_LANG=zh_CN with a catalog that translates every kit message (and quiz text) as 〔English〕."""
    catalog = Catalog(locale=LANG)
    for entry in kit_entries:
        catalog.add(entry.text, zh(entry.text), context=entry.context)
    po = tmp_path / "locale" / LANG / "kit.po"
    po.parent.mkdir(parents=True)
    with po.open("wb") as fh:
        write_po(fh, catalog, width=0)
    monkeypatch.setattr(i18n, "catalog_path", lambda lang: tmp_path / "locale" / lang / "kit.po")
    monkeypatch.setenv(i18n.ENV, LANG)
    i18n.reload()
    assert i18n.language() == LANG
    yield
    i18n.reload()


# -- extraction ------------------------------------------------------------------------------
@pytest.mark.parametrize("q", quiz.QUESTIONS, ids=lambda q: q.id)
def test_every_text_of_every_question_is_extracted(q, kit_entries):
    have = {(e.context, e.text) for e in kit_entries}
    context = f"celerylab/quiz/{q.id}"
    texts = [q.prompt, *q.choices, q.claim, q.explanation, q.cheat]
    for text in filter(None, texts):
        assert (context, text) in have, (context, text)
    if q.section:
        assert (catalogs.QUIZ_SECTIONS, q.section) in have
    assert (catalogs.QUIZ_SECTIONS, bank.TITLES[q.lesson]) in have


def test_the_quiz_entries_are_one_per_distinct_text_with_their_module(kit_entries):
    quiz_entries = [e for e in kit_entries if e.context.startswith("celerylab/quiz/")
                    and not e.context.endswith(".py")]
    keys = [(e.context, e.text) for e in quiz_entries]
    assert len(keys) == len(set(keys))
    assert {e.text for e in quiz_entries if e.context == catalogs.QUIZ_SECTIONS} == {
        *bank.TITLES.values(), *(q.section for q in quiz.QUESTIONS if q.section)}
    where = {e.context: e.where[0] for e in quiz_entries}
    assert where["celerylab/quiz/faq-not-lost"] == "celerylab/quiz/bank.py"
    assert where["celerylab/quiz/alert-silence"] == "celerylab/quiz/topics/alerting.py"
    assert all((ROOT / path).is_file() for path in where.values())
    # the checkers' verdicts are _() templates, extracted by Babel with their module as context
    assert ("celerylab/quiz/bank.py", "backoff(0..8) = {got}; expected doubling from 1 s, capped at 60") in {
        (e.context, e.text) for e in kit_entries}


def test_every_checker_verdict_is_a_template():
    """Each AssertionError a checker of bank.py raises carries an _() template (translated when shown)."""
    tree = ast.parse((ROOT / "celerylab/quiz/bank.py").read_text(encoding="utf-8"))
    raises = [n for n in ast.walk(tree) if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call)
              and getattr(n.exc.func, "id", None) == "AssertionError"]
    assert len(raises) >= 15
    bad = [n.lineno for n in raises if not (n.exc.args and isinstance(n.exc.args[0], ast.Call)
                                            and getattr(n.exc.args[0].func, "id", None) == "_")]
    assert not bad, f"bank.py lines {bad}: raise AssertionError(_('... {{field}} ...', field=value))"


# -- English stays as it was ---------------------------------------------------------------------
def test_english_is_unchanged(english):
    assert cheatsheet.render() == cheatsheet.render("en") == cheatsheet.path().read_text(encoding="utf-8")
    q = quiz.by_id()["l08-prefetch"]
    assert q.where == q.where_in("en") == "08a · Workers, section “3. Prefetching”"
    assert q.link() == "../notebooks/08a_workers.ipynb#3.-Prefetching"
    assert quiz.by_id()["myth-warm"].right_answer_in() == "Fact"
    verdict = quiz.run_code(quiz.by_id()["l05-backoff"], "def backoff(retries):\n    return 2 ** retries")
    assert verdict.message == ("backoff(0..8) = [1, 2, 4, 8, 16, 32, 64, 128, 256]; expected doubling from 1 s, "
                               "capped at 60")


# -- the learner's language -----------------------------------------------------------------------
def test_where_and_links_are_translated(marked):
    q = quiz.by_id()["l08-prefetch"]
    assert q.where == zh("{title}, section “{section}”").format(title=f"08a · {zh('Workers')}",
                                                                section=zh("3. Prefetching"))
    assert q.link() == f"../notebooks/08a_workers.ipynb#{zh('3. Prefetching').replace(' ', '-')}"
    assert q.link(lang="en") == "../notebooks/08a_workers.ipynb#3.-Prefetching"
    assert q.where_in("en") == "08a · Workers, section “3. Prefetching”"
    assert quiz.by_id()["faq-not-lost"].where_in("en").startswith("08 · Production")


@pytest.mark.parametrize("qid", ["faq-not-lost", "myth-warm", "l05-backoff"])
def test_feedback_shows_the_translated_texts(marked, qid):
    q = quiz.by_id()[qid]
    right = quiz.feedback_html(q, Verdict(True, i18n._("Correct.")))
    assert _md_code(zh(q.explanation)) in right
    assert html.escape(q.where) in right and html.escape(q.link()) in right
    revealed = quiz.feedback_html(q, Verdict(False, i18n._("The answer:")), reveal=True)
    assert _md_code(zh(q.explanation)) in revealed
    if q.kind == "code":
        assert html.escape(q.solution.strip()) in revealed   # code stays code
    else:
        assert f"<b>{_md_code(zh(q.right_answer))}</b>" in revealed


def test_the_cards_show_the_translated_question(marked):
    pytest.importorskip("ipywidgets")
    shown = quiz.show(ids=["faq-not-lost", "myth-warm", "l05-backoff"], title="08a · Workers")
    choice, myth, code = shown.cards
    assert _md_code(zh(choice.question.prompt)) in choice.prompt.value
    assert [label for label, _ in choice.input.options] == [zh(c) for c in choice.question.choices]
    assert [value for _, value in choice.input.options] == list(range(len(choice.question.choices)))
    assert _md_code(zh(myth.question.claim)) in myth.prompt.value
    assert [label for label, _ in myth.input.options] == [zh("Myth"), zh("Fact")]
    assert code.input.value == code.question.stub                       # the answer box holds code
    assert html.escape(f"08a · {zh('Workers')}") in shown.score.value
    assert shown_title("Round 1: the seed's FAQ") == zh("Round 1: the seed's FAQ")
    assert shown_title("my own title") == "my own title"  # not in the catalog: as it is


def test_checker_verdicts_are_translated(marked):
    backoff = quiz.by_id()["l05-backoff"]
    got = quiz.run_code(backoff, "def backoff(retries):\n    return 2 ** retries")
    assert got.message == zh("backoff(0..8) = {got}; expected doubling from 1 s, capped at 60").format(
        got=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    assert quiz.run_code(backoff, "x = 1").message == zh("define `{name}`").format(name="backoff")
    beat = quiz.run_code(quiz.by_id()["l03-beat"], "beat_schedule = {}")
    assert beat.message == zh("beat_schedule should hold one entry: {entry}").format(
        entry="{'name': {'task': ..., 'schedule': ...}}")
    no_limit = "def make_task(app):\n    @app.task\n    def job():\n        return 1\n    return job"
    soft = quiz.run_code(quiz.by_id()["l08-soft-code"], no_limit)
    assert soft.message.startswith("〔soft_time_limit=None, time_limit=None: ")


def test_the_cheat_sheet_in_chinese(marked, tmp_path):
    english = cheatsheet.render("en")
    text = cheatsheet.render(LANG)
    assert text != english and cheatsheet.render() == english  # the env does not change docs/cheatsheet.md
    head = text.split("\n## ", 1)[0]
    assert "celerylab/quiz/bank.py" in head and f"locale/{LANG}/kit.po" in head and "--lang zh_CN" in head
    assert f"# {zh('Celery cheat sheet')}" in head
    assert f"## {zh('The interview questions from the seed article')}" in text
    for q in quiz.QUESTIONS:
        assert zh(q.cheat or q.explanation) in text, q.id
        assert q.link("../notebooks/", LANG) in text, q.id
        assert f"## {q.lesson} · {zh(bank.TITLES[q.lesson])}" in text or q.round != "lessons"
        if q.kind == "code":
            assert "\n".join("  " + line for line in q.solution.strip().splitlines()) in text
    myth = quiz.by_id()["myth-warm"]
    assert f"〔- {zh('**Fact.**')} “{zh(myth.claim)}” {zh(myth.explanation)} " in text

    target = tmp_path / "zh" / "docs" / "cheatsheet.md"
    assert cli.main(["cheatsheet", "--lang", "zh_CN", "--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == cheatsheet.render(LANG, target)
    assert cli.main(["cheatsheet", "--lang", "zh", "--output", str(target), "--check"]) == 0
    target.write_text("stale\n", encoding="utf-8")
    assert cli.main(["cheatsheet", "--lang", "zh_CN", "--output", str(target), "--check"]) == 1
    assert cheatsheet.is_current()  # the English sheet was not touched


def test_the_real_catalog_translates_the_quiz(english):
    """Once the quiz's translations are merged into locale/zh_CN/kit.po, the Chinese sheet has no question
    left in English (skipped until then)."""
    questions = [q for q in quiz.QUESTIONS if i18n.translate(q.explanation, LANG) != q.explanation]
    if not questions:
        pytest.skip(f"the quiz is not in locale/{LANG}/kit.po yet")
    missing = [q.id for q in quiz.QUESTIONS
               if i18n.translate(q.cheat or q.explanation, LANG) == (q.cheat or q.explanation)]
    assert not missing, missing
    text = cheatsheet.render(LANG)
    assert "## The interview questions" not in text and "section “" not in text
