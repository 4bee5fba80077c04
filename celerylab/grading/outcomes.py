"""The three outcomes of a check, and the ``____`` blank a learner fills in.

* correct: ``check()`` prints one fixed line, ``Correct: q1: ...``;
* incorrect: ``check()`` raises :class:`ExerciseIncorrect`; its message names what is wrong
  with the learner's value or behaviour, never the answer;
* not attempted: ``check()`` raises :class:`ExerciseNotAttempted` (the ``____`` blank or a
  ``raise NotImplementedError()`` is still there).

Both exceptions are AssertionErrors, so nbval sees a failing cell, and they show in a
notebook as one red line instead of a traceback (IPython's ``_render_traceback_``).
"""
from __future__ import annotations

import re

from ..i18n import N_, _

RED, RESET = "\x1b[0;31m", "\x1b[0m"


class ExerciseError(AssertionError):
    """A check that did not pass. ``str()`` is the one line a learner (and the scorecard) sees."""

    outcome = "incorrect"

    def __init__(self, message: str, label: str | None = None):
        super().__init__(message)
        self.message = message
        self.label = label

    def __str__(self) -> str:
        return f"{self.label}: {self.message}" if self.label else self.message

    def one_line(self) -> str:
        return f"{type(self).__name__}: {self}"

    def _render_traceback_(self) -> list[str]:
        return [f"{RED}{type(self).__name__}{RESET}: {self}"]


class ExerciseIncorrect(ExerciseError):
    outcome = "incorrect"


class ExerciseNotAttempted(ExerciseError):
    outcome = "not attempted"


class _Placeholder:
    """The blank in a lab: ``answer = ____``. Checks treat it as "not attempted"."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "____"

    __str__ = __repr__


____ = PLACEHOLDER = _Placeholder()


def is_placeholder(value) -> bool:
    # by class name too, so a reloaded module's blank still counts
    return value is PLACEHOLDER or type(value).__name__ == "_Placeholder"


def describe(value, limit: int = 60) -> str:
    """``'23' (a str)``: a learner's value, short, with its type."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    kind = type(value).__name__
    if kind[:1].lower() in "aeiou":
        return _("{value} (an {kind})", value=text, kind=kind)
    return _("{value} (a {kind})", value=text, kind=kind)


_UNSTABLE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]{6,}")


#: the one wording for a task that needs ``self`` but was not declared with ``bind=True``
#: (the English msgid: show it with ``_(BIND_HINT)``; :func:`hint_for` returns it translated)
BIND_HINT = N_("use @app.task(bind=True) to get self")


def hint_for(exc: BaseException | None) -> str:
    """A fixed hint for errors with one usual cause (empty when there is none)."""
    if isinstance(exc, NameError) and "'self'" in str(exc):
        return _(BIND_HINT)
    if isinstance(exc, (ModuleNotFoundError, ImportError)) and getattr(exc, "name", None):
        return _("the package {package} is not installed here", package=repr(exc.name))
    return ""


def describe_exc(exc: BaseException | None, limit: int = 120) -> str:
    """``ValueError: bad input`` on one line (task ids and addresses blanked, so it is stable).

    Errors with one usual cause get a hint: ``NameError: name 'self' is not defined (use
    @app.task(bind=True) to get self)``.
    """
    if exc is None:
        return _("no exception")
    hint = hint_for(exc)
    if hint:
        return f"{_describe_exc(exc, limit)} ({hint})"
    return _describe_exc(exc, limit)


def _describe_exc(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split())
    text = _UNSTABLE.sub("...", text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

