"""The interview-prep quiz: a well-formed bank, a current cheat sheet, answer checking that works."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from celerylab import quiz
from celerylab.quiz import cheatsheet
from celerylab.quiz.bank import LESSONS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def headings(notebook: Path) -> set[str]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    found.add(line.lstrip("#").strip())
    return found


# -- the bank ------------------------------------------------------------------------------
def test_at_least_forty_questions_with_unique_ids():
    ids = [q.id for q in quiz.QUESTIONS]
    assert len(ids) >= 40
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("q", quiz.QUESTIONS, ids=lambda q: q.id)
def test_question_is_well_formed(q):
    assert q.kind in ("choice", "myth", "code")
    assert q.round in ("faq", "lessons", "myths")
    assert q.prompt.strip() and len(q.explanation.strip()) > 20
    if q.kind == "choice":
        assert len(q.choices) >= 3 and isinstance(q.answer, int) and 0 <= q.answer < len(q.choices)
        assert len(set(q.choices)) == len(q.choices)
    elif q.kind == "myth":
        assert q.answer in (True, False) and q.claim and q.round == "myths"
    else:
        assert q.checker is not None and q.solution.strip() and q.stub.strip()


@pytest.mark.parametrize("q", quiz.QUESTIONS, ids=lambda q: q.id)
def test_question_links_to_an_existing_notebook_section(q):
    notebook = NOTEBOOKS / q.notebook
    assert notebook.exists(), f"{q.id}: {q.notebook} does not exist"
    if q.section is not None:
        assert q.section in headings(notebook), f"{q.id}: no heading {q.section!r} in {q.notebook}"
    assert q.link().startswith("../notebooks/") and " " not in q.link()


def test_every_lesson_and_round_is_covered():
    lessons = {q.lesson for q in quiz.QUESTIONS}
    assert lessons == set(LESSONS)
    for lesson in LESSONS:
        assert sum(q.lesson == lesson for q in quiz.QUESTIONS) >= 3, lesson
    rounds = quiz.rounds()
    assert len(rounds["faq"]) >= 4 and len(rounds["myths"]) >= 6
    assert sum(q.kind == "code" for q in quiz.QUESTIONS) >= 5


def test_myth_round_covers_the_seed_claims_the_course_corrects():
    claims = " ".join(q.claim.lower() for q in quiz.QUESTIONS if q.kind == "myth")
    for phrase in ("acknowledge", "streams", "higher number", "coroutines", "zerok", "utcnow"):
        assert phrase in claims, phrase
    wrong = {q.id: q.answer for q in quiz.QUESTIONS if q.kind == "myth"}
    assert wrong["myth-ack-default"] is False and wrong["myth-warm"] is True


def test_faq_round_answers_the_seed_faq():
    prompts = " ".join(q.prompt.lower() for q in quiz.rounds()["faq"])
    for topic in ("not lost", "failed", "backlog", "stops taking tasks"):
        assert topic in prompts, topic


# -- the cheat sheet -----------------------------------------------------------------------
def test_committed_cheat_sheet_is_current():
    assert cheatsheet.is_current(), "docs/cheatsheet.md is stale: run `python -m celerylab.quiz cheatsheet`"


def test_cheat_sheet_has_every_question_and_working_links(tmp_path):
    text = cheatsheet.render()
    for q in quiz.QUESTIONS:
        assert q.link() in text
    for target in {q.notebook for q in quiz.QUESTIONS}:
        assert f"../notebooks/{target}" in text
    written = cheatsheet.write(tmp_path / "sheet.md")
    assert cheatsheet.is_current(written)
    written.write_text(text + "edited by hand\n")
    assert not cheatsheet.is_current(written)


def test_cli_check_reports_a_current_sheet():
    out = subprocess.run([sys.executable, "-m", "celerylab.quiz", "cheatsheet", "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout


# -- checking answers ----------------------------------------------------------------------
CODE = [q for q in quiz.QUESTIONS if q.kind == "code"]

WRONG = {
    "faq-backlog-code": "def backlog(r, queue):\n    return r.llen(queue)",
    "l03-eta": "from datetime import datetime, timedelta\neta = datetime.utcnow() + timedelta(seconds=10)",
    "l03-beat": "beat_schedule = {'daily': {'task': 'reports.daily', 'schedule': 86400}}",
    "l03-visibility": "broker_transport_options = {'visibility_timeout': 3600}",
    "l04-routes": "task_routes = {'reports.monthly': {'queue': 'reports'}}",
    "l05-backoff": "def backoff(retries):\n    return 2 ** retries",
    "l05-idempotent": "def charge_once(store, order_id, charge):\n    charge()",
    "l08-no-loss": "conf = {'task_acks_late': True}",
    "l08-soft-code": ("import time\ndef make_task(app):\n    @app.task(soft_time_limit=10)\n    def job():\n"
                      "        time.sleep(60)\n        return 'done'\n    return job"),
}


@pytest.mark.parametrize("q", CODE, ids=lambda q: q.id)
def test_code_answers_right_wrong_and_broken(q):
    assert quiz.run_code(q, q.solution).correct, quiz.run_code(q, q.solution).message
    wrong = quiz.run_code(q, WRONG[q.id])
    assert not wrong.correct and wrong.message and "Traceback" not in wrong.message
    broken = quiz.run_code(q, "def oops(:\n    pass")
    assert not broken.correct and broken.message.startswith("your code does not run: SyntaxError")
    raising = quiz.run_code(q, "raise KeyError('nope')")
    assert not raising.correct and raising.message == "your code raised KeyError: 'nope'"
    assert quiz.run_code(q, q.stub).message == "write your answer in the box first"


def test_every_code_question_has_a_wrong_answer_in_this_test():
    assert {q.id for q in CODE} == set(WRONG)


def test_an_endless_loop_is_stopped():
    q = quiz.by_id()["l05-backoff"]
    verdict = quiz.run_code(q, "while True:\n    pass", timeout=0.5)
    assert not verdict.correct and "did not finish" in verdict.message


def test_wrong_messages_say_what_is_wrong_without_the_answer():
    q = quiz.by_id()["l05-backoff"]
    verdict = quiz.run_code(q, WRONG[q.id])
    assert "capped at 60" in verdict.message and "min(" not in verdict.message
    verdict = quiz.run_code(quiz.by_id()["l03-eta"], WRONG["l03-eta"])
    assert "naive" in verdict.message


@pytest.mark.parametrize("q", [q for q in quiz.QUESTIONS if q.kind != "code"], ids=lambda q: q.id)
def test_choice_answers(q):
    assert quiz.check(q, q.answer).correct
    if q.kind == "myth":
        assert quiz.check(q, "fact" if q.answer else "myth").correct
        assert not quiz.check(q, not q.answer).correct
    else:
        for i in range(len(q.choices)):
            assert quiz.check(q, i).correct is (i == q.answer)
    assert not quiz.check(q, None).correct


def test_right_answers_are_not_always_in_the_same_place():
    positions = {q.answer for q in quiz.QUESTIONS if q.kind == "choice"}
    assert len(positions) >= 3


# -- widgets ---------------------------------------------------------------------------------
def test_quiz_widget_checks_answers_and_keeps_score():
    pytest.importorskip("ipywidgets")
    q = quiz.show(ids=["l08-default-ack", "myth-ack-default", "l05-backoff"], title="demo")
    choice_card, myth_card, code_card = q.cards
    assert "0 / 3" in q.score.value
    choice_card.input.value = (choice_card.question.answer + 1) % len(choice_card.question.choices)
    assert not choice_card.check().correct and "✘" in choice_card.feedback.value
    choice_card.input.value = choice_card.question.answer
    assert choice_card.check().correct and "✔" in choice_card.feedback.value
    assert "08_production.ipynb#1b.-Kill-the-whole-worker" in choice_card.feedback.value
    myth_card.input.value = 0  # "Myth"
    assert myth_card.check().correct
    code_card.input.value = "def backoff(retries):\n    return min(2 ** retries, 60)"
    assert code_card.check().correct
    assert "3 / 3" in q.score.value
    code_card.reveal()
    assert "min(2 ** retries, 60)" in code_card.feedback.value


def test_quiz_display_is_one_fixed_text_line():
    pytest.importorskip("ipywidgets")
    bundle = quiz.show(round="myths")._repr_mimebundle_()
    assert bundle["text/plain"] == f"quiz: {len(quiz.rounds()['myths'])} questions ({len(quiz.rounds()['myths'])} myth); interactive in JupyterLab"
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(ValueError, match="no questions"):
        quiz.show(lesson="99")
