"""Record Celery's events into an in-memory timeline: what the live widgets draw from.

A :class:`Watcher` runs a real ``app.events.Receiver`` (on its own ``app.connection()``) in a
background thread and turns every task and worker event into a small :class:`Record`. A
:class:`FlowState` keeps the running totals a lesson asks about: tasks per state, per queue
and priority band, per worker, tasks in flight, and the execution "runs" a Gantt chart
draws. Optionally it also samples queue depth on Redis (``LLEN`` of the queue, of each
priority-band list, and the ``unacked`` hash of prefetched messages).

::

    w = Watcher(app).start()        # returns once the receiver is really subscribed
    ...send tasks...
    w.summary().states              # {'sent': 0, ..., 'succeeded': 20, ...}
    w.stop()                        # no thread or connection left behind

Starting a watcher on a broker that already has one in this kernel stops the old one first
(re-running a notebook cell replaces the watcher rather than stacking them). Redraws of
anything subscribed to a watcher are throttled (at most ``max_per_second``, coalesced), so
hundreds of events per second never flood the kernel.

Celery's own events carry no message priority: the watcher learns it from the
``before_task_publish`` signal, i.e. for tasks sent from this process (``priority`` is None
for the others).
"""
from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
import uuid as uuidlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from celery import Celery
from celery.signals import before_task_publish

from . import processes
from .i18n import _

log = logging.getLogger("celerylab.events")


def _log_to_file() -> None:
    """The watcher's own problems go to ``<log dir>/watch.log``, never into cell output."""
    from .logs import log_path

    path = str(log_path("watch").resolve())
    for old in list(log.handlers):
        if getattr(old, "baseFilename", None) == path:
            return
        log.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/%(threadName)s] %(message)s"))
    log.addHandler(handler)
    log.propagate = False

#: Task event types, in the order a task normally goes through them.
TASK_EVENTS = ("task-sent", "task-received", "task-started", "task-succeeded", "task-failed",
               "task-retried", "task-revoked", "task-rejected")
WORKER_EVENTS = ("worker-online", "worker-heartbeat", "worker-offline")
#: States a task can be in, named after the event that put it there.
STATES = ("sent", "received", "started", "retried", "succeeded", "failed", "revoked", "rejected")
FINAL_STATES = ("succeeded", "failed", "revoked", "rejected")
#: Where a state sits in a task's life: breaks ties between events with the same timestamp.
_RANK = {"sent": 0, "received": 1, "started": 2, "retried": 3, "succeeded": 4, "failed": 4,
         "revoked": 4, "rejected": 4}
PROBE_EVENT = "celerylab-watch-probe"

#: kombu's Redis transport: priority bands and the separator of a band's list name.
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
DEFAULT_SEP = "\x06\x16"


def band_for(priority: int | None, steps: Iterable[int] = DEFAULT_PRIORITY_STEPS) -> int:
    """The Redis priority band a message lands in (kombu: 0 is the highest priority)."""
    steps = sorted(steps)
    if priority is None:
        return steps[0]
    priority = max(min(int(priority), 9), 0)
    return steps[max(bisect.bisect_right(steps, priority) - 1, 0)]


def band_key(queue: str, band: int, sep: str = DEFAULT_SEP, prefix: str = "") -> str:
    """The Redis list that holds ``queue``'s messages of one band (band 0 is the bare name)."""
    return f"{prefix}{queue}{sep}{band}" if band else f"{prefix}{queue}"


def short_host(hostname: str | None) -> str:
    """``kernel1@laptop`` -> ``kernel1``: the part a lesson chose, not the machine's name."""
    return (hostname or "?").split("@", 1)[0]


