"""The hint every exercise whose task needs ``bind=True`` gives when it is missing.

Without ``bind=True`` a task gets no ``self``: a body that uses ``self`` fails on the worker
with ``NameError: name 'self' is not defined`` (the seed article's bug), and a function whose
first parameter is ``self`` receives the task's first argument there. Checks call
:func:`require_bind` before running the task, so the learner reads the cause, not a bare error.
"""
from __future__ import annotations

from celery.app.task import Task

from celerylab.grading.outcomes import BIND_HINT, ExerciseIncorrect
from celerylab.i18n import _

from ._process import _learner_function


def is_bound(task: Task) -> bool:
    """Whether ``task`` was declared with ``bind=True`` (its ``run`` receives the task as ``self``)."""
    real = task._get_current_object() if hasattr(task, "_get_current_object") else task  # a lazy task proxy
    return not isinstance(type(real).__dict__.get("run"), staticmethod)


def require_bind(task: Task, name: str) -> None:
    """Raise a hint naming ``bind=True`` when ``task`` uses ``self`` but is not bound.

    A task that needs no ``self`` (``fetch.retry(...)`` names the task itself) is left to the
    behaviour check.
    """
    if is_bound(task):
        return
    fn = _learner_function(task)
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    params = code.co_varnames[:code.co_argcount]
    uses_self = "self" in code.co_names or any("self" in c.co_names for c in code.co_consts
                                                if hasattr(c, "co_names"))
    if params[:1] == ("self",):
        raise ExerciseIncorrect(_("`{name}` takes `self` first, but it is not declared with bind=True, so Celery "
                                  "passes it your first argument instead: {hint}", name=name, hint=_(BIND_HINT)))
    if uses_self:
        raise ExerciseIncorrect(_("`{name}` uses `self`, which only exists in a task declared with bind=True "
                                  "(else NameError: name 'self' is not defined): {hint}, as in "
                                  "`def {name}(self, ...)`", name=name, hint=_(BIND_HINT)))


class BindHint:
    """Mixin for a check: every learner task it looks up is first checked for a missing bind=True."""

    def task_named(self, ns, name):
        task = super().task_named(ns, name)
        require_bind(task, name)
        return task
