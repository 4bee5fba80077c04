"""``python -m celerylab grade``: nbval grades lab notebooks; print scorecards, write a CSV.

Every notebook runs in its own kernel (nbval starts one per notebook) inside one pytest
process with :mod:`celerylab.grading.plugin`. A notebook that runs past ``time_limit`` gets
its whole process tree killed; grading goes on with the next notebook in a fresh pytest. A
notebook that is not valid JSON, or is not a lab, is reported and skipped. So one broken
notebook never stops a class.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import CeleryLabError
from ..i18n import _
from . import labs
from .plugin import LAB_CELL_TIMEOUT, RESULTS_ENV, SOLUTIONS_ENV, master_path, solutions_dir
from .scorecard import ExerciseResult, LabResult, format_card, load_json, write_csv

FINAL_STATES = ("done", "error", "timed out")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL pytest and everything under it (kernels run in their own sessions)."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    proc.wait()


def _precheck(path: Path) -> LabResult | None:
    """A result straight away for a notebook that cannot be graded, else None."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - anything: it is the learner's file
        return LabResult(notebook=str(path), lab=labs.lab_name({}, path), state="error",
                         problems=[_("could not read the notebook: {error}", error=' '.join(str(exc).split())[:160])])
    name = labs.lab_name(nb, path)
    master = master_path(nb, name) if name else None
    if master is None or not master.exists():
        return LabResult(notebook=str(path), lab=name, state="error",
                         problems=[_("not a lab notebook: no master copy {name}.ipynb in {folder}", name=name or 'NN_topic',
                                           folder=master.parent if master is not None else solutions_dir())])
    return None


def _run_batch(paths: list[Path], time_limit: float, cell_timeout: float, on_update) -> dict[str, LabResult]:
    """Grade ``paths`` in one pytest; stop at the first notebook that runs past its time limit."""
    with tempfile.TemporaryDirectory(prefix="celerylab-grade-") as tmp:
        tmp = Path(tmp)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        results_file = tmp / "results.json"
        # SOLUTIONS_ENV and CELERYLAB_LANG pass through when set: the plugin writes its report in the
        # learner's language, and starts each notebook's kernel in the language its expected outputs were
        # recorded in (plugin.recorded_language), so every language gets the same verdicts
        env = dict(os.environ, **{RESULTS_ENV: str(results_file)})
        cmd = [sys.executable, "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider",
               "-p", "celerylab.grading.plugin", "--nbval", "--nbval-current-env",
               "--nbval-cell-timeout", f"{cell_timeout:g}", "--continue-on-collection-errors",
               "-c", str(tmp / "pytest.ini"), "--rootdir", str(tmp), *map(str, paths)]
        log = open(tmp / "pytest.log", "wb")
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        hard_stop = time.monotonic() + 60 + time_limit * len(paths)
        results: dict[str, LabResult] = {}
        try:
            while True:
                finished = proc.poll() is not None
                results = {r.notebook: r for r in load_json(results_file)}
                on_update(results)
                if finished:
                    break
                late = [r for r in results.values() if r.state == "running" and r.started_at
                        and time.time() - r.started_at > time_limit]
                if late or time.monotonic() > hard_stop:
                    _kill_tree(proc)
                    results = {r.notebook: r for r in load_json(results_file)}
                    for r in results.values():
                        if r.state == "running" or (not late and r.state == "pending"):
                            r.state = "timed out"
                            for ex in r.exercises.values():
                                if ex.status == "not run":
                                    ex.message = _("the notebook ran longer than {seconds:g} s", seconds=time_limit)
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                _kill_tree(proc)
            log.close()
        if proc.returncode not in (0, 1, -signal.SIGKILL):
            tail = (tmp / "pytest.log").read_text(errors="replace").strip().splitlines()[-3:]
            for path in paths:
                if str(path) not in results or results[str(path)].state not in FINAL_STATES:
                    results[str(path)] = LabResult(notebook=str(path), state="error", problems=[
                        _("not graded: pytest exited with status {status}: {log}", status=proc.returncode,
                          log=' / '.join(tail))])
        return results


def grade(paths, time_limit: float = 300, cell_timeout: float = LAB_CELL_TIMEOUT, on_result=None) -> list[LabResult]:
    """Grade notebooks; ``on_result(result)`` is called for each, in order, as soon as it is known."""
    paths = [Path(p).resolve() for p in paths]
    final: dict[str, LabResult] = {}
    shown = 0

    def update(partial: dict[str, LabResult]) -> None:
        nonlocal shown
        for key, r in partial.items():
            if r.state in FINAL_STATES and key not in final:
                final[key] = r
        while shown < len(paths) and str(paths[shown]) in final:
            if on_result:
                on_result(final[str(paths[shown])])
            shown += 1

    for path in paths:
        early = _precheck(path)
        if early is not None:
            final[str(path)] = early
    update({})
    todo = [p for p in paths if str(p) not in final]
    while todo:
        got = _run_batch(todo, time_limit, cell_timeout, update)
        update(got)
        left = [p for p in todo if str(p) not in final]
        if len(left) == len(todo):  # no progress: don't loop forever
            for p in left:
                update({str(p): LabResult(notebook=str(p), state="error", problems=[_("not graded: pytest stopped early")])})
            break
        todo = left
    for r in final.values():  # what never ran says so
        for ex in r.exercises.values():
            if ex.status == "not run" and not ex.message:
                ex.message = _("the notebook stopped before this check") if r.state != "done" else ""
    return [final[str(p)] for p in paths]


def find_notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def command(args) -> int:
    """The ``grade`` subcommand (see ``python -m celerylab grade --help``)."""
    if args.solutions:
        os.environ[SOLUTIONS_ENV] = str(Path(args.solutions).resolve())
    base = None
    if args.class_dir:
        base = Path(args.class_dir)
        if not base.is_dir():
            raise CeleryLabError(_("--class {folder}: no such folder", folder=args.class_dir))
        paths = find_notebooks(base) + [Path(p) for p in args.paths]
        if not paths:
            raise CeleryLabError(_("--class {folder}: no notebooks in it", folder=args.class_dir))
    else:
        paths = [Path(p) for p in args.paths] or sorted(labs.labs_dir().glob("[0-9][0-9]_*.ipynb"))
        if not paths:
            raise CeleryLabError(_("no lab notebooks to grade: give paths, or run `make labs` first"))
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CeleryLabError(_("no such notebook: {paths}", paths=', '.join(missing)))

    def show(result: LabResult) -> None:
        name = os.path.relpath(result.notebook, base) if base else os.path.relpath(result.notebook)
        print(format_card(result, name), flush=True)

    results = grade(paths, time_limit=args.time_limit, cell_timeout=min(args.cell_timeout, args.time_limit),
                    on_result=show)
    complete = sum(r.ok for r in results)
    if args.csv:
        write_csv(results, args.csv, base=base)
    if len(results) > 1 or args.csv:
        if args.csv:
            print(_("{count} notebooks graded, {complete} with every exercise passed; scores in {csv}",
                    count=len(results), complete=complete, csv=args.csv))
        else:
            print(_("{count} notebooks graded, {complete} with every exercise passed", count=len(results),
                    complete=complete))
    return 0 if complete == len(results) else 1


__all__ = ["ExerciseResult", "LabResult", "command", "find_notebooks", "grade"]
