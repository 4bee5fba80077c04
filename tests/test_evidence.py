"""Every quiz question names its evidence, and the evidence is there.

A question's evidence (celerylab/quiz/evidence.py) is either a lesson cell tagged
``evidence:<question id>`` whose stored output shows the answer (nbval re-checks it on every run, so
the cell must not be ``nbval-ignore-output``/``nbval-skip``), or a test function, normally in
tests/test_claims.py, that checks the claim against the installed Celery, kombu or Flower.

When tags are missing, the failure lists each one as ``question id -> notebook, expected tag``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from celerylab import quiz
from celerylab.quiz import evidence
from celerylab.quiz.bank import Question

ROOT = Path(__file__).resolve().parents[1]


def test_every_question_names_evidence_in_a_known_form():
    for q in quiz.QUESTIONS:
        ev = evidence.resolve(q)              # raises on a malformed reference
        assert ev.kind in ("cell", "test"), q.id
        if ev.kind == "cell":
            assert ev.path == f"notebooks/{q.notebook}" or q.evidence, q.id
            assert ev.name.startswith("evidence:"), q.id
        else:
            assert ev.path.startswith("tests/test_") and ev.name.startswith("test_"), q.id


def test_every_test_named_as_evidence_exists():
    tests = [(q, q.proof) for q in quiz.QUESTIONS if q.proof.kind == "test"]
    assert tests, "no question is backed by a test"
    found = evidence.problems([q for q, _ in tests])
    assert not found, evidence.report(found)


def test_every_quiz_question_has_its_evidence_cell_or_test():
    """Fails until the lesson notebooks carry every ``evidence:<id>`` tag; the message lists what is missing."""
    found = evidence.problems()
    assert not found, evidence.report(found)


def test_every_evidence_tag_in_the_notebooks_belongs_to_a_question():
    """A tag with a typo would leave its question unproved and itself unused.

    A tag may also name a question whose evidence is a test (a live demo of the same claim)."""
    wanted = {q.proof.name for q in quiz.QUESTIONS if q.proof.kind == "cell"}
    wanted |= {evidence.TAG_PREFIX + q.id for q in quiz.QUESTIONS}
    stray = []
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            for tag in cell.get("metadata", {}).get("tags") or []:
                if tag.startswith(evidence.TAG_PREFIX) and tag not in wanted:
                    stray.append(f"notebooks/{nb_path.name}: {tag} (cell {cell.get('id')})")
    assert not stray, "evidence tags no question names:\n  " + "\n  ".join(stray)


# -- the checker itself, on a made-up repository -------------------------------------------------
def _cell(tags, outputs=None, count=1, cell_type="code"):
    cell = {"cell_type": cell_type, "id": f"c{len(tags)}{count}", "metadata": {"tags": tags}, "source": "x"}
    if cell_type == "code":
        cell.update(execution_count=count, outputs=outputs if outputs is not None else [])
    return cell


def _q(qid, evidence_ref=""):
    return Question(qid, "04", None, "choice", "p?", "an explanation long enough", 0, ("a", "b", "c"),
                    evidence=evidence_ref)


@pytest.fixture
def fake_root(tmp_path):
    out = [{"output_type": "stream", "name": "stdout", "text": "band 9\n"}]
    cells = [
        _cell(["evidence:good"], out),
        _cell(["evidence:no-output"], []),
        _cell(["evidence:unrun"], out, count=None),
        _cell(["evidence:ignored", "nbval-ignore-output"], out),
        _cell(["evidence:skipped", "nbval-skip"], out),
        _cell(["evidence:markdown"], cell_type="markdown"),
    ]
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "04_priority_routing.ipynb").write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_claims.py").write_text("def test_there():\n    assert 1\n\ndef helper():\n    pass\n")
    return tmp_path


def test_checker_accepts_a_tagged_cell_with_output_and_an_existing_test(fake_root):
    qs = [_q("good"), _q("other", "notebooks/04_priority_routing.ipynb::evidence:good"),
          _q("t", "tests/test_claims.py::test_there")]
    assert evidence.problems(qs, root=fake_root) == []


@pytest.mark.parametrize("qid, ref, problem", [
    ("absent", "", "missing tag"),
    ("no-output", "", "no stored output"),
    ("unrun", "", "no stored output"),
    ("markdown", "", "no stored output"),
    ("ignored", "", "nbval-ignore-output"),
    ("skipped", "", "nbval-skip"),
    ("t", "tests/test_claims.py::test_gone", "no test function test_gone"),
    ("t", "tests/test_claims.py::helper", "no test function helper"),
    ("t", "tests/test_missing.py::test_x", "does not exist"),
    ("t", "docs/x.md::thing", "neither"),
])
def test_checker_reports_each_kind_of_missing_evidence(fake_root, qid, ref, problem):
    found = evidence.problems([_q(qid, ref)], root=fake_root)
    assert len(found) == 1 and problem in found[0][2], found
    text = evidence.report(found)
    assert f"{qid} -> " in text


def test_report_names_the_notebook_and_the_expected_tag(fake_root):
    text = evidence.report(evidence.problems([_q("absent")], root=fake_root))
    assert "absent -> notebooks/04_priority_routing.ipynb, evidence:absent: missing tag" in text


def test_cheat_sheet_and_quiz_feedback_link_each_question_to_its_evidence():
    from celerylab.quiz import cheatsheet
    from celerylab.quiz.check import Verdict
    from celerylab.quiz.widgets import feedback_html

    lines = cheatsheet.render().splitlines()
    for q in quiz.QUESTIONS:
        proof = q.proof
        line = next(line for line in lines if q.link() in line and proof.name in line)
        assert f"]({proof.link('../')})" in line, q.id
        assert proof.name in feedback_html(q, Verdict(True, "Correct.")), q.id