@dataclass(frozen=True, slots=True)
class Record:
    """One event, as the timeline keeps it."""

    time: float                    # when the sender made it (its time.time())
    received: float                # when this kernel got it (time.time())
    type: str                      # "task-sent", "worker-heartbeat", ...
    uuid: str | None = None
    name: str | None = None
    hostname: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    priority: int | None = None
    retries: int | None = None
    runtime: float | None = None
    exception: str | None = None

    @property
    def state(self) -> str | None:
        """The task state this event moves to ("succeeded" for task-succeeded...)."""
        return self.type[5:] if self.type.startswith("task-") else None


@dataclass(slots=True)
class TaskInfo:
    """What is known about one task so far (a retried task keeps its uuid)."""

    uuid: str
    name: str | None = None
    queue: str | None = None
    routing_key: str | None = None
    priority: int | None = None
    band: int | None = None
    hostname: str | None = None
    state: str | None = None
    retries: int = 0
    attempt: int = -1              # highest ``retries`` seen in a task-sent/received event
    sent: float | None = None
    received: float | None = None
    started: float | None = None
    finished: float | None = None
    runtime: float | None = None
    exception: str | None = None
    _last: tuple = (float("-inf"), -1)
    _key: tuple | None = None


@dataclass(slots=True)
class Run:
    """One execution of a task on a worker slot (thread/process): a bar in the Gantt chart."""

    uuid: str
    name: str | None
    hostname: str
    slot: int
    start: float
    end: float | None = None
    outcome: str = "running"       # or succeeded / failed / retried / revoked / rejected
    retries: int = 0
    exception: str | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """A point on the timeline: a retry, failure, revoke or rejection."""

    time: float
    kind: str
    hostname: str
    slot: int
    uuid: str
    name: str | None


@dataclass
class WorkerSummary:
    hostname: str
    online: bool | None = None     # None: no worker-online/offline/heartbeat seen yet
    last_heartbeat: float | None = None
    active: int = 0                # running now (started, not finished), from task events
    events: dict = field(default_factory=dict)  # state -> events from this worker

    @property
    def name(self) -> str:
        return short_host(self.hostname)


@dataclass
class Summary:
    """A consistent snapshot of a :class:`FlowState`."""

    tasks: int                                  # distinct tasks seen
    states: dict                                # state -> tasks in it now (all STATES present)
    events: dict                                # event type -> events received
    in_flight: int                              # tasks not in a final state
    queues: dict                                # queue -> state -> tasks now
    bands: dict                                 # queue -> band -> tasks sent there
    workers: dict                               # hostname -> WorkerSummary
    flows: dict                                 # (queue, band, hostname, state) -> tasks
    errors: tuple = ()                          # receiver problems, newest last
    banded: bool = True                         # the broker has priority bands (Redis)

    def line(self) -> str:
        """One deterministic text line: the counts, no times or ids."""
        states = ", ".join(f"{s}: {n}" for s, n in self.states.items() if n)   # Celery's state names
        parts = [_("{tasks} tasks ({states})", tasks=self.tasks, states=states) if states
                 else _("{tasks} tasks", tasks=self.tasks),
                 _("in flight: {in_flight}", in_flight=self.in_flight)]
        retried = self.events.get("task-retried", 0)
        if retried:
            parts.append(_("retries: {retries}", retries=retried))
        if self.queues:
            parts.append(_("queues: {queues}", queues=", ".join(
                f"{q}={sum(c.values())}" for q, c in sorted(self.queues.items()))))
        if self.workers:
            ran = [_("{worker} ran {started}", worker=w.name, started=w.events.get("started", 0))
                   for _host, w in sorted(self.workers.items())]
            parts.append(_("workers: {workers}", workers=", ".join(ran)))
        return " | ".join(parts)


