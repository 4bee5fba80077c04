"""pytest plugin that makes nbval the grader of a lab notebook.

Active with ``pytest -p celerylab.grading.plugin --nbval ...`` (what ``python -m celerylab
grade`` runs) and for ``pytest --nbval labs/...`` (``labs/conftest.py`` loads it). For each
notebook that belongs to a lab (``metadata.celerylab.lab`` or its file name) it:

* puts the master copy's check cells back (source, expected output, execution count),
  matched by their ``exercise:qN`` tag, so no edit a learner saves can turn a failing
  check green; a check cell the learner deleted fails as "missing";
* has each check cell first verify that the grader in the kernel is still the kit's code
  (:mod:`.integrity`: functions and classes compared with the files on disk) and then run
  the exercise module's own ``qN.check``, not whatever ``qN`` names in the notebook;
* runs the learner's other cells without comparing their outputs (their prints and
  experiments are theirs); a cell that raises is still reported; a cell that assigns to or
  patches the kit's objects (``q1.check = ...``, ``Exercise.check = ...``, ``setattr``,
  ``sys.modules[...]``) is not run and reported as "this cell changes the grader";
* gives each lab cell at most ``LAB_CELL_TIMEOUT`` seconds (unless ``--nbval-cell-timeout``
  says otherwise) and reports a cell stopped there as timed out, naming the cell;
* starts each notebook's kernel with ``CELERYLAB_LANG`` set to the language its expected outputs
  were recorded in (:func:`recorded_language`: English, or a translated edition's language), so a
  learner's language never changes a verdict, while the scorecard and the messages the grader
  writes itself are in the learner's language;
* collects one result per exercise from ``item.cell`` and prints a scorecard in
  ``pytest_terminal_summary`` (and to ``$CELERYLAB_GRADE_RESULTS`` as JSON, after every cell).

Master copies: ``$CELERYLAB_SOLUTIONS`` or the kit's ``solutions/`` folder.
"""
from __future__ import annotations

import copy
import os
import time
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

from .. import i18n
from ..i18n import _
from . import integrity, labs
from .scorecard import ExerciseResult, LabResult, clean, format_card, save_json

PLUGIN_NAME = "celerylab-grader"
RESULTS_ENV = "CELERYLAB_GRADE_RESULTS"
SOLUTIONS_ENV = "CELERYLAB_SOLUTIONS"
STATUS_BY_ERROR = {"ExerciseIncorrect": "incorrect", "ExerciseNotAttempted": "not attempted",
                   "GraderChanged": "incorrect"}
LAB_CELL_TIMEOUT = 40  #: seconds a lab cell may run (nbval's own default is 2000)
NBVAL_DEFAULT_TIMEOUT = 2000
KERNEL_LANG = "en"  #: the kernels' CELERYLAB_LANG for a notebook of no translated edition


def recorded_language(nb) -> str:
    """The language a notebook's stored outputs speak: a translated edition's build records it in
    the ``celerylab_edition`` metadata (``outputs_lang``: English as copied, the edition's language
    once run in it), and its labs keep their solution's; else English."""
    edition = ((nb or {}).get("metadata", {}) or {}).get("celerylab_edition") or {}
    lang = edition.get("outputs_lang") if isinstance(edition, dict) else None
    return lang if isinstance(lang, str) and lang.replace("_", "").isalnum() else KERNEL_LANG


def pytest_configure(config):
    nbval_on = getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False)
    if nbval_on and not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(Grader(config), PLUGIN_NAME)


def solutions_dir() -> Path:
    return Path(os.environ.get(SOLUTIONS_ENV) or labs.solutions_dir())


def master_path(nb, name: str) -> Path:
    """Where lab ``name``'s master copy is: ``$CELERYLAB_SOLUTIONS``, else the solution the lab
    says it was generated from (a translated edition's lab names its own edition's solution),
    else the kit's ``solutions/``."""
    if os.environ.get(SOLUTIONS_ENV):
        return Path(os.environ[SOLUTIONS_ENV]) / f"{name}.ipynb"
    origin = ((nb or {}).get("metadata", {}).get("celerylab", {}) or {}).get("generated_from")
    if origin and Path(origin).name == f"{name}.ipynb" and not Path(origin).is_absolute() and ".." not in Path(origin).parts:
        candidate = labs.repo_root() / origin
        if candidate.exists():
            return candidate
    return labs.solutions_dir() / f"{name}.ipynb"


def load_master(nb, path) -> tuple[str | None, object | None]:
    """``(lab name, master notebook)``; the master is None when there is none."""
    name = labs.lab_name(nb, path) if nb is not None else labs.lab_name({}, path)
    if not name:
        return None, None
    master = master_path(nb, name)
    if not master.exists():
        return name, None
    return name, nbformat.read(master, as_version=4)


