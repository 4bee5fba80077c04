"""Exercises for labs/00_first_tasks.ipynb: define a task, route it to a queue, retry it.

In the lab::

    from celerylab.exercises.l00_first_tasks import *   # q1, q2, q3, ____, flaky_download
    q1.check(); q1.hint(); q1.hint(2); q1.solution()
"""
from __future__ import annotations

import threading
from collections import Counter

from celerylab.grading import Attempts, RetriesOn, RoutesToQueue, TaskReturns, bind
from celerylab.grading.kinds import fmt_call
from celerylab.grading.outcomes import ExerciseIncorrect, ____  # noqa: F401 - the blank learners fill in

from celerylab.i18n import N_, _

from ._bind import BindHint


class _FlakyServer:
    """A pretend web server: each URL fails with ConnectionError on its first download.

    URLs containing "down" always fail; strings that are not URLs raise ValueError.
    """

    def __init__(self):
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def download(self, url):
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"not a URL: {url!r}")
        with self._lock:
            self.calls[url] += 1
            attempt = self.calls[url]
        if "down" in url or attempt == 1:
            raise ConnectionError(f"connection to {url} was reset")
        return f"<html>{url}</html>"


_server = _FlakyServer()


def flaky_download(url):
    """Return the page at ``url``; the first download of each URL fails with ConnectionError."""
    return _server.download(url)


class AddTask(BindHint, TaskReturns):
    task = "add"
    cases = [((2, 3), 5), ((-7, 7), 0), ((0.5, 0.25), 0.75)]
    wrong_value = N_("{call} returned {got}, which is not the sum of its arguments")
    correct = N_("add runs on a worker and returns the sum.")
    hints = (
        N_("A task is a function decorated with `@app.task`. Inside, it is plain Python."),
        N_("The body is a single `return` statement."),
    )
    solution_text = """
        @app.task
        def add(x, y):
            return x + y
    """


class SendToReports(RoutesToQueue):
    sender = "send_report"
    args = (7,)
    queue = "reports"
    task = "make_report"
    correct = N_("send_report sends make_report to the 'reports' queue, and a worker there runs it.")
    hints = (
        N_("`make_report.delay(n)` takes no options: it goes where the task is routed, here the default queue "
           "`celery`. "
           "`apply_async` takes the same arguments as a list, plus options."),
        N_("`apply_async(args=[n], queue=...)` picks the queue; return what it returns."),
    )
    solution_text = """
        def send_report(n):
            return make_report.apply_async(args=[n], queue="reports")
    """

    def succeeded(self, call, outcome):
        # the message must carry make_report(n) for send_report(n): the right queue is not enough
        want = fmt_call(self.task, self.args)
        if call != want:
            raise ExerciseIncorrect(_("{sender} sent {call}; it should send {want}",
                                      sender=fmt_call(self.sender, self.args), call=call, want=want))
        return super().succeeded(call, outcome)


class RetryOnce(BindHint, RetriesOn):
    task = "fetch"
    countdown = 0.5
    window = (0.3, 2.0)
    scenarios = [
        Attempts(("https://example.com/flaky",), retries=1, succeeds=True,
                 value="<html>https://example.com/flaky</html>", about=N_("a server that fails once")),
        Attempts(("https://example.com/down",), retries=1, succeeds=False, raises="ConnectionError",
                 about=N_("a server that stays down")),
        Attempts(("example.com",), retries=0, succeeds=False, raises="ValueError", about=N_("not a URL")),
    ]
    correct = N_("fetch retries once, half a second after a ConnectionError, and fails at once on other errors.")
    hints = (
        N_("`bind=True` gives the task `self`; `self.retry(...)` sends it again. "
           "Catch only `ConnectionError`: other errors should fail at once."),
        N_("`raise self.retry(exc=exc, countdown=..., max_retries=...)` inside `except ConnectionError as exc:`. "
           "Passing `exc` makes the last failure raise the ConnectionError itself."),
    )
    solution_text = """
        @app.task(bind=True)
        def fetch(self, url):
            try:
                return flaky_download(url)
            except ConnectionError as exc:
                raise self.retry(exc=exc, countdown=0.5, max_retries=1)
    """

    def prepare(self) -> None:
        _server.reset()


__all__ = ["____", "flaky_download"] + bind(globals(), AddTask, SendToReports, RetryOnce)
