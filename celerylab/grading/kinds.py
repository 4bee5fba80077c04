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
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else f"{n} {word}s"


class BehaviourCheck(Exercise):
    """Helpers the kinds share: call learner code, require a sent message, require success."""

    stop_timeout = 5.0  #: seconds to wait for the grader worker to stop (a task stuck in C may keep it)

    def trial(self) -> Trial:
        return Trial(self.timeout, self.stop_timeout)

    def run_learner(self, trial: Trial, call: str, fn, *args, name: str | None = None, **kwargs):
        got = trial.call(fn, *args, **kwargs)
        if got.timed_out:
            raise ExerciseIncorrect(f"{call} did not return within {self.timeout:g} s: "
                                    f"look for an endless loop or a call that waits")
        if isinstance(got.error, NotImplementedError):
            raise ExerciseNotAttempted(f"`{name or call}` still raises NotImplementedError: write your code there")
        if got.error is not None:
            raise ExerciseIncorrect(f"{call} raised {describe_exc(got.error)}")
        return got.value

    def sent(self, trial: Trial, call: str, value) -> Event:
        """The publish event behind ``value``, which must be the AsyncResult of a sent task."""
        if isinstance(value, EagerResult):
            raise ExerciseIncorrect(f"{call} ran the task here in the notebook (eagerly), not on a worker: "
                                    f"is task_always_eager on?")
        if not isinstance(value, AsyncResult):
            if value is None:
                raise ExerciseIncorrect(f"{call} returned None: return the AsyncResult you get when you send the task")
            raise ExerciseIncorrect(f"{call} returned {describe(value)}, not an AsyncResult: a task called like a "
                                    f"function runs here in the notebook; delay() or apply_async() sends it")
        published = trial.recorder.of(value.id, "published")
        if not published:
            raise ExerciseIncorrect(f"{call} returned an AsyncResult, but no task message was sent for it")
        return published[0]

    def send(self, trial: Trial, task, args=(), kwargs=None, name: str | None = None) -> Event:
        """Send the learner's task (``name`` in the notebook) with ``delay``; its publish event."""
        call = fmt_call(f"{name or short(task.name)}.delay", args, kwargs)
        return self.sent(trial, call, self.run_learner(trial, call, task.delay, *args, **(kwargs or {})))

    def failed(self, call: str, exc: BaseException | None):
        """The error to raise for a task that failed on the worker."""
        if isinstance(exc, NotImplementedError):
            return ExerciseNotAttempted(f"`{call.split('(')[0]}` still raises NotImplementedError: write your code there")
        if type(exc).__name__ == "EncodeError":
            return ExerciseIncorrect(f"{call} returned a value the worker cannot send back as JSON "
                                     f"({describe_exc(exc.__context__ or exc) if exc.args else 'EncodeError'})")
        return ExerciseIncorrect(f"{call} raised {describe_exc(exc)} on the worker")

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
                raise ExerciseIncorrect(f"{call} failed and its retry was planned {late[-1]:.0f} s later; "
                                        f"the check waited {self.timeout:g} s")
            raise ExerciseIncorrect(f"{call} was still being retried after {self.timeout:g} s "
                                    f"({_plural(n, 'retry')} so far): give it a max_retries")
        if outcome.state == "RUNNING":
            raise ExerciseIncorrect(f"{call} was still running on the worker after {self.timeout:g} s: "
                                    f"look for an endless loop or a long sleep")
        if outcome.state == "NOT STARTED":
            raise ExerciseIncorrect(f"{call} was sent to the queue {outcome.queue!r}, but no worker "
                                    f"started it within {self.timeout:g} s")

    def succeeded(self, call: str, outcome: Outcome):
        self.finished(call, outcome)
        if outcome.state == "FAILURE":
            raise self.failed(call, outcome.exc)
        return outcome.value


