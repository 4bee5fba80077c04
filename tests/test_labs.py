"""Labs: generated from the solutions and current; nbval grades them; scorecards and class CSVs.

The notebook runs go through subprocesses (nbval's own kernels), several notebooks per
pytest run, to stay inside the time budget on a small machine.
"""
from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

from celerylab.__main__ import main as cli
from celerylab.errors import CeleryLabError
from celerylab.grading import labs
from celerylab.grading.scorecard import ExerciseResult, LabResult, format_card, write_csv

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_first_tasks.ipynb"
LAB = ROOT / "labs" / "00_first_tasks.ipynb"
NBVAL = ["--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "tests" / "sanitize.cfg")]


def run(cmd, cwd=ROOT, timeout=240):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def cell(nb, cell_id):
    return next(c for c in nb.cells if c.get("id") == cell_id)


def junit_cases(path: Path) -> list[tuple[str, str, float, str]]:
    """``(file, cell name, seconds, failure text or "")`` per nbval item."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        failure = case.find("failure")
        error = case.find("error")
        bad = failure if failure is not None else error
        text = "" if bad is None else (bad.get("message", "") + (bad.text or ""))
        out.append((case.get("classname", ""), case.get("name", ""), float(case.get("time", 0)), text))
    return out


# -- generation ---------------------------------------------------------------------------
def test_labs_are_up_to_date_with_their_solutions():
    stale = [str(p.relative_to(ROOT)) for p in labs.stale_labs()]
    assert not stale, f"out of date (run `make labs`): {stale}"


def test_solution_blocks_become_blanks():
    source = "@app.task\ndef add(x, y):\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    assert labs.strip_solutions(source) == ("@app.task\ndef add(x, y):\n    # YOUR CODE HERE\n"
                                            "    raise NotImplementedError()\n")
    top = "### BEGIN SOLUTION\nqueue = 'reports'\nlimit: int = 3\nprint(queue)\n### END SOLUTION\nq2.check()"
    assert labs.strip_solutions(top) == "# YOUR CODE HERE\nqueue = ____\nlimit = ____\nq2.check()"
    with pytest.raises(CeleryLabError, match="without ### END SOLUTION"):
        labs.strip_solutions("### BEGIN SOLUTION\nx = 1")


def test_generated_lab_blanks_answers_and_ships_unrun():
    lab = nbformat.read(LAB, as_version=4)
    solution = nbformat.read(SOLUTION, as_version=4)
    assert lab.metadata["celerylab"]["lab"] == "00_first_tasks"
    assert not any(labs.BEGIN in c.source or labs.END in c.source for c in lab.cells)
    checks = labs.master_checks(lab)
    assert list(checks) == ["q1", "q2", "q3"]
    for label, check in checks.items():
        assert check.source == f"{label}.check()"
        assert labs.check_passed(labs.master_checks(solution)[label])  # the master keeps its passing output
    for cid in ("q1-answer", "q2-answer", "q3-answer"):
        assert "raise NotImplementedError()" in cell(lab, cid).source


def test_every_lab_ships_unrun():
    """No "Correct: ..." (or any output) under a cell the learner has not run, in any lab."""
    for path in sorted((ROOT / "labs").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        ran = [c.get("id") for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
        assert ran == [], f"{path.name}: cells with outputs or an execution count: {ran}"
        assert "widgets" not in nb.metadata, path.name


def test_every_check_cell_in_a_lab_follows_a_note_that_its_stored_output_is_the_expected_one():
    """A newcomer must not read the stored "Correct: ..." under an empty exercise as their own result."""
    for path in sorted((ROOT / "labs").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        notes = [i for i, c in enumerate(nb.cells) if labs.CHECK_NOTE_TAG in labs.tags(c)]
        checks = [i for i, c in enumerate(nb.cells) if labs.is_check(c)]
        assert checks and notes == [i - 1 for i in checks], path.name
        for i in notes:
            assert nb.cells[i].cell_type == "markdown" and nb.cells[i].source == labs.CHECK_NOTE, path.name
            assert "Run the next cell" in nb.cells[i].source and "stored" not in nb.cells[i].source
        assert len({c.id for c in nb.cells}) == len(nb.cells), f"{path.name}: duplicate cell ids"
    solution = nbformat.read(SOLUTION, as_version=4)
    assert not any(labs.CHECK_NOTE_TAG in labs.tags(c) for c in solution.cells)  # the master stays as it is


def test_a_solution_whose_check_does_not_pass_cannot_make_a_lab():
    solution = nbformat.read(SOLUTION, as_version=4)
    broken = copy.deepcopy(solution)
    cell(broken, "q2-check").outputs = [nbformat.v4.new_output("error", ename="ExerciseIncorrect", evalue="no",
                                                               traceback=[])]
    with pytest.raises(CeleryLabError, match="check cell for q2 has no passing output"):
        labs.make_lab(broken, "00_first_tasks")
    extra = copy.deepcopy(solution)
    q4 = copy.deepcopy(cell(extra, "q3-check"))
    q4.id, q4.metadata["tags"] = "q4-check", ["check", "exercise:q4"]
    extra.cells.append(q4)
    with pytest.raises(CeleryLabError, match="check cells q1, q2, q3, q4 do not match the exercises q1, q2, q3"):
        labs.make_lab(extra, "00_first_tasks")


# -- nbval: every solution passes, every unsolved lab fails exactly its checks --------------
def test_solutions_pass_nbval_and_unsolved_labs_fail_only_their_checks(tmp_path):
    """Strict nbval (no grader): each run is a fresh kernel compared with outputs stored by another."""
    solutions = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    lab_files = [ROOT / "labs" / s.name for s in solutions]
    report = tmp_path / "junit.xml"
    proc = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", *NBVAL,
                f"--junitxml={report}", *map(str, solutions + lab_files)], timeout=600)
    cases: dict[str, list] = {}
    for classname, name, seconds, failure in junit_cases(report):
        cases.setdefault(classname, []).append((name, seconds, failure))
    for solution, lab_file in zip(solutions, lab_files):
        runs = cases[".".join(solution.relative_to(ROOT).parts)]
        assert [(n, f[:300]) for n, _, f in runs if f] == [], f"{solution.name}: {proc.stdout[-2000:]}"
        assert sum(s for _, s, _ in runs) < 25, f"{solution.name} must run in 25 s under nbval"
        code = [c for c in nbformat.read(lab_file, as_version=4).cells if c.cell_type == "code"]
        checks = {f"Cell {i}" for i, c in enumerate(code) if labs.is_check(c)}
        runs = cases[".".join(lab_file.relative_to(ROOT).parts)]
        failed = {n: f for n, _, f in runs if f}
        assert set(failed) == checks, f"{lab_file.name}: {sorted(failed)} != {sorted(checks)}"
        assert all("ExerciseNotAttempted" in f for f in failed.values()), f"{lab_file.name}: {failed}"


def learner_copy(answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The lab as a learner would save it, with some answer cells filled in."""
    nb = nbformat.read(LAB, as_version=4)
    for cid, source in (answers or {}).items():
        cell(nb, cid).source = source
    return nb


def test_pytest_nbval_on_a_lab_passes_exactly_when_the_answers_are_right(tmp_path):
    solution = nbformat.read(SOLUTION, as_version=4)
    right = learner_copy({cid: labs.strip_solutions(cell(solution, cid).source.replace(labs.BEGIN, "").replace(
        labs.END, "")) for cid in ("q1-answer", "q2-answer", "q3-answer")})
    (tmp_path / "conftest.py").write_text((ROOT / "labs" / "conftest.py").read_text())  # as in labs/
    nbformat.write(right, tmp_path / "00_first_tasks.ipynb")
    proc = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
                "00_first_tasks.ipynb"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "00_first_tasks.ipynb (lab 00_first_tasks): 3/3 exercises passed" in proc.stdout


# -- the grader: scorecards, tampering, a class folder -------------------------------------
def test_grade_a_class_folder_scorecards_and_csv(tmp_path):
    klass = tmp_path / "class"
    (klass / "alice").mkdir(parents=True)
    (klass / "bob").mkdir()
    alice = learner_copy({
        "q1-answer": "@app.task\ndef add(x, y):\n    print('debugging', x, y)\n    return x + y",
        "q2-answer": "def send_report(n):\n    return make_report.delay(n)",
        "q3-answer": "@app.task(bind=True)\ndef fetch(self, url):\n    return flaky_download(url)",
    })
    alice.cells.insert(3, nbformat.v4.new_code_cell("print('my own experiment')"))
    nbformat.write(alice, klass / "alice" / "00_first_tasks.ipynb")

    # bob saves his failing output as the check's reference, tags it raises-exception, turns
    # a check into a print, deletes another and rebinds q1: none of it may pass
    bob = learner_copy()
    q1_check = cell(bob, "q1-check")
    q1_check.metadata["tags"].append("raises-exception")
    q1_check.outputs = [nbformat.v4.new_output(
        "error", ename="ExerciseNotAttempted", traceback=[],
        evalue="q1: `add` still raises NotImplementedError: write your code there")]
    passing = cell(nbformat.read(SOLUTION, as_version=4), "q2-check").outputs[0]["text"].strip()
    cell(bob, "q2-check").source = f"print({passing!r})"
    bob.cells.remove(cell(bob, "q3-check"))
    bob.cells.insert(2, nbformat.v4.new_code_cell(
        "class Fake:\n    def check(self):\n        print('Correct: q1: add runs on a worker and returns the sum.')\n"
        "q1 = Fake()"))
    nbformat.write(bob, klass / "bob" / "00_first_tasks.ipynb")
    (klass / "carol.ipynb").write_text("{ this is not json")

    scores = tmp_path / "scores.csv"
    proc = run([sys.executable, "-m", "celerylab", "grade", "--class", str(klass), "--csv", str(scores)])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "alice/00_first_tasks.ipynb (lab 00_first_tasks): 1/3 exercises passed",
        "  q1  passed",
        "  q2  incorrect  send_report(7) sent make_report to the queue 'celery', not to 'reports'",
        "  q3  incorrect  fetch('https://example.com/flaky') raised ConnectionError and was never retried "
        "(a server that fails once)",
        "bob/00_first_tasks.ipynb (lab 00_first_tasks): 0/3 exercises passed",
        "  q1  not attempted  `add` still raises NotImplementedError: write your code there",
        "  q2  not attempted  `send_report` still raises NotImplementedError: write your code there",
        "  q3  missing        the check cell for q3 is missing: restore the cell `q3.check()` "
        "(tags: check, exercise:q3)",
        "carol.ipynb: not graded",
        "  !   could not read the notebook: Notebook does not appear to be JSON: '{ this is not json'",
        f"3 notebooks graded, 0 with every exercise passed; scores in {scores}",
    ]
    rows = list(csv.DictReader(scores.open()))
    assert [(r["notebook"], r["passed"], r["total"], r["q1"], r["q2"], r["q3"]) for r in rows] == [
        ("alice/00_first_tasks.ipynb", "1", "3", "passed", "incorrect", "incorrect"),
        ("bob/00_first_tasks.ipynb", "0", "3", "not attempted", "not attempted", "missing"),
        ("carol.ipynb", "0", "0", "", "", ""),
    ]
    assert rows[0]["messages"].startswith("q2: send_report(7) sent make_report to the queue 'celery'")


