"""Watch what Celery really does in this kernel, and run learner code with a deadline.

* :class:`Recorder` listens to Celery's signals while it is active and keeps one event per
  publish, start, retry, success and failure (with time, queue, priority, thread). A worker
  started with :func:`celerylab.run_worker` runs in this process, so its tasks' signals
  arrive here too: a check can see which queue a message went to, when each attempt
  started, how often it was retried and what it returned.
* :func:`call_with_deadline` runs learner code on a helper thread and gives up after a
  deadline; :func:`abandon` stops a runaway thread by raising inside it, so an endless
  loop never takes the kernel with it; :func:`abandon_task` does so for a task attempt, and
  only while its body runs (never inside Celery's own bookkeeping around it).
* :class:`Trial` puts both together with a grader worker whose wait for a stuck task is
  bounded too.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import threading
import time
from dataclasses import dataclass, field

from celery import signals

from ..worker import run_worker

_ids = itertools.count(1)


class Abandoned(BaseException):
    """Raised inside learner code that ran past its deadline (BaseException: `except Exception` can't swallow it)."""


def abandon(thread_ident: int | None) -> bool:
    """Raise :class:`Abandoned` in another thread at its next Python instruction.

    Stops pure-Python loops. A thread blocked in C (a long ``time.sleep``) only sees it
    when the call returns.
    """
    if not thread_ident:
        return False
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident), ctypes.py_object(Abandoned))
    return done == 1


# -- abandoning a task attempt, only while its body runs ------------------------------------
# An asynchronous exception must never land in Celery's own code around a task (storing the
# result, sending events, the pool's queue): it would leave locks held or a connection half-read.
# So the grader wraps each task body it runs; the wrapper marks its thread as "in the body of
# task id X" and, on the way out, unmarks it and cancels any exception still pending, both
# under one lock. abandon_task() raises only in a thread marked for that task, under the same lock.
_body_lock = threading.Lock()
_in_body: dict[int, str] = {}  # thread ident -> id of the task whose body that thread runs
_abandoned: set[int] = set()  # thread idents already sent an abandon for their current marking


def _cancel_pending(thread_ident: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident), None)


#: task id -> time.monotonic() when its body returned or raised (the tracer's own work, e.g.
#: sending a chain's next task, comes after); checks that ask "was this body still running?" use it
BODY_ENDED: dict[str, float] = {}


def guard_task_body(task) -> None:
    """Make ``task``'s body abandonable by :func:`abandon_task` (idempotent).

    The worker builds each task's tracer when it starts, so guard before starting it.
    """
    if getattr(task.run, "__celerylab_unguarded__", None) is not None:
        return
    original = task.run

    def run(*args, **kwargs):
        ident = threading.get_ident()
        outer = None
        # Mark inside the try: an abandon sent as soon as the lock is released must land where the
        # finally below still unmarks the thread.
        try:
            with _body_lock:
                outer = _in_body.get(ident)
                _in_body[ident] = task.request.id
            return original(*args, **kwargs)
        finally:
            # Inline, with no call before the try: CPython delivers a pending exception at a call or
            # a backward jump, so one pending when the body ends is caught here. abandon_task sends at
            # most one per marking, so after catching it nothing else can arrive.
            while True:
                try:
                    BODY_ENDED[task.request.id] = time.monotonic()
                    with _body_lock:
                        if outer is None:
                            _in_body.pop(ident, None)
                        else:
                            _in_body[ident] = outer
                        _abandoned.discard(ident)
                        _cancel_pending(ident)
                    break
                except Abandoned:  # sent just before we took the lock: delivered here, try again
                    continue

    run.__celerylab_unguarded__ = original
    run.__name__ = getattr(original, "__name__", "run")
    run.__doc__ = getattr(original, "__doc__", None)
    task.run = run


def abandon_task(task_id: str) -> bool:
    """Raise :class:`Abandoned` in the thread running ``task_id``'s body; False if none is."""
    with _body_lock:
        idents = [ident for ident, running in _in_body.items() if running == task_id and ident not in _abandoned]
        sent = [ident for ident in idents if abandon(ident)]
        _abandoned.update(sent)
        return bool(sent)


@dataclass
class Called:
    """What :func:`call_with_deadline` saw: a value, an exception, or a timeout."""

    value: object = None
    error: BaseException | None = None
    timed_out: bool = False