def graded_source(master, label: str, source: str) -> str:
    """``q1.check()`` run by :func:`.integrity.graded_check`: the grader verified, then the module's own ``q1``."""
    module = labs.exercise_module(master)
    if module and source.strip() == f"{label}.check()":
        return integrity.check_cell_source(module, label)
    return source


def kit_names(master) -> set[str]:
    """Names a lab's setup cell gets from the kit: ``q1``... and the exercise module's ``__all__``."""
    names = {label for label in labs.master_checks(master)}
    module = labs.exercise_module(master)
    if module:
        import importlib

        try:
            mod = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the check cells will report it
            return names
        for name in getattr(mod, "__all__", ()):
            value = getattr(mod, name, None)
            # a Celery app or task handed to the learner is theirs to configure
            if not type(value).__module__.startswith(("celery.", "kombu.")):
                names.add(name)
    names.discard("____")
    return names


def refused_source(reason: str) -> str:
    """A cell that raises GraderChanged (one line in the notebook) instead of running."""
    message = _("this cell changes the grader: {reason}; the grader did not run it", reason=reason)
    return (f"raise type('GraderChanged', (AssertionError,), {{'_render_traceback_': "
            f"lambda self: ['GraderChanged: ' + str(self)]}})({message!r})")


def cell_timeout(item) -> float:
    value = float(item.config.option.nbval_cell_timeout)
    return LAB_CELL_TIMEOUT if value == NBVAL_DEFAULT_TIMEOUT else value


def waits_on_get(source: str) -> bool:
    return ".get(" in source


class MissingCheckError(AssertionError):
    pass


class MissingCheck(pytest.Item):
    """Stands for a master check cell the learner's notebook no longer has."""

    def __init__(self, *, label: str, **kwargs):
        super().__init__(**kwargs)
        self.label = label

    def runtest(self):
        raise MissingCheckError(_("the check cell for {label} is missing: restore the cell "
                                  "`{label}.check()` (tags: check, exercise:{label})", label=self.label))

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, self.name


def failure(item, excinfo, label: str | None) -> tuple[str, str]:
    """``(status, one-line message)`` for a cell that failed."""
    outputs = getattr(item, "test_outputs", None) or []
    error = next((o for o in outputs if o.get("output_type") == "error"), None)
    if isinstance(getattr(excinfo, "value", None), MissingCheckError):
        return "missing", str(excinfo.value)
    if error is not None and error.get("ename") == "KeyboardInterrupt" and getattr(item.parent, "timed_out", False):
        return "error", timed_out_message(item)
    if error is not None and error.get("ename") == "WorkerStartError":
        from .exercise import worker_start_message

        return "error", worker_start_message(error.get("evalue", ""))  # one line, not the worker's log
    if error is not None:
        ename, evalue = error.get("ename", "Error"), clean(error.get("evalue", ""))
        status = STATUS_BY_ERROR.get(ename, "error")
        if status == "error":
            return status, f"{ename}: {evalue}" if evalue else ename
        if label and evalue.startswith(f"{label}: "):
            evalue = evalue[len(label) + 2:]
        return status, evalue
    text = clean(str(getattr(excinfo, "value", "")))
    if "Cell outputs differ" in text:
        return "incorrect", _("the check's output differs from its expected output")
    if "Timeout" in text:
        return "error", timed_out_message(item)
    if "Kernel dead" in text or "Kernel died" in text:
        if getattr(getattr(item, "parent", None), "timed_out", False):
            return "error", _("not run: the kernel was stopped after an earlier cell timed out")
        return "error", _("the kernel died before this cell ran")
    return "error", text[:200] or _("failed")


def timed_out_message(item) -> str:
    seconds = cell_timeout(item)
    if waits_on_get(getattr(item, "original_source", item.cell.source)):
        return _("timed out: it ran past the {seconds:g} s cell timeout and was stopped (it waits for a result, "
                 "e.g. `.get()`: with no worker running for that queue it waits forever; start one, or pass "
                 "timeout=)", seconds=seconds)
    return _("timed out: it ran past the {seconds:g} s cell timeout and was stopped", seconds=seconds)


