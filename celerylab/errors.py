"""Errors the kit reports to a learner as one clear line, not a traceback wall.

Every error the kit raises on bad input is a :class:`CeleryLabError`. In a notebook,
:func:`install_notebook_handler` makes IPython print just ``CeleryLabError: <message>``;
on the command line ``python -m celerylab`` prints the message and exits with status 2.
"""
from __future__ import annotations


class CeleryLabError(Exception):
    """Base class: the message alone says what went wrong and what to do."""

    def one_line(self) -> str:
        return f"{type(self).__name__}: {self}"


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


def install_notebook_handler() -> None:
    """Show CeleryLabError in IPython as one line (no traceback). Safe to call many times."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the kit
        return
    ip = get_ipython()
    if ip is None:
        return

    def _show(shell, etype, evalue, tb, tb_offset=None):
        print(evalue.one_line(), file=__import__("sys").stderr)
        return None

    ip.set_custom_exc((CeleryLabError,), _show)