def call_with_deadline(fn, *args, timeout: float = 5.0, **kwargs) -> Called:
    box = Called()

    def run():
        try:
            box.value = fn(*args, **kwargs)
        except Abandoned:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported to the learner
            box.error = exc

    thread = threading.Thread(target=run, name="celerylab-check-call", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        box.timed_out = True
        for _ in range(3):
            abandon(thread.ident)
            thread.join(0.2)
            if not thread.is_alive():
                break
    return box


@dataclass
class Event:
    kind: str  # published | started | retried | succeeded | failed
    task_id: str
    name: str
    at: float  # time.monotonic()
    thread: int
    data: dict = field(default_factory=dict)


FINAL = ("succeeded", "failed")


class Recorder:
    """Record Celery's task signals in this process while active (``with Recorder() as rec``)."""

    def __init__(self):
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._uid = f"celerylab-recorder-{next(_ids)}"
        self._connected = []

    # -- signal handlers ---------------------------------------------------------------
    def _add(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def _on_publish(self, sender=None, body=None, exchange=None, routing_key=None, headers=None,
                    properties=None, **_):
        headers = headers or {}
        args = body[0] if isinstance(body, (tuple, list)) and body else ()
        self._add(Event("published", headers.get("id", ""), str(sender), time.monotonic(), threading.get_ident(), {
            "queue": routing_key, "exchange": exchange, "eta": headers.get("eta"),
            "retries": headers.get("retries", 0), "priority": (properties or {}).get("priority"),
            "args": list(args) if isinstance(args, (list, tuple)) else args,
        }))

    def _on_prerun(self, sender=None, task_id=None, task=None, args=None, kwargs=None, **_):
        request = getattr(task, "request", None)
        info = dict(getattr(request, "delivery_info", None) or {})
        self._add(Event("started", task_id, getattr(task, "name", str(sender)), time.monotonic(),
                        threading.get_ident(), {
                            "eager": bool(getattr(request, "is_eager", False)),
                            "queue": info.get("routing_key"), "priority": info.get("priority"),
                            "retries": getattr(request, "retries", 0), "args": list(args or ()),
                        }))

    def _on_retry(self, sender=None, request=None, reason=None, **_):
        self._add(Event("retried", getattr(request, "id", ""), getattr(sender, "name", str(sender)),
                        time.monotonic(), threading.get_ident(),
                        {"when": getattr(reason, "when", None), "exc": getattr(reason, "exc", None)}))

    def _on_postrun(self, sender=None, task_id=None, task=None, retval=None, state=None, **_):
        if state == "SUCCESS":
            self._add(Event("succeeded", task_id, getattr(task, "name", str(sender)), time.monotonic(),
                            threading.get_ident(), {"value": retval}))

    def _on_failure(self, sender=None, task_id=None, exception=None, **_):
        self._add(Event("failed", task_id, getattr(sender, "name", str(sender)), time.monotonic(),
                        threading.get_ident(), {"exc": exception}))

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "Recorder":
        pairs = [(signals.before_task_publish, self._on_publish), (signals.task_prerun, self._on_prerun),
                 (signals.task_retry, self._on_retry), (signals.task_postrun, self._on_postrun),
                 (signals.task_failure, self._on_failure)]
        for signal, handler in pairs:
            signal.connect(handler, weak=False, dispatch_uid=f"{self._uid}-{handler.__name__}")
            self._connected.append((signal, handler))
        return self

    def stop(self) -> None:
        for signal, handler in self._connected:
            signal.disconnect(handler, dispatch_uid=f"{self._uid}-{handler.__name__}")
        self._connected.clear()

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- queries -----------------------------------------------------------------------
    def of(self, task_id: str, kind: str | None = None) -> list[Event]:
        with self._cond:
            return [e for e in self.events if e.task_id == task_id and (kind is None or e.kind == kind)]

    def published(self, since: int = 0) -> list[Event]:
        with self._cond:
            return [e for e in self.events[since:] if e.kind == "published"]

    def final(self, task_id: str) -> Event | None:
        done = [e for e in self.of(task_id) if e.kind in FINAL]
        return done[-1] if done else None

    def running(self) -> list[Event]:
        """Start events of task attempts that have not finished (their thread is still busy)."""
        with self._cond:
            open_: dict[str, Event] = {}
            for e in self.events:
                if e.kind == "started" and not e.data["eager"]:
                    open_[e.task_id] = e
                elif e.kind in FINAL or e.kind == "retried":
                    open_.pop(e.task_id, None)
            return list(open_.values())

    def wait(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(self)`` is true (re-tested on every event); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True


@dataclass
class Outcome:
    """Everything that happened to one task id during a trial."""

    task_id: str
    published: list[Event]
    started: list[Event]
    retried: list[Event]
    final: Event | None

    @property
    def state(self) -> str:
        if self.final is not None:
            return "SUCCESS" if self.final.kind == "succeeded" else "FAILURE"
        return "RUNNING" if self.started else "NOT STARTED"

    @property
    def value(self):
        return self.final.data.get("value") if self.final is not None else None

    @property
    def exc(self) -> BaseException | None:
        return self.final.data.get("exc") if self.final is not None else None

    @property
    def queue(self) -> str | None:
        """The queue the worker took it from (routing key on the default exchange)."""
        if self.started:
            return self.started[0].data.get("queue")
        return self.published[0].data.get("queue") if self.published else None

    def _retry_etas(self) -> list[float | None]:
        """Each retry's ETA as a wall-clock timestamp (None: sent without one, i.e. at once)."""
        from datetime import datetime, timezone

        etas = []
        for event in self.published[1:]:
            eta = event.data.get("eta")
            if not eta:
                etas.append(None)
                continue
            when = datetime.fromisoformat(eta)
            etas.append((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp())
        return etas

    @staticmethod
    def _wall(at: float) -> float:
        """The wall-clock time of a monotonic stamp."""
        return time.time() - (time.monotonic() - at)

    @property
    def retry_delays(self) -> list[float]:
        """Seconds between each retry's publication and the time it was scheduled for."""
        return [0.0 if eta is None else max(0.0, eta - self._wall(event.at))
                for eta, event in zip(self._retry_etas(), self.published[1:])]

    @property
    def retry_delays_from_start(self) -> list[float]:
        """Seconds from the start of each failed attempt to the time its retry was scheduled for.

        Never less than the countdown the task asked for, however loaded the machine: judge "too
        soon" with these, and "too late" with :attr:`retry_delays` (which load can only shorten).
        """
        delays = []
        for n, (eta, event) in enumerate(zip(self._retry_etas(), self.published[1:])):
            since = self.started[n].at if n < len(self.started) else event.at
            delays.append(0.0 if eta is None else max(0.0, eta - self._wall(since)))
        return delays

    @property
    def spacing(self) -> list[float]:
        """Observed seconds between consecutive attempts on the worker."""
        times = [e.at for e in self.started]
        return [b - a for a, b in zip(times, times[1:])]


class Trial:
    """One experiment on learner code: record signals, run a grader worker, bound every wait.

    ::

        with Trial() as trial:
            called = trial.call(add.delay, 2, 3)
            outcomes = trial.run(app, [called.value.id])
    """

    def __init__(self, timeout: float = 5.0, stop_timeout: float = 5.0):
        self.timeout = timeout
        self.stop_timeout = stop_timeout
        self.recorder = Recorder()
        self.worker = None
        self.stuck = False
        self._cm = None

    def __enter__(self) -> "Trial":
        self.recorder.start()
        return self

    def call(self, fn, *args, timeout: float | None = None, **kwargs) -> Called:
        return call_with_deadline(fn, *args, timeout=self.timeout if timeout is None else timeout, **kwargs)

    def start_worker(self, app, queues, concurrency: int = 2, **options):
        hostname = f"grader{next(_ids)}-{os.getpid()}@celerylab"
        for name, task in app.tasks.items():
            if not name.startswith("celery."):
                guard_task_body(task)
        self._cm = run_worker(app, pool="threads", concurrency=concurrency, queues=sorted(set(queues)),
                              hostname=hostname, **options)
        self.worker = self._cm.__enter__()
        return self.worker

    def outcome(self, task_id: str) -> Outcome:
        events = self.recorder.of(task_id)
        final = [e for e in events if e.kind in FINAL]
        return Outcome(task_id, [e for e in events if e.kind == "published"],
                       [e for e in events if e.kind == "started"],
                       [e for e in events if e.kind == "retried"], final[-1] if final else None)

    def run(self, app, task_ids, queues=(), timeout: float | None = None, concurrency: int = 2,
            give_up=None, **options) -> dict[str, Outcome]:
        """Start a worker on the queues these tasks were sent to, wait until all finish.

        Waits at most ``timeout`` seconds, or until ``give_up(recorder)`` is true.
        """
        task_ids = list(task_ids)
        sent_to = {e.data["queue"] for t in task_ids for e in self.recorder.of(t, "published") if e.data["queue"]}
        self.start_worker(app, sent_to | set(queues) or {app.conf.task_default_queue}, concurrency, **options)

        wait = self.timeout if timeout is None else timeout

        def retry_too_late(t: str) -> bool:  # its next attempt is planned after the wait ends
            delays = self.outcome(t).retry_delays
            return bool(delays) and delays[-1] > wait

        def done(rec: Recorder) -> bool:
            return all(rec.final(t) is not None or retry_too_late(t) for t in task_ids) \
                or bool(give_up and give_up(rec))

        self.recorder.wait(done, wait)
        return {t: self.outcome(t) for t in task_ids}

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._cm is not None:
                self._stop_worker(exc)
        finally:
            self.recorder.stop()

    def _stop_worker(self, exc) -> None:
        """Stop the grader worker; abandon every task attempt that is (or starts) running meanwhile.

        Messages the worker already took run on after an abandoned one, so this keeps
        abandoning until the worker has stopped or ``stop_timeout`` has passed.
        """
        stopper = threading.Thread(target=self._cm.__exit__, args=(None, None, None),
                                   name="celerylab-grader-stop", daemon=True)
        abandoned: set[int] = set()
        deadline = time.monotonic() + self.stop_timeout
        while True:
            for event in self.recorder.running():
                # an attempt past its body (storing its result) is not abandoned: it ends soon
                if id(event) not in abandoned and abandon_task(event.task_id):
                    abandoned.add(id(event))
            if not stopper.is_alive() and stopper.ident is None:
                stopper.start()
            stopper.join(0.05)
            if not stopper.is_alive() or time.monotonic() > deadline:
                break
        if stopper.is_alive():
            # a task blocked in C (a long sleep) ignores abandon(): leave that worker behind,
            # and out of celerylab.cleanup(), which would wait for it forever at exit
            self.stuck = True
            forget = getattr(self.worker, "_forget", None)
            if forget:
                forget()
            if exc is not None and hasattr(exc, "message"):
                exc.message += " (it is still running in this kernel: restart the kernel to stop it)"
