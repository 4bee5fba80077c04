"""An application-level dead-letter queue on Redis: record, inspect, replay, purge, alert.

Redis has no dead-letter exchange: kombu ignores ``x-dead-letter-*`` queue arguments there,
and a message rejected with ``requeue=False`` is simply dropped. So the application keeps
its own dead letters. A hook on Celery's ``task_failure`` signal (sent once, when a task
fails for good: after its last retry, never for a retry) writes what is needed to run the
task again into a Redis list that no worker consumes::

    dlq = DeadLetterQueue(app).install()   # every task of `app` that fails lands in the list
    len(dlq)                               # LLEN
    dlq.entries()                          # inspect: oldest first, as DeadLetter records
    dlq.replay()                           # send them all again (to the queue they came from)
    dlq.purge()                            # drop them all

Each entry is one JSON object (``task_id``, ``task``, ``args``, ``kwargs``, ``exception``,
``message``, ``queue``, ``retries``, ``replays``, ``failed_at``, ``hostname``), readable with
``redis-cli LRANGE dead_letters 0 -1``.

``DeadLetterQueue.alert(threshold)`` is a threshold alert over the list's length, with a
Prometheus-style ``for`` duration: inactive -> pending -> firing -> resolved.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from celery import Celery, signals
from celery.exceptions import Reject

from .store import redis_client

DEFAULT_KEY = "dead_letters"
#: Message header a replayed task carries: how many times it was replayed from a DLQ before.
REPLAYS_HEADER = "dlq_replays"

_ids = itertools.count(1)


@dataclass
class DeadLetter:
    """One failed task, with what it takes to run it again."""

    task_id: str
    task: str                       # the task's registered name
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    exception: str = ""             # exception class name, e.g. "ValueError"
    message: str = ""               # str(exception)
    queue: str | None = None        # the queue (routing key) the task came from
    retries: int = 0                # retries it had before it failed for good
    replays: int = 0                # times it had been replayed from a DLQ before this failure
    failed_at: float = 0.0          # time.time() of the failure
    hostname: str | None = None     # the worker it failed on

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=repr)

    @classmethod
    def from_json(cls, raw: bytes | str) -> "DeadLetter":
        data = json.loads(raw)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def line(self) -> str:
        """One stable line (no ids or times): ``tasks.charge(13) failed with ValueError: ...``."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in sorted(self.kwargs.items())]
        text = f"{self.task}({', '.join(parts)}) failed with {self.exception}"
        if self.message:
            text += f": {self.message}"
        return text + f" (retries: {self.retries}, replays: {self.replays})"


