"""The grader in the learner's language: same verdicts, report in CELERYLAB_LANG (issue 18).

The master copies' expected outputs (``solutions/``, ``zh/solutions/``) were recorded in English,
so the kernels nbval starts to grade a lab run with ``CELERYLAB_LANG=en`` whatever the learner
set; what the grader prints itself (the scorecard, the summary) speaks the learner's language.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from celerylab import i18n
from celerylab.grading import labs
from celerylab.grading.scorecard import ExerciseResult, LabResult, format_card

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_first_tasks.ipynb"
LAB = ROOT / "labs" / "00_first_tasks.ipynb"
LANG = "zh_CN"
CJK = re.compile(r"[\u4e00-\u9fff]")


def cell(nb, cell_id):
    return next(c for c in nb.cells if c.get("id") == cell_id)


def right_answers() -> nbformat.NotebookNode:
    """Lab 00 (the fastest) as a learner saves it with the solution's answers."""
    solution = nbformat.read(SOLUTION, as_version=4)
    nb = nbformat.read(LAB, as_version=4)
    for cid in ("q1-answer", "q2-answer", "q3-answer"):
        cell(nb, cid).source = labs.strip_solutions(
            cell(solution, cid).source.replace(labs.BEGIN, "").replace(labs.END, ""))
    return nb


def test_a_correct_lab_passes_under_chinese_and_the_report_is_chinese(tmp_path, zh):
    nbformat.write(right_answers(), tmp_path / "00_first_tasks.ipynb")
    scores = tmp_path / "scores.csv"
    env = {**os.environ, i18n.ENV: LANG}
    proc = subprocess.run([sys.executable, "-m", "celerylab", "grade", "--csv", str(scores),
                           str(tmp_path / "00_first_tasks.ipynb")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    # the kernel ran in English: its "Correct: q1: ..." lines matched the master's expected outputs
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head = i18n._("{name} (lab {lab}): {passed}/{total} exercises passed", name="00_first_tasks.ipynb",
                  lab="00_first_tasks", passed=3, total=3)
    summary = i18n._("{count} notebooks graded, {complete} with every exercise passed; scores in {csv}",
                     count=1, complete=1, csv=scores)
    passed = i18n._("passed")
    assert proc.stdout.splitlines() == [head, f"  q1  {passed}", f"  q2  {passed}", f"  q3  {passed}", summary]
    # ... and what the grader printed itself is Chinese
    assert CJK.search(head) and CJK.search(summary) and CJK.search(passed), proc.stdout
    assert "exercises passed" not in proc.stdout and "notebooks graded" not in proc.stdout
    # the CSV is data: its statuses stay the English words other tools read
    assert scores.read_text().splitlines()[1].split(",")[5:8] == ["passed", "passed", "passed"]


def test_the_scorecard_speaks_the_learners_language(zh):
    result = LabResult(notebook="x.ipynb", lab="00_first_tasks", state="timed out",
                       exercises={"q1": ExerciseResult("q1", "passed"),
                                  "q2": ExerciseResult("q2", "not run", "the notebook ran longer than 5 s")})
    card = format_card(result, "x.ipynb").splitlines()
    assert card[0] == (i18n._("{name} (lab {lab}): {passed}/{total} exercises passed", name="x.ipynb",
                              lab="00_first_tasks", passed=1, total=2) + " " + i18n._("(stopped: time limit)"))
    assert card[2].startswith(f"  q2  {i18n._('not run')}")
    assert CJK.search(card[0]) and CJK.search(card[2])


def test_the_check_note_comes_out_in_the_labs_language():
    check = nbformat.v4.new_code_cell("q1.check()", metadata={"tags": ["check", "exercise:q1"]})
    check.id = "q1-check"
    assert labs.check_note(check).source == labs.CHECK_NOTE  # English labs stay as they were
    assert labs.check_note(check, "en").source == labs.CHECK_NOTE
    note = labs.check_note(check, LANG).source
    assert note == i18n.translate(labs.CHECK_NOTE, LANG)
    assert CJK.search(note) and "`Correct: ...`" in note