class Grader:
    def __init__(self, config):
        self.config = config
        self.results: dict[str, LabResult] = {}
        # by item object: node ids of notebooks in different folders can be the same
        self.items: dict[pytest.Item, tuple[str, str | None, str]] = {}  # item -> (notebook, label, cell name)
        self.pending: dict[str, set[pytest.Item]] = defaultdict(set)
        self.results_path = os.environ.get(RESULTS_ENV)

    def save(self) -> None:
        if self.results_path:
            save_json(list(self.results.values()), self.results_path)

    # -- collection ------------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(self, collector):
        outcome = yield
        report = outcome.get_result()
        path = getattr(collector, "path", None)
        if report.failed and path is not None and str(path).endswith(".ipynb"):
            key = str(Path(path).resolve())
            name, master = load_master(None, path)
            result = LabResult(notebook=key, lab=name, state="error")
            if master is not None:
                result.exercises = {label: ExerciseResult(label, "not run") for label in labs.master_checks(master)}
            lines = [line for line in str(report.longrepr).splitlines() if line.strip()]
            result.problems.append(_("could not read the notebook: {error}",
                                     error=clean(lines[-1]) if lines else _("unknown error")))
            self.results[key] = result
            self.save()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        from nbval.plugin import IPyNbCell

        by_file: dict = {}
        for item in items:
            if isinstance(item, IPyNbCell):
                by_file.setdefault(item.parent, []).append(item)
        for nbfile, cells in by_file.items():
            key = str(Path(nbfile.path).resolve())
            name, master = load_master(nbfile.nb, nbfile.path)
            if master is None:
                if nbfile.nb.get("metadata", {}).get("celerylab", {}).get("lab"):
                    self.results[key] = LabResult(notebook=key, lab=name, state="error", problems=[
                        _("no master copy of lab {name} in {folder} (set {variable})", name=name,
                          folder=solutions_dir(), variable=SOLUTIONS_ENV)])
                continue  # not a lab: plain nbval
            checks = labs.master_checks(master, f"master {name}")
            kit = kit_names(master)
            result = LabResult(notebook=key, lab=name,
                               exercises={label: ExerciseResult(label) for label in checks})
            seen = set()
            for item in cells:
                label = labs.exercise_label(item.cell) if labs.is_check(item.cell) else None
                if label in checks:
                    cell = copy.deepcopy(checks[label])
                    cell.source = graded_source(master, label, cell.source)
                    item.cell = cell
                    item.options = defaultdict(bool, check=True)
                    seen.add(label)
                else:
                    label = None
                    cell = copy.deepcopy(item.cell)
                    cell.outputs = []  # the learner's own cells: run, not compared
                    reason = integrity.changes_to_grader(cell.source, kit)
                    item.original_source = cell.source
                    if reason:
                        cell.source = refused_source(reason)
                    item.cell = cell
                    item.options["check"] = False
                source = getattr(item, "original_source", item.cell.source)
                first = next((line.strip() for line in source.splitlines() if line.strip()), "")
                self.items[item] = (key, label, _("code cell {number} ({start})", number=item.cell_num + 1,
                                                  start=first[:40]))
                self.pending[key].add(item)
            position = items.index(cells[-1]) + 1
            for label in [label for label in checks if label not in seen]:
                missing = MissingCheck.from_parent(nbfile, name=f"{label} check cell missing", label=label)
                items.insert(position, missing)
                position += 1
                self.items[missing] = (key, label, _("{label} check cell", label=label))
                self.pending[key].add(missing)
            self.results[key] = result
        self.save()

    # -- running ---------------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        """nbval starts a notebook's kernel in its first cell's setup: with CELERYLAB_LANG set to the
        language the expected outputs were recorded in (:func:`recorded_language`); this process
        (the scorecard, the grader's own messages) keeps the learner's language.
        """
        saved = os.environ.get(i18n.ENV)
        os.environ[i18n.ENV] = recorded_language(getattr(item.parent, "nb", None))
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(i18n.ENV, None)
            else:
                os.environ[i18n.ENV] = saved

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        info = self.items.get(item)
        if info is not None:
            result = self.results[info[0]]
            if result.state == "pending":
                result.state, result.started_at = "running", time.time()
                self.save()
        yield
        if info is not None:
            pending = self.pending[info[0]]
            pending.discard(item)
            if not pending:
                self.results[info[0]].state = "done"
                self.save()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        """Lab cells get LAB_CELL_TIMEOUT unless the command line sets --nbval-cell-timeout."""
        option = item.config.option
        saved = getattr(option, "nbval_cell_timeout", None)
        if item in self.items and saved is not None:
            option.nbval_cell_timeout = cell_timeout(item)
        try:
            yield
        finally:
            if saved is not None:
                option.nbval_cell_timeout = saved

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        info = self.items.get(item)
        if info is None or call.when == "teardown":
            return
        report = outcome.get_result()
        if call.when == "setup" and report.passed:
            return
        key, label, name = info
        result = self.results[key]
        excinfo = call.excinfo
        if excinfo is not None and excinfo.errisinstance(pytest.skip.Exception) and label is None:
            return
        if excinfo is None:
            if label:
                result.record(label, "passed")
        else:
            status, message = failure(item, excinfo, label)
            if label:
                result.record(label, status, message)
            else:
                result.problems.append(f"{name}: {message}")
        self.save()

    def pytest_sessionfinish(self, session, exitstatus):
        for result in self.results.values():
            if result.state == "running":
                result.state = "done"
        self.save()

    def pytest_terminal_summary(self, terminalreporter):
        if not self.results:
            return
        terminalreporter.section("celerylab scorecard")
        for result in self.results.values():
            try:
                name = os.path.relpath(result.notebook)
            except ValueError:
                name = result.notebook
            terminalreporter.write_line(format_card(result, name))