def _json_safe(value):
    """Arguments as JSON will carry them (tuples become lists); anything else as its repr."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


class DeadLetterQueue:
    """Dead letters of ``app``'s tasks in the Redis list ``key`` (see the module doc).

    ``tasks``: names of the tasks to watch (default: every task of ``app``).
    ``client``: a redis client (default: :func:`celerylab.store.redis_client` for ``app``).
    ``max_length``: keep at most this many entries (oldest dropped; default: no limit).
    """

    def __init__(self, app: Celery, key: str = DEFAULT_KEY, tasks: Iterable[str] | None = None,
                 client=None, max_length: int | None = None):
        self.app = app
        self.key = key
        self.tasks = set(tasks) if tasks is not None else None
        self.client = client if client is not None else redis_client(app=app)
        self.max_length = max_length
        self._uid = f"celerylab-dlq-{next(_ids)}"
        self.installed = False

    # -- recording --------------------------------------------------------------------------
    def install(self) -> "DeadLetterQueue":
        """Record every failure of the watched tasks (connects to the ``task_failure`` signal)."""
        if not self.installed:
            signals.task_failure.connect(self._on_failure, weak=False, dispatch_uid=self._uid)
            self.installed = True
        return self

    def uninstall(self) -> None:
        if self.installed:
            signals.task_failure.disconnect(self._on_failure, dispatch_uid=self._uid)
            self.installed = False

    def __enter__(self) -> "DeadLetterQueue":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def watches(self, task) -> bool:
        if getattr(task, "app", None) is not self.app:
            return False
        return self.tasks is None or task.name in self.tasks

    def _on_failure(self, sender=None, task_id=None, exception=None, args=None, kwargs=None, **_):
        if sender is None or not self.watches(sender):
            return
        self.record(sender, task_id, exception, args, kwargs)

    def record(self, task, task_id: str, exception: BaseException | None, args=None, kwargs=None) -> DeadLetter:
        """Push one dead letter for ``task`` (what the failure hook calls; also usable from
        a task's own ``on_failure``)."""
        request = getattr(task, "request", None)
        delivery = dict(getattr(request, "delivery_info", None) or {})
        replays = request.get(REPLAYS_HEADER) if request is not None else None
        reason = exception.reason if isinstance(exception, Reject) else exception
        entry = DeadLetter(
            task_id=str(task_id),
            task=task.name,
            args=_json_safe(list(args or ())),
            kwargs=_json_safe(dict(kwargs or {})),
            exception=type(exception).__name__ if exception is not None else "",
            message=" ".join(str(reason).split()) if exception is not None else "",
            queue=delivery.get("routing_key"),
            retries=int(getattr(request, "retries", 0) or 0),
            replays=int(replays or 0),
            failed_at=time.time(),
            hostname=getattr(request, "hostname", None),
        )
        self.push(entry)
        return entry

    def push(self, entry: DeadLetter) -> None:
        pipe = self.client.pipeline()
        pipe.rpush(self.key, entry.to_json())
        if self.max_length:
            pipe.ltrim(self.key, -self.max_length, -1)
        pipe.execute()

    # -- inspecting -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.client.llen(self.key))

    def length(self) -> int:
        return len(self)

    def entries(self) -> list[DeadLetter]:
        """Every dead letter, oldest first (the list is not changed)."""
        return [DeadLetter.from_json(raw) for raw in self.client.lrange(self.key, 0, -1)]

    def inspect(self) -> list[str]:
        """One stable line per dead letter (task, arguments, exception; no ids or times)."""
        return [e.line() for e in self.entries()]

    def counts(self) -> dict[str, int]:
        """Dead letters per ``task: exception``: what is failing, at a glance."""
        out: dict[str, int] = {}
        for e in self.entries():
            key = f"{e.task}: {e.exception}"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    # -- acting ------------------------------------------------------------------------------
    def _take(self, select: Callable[[DeadLetter], bool] | None) -> list[DeadLetter]:
        """Remove and return the selected entries. Each raw entry is removed with LREM before
        it is returned, so two replays running at once never send the same entry twice."""
        taken = []
        for raw in self.client.lrange(self.key, 0, -1):
            entry = DeadLetter.from_json(raw)
            if select is not None and not select(entry):
                continue
            if self.client.lrem(self.key, 1, raw):
                taken.append(entry)
        return taken

    def replay(self, task_id: str | None = None, where: Callable[[DeadLetter], bool] | None = None,
               queue: str | None = None, same_id: bool = False) -> list:
        """Send dead letters again and remove them from the list; returns their AsyncResults.

        Selects all entries, or the one with ``task_id``, or those for which ``where(entry)``
        is true. Each goes back to ``queue`` (default: the queue it came from), under a new
        task id unless ``same_id``. With ``same_id`` the old FAILURE result is forgotten first:
        otherwise waiting on the id would return that old failure at once. The message carries the ``dlq_replays`` header, so a task
        that fails again shows up with ``replays`` one higher.
        """
        def select(entry: DeadLetter) -> bool:
            if task_id is not None and entry.task_id != task_id:
                return False
            return where is None or bool(where(entry))

        results = []
        for entry in self._take(select):
            options = {"headers": {REPLAYS_HEADER: entry.replays + 1}}
            target = queue or entry.queue
            if target:
                options["queue"] = target
            if same_id:
                options["task_id"] = entry.task_id
                self.app.AsyncResult(entry.task_id).forget()
            results.append(self.app.send_task(entry.task, args=entry.args, kwargs=entry.kwargs, **options))
        return results

    def discard(self, task_id: str | None = None, where: Callable[[DeadLetter], bool] | None = None) -> int:
        """Remove selected entries without running them; returns how many."""
        return len(self._take(lambda e: (task_id is None or e.task_id == task_id) and (where is None or where(e))))

    def purge(self) -> int:
        """Drop every dead letter; returns how many there were."""
        pipe = self.client.pipeline()
        pipe.llen(self.key)
        pipe.delete(self.key)
        n, _ = pipe.execute()
        return int(n)

    # -- alerting ----------------------------------------------------------------------------
    def alert(self, threshold: int, for_seconds: float = 0.0, name: str | None = None,
              notify: Callable[["Transition"], None] | None = None) -> "ThresholdAlert":
        """An alert that fires while the list holds >= ``threshold`` entries for ``for_seconds``."""
        return ThresholdAlert(name or f"DLQ {self.key!r} >= {threshold}", self.length, threshold,
                              for_seconds=for_seconds, notify=notify)

    def __repr__(self) -> str:
        try:
            size = f"{len(self)} entries"
        except Exception:  # noqa: BLE001 - broker gone
            size = "length unknown"
        return f"<DeadLetterQueue {self.key!r} of app {self.app.main!r}: {size}>"


@dataclass(frozen=True)
class Transition:
    """An alert changed state: ``pending``, ``firing`` or ``resolved``."""

    alert: str
    state: str
    value: int
    at: float  # time.monotonic()

    def line(self) -> str:
        return f"{self.alert}: {self.state}"


class ThresholdAlert:
    """``value() >= threshold`` for at least ``for_seconds`` -> firing; below it -> resolved.

    The states are Prometheus' (``inactive``, ``pending``, ``firing``). :meth:`check` evaluates
    once; :meth:`start` evaluates every ``interval`` seconds on a thread until :meth:`stop`.
    Every change is kept in ``transitions`` and passed to ``notify`` (a chat hook, say).
    """

    def __init__(self, name: str, value: Callable[[], int], threshold: int, for_seconds: float = 0.0,
                 notify: Callable[[Transition], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.value = value
        self.threshold = threshold
        self.for_seconds = for_seconds
        self.notify = notify
        self.clock = clock
        self.state = "inactive"
        self.since: float | None = None       # when the value first crossed the threshold
        self.transitions: list[Transition] = []
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> str:
        """Evaluate once; returns the state after it."""
        with self._lock:
            now = self.clock()
            value = int(self.value())
            if value >= self.threshold:
                if self.state == "inactive":
                    self.since = now
                    self._move("pending", value, now)
                if self.state == "pending" and now - self.since >= self.for_seconds:
                    self._move("firing", value, now)
            elif self.state != "inactive":
                was_firing = self.state == "firing"
                self.state = "inactive"
                self.since = None
                if was_firing:
                    self._emit(Transition(self.name, "resolved", value, now))
            return self.state

    def _move(self, state: str, value: int, now: float) -> None:
        self.state = state
        self._emit(Transition(self.name, state, value, now))

    def _emit(self, transition: Transition) -> None:
        self.transitions.append(transition)
        if self.notify is not None:
            try:
                self.notify(transition)
            except Exception as exc:  # noqa: BLE001 - a broken notifier must not stop the alert
                self.error = f"notify failed: {type(exc).__name__}: {exc}"

    @property
    def firing(self) -> bool:
        return self.state == "firing"

    def history(self) -> list[str]:
        """The states it went through, in order (``['pending', 'firing', 'resolved']``)."""
        return [t.state for t in self.transitions]

    # -- polling ------------------------------------------------------------------------------
    def start(self, interval: float = 0.1) -> "ThresholdAlert":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.check()
                except Exception as exc:  # noqa: BLE001 - broker gone: keep trying
                    self.error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name=f"celerylab-alert-{self.name}", daemon=True)
        self._thread.start()
        from . import processes

        self._forget = processes.register(f"alert {self.name}", self.stop)
        return self

    def wait_for(self, state: str, timeout: float = 10.0) -> bool:
        """Block until the alert is in ``state`` (or has ``resolved``); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state == state or (state == "resolved" and self.history()[-1:] == ["resolved"]):
                return True
            if self._thread is None:
                self.check()
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            if self._thread is not threading.current_thread():
                self._thread.join(5)
            self._thread = None
            forget = getattr(self, "_forget", None)
            if forget:
                forget()
                self._forget = None

    def __repr__(self) -> str:
        return f"<alert {self.name}: {self.state}>"
