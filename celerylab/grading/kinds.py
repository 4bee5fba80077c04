"""Reusable behaviour checks: run the learner's code on a real worker, judge what happened.

Each kind is an :class:`~celerylab.grading.exercise.Exercise` configured by class
attributes; a lab's exercise module subclasses one and fills them in:

* :class:`TaskReturns`: a task run on a worker returns the right value and type;
* :class:`RoutesToQueue`: a function sends a task to a named queue (a worker listening
  only there runs it);
* :class:`RetriesOn`: a task retries the right number of times, with the right pause,
  only for the right exception, and ends the right way;
* :class:`PriorityOrder`: one worker (one slot, prefetch 1) runs queued tasks in the
  expected order;
* :class:`DeadLetters`: failed tasks, and only those, land in a dead-letter list on the broker.

Every wait is bounded (``timeout``); code that raises, hangs or returns the wrong type is
reported in one line, and the kernel carries on.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from celery.result import AsyncResult, EagerResult

from ..i18n import N_, _
from .exercise import Exercise
from .outcomes import ExerciseIncorrect, ExerciseNotAttempted, describe, describe_exc
from .probe import Event, Outcome, Trial


def fmt_call(name: str, args=(), kwargs=None) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in (kwargs or {}).items()]
    return f"{name}({', '.join(parts)})"


def short(task_name: str) -> str:
    """``__main__.add`` -> ``add``."""
    return task_name.rsplit(".", 1)[-1]


def _a(word: str) -> str:
    """A type name with its article: ``an int``, ``a float`` (the name is code, the article is not)."""
    if word[:1].lower() in "aeiou":
        return _("an {kind}", kind=word)
    return _("a {kind}", kind=word)


def _either(names: list[str]) -> str:
    """``an int or a float``."""
    text = names[0]
    for other in names[1:]:
        text = _("{either} or {other}", either=text, other=other)
    return text


# counted words, one template per case (a translator sees each phrase whole)
def _retries(n: int) -> str:
    return _("1 retry") if n == 1 else _("{n} retries", n=n)


def _times(n: int) -> str:
    return _("1 time") if n == 1 else _("{n} times", n=n)


def _tasks(n: int) -> str:
    return _("1 task") if n == 1 else _("{n} tasks", n=n)


def _task_messages(n: int) -> str:
    return _("1 task message") if n == 1 else _("{n} task messages", n=n)


def _entries(n: int) -> str:
    return _("1 entry") if n == 1 else _("{n} entries", n=n)


def _failures(n: int) -> str:
    return _("1 failure") if n == 1 else _("{n} failures", n=n)


def _about(about: str) -> str:
    """`` (a server that fails once)`` after a call, or nothing."""
    return _(" ({about})", about=_(about)) if about else ""


class BehaviourCheck(Exercise):
    """Helpers the kinds share: call learner code, require a sent message, require success."""

    stop_timeout = 5.0  #: seconds to wait for the grader worker to stop (a task stuck in C may keep it)

    def trial(self) -> Trial:
        return Trial(self.timeout, self.stop_timeout)

    def run_learner(self, trial: Trial, call: str, fn, *args, name: str | None = None, **kwargs):
        got = trial.call(fn, *args, **kwargs)
        if got.timed_out:
            raise ExerciseIncorrect(_("{call} did not return within {seconds:g} s: "
                                      "look for an endless loop or a call that waits", call=call, seconds=self.timeout))
        if isinstance(got.error, NotImplementedError):
            raise ExerciseNotAttempted(_("`{name}` still raises NotImplementedError: write your code there",
                                         name=name or call))
        if got.error is not None:
            raise ExerciseIncorrect(_("{call} raised {error}", call=call, error=describe_exc(got.error)))
        return got.value

    def sent(self, trial: Trial, call: str, value) -> Event:
        """The publish event behind ``value``, which must be the AsyncResult of a sent task."""
        if isinstance(value, EagerResult):
            raise ExerciseIncorrect(_("{call} ran the task here in the notebook (eagerly), not on a worker: "
                                      "is task_always_eager on?", call=call))
        if not isinstance(value, AsyncResult):
            if value is None:
                raise ExerciseIncorrect(_("{call} returned None: return the AsyncResult you get when you send the task",
                                          call=call))
            raise ExerciseIncorrect(_("{call} returned {got}, not an AsyncResult: a task called like a "
                                      "function runs here in the notebook; delay() or apply_async() sends it",
                                      call=call, got=describe(value)))
        published = trial.recorder.of(value.id, "published")
        if not published:
            raise ExerciseIncorrect(_("{call} returned an AsyncResult, but no task message was sent for it", call=call))
        return published[0]

    def send(self, trial: Trial, task, args=(), kwargs=None, name: str | None = None) -> Event:
        """Send the learner's task (``name`` in the notebook) with ``delay``; its publish event."""
        call = fmt_call(f"{name or short(task.name)}.delay", args, kwargs)
        return self.sent(trial, call, self.run_learner(trial, call, task.delay, *args, **(kwargs or {})))

    def failed(self, call: str, exc: BaseException | None):
        """The error to raise for a task that failed on the worker."""
        if isinstance(exc, NotImplementedError):
            return ExerciseNotAttempted(_("`{name}` still raises NotImplementedError: write your code there",
                                          name=call.split('(')[0]))
        if type(exc).__name__ == "EncodeError":
            return ExerciseIncorrect(_("{call} returned a value the worker cannot send back as JSON ({error})", call=call,
                                       error=describe_exc(exc.__context__ or exc) if exc.args else "EncodeError"))
        return ExerciseIncorrect(_("{call} raised {error} on the worker", call=call, error=describe_exc(exc)))

    def finished(self, call: str, outcome: Outcome) -> None:
        """Raise unless the task finished (successfully or not) within the trial.

        One wording per situation, for every lab: a retry planned past the wait ("its retry
        was planned N s later"), a task still being retried, a task still running (an endless
        loop or a long sleep), a task no worker started.
        """
        # a retry shows as its message sent again (published) and as Celery's task_retry signal
        n = max(len(outcome.retried), len(outcome.published) - 1)
        if outcome.state in ("RUNNING", "NOT STARTED") and n:
            late = [d for d in outcome.retry_delays if d > self.timeout]
            if late:
                raise ExerciseIncorrect(_("{call} failed and its retry was planned {later:.0f} s later; "
                                          "the check waited {seconds:g} s", call=call, later=late[-1],
                                          seconds=self.timeout))
            raise ExerciseIncorrect(_("{call} was still being retried after {seconds:g} s "
                                      "({retries} so far): give it a max_retries", call=call, seconds=self.timeout,
                                      retries=_retries(n)))
        if outcome.state == "RUNNING":
            raise ExerciseIncorrect(_("{call} was still running on the worker after {seconds:g} s: "
                                      "look for an endless loop or a long sleep", call=call, seconds=self.timeout))
        if outcome.state == "NOT STARTED":
            raise ExerciseIncorrect(_("{call} was sent to the queue {queue}, but no worker "
                                      "started it within {seconds:g} s", call=call, queue=repr(outcome.queue),
                                      seconds=self.timeout))

    def succeeded(self, call: str, outcome: Outcome):
        self.finished(call, outcome)
        if outcome.state == "FAILURE":
            raise self.failed(call, outcome.exc)
        return outcome.value