class FlowState:
    """Running totals built from event dicts (thread-safe; no broker needed to test it)."""

    def __init__(self, priority_steps: Iterable[int] = DEFAULT_PRIORITY_STEPS, max_events: int = 200_000,
                 max_runs: int = 20_000):
        self.priority_steps = tuple(sorted(priority_steps))
        self.max_events = max_events
        self.max_runs = max_runs
        self.lock = threading.RLock()
        self.timeline: list[Record] = []
        self.dropped = 0                       # records trimmed off the front of the timeline
        self.tasks: dict[str, TaskInfo] = {}
        self.runs: list[Run] = []
        self.marks: list[Mark] = []
        self.priorities: dict[str, int] = {}   # uuid -> priority, from before_task_publish
        self._open: dict[str, Run] = {}        # uuid -> run in progress
        self._slots: dict[str, list] = defaultdict(list)  # hostname -> uuid per slot (None: free)
        self._states: Counter = Counter()
        self._events: Counter = Counter()
        self._queues: dict[str, Counter] = defaultdict(Counter)
        self._bands: dict[str, Counter] = defaultdict(Counter)
        self._flows: Counter = Counter()
        self._workers: dict[str, WorkerSummary] = {}
        self.errors: list[str] = []

    # -- input ---------------------------------------------------------------------------
    def apply(self, event: dict) -> Record | None:
        """Fold one Celery event (as a Receiver hands it over) into the state."""
        etype = event.get("type", "")
        if etype not in TASK_EVENTS and etype not in WORKER_EVENTS:
            return None
        now = time.time()
        ts = float(event.get("timestamp") or now)
        with self.lock:
            self._events[etype] += 1
            if etype in WORKER_EVENTS:
                rec = Record(time=ts, received=float(event.get("local_received") or now), type=etype,
                             hostname=event.get("hostname"))
                self._worker_event(rec, event)
            else:
                rec = self._task_event(etype, ts, event, now)
            self.timeline.append(rec)
            if len(self.timeline) > self.max_events:
                cut = len(self.timeline) // 4
                del self.timeline[:cut]
                self.dropped += cut
            return rec

    def _worker(self, hostname: str) -> WorkerSummary:
        w = self._workers.get(hostname)
        if w is None:
            w = self._workers[hostname] = WorkerSummary(hostname=hostname, events={s: 0 for s in STATES[1:]})
        return w

    def _worker_event(self, rec: Record, event: dict) -> None:
        w = self._worker(rec.hostname or "?")
        w.online = rec.type != "worker-offline"
        if rec.type == "worker-heartbeat":
            w.last_heartbeat = rec.time

    def _task_event(self, etype: str, ts: float, event: dict, now: float) -> Record:
        uid = event.get("uuid") or "?"
        state = etype[5:]
        task = self.tasks.get(uid)
        if task is None:
            task = self.tasks[uid] = TaskInfo(uuid=uid)
        if event.get("name"):
            task.name = event["name"]
        new_attempt = False
        if event.get("retries") is not None:
            retries = int(event["retries"])
            new_attempt = retries > task.attempt
            task.attempt = max(task.attempt, retries)
            task.retries = max(task.retries, retries)
        if state == "sent":
            task.queue = event.get("queue") or event.get("routing_key") or task.queue
            task.routing_key = event.get("routing_key") or task.routing_key
            task.sent = task.sent or ts
        else:
            task.hostname = event.get("hostname") or task.hostname
        if task.priority is None and uid in self.priorities:
            task.priority = self.priorities[uid]
        if task.queue is not None:
            task.band = band_for(task.priority, self.priority_steps)
        if state == "received":
            task.received = ts
        elif state == "started":
            task.started = ts
        elif state in FINAL_STATES:
            task.finished = ts
        if event.get("runtime") is not None:
            task.runtime = float(event["runtime"])
        if event.get("exception"):
            task.exception = str(event["exception"])

        # The state is the one of the newest event (ties: the later step), except task-sent:
        # the client stamps it *after* publishing, so a fast worker's task-received (even
        # task-succeeded) can be older, and arrive before or after it. So task-sent only
        # counts when it starts an attempt (the first, or a retry), and any worker event of
        # that attempt, whatever its stamp, moves the task on from it.
        order = (ts, _RANK[state])
        if state == "sent":
            if new_attempt:
                task._last = (float("-inf"), 0)
                task.state = state
        elif order >= task._last:
            task._last = order
            task.state = state
        if state == "sent" and task.sent == ts:
            self._bands[task.queue or "?"][task.band if task.band is not None else 0] += 1
        self._rekey(task)

        hostname = event.get("hostname") if state != "sent" else None
        if hostname:
            w = self._worker(hostname)
            if w.online is None:
                w.online = True
            w.events[state] = w.events.get(state, 0) + 1
            self._run_event(state, ts, task, hostname)
            w.active = sum(1 for u in self._slots[hostname] if u is not None)
        return Record(time=ts, received=float(event.get("local_received") or now), type=etype, uuid=uid,
                      name=task.name, hostname=event.get("hostname"), queue=task.queue,
                      routing_key=task.routing_key, priority=task.priority,
                      retries=event.get("retries", task.retries), runtime=event.get("runtime"),
                      exception=event.get("exception") or None)

    def _rekey(self, task: TaskInfo) -> None:
        """Keep the per-state, per-queue and flow counters in step with the task's state."""
        key = (task.queue or "?", task.band if task.band is not None else 0, task.hostname, task.state)
        old = task._key
        if old == key:
            return
        if old is not None:
            self._states[old[3]] -= 1
            self._queues[old[0]][old[3]] -= 1
            self._flows[old] -= 1
            if not self._flows[old]:
                del self._flows[old]
        self._states[key[3]] += 1
        self._queues[key[0]][key[3]] += 1
        self._flows[key] += 1
        task._key = key

    def _run_event(self, state: str, ts: float, task: TaskInfo, hostname: str) -> None:
        """Keep the Gantt runs. A worker sends a task's events from different threads (and
        connections), so a retry's task-started can overtake the task-retried of the run
        before it: events are matched to runs by time, not by arrival."""
        slots = self._slots[hostname]
        if state == "started":
            old = self._open.get(task.uuid)
            if old is not None:
                if ts <= old.start:
                    return                  # a duplicate
                self._close(old, ts, "retried", task, slots)   # its end event is still on the way
            try:
                slot = slots.index(None)
                slots[slot] = task.uuid
            except ValueError:
                slot = len(slots)
                slots.append(task.uuid)
            run = Run(uuid=task.uuid, name=task.name, hostname=hostname, slot=slot, start=ts, retries=task.retries)
            self._open[task.uuid] = run
            self.runs.append(run)
            if len(self.runs) > self.max_runs:
                del self.runs[: len(self.runs) // 4]
        elif state in ("retried",) + FINAL_STATES:
            run = self._open.get(task.uuid)
            if run is not None and ts >= run.start:
                del self._open[task.uuid]
                self._close(run, ts, state, task, slots)
            else:                           # late news of an earlier run, or a task never started
                run = next((r for r in reversed(self.runs[-1000:])
                            if r.uuid == task.uuid and r.start <= ts and r is not self._open.get(task.uuid)), None)
                if run is not None:
                    run.end, run.outcome = max(ts, run.start), state
            slot = run.slot if run is not None else 0
            if state != "succeeded":
                self.marks.append(Mark(time=ts, kind=state, hostname=hostname, slot=slot, uuid=task.uuid,
                                       name=task.name))
                if len(self.marks) > self.max_runs:
                    del self.marks[: len(self.marks) // 4]

    def _close(self, run: Run, ts: float, outcome: str, task: TaskInfo, slots: list) -> None:
        run.end = max(ts, run.start)
        run.outcome = outcome
        if outcome in ("failed", "retried"):
            run.exception = str(task.exception) if task.exception else None
        if 0 <= run.slot < len(slots) and slots[run.slot] == task.uuid:
            slots[run.slot] = None

    def note_priority(self, task_id: str, priority: int | None) -> None:
        if priority is None or not task_id:
            return
        with self.lock:
            self.priorities[task_id] = int(priority)
            if len(self.priorities) > self.max_events:
                for k in list(itertools.islice(self.priorities, len(self.priorities) // 4)):
                    del self.priorities[k]
            task = self.tasks.get(task_id)
            if task is not None and task.priority is None:
                # the task-sent event overtook the signal: move its counts to the right band
                old_band = task.band
                task.priority = int(priority)
                if task.queue is not None:
                    task.band = band_for(task.priority, self.priority_steps)
                    if task.sent is not None and old_band != task.band:
                        self._bands[task.queue][old_band or 0] -= 1
                        self._bands[task.queue][task.band] += 1
                    self._rekey(task)

    # -- output --------------------------------------------------------------------------
    def summary(self) -> Summary:
        with self.lock:
            states = {s: self._states.get(s, 0) for s in STATES}
            tasks = sum(states.values())
            in_flight = tasks - sum(states[s] for s in FINAL_STATES)
            queues = {q: {s: n for s, n in c.items() if n} for q, c in self._queues.items()}
            queues = {q: c for q, c in queues.items() if c}
            bands = {q: dict(sorted((b, n) for b, n in c.items() if n)) for q, c in self._bands.items()}
            workers = {h: WorkerSummary(h, w.online, w.last_heartbeat, w.active, dict(w.events))
                       for h, w in self._workers.items()}
            return Summary(tasks=tasks, states=states, events=dict(self._events), in_flight=in_flight,
                           queues=queues, bands={q: b for q, b in bands.items() if b}, workers=workers,
                           flows=dict(self._flows), errors=tuple(self.errors[-3:]),
                           banded=len(self.priority_steps) > 1)

    def gantt(self, last: int = 500) -> tuple[list[Run], list[Mark]]:
        """Copies of the newest ``last`` runs and marks (for drawing outside the lock)."""
        with self.lock:
            runs = [Run(r.uuid, r.name, r.hostname, r.slot, r.start, r.end, r.outcome, r.retries, r.exception)
                    for r in self.runs[-last:]]
            return runs, list(self.marks[-last:])

    def __len__(self) -> int:
        return len(self.timeline)


class Throttle:
    """Call ``fn`` after ``poke()``, at most ``max_per_second`` times a second, coalescing pokes.

    Any number of pokes while a call is pending or running lead to exactly one more call.
    Runs on its own daemon thread; ``calls`` keeps (start, end) monotonic times of each call.
    """

    def __init__(self, fn: Callable[[], None], max_per_second: float = 10.0, name: str = "celerylab-redraw"):
        self.fn = fn
        self.interval = 1.0 / max_per_second
        self.calls: list[tuple[float, float]] = []
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()          # one call at a time (thread or flush)
        self._last = float("-inf")
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._dirty.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._dirty.wait(0.25):
                continue
            wait = self._last + self.interval - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            self._call()

    def _call(self) -> None:
        with self._lock:
            self._dirty.clear()
            start = time.monotonic()
            self._last = start
            try:
                self.fn()
            except Exception:  # a broken view must not kill the redraw thread
                log.exception("celerylab: redraw failed")
            self.calls.append((start, time.monotonic()))
            if len(self.calls) > 10_000:
                del self.calls[:5_000]

    def flush(self) -> None:
        """Redraw now, on the calling thread (used for the final state)."""
        self._call()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class QueueSampler:
    """Queue depth on Redis, sampled every ``interval`` s on a thread.

    Depth of a queue = ``LLEN`` of its list plus each priority-band list (kombu keeps one list
    per band in ``priority_steps``); ``unacked`` counts messages workers hold but have not
    acknowledged (prefetched or running), for all queues together.
    """

    def __init__(self, app: Celery, queues: Callable[[], Iterable[str]], interval: float = 0.25,
                 on_sample: Callable[[], None] | None = None, max_samples: int = 2400, t0: float | None = None):
        import redis

        opts = dict(app.conf.broker_transport_options or {})
        self.steps = tuple(sorted(opts.get("priority_steps", DEFAULT_PRIORITY_STEPS)))
        self.sep = opts.get("sep", DEFAULT_SEP)
        self.prefix = opts.get("global_keyprefix", "")
        self.unacked_key = self.prefix + opts.get("unacked_key", "unacked")
        self.queues = queues
        self.interval = interval
        self.on_sample = on_sample
        self.max_samples = max_samples
        self.t0 = time.time() if t0 is None else t0
        self.samples: list[tuple[float, dict]] = []   # (seconds since t0, {(queue, band) | "unacked": n})
        self.error: str | None = None
        self._client = redis.Redis.from_url(app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="celerylab-queue-depth", daemon=True)
        self._thread.start()

    def sample(self) -> dict:
        queues = sorted(set(self.queues()))
        keys = [(q, b) for q in queues for b in self.steps]
        pipe = self._client.pipeline(transaction=False)
        for q, b in keys:
            pipe.llen(band_key(q, b, self.sep, self.prefix))
        pipe.hlen(self.unacked_key)
        values = pipe.execute()
        out = {k: int(v) for k, v in zip(keys, values)}
        out["unacked"] = int(values[-1])
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                depths = self.sample()
                self.error = None
            except Exception as exc:  # broker gone: keep trying, say so in the view
                self.error = _("queue depth unavailable: {error}", error=exc)
            else:
                self.samples.append((time.time() - self.t0, depths))
                if len(self.samples) > self.max_samples:
                    del self.samples[: self.max_samples // 4]
                if self.on_sample:
                    self.on_sample()
            self._stop.wait(max(self.interval - (time.monotonic() - started), 0.01))

    def latest(self) -> dict | None:
        return self.samples[-1][1] if self.samples else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._client.close()
        self._client.connection_pool.disconnect()


_registry_lock = threading.RLock()
_active: dict[str, "Watcher"] = {}     # broker URL -> running watcher


def active_watcher(app: Celery) -> "Watcher | None":
    """The running watcher on ``app``'s broker in this kernel, if any."""
    with _registry_lock:
        w = _active.get(str(app.conf.broker_url))
        return w if w is not None and w.running else None


class Watcher:
    """Celery events into a :class:`FlowState`, on a background thread. See the module doc.

    ``queues``: queue names to sample besides the default queue, ``task_queues`` and any
    queue seen in a task-sent event. ``sample_queues=False`` turns depth sampling off (it is
    off anyway on brokers other than Redis).
    """

    def __init__(self, app: Celery, queues: Iterable[str] = (), sample_queues: bool = True,
                 sample_interval: float = 0.25, max_per_second: float = 10.0, max_events: int = 200_000):
        self.app = app
        self.key = str(app.conf.broker_url)
        opts = dict(app.conf.broker_transport_options or {})
        self.redis = self.key.startswith(("redis://", "rediss://"))
        steps = opts.get("priority_steps", DEFAULT_PRIORITY_STEPS) if self.redis else (0,)
        self.state = FlowState(priority_steps=steps, max_events=max_events)
        self.extra_queues = list(queues)
        self.sample_queues = sample_queues and self.redis
        self.sample_interval = sample_interval
        self.max_per_second = max_per_second
        self.t0: float | None = None
        self.sampler: QueueSampler | None = None
        self.error: str | None = None
        self._subscribers: list[Callable[[], None]] = []
        self._renders: list[tuple[int, float]] = []   # (events included, wall time the redraw ended)
        self._throttle: Throttle | None = None
        self._thread: threading.Thread | None = None
        self._receiver = None
        self._conn = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._nonce = uuidlib.uuid4().hex
        self._forget = None
        self._last_event = 0.0

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> "Watcher":
        """Start receiving; returns once events really arrive (a probe event went round)."""
        if self.running:
            return self
        _log_to_file()
        with _registry_lock:
            old = _active.get(self.key)
            if old is not None and old is not self:
                old._replaced()
            _active[self.key] = self
        if self.t0 is None:          # a restart keeps the timeline's origin
            self.t0 = time.time()
        self._stopping.clear()
        self._ready.clear()
        before_task_publish.connect(self._on_publish, weak=False)
        self._throttle = Throttle(self._redraw, self.max_per_second, name=f"celerylab-redraw-{self.app.main}")
        self._thread = threading.Thread(target=self._run, name=f"celerylab-events-{self.app.main}", daemon=True)
        self._thread.start()
        self._forget = processes.register(f"event watcher on {self.key}", lambda: self.stop(settle=0))
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(settle=0)
            raise
        if self.sample_queues:
            self.sampler = QueueSampler(self.app, self.queue_names, self.sample_interval,
                                        on_sample=self._poke, t0=self.t0)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.app.connection() as conn:
            dispatcher = self.app.events.Dispatcher(conn, enabled=True)
            try:
                while not self._ready.is_set():
                    if not self.running:
                        raise RuntimeError(_("event receiver stopped: {error}", error=self.error or _("unknown error")))
                    if time.monotonic() > deadline:
                        raise TimeoutError(_("no events from {broker} within {timeout:.0f} s: {error}",
                                             broker=self.key, timeout=timeout, error=self.error or ""))
                    dispatcher.send(PROBE_EVENT, nonce=self._nonce)
                    self._ready.wait(0.05)
                self._wakeup_workers(conn)
            finally:
                dispatcher.close()

    def _wakeup_workers(self, conn) -> None:
        """Ask running workers for a heartbeat now, so the views list them at once.

        (The Receiver's own ``wakeup`` goes through the app's producer pool and leaves pooled
        connections behind; this uses the watcher's connection only.)
        """
        from kombu.pidbox import Mailbox

        conf = self.app.conf
        mailbox = Mailbox(conf.control_exchange, type="fanout", accept=["json"], serializer="json")
        try:
            mailbox(conn)._broadcast("heartbeat", {}, None, False, 1.0, None, None, channel=conn.default_channel)
        except Exception as exc:  # only a nicety: workers also beat every 2 s
            log.warning("could not wake workers up: %s", exc)

    def _run(self) -> None:
        self.app.set_current()
        while not self._stopping.is_set():
            try:
                self._conn = self.app.connection()
                self._receiver = self.app.events.Receiver(self._conn, handlers={"*": self._on_event}, app=self.app)
                for _ in self._receiver.consume(safety_interval=0.1, wakeup=False):
                    if self._stopping.is_set():
                        break
            except Exception as exc:  # broker restarted or gone: retry until stopped
                if self._stopping.is_set():
                    break
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("event receiver on %s: %s (retrying in 1 s)", self.key, self.error)
                with self.state.lock:
                    self.state.errors.append(self.error)
                self._poke()
                self._stopping.wait(1.0)
            finally:
                if self._conn is not None:
                    self._conn.release()

    def stop(self, settle: float = 1.0) -> None:
        """Stop receiving and sampling. ``settle``: first wait (up to that many seconds) until
        no event has come for 0.25 s, so events of tasks that just finished are counted; while a
        task is left started without its final event, wait for it up to 3 s (on a busy machine
        it comes late)."""
        if self._thread is None:
            return
        if settle and self.running:
            start = time.monotonic()
            while True:
                now = time.monotonic()
                started = self.summary().states["started"]
                # a started task's final event is on its way: give it longer than a quiet spell
                if now - start >= (max(settle, 3.0) if started else settle):
                    break
                if not started and now - self._last_event >= 0.25:
                    break
                time.sleep(0.05)
        self._stopping.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not threading.current_thread():
            self._thread.join(10)
        self._thread = None
        if self.sampler is not None:
            self.sampler.stop()
        before_task_publish.disconnect(self._on_publish)
        if self._throttle is not None:
            self._throttle.stop()
            if self._subscribers:
                self._throttle.flush()      # views show the final state
        if self._forget:
            self._forget()
            self._forget = None
        with _registry_lock:
            if _active.get(self.key) is self:
                del _active[self.key]

    def _replaced(self) -> None:
        self.stop(settle=0)

    def __enter__(self) -> "Watcher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- events ---------------------------------------------------------------------------
    def _on_event(self, event: dict) -> None:
        if event.get("type") == PROBE_EVENT:
            if event.get("nonce") == self._nonce:
                self._ready.set()
            return
        if self.state.apply(event) is not None:
            self._last_event = time.monotonic()
            self._poke()

    def _on_publish(self, sender=None, headers=None, properties=None, **kwargs) -> None:
        task_id = (headers or {}).get("id")
        self.state.note_priority(task_id, (properties or {}).get("priority"))

    def queue_names(self) -> list[str]:
        conf = self.app.conf
        names = {conf.task_default_queue or "celery", *self.extra_queues}
        if conf.task_queues:
            names.update(q.name for q in conf.task_queues)
        with self.state.lock:
            names.update(t.queue for t in self.state.tasks.values() if t.queue)
        return sorted(names)

    # -- views ----------------------------------------------------------------------------
    def subscribe(self, redraw: Callable[[], None]) -> Callable[[], None]:
        """Call ``redraw()`` (throttled, on the redraw thread) whenever something changed."""
        self._subscribers.append(redraw)
        self._poke()

        def unsubscribe() -> None:
            if redraw in self._subscribers:
                self._subscribers.remove(redraw)
        return unsubscribe

    def _poke(self) -> None:
        if self._throttle is not None and self._subscribers:
            self._throttle.poke()

    def _redraw(self) -> None:
        n = len(self.state.timeline) + self.state.dropped
        for redraw in list(self._subscribers):
            redraw()
        self._renders.append((n, time.time()))
        if len(self._renders) > 20_000:
            del self._renders[:10_000]

    def redraw_now(self) -> None:
        if self._throttle is not None:
            self._throttle.flush()

    @property
    def redraws(self) -> list[tuple[float, float]]:
        """(start, end) monotonic times of every throttled redraw."""
        return list(self._throttle.calls) if self._throttle else []

    # -- data ------------------------------------------------------------------------------
    def summary(self) -> Summary:
        s = self.state.summary()
        if self.error and not s.errors:
            s.errors = (self.error,)
        return s

    @property
    def timeline(self) -> list[Record]:
        with self.state.lock:
            return list(self.state.timeline)

    def latencies(self) -> list[tuple[float, float]]:
        """Per task event in the timeline: seconds from (its sending, its arrival here) to the end
        of the first redraw that included it. Events no redraw has shown yet are left out."""
        renders = list(self._renders)
        with self.state.lock:
            timeline = list(self.state.timeline)
            offset = self.state.dropped
        counts = [n for n, _ in renders]
        out = []
        for i, rec in enumerate(timeline, start=offset):
            if not rec.type.startswith("task-"):
                continue
            j = bisect.bisect_right(counts, i)
            if j >= len(renders):
                break
            end = renders[j][1]
            out.append((end - rec.time, end - rec.received))
        return out

    def wait_for(self, predicate: Callable[[Summary], bool], timeout: float = 10.0) -> Summary:
        """Block until ``predicate(summary)`` is true; returns that summary (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.summary()
            if predicate(s):
                return s
            if time.monotonic() > deadline:
                raise TimeoutError(_("watcher: condition not met within {timeout} s; now: {summary}",
                                     timeout=timeout, summary=s.line()))
            time.sleep(0.02)

    def __repr__(self) -> str:
        return f"<celerylab watcher of app {self.app.main!r}: {'running' if self.running else 'stopped'}>"
