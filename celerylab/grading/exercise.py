"""Exercises as small declared classes (after Kaggle's learntools).

A lab's module (``celerylab/exercises/lNN_topic.py``) declares one class per question and
binds them to ``q1``, ``q2``...; the notebook imports them in one line and calls
``q1.check()``, ``q1.hint()``, ``q1.hint(2)``, ``q1.solution()``.

``check()`` reads the learner's names from the notebook's globals (or ``namespace=``), runs
the subclass's ``_check`` with everything the learner's code prints swallowed (so a stray
``print`` in a task can't change the check's stored output), then prints one fixed line.
"""
from __future__ import annotations

import io
import re
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout

from celery.app.task import Task

from ..errors import WorkerStartError
from ..i18n import N_, _
from .outcomes import ExerciseError, ExerciseIncorrect, ExerciseNotAttempted, is_placeholder

_EXC_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit)\b.*)$")


def worker_start_message(exc: BaseException | str) -> str:
    """One line for a worker that could not start: the error at the end of its log, not the trace."""
    lines = str(exc).splitlines()
    found = [m.group(1) for line in lines[1:] if (m := _EXC_LINE.match(line))]
    reason = found[-1].strip() if found else (lines[0] if lines else "WorkerStartError")
    text = " ".join(reason.split())[:160]
    if "No module named" in text:
        return _("a worker with these settings could not start ({error}): that pool's package is not installed "
                 "here; choose another pool", error=text)
    return _("a worker with these settings could not start ({error})", error=text)


class Exercise:
    """Base class. Subclasses set the class attributes and implement ``_check(ns)``."""

    label = "q?"          #: set by :func:`bind` ("q1", "q2", ...)
    hints: tuple = ()     #: shown one at a time by ``hint(n)``
    solution_text = ""    #: code shown by ``solution()``
    correct = N_("well done.")  #: the fixed text after "Correct: q1: " (shown translated)
    timeout = 5.0         #: seconds the check waits for learner code / a task

    def __init__(self, label: str | None = None):
        if label:
            self.label = label

    # -- what learners call ------------------------------------------------------------
    def check(self, namespace: dict | None = None) -> None:
        """Raise ExerciseIncorrect / ExerciseNotAttempted, or print ``Correct: ...``."""
        ns = namespace if namespace is not None else sys._getframe(1).f_globals
        swallowed = io.StringIO()
        try:
            with redirect_stdout(swallowed), redirect_stderr(swallowed):
                self._check(ns)
        except ExerciseError as exc:
            exc.label = self.label
            raise exc from None
        except WorkerStartError as exc:
            raise ExerciseIncorrect(worker_start_message(exc), self.label) from None
        print(_("Correct: {label}: {text}", label=self.label, text=_(self.correct)))

    def hint(self, n: int = 1) -> None:
        hints = [textwrap.dedent(_(h)).strip() for h in self.hints]
        if not hints:
            print(_("{label} has no hints.", label=self.label))
        elif not 1 <= n <= len(hints):
            print(_("{label} has hints 1 to {count}: try {label}.hint({n}).", label=self.label, count=len(hints),
                    n=min(max(n, 1), len(hints))))
        elif n < len(hints):
            print(_("Hint {n} of {count} for {label} (more: {label}.hint({next})):", n=n, count=len(hints),
                    label=self.label, next=n + 1) + "\n" + hints[n - 1])
        else:
            print(_("Hint {n} of {count} for {label}:", n=n, count=len(hints), label=self.label) + "\n" + hints[n - 1])

    def solution(self) -> None:
        print(_("Solution for {label}:", label=self.label) + "\n" + textwrap.dedent(self.solution_text).strip())

    def __repr__(self) -> str:
        return f"<exercise {self.label}: {self.label}.check(), {self.label}.hint(), {self.label}.solution()>"

    # -- for subclasses ----------------------------------------------------------------
    def _check(self, ns: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def value_named(self, ns: dict, name: str):
        """The learner's ``name``; not attempted while it is missing or still ``____``."""
        if name not in ns:
            raise ExerciseNotAttempted(_("`{name}` is not defined yet: write it in the cell above and run that cell",
                                         name=name))
        value = ns[name]
        if is_placeholder(value):
            raise ExerciseNotAttempted(_("`{name}` is still ____: replace the blank with your answer", name=name))
        return value

    def task_named(self, ns: dict, name: str) -> Task:
        value = self.value_named(ns, name)
        if isinstance(value, Task):
            return value
        if callable(value):
            raise ExerciseIncorrect(_("`{name}` is a plain function, not a Celery task: decorate it with @app.task",
                                      name=name))
        from .outcomes import describe

        raise ExerciseIncorrect(_("`{name}` is {value}, not a Celery task", name=name, value=describe(value)))

    def callable_named(self, ns: dict, name: str):
        value = self.value_named(ns, name)
        if not callable(value):
            from .outcomes import describe

            raise ExerciseIncorrect(_("`{name}` is {value}: it should be a function", name=name, value=describe(value)))
        return value


def bind(namespace: dict, *exercises: type[Exercise]) -> list[str]:
    """Create ``q1``, ``q2``... in ``namespace`` from exercise classes; returns their names."""
    names = []
    for number, cls in enumerate(exercises, start=1):
        label = f"q{number}"
        namespace[label] = cls(label)
        names.append(label)
    return names


def exercises_in(module) -> dict[str, Exercise]:
    """``{"q1": <exercise>, ...}`` of an exercise module, in order."""
    found = {k: v for k, v in vars(module).items() if isinstance(v, Exercise) and k == v.label}
    return dict(sorted(found.items(), key=lambda kv: int(kv[0][1:]) if kv[0][1:].isdigit() else 0))