def _exc_name(exc) -> str:
    return type(exc).__name__ if isinstance(exc, BaseException) else _("a retry without an error")


def _same(expected, got) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        try:
            return math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-12)
        except TypeError:
            return False
    return expected == got


class TaskReturns(BehaviourCheck):
    """``task`` (a learner's task) returns ``expected`` for each ``(args, expected)`` in ``cases``."""

    task = "task"
    cases: list = []
    result_types: tuple | None = None  #: accepted return types (default: the expected value's type)
    #: templates (shown with ``_()``): a lab may give its own, marked with ``N_``
    wrong_value = N_("{call} returned {got}, which is not the expected value")
    wrong_type = N_("{call} returned {got}; {expected_type} was expected")

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        with self.trial() as trial:
            sent = [(args, expected, self.send(trial, task, args, name=self.task)) for args, expected in self.cases]
            outcomes = trial.run(task.app, [pub.task_id for _, _, pub in sent])
            for args, expected, pub in sent:
                call = fmt_call(self.task, args)
                outcome = outcomes[pub.task_id]
                got = self.succeeded(call, outcome)
                if outcome.started[0].data["eager"]:
                    raise ExerciseIncorrect(_("{call} ran here in the notebook, not on the worker", call=call))
                types = self.result_types or (type(expected),)
                if isinstance(expected, (int, float)) and not isinstance(expected, bool) and self.result_types is None:
                    types = (int, float)
                if not isinstance(got, types) or isinstance(got, bool) and bool not in types:
                    names = _either([_a(t.__name__) for t in types])
                    raise ExerciseIncorrect(_(self.wrong_type, call=call, got=describe(got), expected_type=names))
                if not _same(expected, got):
                    raise ExerciseIncorrect(_(self.wrong_value, call=call, got=describe(got)))


