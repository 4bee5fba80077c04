"""Errors the kit reports to a learner as one clear line, not a traceback wall.

Every error the kit raises on bad input is a :class:`CeleryLabError`. In a notebook IPython
shows just ``PortInUseError: <message>`` (via ``_render_traceback_``) and the cell still fails,
so nbval and the grader see the error; on the command line ``python -m celerylab`` prints the
message and exits with status 2.
"""
from __future__ import annotations


class CeleryLabError(Exception):
    """Base class: the message alone says what went wrong and what to do."""

    def one_line(self) -> str:
        return f"{type(self).__name__}: {self}"

    def _render_traceback_(self) -> list[str]:
        """IPython's hook: the traceback it shows for this error is this one line."""
        return [self.one_line()]


class PortInUseError(CeleryLabError):
    pass


class LupaMissingError(CeleryLabError):
    pass


class BrokerUnreachableError(CeleryLabError):
    pass


class UnknownPoolError(CeleryLabError):
    pass


class WorkerStartError(CeleryLabError):
    pass