def test_a_notebook_past_its_time_limit_is_stopped_and_the_batch_goes_on(tmp_path):
    klass = tmp_path / "class"
    klass.mkdir()
    hang = learner_copy()
    hang.cells.insert(1, nbformat.v4.new_code_cell(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)  # deaf to nbval's interrupt\n"
        "time.sleep(600)"))
    nbformat.write(hang, klass / "a_00_first_tasks.ipynb")
    short = learner_copy()
    short.cells = [c for c in short.cells if c.get("id") in ("setup", "q1-check")]
    nbformat.write(short, klass / "b_00_first_tasks.ipynb")

    proc = run([sys.executable, "-m", "celerylab", "grade", "--class", str(klass), "--time-limit", "5"])
    assert proc.returncode == 1
    out = proc.stdout.splitlines()
    assert out[:4] == [
        "a_00_first_tasks.ipynb (lab 00_first_tasks): 0/3 exercises passed (stopped: time limit)",
        "  q1  not run  the notebook ran longer than 5 s",
        "  q2  not run  the notebook ran longer than 5 s",
        "  q3  not run  the notebook ran longer than 5 s",
    ]
    assert out[4:6] == [
        "b_00_first_tasks.ipynb (lab 00_first_tasks): 0/3 exercises passed",
        "  q1  not attempted  `add` is not defined yet: write it in the cell above and run that cell",
    ]
    # no kernel is left running in the class folder (nbval starts kernels there)
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(klass):
                left.append(pid)
        except OSError:
            pass
    assert left == []