class RoutesToQueue(BehaviourCheck):
    """``sender(*args)`` sends a task to ``queue`` and returns its AsyncResult."""

    sender = "send"
    args: tuple = ()
    queue = "celery"
    task: str | None = None  #: the learner's task that should be sent (optional)

    def _check(self, ns):
        send = self.callable_named(ns, self.sender)
        expected_task = self.task_named(ns, self.task) if self.task else None
        call = fmt_call(self.sender, self.args)
        with self.trial() as trial:
            value = self.run_learner(trial, call, send, *self.args, name=self.sender)
            pub = self.sent(trial, call, value)
            if expected_task is not None and pub.name != expected_task.name:
                raise ExerciseIncorrect(_("{call} sent the task {sent}, not {expected}", call=call,
                                          sent=repr(short(pub.name)), expected=repr(self.task)))
            # a worker on the expected queue (and on wherever the message really went, so
            # nothing is left behind in the broker) takes it; the worker reports the queue
            outcome = trial.run(value.app, [pub.task_id], queues=[self.queue])[pub.task_id]
            if outcome.queue != self.queue:
                raise ExerciseIncorrect(_("{call} sent {task} to the queue {queue}, not to {expected}", call=call,
                                          task=short(pub.name), queue=repr(outcome.queue), expected=repr(self.queue)))
            self.succeeded(fmt_call(short(pub.name), pub.data["args"]), outcome)


@dataclass
class Attempts:
    """One retry scenario: what the task should do for ``args``."""

    args: tuple
    retries: int            #: how many retries this call should get
    succeeds: bool          #: whether it should succeed in the end
    value: object = None    #: the final value when it succeeds (None: don't compare)
    raises: str = ""        #: the exception name it should end with when it fails
    about: str = ""         #: what this case is, for messages (``N_("a server that stays down")``, shown translated)


