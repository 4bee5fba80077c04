"""The grader's regression set: learner answers it had never seen, with the verdict each must get.

``tests/learner_answers/NN_topic.yaml`` (see its README): per lab, notebooks built from the
shipped lab with answer cells replaced, covering right-but-different, wrong, hard-coded,
broken, endless and tampering answers. All of them are graded by one ``grade()`` run (one
pytest, one kernel per notebook), as ``python -m celerylab grade --class`` would.
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from celerylab.grading import labs
from celerylab.grading.runner import grade

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted((ROOT / "tests" / "learner_answers").glob("[0-9][0-9]_*.yaml"))
SPECS = {path.stem: yaml.safe_load(path.read_text(encoding="utf-8")) for path in CASES}
VARIANTS = [(lab, i, v["name"]) for lab, spec in SPECS.items() for i, v in enumerate(spec["variants"])]


def learner_notebook(lab: str, variant: dict) -> nbformat.NotebookNode:
    """The shipped lab, with the variant's answers written in and its cells added."""
    nb = nbformat.read(ROOT / "labs" / f"{lab}.ipynb", as_version=4)
    ids = [c.get("id") for c in nb.cells]
    for cid, source in (variant.get("answers") or {}).items():
        cid = str(cid)  # YAML reads an all-digit id as a number
        assert cid in ids, f"{lab}: no cell {cid!r}"
        nb.cells[ids.index(cid)].source = source.rstrip("\n")
    for n, extra in enumerate(variant.get("insert") or []):
        ids = [c.get("id") for c in nb.cells]
        after = str(extra["after"])
        assert after in ids, f"{lab}: no cell {after!r}"
        cell = nbformat.v4.new_code_cell(extra["source"].rstrip("\n"))
        cell.id = f"extra-{n}"
        nb.cells.insert(ids.index(after) + 1, cell)
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """``{(lab, variant index): LabResult}``, all graded in one run."""
    folder = tmp_path_factory.mktemp("learners")
    paths = {}
    for lab, i, _ in VARIANTS:
        path = folder / f"v{i}" / f"{lab}.ipynb"
        path.parent.mkdir(exist_ok=True)
        nbformat.write(learner_notebook(lab, SPECS[lab]["variants"][i]), path)
        paths[(lab, i)] = path
    started = time.monotonic()
    results = grade(list(paths.values()), time_limit=150)
    elapsed = time.monotonic() - started
    by_path = {r.notebook: r for r in results}
    return {key: by_path[str(path.resolve())] for key, path in paths.items()}, elapsed


def test_the_set_covers_every_lab_and_every_kind():
    shipped = sorted(p.stem for p in (ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(SPECS) == shipped
    for lab, spec in SPECS.items():
        text = yaml.safe_dump(spec).lower()
        statuses = {e[0] for v in spec["variants"] for e in (v.get("expect") or {}).values()}
        assert "passed" in statuses, f"{lab}: no right answer"
        assert statuses - {"passed"}, f"{lab}: no wrong answer"
        assert "changes the grader" in text, f"{lab}: no tampering answer"
        master = nbformat.read(ROOT / "solutions" / f"{lab}.ipynb", as_version=4)
        for v in spec["variants"]:
            assert set(v.get("expect") or {}) <= set(labs.master_checks(master)), f"{lab}: {v['name']}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("lab,index,name", VARIANTS, ids=[f"{lab}-{name}" for lab, _, name in VARIANTS])
def test_learner_answer_gets_its_verdict(graded, lab, index, name):
    results, _ = graded
    result = results[(lab, index)]
    variant = SPECS[lab]["variants"][index]
    card = f"{name}:\n" + "\n".join(f"  {e.label} {e.status}: {e.message}" for e in result.exercises.values()) \
        + "".join(f"\n  ! {p}" for p in result.problems)
    assert result.state == "done", card
    for label, (status, *fragment) in (variant.get("expect") or {}).items():
        got = result.exercises[label]
        assert got.status == status, card
        for piece in fragment:
            assert piece in got.message, card
    for piece in variant.get("problems") or []:
        assert any(piece in p for p in result.problems), card
    if not variant.get("problems"):
        assert result.problems == [], card
    assert not result.ok or all(e[0] == "passed" for e in (variant.get("expect") or {}).values())


def test_every_notebook_is_graded_within_its_time_limit(graded):
    """Endless and blocking answers are stopped by the cell timeout, not by the notebook's time limit.

    (How long the set takes is a machine's property, not a verdict: no wall-clock bound here.)
    """
    results, _ = graded
    over = [f"{lab} variant {i}" for (lab, i), r in results.items() if r.state == "timed out"]
    assert all(r.state == "done" for r in results.values()), {k: r.state for k, r in results.items()}
    assert not over, f"stopped by the notebook time limit instead of the cell timeout: {over}"


@pytest.mark.timeout(300)
def test_a_cell_that_blocks_on_get_ends_at_the_cell_timeout_and_says_why(tmp_path):
    """``.get()`` with no worker running: stopped at the cell timeout, the cell named, the reason given."""
    solution = nbformat.read(ROOT / "solutions" / "00_first_tasks.ipynb", as_version=4)
    variant = {"answers": {"q1-answer": "@app.task\ndef add(x, y):\n    return x + y"},
               "insert": [{"after": "q1-answer", "source": "answer = add.delay(2, 3).get()  # no worker is running"}]}
    nb = learner_notebook("00_first_tasks", variant)
    nbformat.write(nb, tmp_path / "00_first_tasks.ipynb")
    started = time.monotonic()
    [result] = grade([tmp_path / "00_first_tasks.ipynb"], time_limit=120, cell_timeout=6)
    elapsed = time.monotonic() - started
    assert result.state == "done"
    [problem] = result.problems
    assert problem.startswith("code cell ") and "(answer = add.delay(2, 3).get()" in problem, problem
    assert "timed out: it ran past the 6 s cell timeout and was stopped" in problem
    assert "`.get()`: with no worker running" in problem
    assert "KeyboardInterrupt" not in problem
    assert result.exercises["q1"].status == "passed"  # the notebook went on after the stopped cell
    assert elapsed < 90
    assert labs.master_checks(solution)  # the master is untouched
    assert os.path.exists(tmp_path / "00_first_tasks.ipynb")


def test_a_worker_that_cannot_start_in_a_learners_cell_is_one_line_in_the_scorecard():
    from types import SimpleNamespace

    from celerylab.grading.plugin import failure

    evalue = ("worker lab08@host exited with status 1; log: /tmp/celerylab/lab08.log\n"
              "Traceback (most recent call last):\n  File \"/venv/celery/concurrency/eventlet.py\", line 8\n"
              "    import eventlet\nModuleNotFoundError: No module named 'eventlet'")
    item = SimpleNamespace(test_outputs=[{"output_type": "error", "ename": "WorkerStartError", "evalue": evalue}])
    assert failure(item, None, None) == ("error", "a worker with these settings could not start (ModuleNotFoundError: "
                                                  "No module named 'eventlet'): that pool's package is not installed "
                                                  "here; choose another pool")