def test_grade_errors_are_one_line(capsys, tmp_path):
    assert cli(["grade", str(tmp_path / "nope.ipynb")]) == 2
    assert capsys.readouterr().err == f"celerylab: no such notebook: {tmp_path / 'nope.ipynb'}\n"
    assert cli(["grade", "--class", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_scorecard_and_csv_format(tmp_path):
    result = LabResult(notebook=str(tmp_path / "x" / "00_first_tasks.ipynb"), lab="00_first_tasks", state="done",
                       exercises={"q1": ExerciseResult("q1", "passed"),
                                  "q2": ExerciseResult("q2", "incorrect", "send_report(7) sent it to 'celery'")},
                       problems=["code cell 3 (x = 1 / 0): ZeroDivisionError: division by zero"])
    assert format_card(result, "x/00_first_tasks.ipynb") == (
        "x/00_first_tasks.ipynb (lab 00_first_tasks): 1/2 exercises passed\n"
        "  q1  passed\n"
        "  q2  incorrect  send_report(7) sent it to 'celery'\n"
        "  !   code cell 3 (x = 1 / 0): ZeroDivisionError: division by zero")
    assert not result.ok
    write_csv([result], tmp_path / "s.csv", base=tmp_path)
    assert (tmp_path / "s.csv").read_text().splitlines() == [
        "notebook,lab,passed,total,state,q1,q2,messages",
        "x/00_first_tasks.ipynb,00_first_tasks,1,2,done,passed,incorrect,"
        "q2: send_report(7) sent it to 'celery' | code cell 3 (x = 1 / 0): ZeroDivisionError: division by zero",
    ]