class RetriesOn(BehaviourCheck):
    """``task`` retries as each :class:`Attempts` scenario says, ``countdown`` seconds apart."""

    task = "task"
    scenarios: list = []
    countdown = 1.0
    window = (0.5, 3.0)  #: accepted pause between a failure and its retry, in seconds

    def prepare(self) -> None:
        """Reset any state the scenarios rely on (e.g. a flaky server's call counts)."""

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        self.prepare()
        lo, hi = self.window
        with self.trial() as trial:
            sent = [(s, self.send(trial, task, s.args, name=self.task)) for s in self.scenarios]
            ids = [pub.task_id for _, pub in sent]

            def too_late(rec) -> bool:  # don't wait for a retry planned minutes ahead
                return any(d > hi for t in ids for d in trial.outcome(t).retry_delays)

            outcomes = trial.run(task.app, ids, concurrency=max(2, len(ids)), give_up=too_late)
            for s, pub in sent:
                self._judge(fmt_call(self.task, s.args), s, outcomes[pub.task_id], lo, hi)

    def _judge(self, call: str, s: Attempts, o: Outcome, lo: float, hi: float) -> None:
        n = len(o.retried)
        about = _about(s.about)
        late = [d for d in o.retry_delays if d > hi]
        if late:
            raise ExerciseIncorrect(_("{call} failed and its retry was planned {later:.0f} s later; "
                                      "retry after about {countdown:g} s", call=call, later=late[0],
                                      countdown=self.countdown))
        if o.state in ("RUNNING", "NOT STARTED") and n > s.retries:
            raise ExerciseIncorrect(_("{call} was still being retried after {seconds:g} s ({retries} so far){about}: "
                                      "it should get {expected}", call=call, seconds=self.timeout,
                                      retries=_retries(n), about=about, expected=_retries(s.retries)))
        self.finished(call, o)
        if o.state == "FAILURE" and isinstance(o.exc, NotImplementedError):
            raise self.failed(call, o.exc)
        first_error = o.retried[0].data.get("exc") if o.retried else o.exc
        if n < s.retries:
            if n == 0 and o.state == "SUCCESS":
                raise ExerciseIncorrect(_("{call} returned {got} without a retry{about}; "
                                          "it should be retried {expected}", call=call, got=describe(o.value),
                                          about=about, expected=_times(s.retries)))
            if n == 0:
                raise ExerciseIncorrect(_("{call} raised {error} and was never retried{about}", call=call,
                                          error=_exc_name(o.exc), about=about))
            raise ExerciseIncorrect(_("{call} was retried {times}{about}; it should be retried {expected}",
                                      call=call, times=_times(n), about=about, expected=_times(s.retries)))
        if n > s.retries:
            if s.retries == 0:
                raise ExerciseIncorrect(_("{call} was retried {times} after {error}{about}: it should fail at once, "
                                          "without a retry", call=call, times=_times(n), error=_exc_name(first_error),
                                          about=about))
            raise ExerciseIncorrect(_("{call} was retried {times}{about}; it should be retried {expected}",
                                      call=call, times=_times(n), about=about, expected=_times(s.retries)))
        # judged by when each retry was planned for (its ETA, from the start of the failed attempt),
        # not by when the worker got to it: a loaded machine runs a retry late, never early
        for pause in o.retry_delays_from_start:
            if pause < lo:
                raise ExerciseIncorrect(_("{call} was retried {pause:.1f} s after it failed; "
                                          "wait about {countdown:g} s before the retry", call=call, pause=pause,
                                          countdown=self.countdown))
        if s.succeeds and o.state == "FAILURE":
            raise ExerciseIncorrect(_("{call} ended with {error} after {retries}{about}", call=call,
                                      error=describe_exc(o.exc), retries=_retries(n), about=about))
        if not s.succeeds and o.state == "SUCCESS":
            raise ExerciseIncorrect(_("{call} returned {got}{about}, but it should fail", call=call,
                                      got=describe(o.value), about=about))
        if not s.succeeds and s.raises and type(o.exc).__name__ != s.raises:
            raise ExerciseIncorrect(_("{call} ended with {error}{about}; after its last retry it should fail with "
                                      "the original {expected}", call=call, error=_exc_name(o.exc), about=about,
                                      expected=s.raises))
        if s.succeeds and s.value is not None and not _same(s.value, o.value):
            raise ExerciseIncorrect(_("{call} returned {got}{about}, which is not the expected value", call=call,
                                      got=describe(o.value), about=about))


def _app_of(value):
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, AsyncResult):
            return item.app
    from celery import current_app

    return current_app._get_current_object()