def _exc_name(exc) -> str:
    return type(exc).__name__ if isinstance(exc, BaseException) else "a retry without an error"


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
    wrong_value = "{call} returned {got}, which is not the expected value"
    wrong_type = "{call} returned {got}; {expected_type} was expected"

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
                    raise ExerciseIncorrect(f"{call} ran here in the notebook, not on the worker")
                types = self.result_types or (type(expected),)
                if isinstance(expected, (int, float)) and not isinstance(expected, bool) and self.result_types is None:
                    types = (int, float)
                if not isinstance(got, types) or isinstance(got, bool) and bool not in types:
                    names = " or ".join(_a(t.__name__) for t in types)
                    raise ExerciseIncorrect(self.wrong_type.format(call=call, got=describe(got), expected_type=names))
                if not _same(expected, got):
                    raise ExerciseIncorrect(self.wrong_value.format(call=call, got=describe(got)))


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
                raise ExerciseIncorrect(f"{call} sent the task {short(pub.name)!r}, not {self.task!r}")
            # a worker on the expected queue (and on wherever the message really went, so
            # nothing is left behind in the broker) takes it; the worker reports the queue
            outcome = trial.run(value.app, [pub.task_id], queues=[self.queue])[pub.task_id]
            if outcome.queue != self.queue:
                raise ExerciseIncorrect(f"{call} sent {short(pub.name)} to the queue {outcome.queue!r}, "
                                        f"not to {self.queue!r}")
            self.succeeded(fmt_call(short(pub.name), pub.data["args"]), outcome)