class PriorityOrder(BehaviourCheck):
    """``sender(*args)`` sends tasks; one worker slot (prefetch 1) must run them in ``expected`` order.

    ``expected`` lists each task's first argument in the order it should run.
    """

    sender = "send_jobs"
    args: tuple = ()
    expected: list = []
    wrong_order = N_("they should run in order of priority")  #: shown with ``_()``

    def _check(self, ns):
        send = self.callable_named(ns, self.sender)
        call = fmt_call(self.sender, self.args)
        with self.trial() as trial:
            before = len(trial.recorder.events)
            value = self.run_learner(trial, call, send, *self.args, name=self.sender)
            pubs = [e for e in trial.recorder.published(before) if not e.data.get("retries")]
            if not pubs:
                ran_here = [e for e in trial.recorder.events[before:] if e.kind == "started"]
                if ran_here:
                    raise ExerciseIncorrect(_("{call} sent no task messages: it ran them here in the notebook "
                                              "instead of sending them", call=call))
                raise ExerciseIncorrect(_("{call} sent no task messages", call=call))
            if len(pubs) != len(self.expected):
                raise ExerciseIncorrect(_("{call} sent {messages}; it should send {expected}", call=call,
                                          messages=_task_messages(len(pubs)), expected=len(self.expected)))
            outcomes = trial.run(_app_of(value), [p.task_id for p in pubs], concurrency=1, prefetch_multiplier=1)
            for pub in pubs:
                self.finished(fmt_call(short(pub.name), pub.data["args"]), outcomes[pub.task_id])
            ran = sorted(outcomes.values(), key=lambda o: o.started[0].at)
            order = [o.started[0].data["args"][0] if o.started[0].data["args"] else None for o in ran]
            if order != list(self.expected):
                raise ExerciseIncorrect(_("one worker ran them in the order {order}: {why}", order=repr(order),
                                          why=_(self.wrong_order)))


def _entry_text(raw: bytes) -> str:
    """A dead-letter entry as text; kombu message envelopes (a re-published task) are unpacked."""
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and "body" in data and isinstance(data.get("properties"), dict):
        import base64

        body = data["body"]
        if data["properties"].get("body_encoding") == "base64":
            try:
                body = base64.b64decode(body).decode("utf-8", errors="replace")
            except ValueError:
                pass
        return f"{text}\n{body}"
    return text


class DeadLetters(BehaviourCheck):
    """Calls of ``task`` that fail (``calls``: ``(args, fails)``) land in the Redis list ``list_key``.

    An entry counts for a failed call when it names the task id (or holds its arguments as
    JSON); calls that succeed must leave no entry.
    """

    task = "task"
    calls: list = []
    list_key = "dead_letters"

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        client = self._redis(task.app)
        client.delete(self.list_key)
        with self.trial() as trial:
            sent = [(args, fails, self.send(trial, task, args, name=self.task)) for args, fails in self.calls]
            outcomes = trial.run(task.app, [pub.task_id for _, _, pub in sent])
            failures = 0
            for args, fails, pub in sent:
                call = fmt_call(self.task, args)
                outcome = outcomes[pub.task_id]
                self.finished(call, outcome)
                if isinstance(outcome.exc, NotImplementedError):
                    raise self.failed(call, outcome.exc)
                if fails and outcome.state != "FAILURE":
                    raise ExerciseIncorrect(_("{call} returned {got}; it should fail", call=call,
                                              got=describe(outcome.value)))
                if not fails and outcome.state == "FAILURE":
                    raise self.failed(call, outcome.exc)
                failures += bool(fails)
            trial.recorder.wait(lambda _: client.llen(self.list_key) >= failures, 1.0)
            entries = [_entry_text(raw) for raw in client.lrange(self.list_key, 0, -1)]
        if failures and not entries:
            raise ExerciseIncorrect(_("nothing landed in the dead-letter list {key} after {tasks} failed",
                                      key=repr(self.list_key), tasks=_tasks(failures)))
        for args, fails, pub in sent:
            call = fmt_call(self.task, args)
            mine = [e for e in entries if pub.task_id in e or json.dumps(list(args)) in e]
            if fails and not mine:
                raise ExerciseIncorrect(_("{call} failed, but no entry in {key} names its task id", call=call,
                                          key=repr(self.list_key)))
            if not fails and mine:
                raise ExerciseIncorrect(_("{call} succeeded, but an entry for it landed in {key}", call=call,
                                          key=repr(self.list_key)))
        if len(entries) != failures:
            raise ExerciseIncorrect(_("{key} holds {entries} after {failures}: each failed task should land there once",
                                      key=repr(self.list_key), entries=_entries(len(entries)),
                                      failures=_failures(failures)))

    @staticmethod
    def _redis(app):
        url = app.conf.broker_url or ""
        if not url.startswith(("redis://", "rediss://")):
            raise ExerciseIncorrect(_("this check reads a Redis list, but the broker is {scheme}",
                                      scheme=repr(url.split(':', 1)[0])))
        import redis

        return redis.Redis.from_url(url)