@dataclass
class Attempts:
    """One retry scenario: what the task should do for ``args``."""

    args: tuple
    retries: int            #: how many retries this call should get
    succeeds: bool          #: whether it should succeed in the end
    value: object = None    #: the final value when it succeeds (None: don't compare)
    raises: str = ""        #: the exception name it should end with when it fails
    about: str = ""         #: what this case is, for messages ("a server that stays down")


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
        about = f" ({s.about})" if s.about else ""
        late = [d for d in o.retry_delays if d > hi]
        if late:
            raise ExerciseIncorrect(f"{call} failed and its retry was planned {late[0]:.0f} s later; "
                                    f"retry after about {self.countdown:g} s")
        if o.state in ("RUNNING", "NOT STARTED") and n > s.retries:
            raise ExerciseIncorrect(f"{call} was still being retried after {self.timeout:g} s "
                                    f"({_plural(n, 'retry')} so far){about}: it should get {_plural(s.retries, 'retry')}")
        self.finished(call, o)
        if o.state == "FAILURE" and isinstance(o.exc, NotImplementedError):
            raise self.failed(call, o.exc)
        first_error = o.retried[0].data.get("exc") if o.retried else o.exc
        if n < s.retries:
            if n == 0 and o.state == "SUCCESS":
                raise ExerciseIncorrect(f"{call} returned {describe(o.value)} without a retry{about}; "
                                        f"it should be retried {_plural(s.retries, 'time')}")
            if n == 0:
                raise ExerciseIncorrect(f"{call} raised {_exc_name(o.exc)} and was never retried{about}")
            raise ExerciseIncorrect(f"{call} was retried {_plural(n, 'time')}{about}; "
                                    f"it should be retried {_plural(s.retries, 'time')}")
        if n > s.retries:
            if s.retries == 0:
                raise ExerciseIncorrect(f"{call} was retried {_plural(n, 'time')} after "
                                        f"{_exc_name(first_error)}{about}: it should fail at once, without a retry")
            raise ExerciseIncorrect(f"{call} was retried {_plural(n, 'time')}{about}; "
                                    f"it should be retried {_plural(s.retries, 'time')}")
        # judged by when each retry was planned for (its ETA, from the start of the failed attempt),
        # not by when the worker got to it: a loaded machine runs a retry late, never early
        for pause in o.retry_delays_from_start:
            if pause < lo:
                raise ExerciseIncorrect(f"{call} was retried {pause:.1f} s after it failed; "
                                        f"wait about {self.countdown:g} s before the retry")
        if s.succeeds and o.state == "FAILURE":
            raise ExerciseIncorrect(f"{call} ended with {describe_exc(o.exc)} after {_plural(n, 'retry')}{about}")
        if not s.succeeds and o.state == "SUCCESS":
            raise ExerciseIncorrect(f"{call} returned {describe(o.value)}{about}, but it should fail")
        if not s.succeeds and s.raises and type(o.exc).__name__ != s.raises:
            raise ExerciseIncorrect(f"{call} ended with {_exc_name(o.exc)}{about}; "
                                    f"after its last retry it should fail with the original {s.raises}")
        if s.succeeds and s.value is not None and not _same(s.value, o.value):
            raise ExerciseIncorrect(f"{call} returned {describe(o.value)}{about}, which is not the expected value")


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
    wrong_order = "they should run in order of priority"

    def _check(self, ns):
        send = self.callable_named(ns, self.sender)
        call = fmt_call(self.sender, self.args)
        with self.trial() as trial:
            before = len(trial.recorder.events)
            value = self.run_learner(trial, call, send, *self.args, name=self.sender)
            pubs = [e for e in trial.recorder.published(before) if not e.data.get("retries")]
            if not pubs:
                ran_here = [e for e in trial.recorder.events[before:] if e.kind == "started"]
                how = ": it ran them here in the notebook instead of sending them" if ran_here else ""
                raise ExerciseIncorrect(f"{call} sent no task messages{how}")
            if len(pubs) != len(self.expected):
                raise ExerciseIncorrect(f"{call} sent {_plural(len(pubs), 'task message')}; "
                                        f"it should send {len(self.expected)}")
            outcomes = trial.run(_app_of(value), [p.task_id for p in pubs], concurrency=1, prefetch_multiplier=1)
            for pub in pubs:
                self.finished(fmt_call(short(pub.name), pub.data["args"]), outcomes[pub.task_id])
            ran = sorted(outcomes.values(), key=lambda o: o.started[0].at)
            order = [o.started[0].data["args"][0] if o.started[0].data["args"] else None for o in ran]
            if order != list(self.expected):
                raise ExerciseIncorrect(f"one worker ran them in the order {order!r}: {self.wrong_order}")


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
                    raise ExerciseIncorrect(f"{call} returned {describe(outcome.value)}; it should fail")
                if not fails and outcome.state == "FAILURE":
                    raise self.failed(call, outcome.exc)
                failures += bool(fails)
            trial.recorder.wait(lambda _: client.llen(self.list_key) >= failures, 1.0)
            entries = [_entry_text(raw) for raw in client.lrange(self.list_key, 0, -1)]
        if failures and not entries:
            raise ExerciseIncorrect(f"nothing landed in the dead-letter list {self.list_key!r} "
                                    f"after {_plural(failures, 'task')} failed")
        for args, fails, pub in sent:
            call = fmt_call(self.task, args)
            mine = [e for e in entries if pub.task_id in e or json.dumps(list(args)) in e]
            if fails and not mine:
                raise ExerciseIncorrect(f"{call} failed, but no entry in {self.list_key!r} names its task id")
            if not fails and mine:
                raise ExerciseIncorrect(f"{call} succeeded, but an entry for it landed in {self.list_key!r}")
        if len(entries) != failures:
            raise ExerciseIncorrect(f"{self.list_key!r} holds {_plural(len(entries), 'entry')} "
                                    f"after {_plural(failures, 'failure')}: each failed task should land there once")

    @staticmethod
    def _redis(app):
        url = app.conf.broker_url or ""
        if not url.startswith(("redis://", "rediss://")):
            raise ExerciseIncorrect(f"this check reads a Redis list, but the broker is {url.split(':', 1)[0]!r}")
        import redis

        return redis.Redis.from_url(url)
