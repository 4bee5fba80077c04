"""Lesson 04's tasks and apps as a module: routing, priority bands, prefetch.

notebooks/04_priority_routing.ipynb defines its tasks, apps and counting in its own cells, where
the learner reads and edits them; this module keeps a copy for tests/test_l04_priority_routing.py
and for the lab's q4 check (:func:`head_of_line` with :data:`work` / :data:`work_late`).

Every task records one :class:`Run` (what, which worker, which queue, when) in :data:`runs`.
The workers run in the same process, so the caller reads the same list.

Apps:

* :data:`app`: Celery's defaults for priority on Redis (bands ``[0, 3, 6, 9]``);
* :data:`full_app`: every priority 0-9 its own band (``priority_steps=list(range(10))``),
  on its own queue ``full`` so the two never share a list.

The RabbitMQ experiments are in the lesson's cells (with :mod:`celerylab.recorded`).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from celerylab import queues
from celerylab.inspect_broker import create_redis_app
from celerylab.side_by_side import stop_all  # noqa: F401 - used by the lesson
from celerylab.worker import start_worker

# Priority bands are kombu's Redis emulation: on a RabbitMQ class broker these two apps run on a
# private Redis (the lesson's cells run RabbitMQ's native priority on the class broker).
app = create_redis_app("l04_priority_routing")

FULL_RANGE = {"priority_steps": list(range(10))}   # ten bands: ten real levels
full_app = create_redis_app("l04_full_range", task_default_queue="full", broker_transport_options=FULL_RANGE)


@dataclass(frozen=True)
class Run:
    task: str
    label: str
    queue: str | None  # the queue the worker took it from
    thread: int        # the pool thread that ran it (see :func:`worker_names`)
    started: float     # time.monotonic()
    finished: float


class Runs:
    """Thread-safe log of task executions."""

    def __init__(self):
        self._items: list[Run] = []
        self.begun: list[str] = []   # labels of the tasks that have started
        self._cond = threading.Condition()

    def add(self, run: Run) -> None:
        with self._cond:
            self._items.append(run)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self.begun.clear()

    @property
    def items(self) -> list[Run]:
        with self._cond:
            return list(self._items)

    def labels(self) -> list[str]:
        """Labels in the order the tasks *started*."""
        return [r.label for r in sorted(self.items, key=lambda r: r.started)]

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._items) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True

    def __len__(self) -> int:
        return len(self.items)


runs = Runs()
#: set once worker B of :func:`head_of_line` runs: a task labelled "long" lasts until then, and its seconds more
b_is_up = threading.Event()


def _record(task, label, seconds=0.0):
    started = time.monotonic()
    runs.begun.append(str(label))
    if label == "long":
        b_is_up.wait(timeout=10)
    if seconds:
        time.sleep(seconds)
    info = task.request.delivery_info or {}
    runs.add(Run(task.name, str(label), info.get("routing_key"), threading.get_ident(), started, time.monotonic()))
    return label


def worker_names(*workers) -> dict[int, str]:
    """``{pool thread id: worker name}`` for running in-kernel workers (call before stopping them).

    (Inside a threads-pool worker, Celery sets ``self.request.hostname`` to the machine's name,
    not the worker's node name, so the lesson tells its workers apart by their pool threads.)
    """
    names = {}
    for w in workers:
        executor = getattr(w.controller.pool, "executor", None)
        for t in getattr(executor, "_threads", ()):
            names[t.ident] = w.hostname.split("@", 1)[0]
    return names


# -- routing ------------------------------------------------------------------------------------
@app.task(bind=True, name="l04.resize_image", shared=False)
def resize_image(self, name):
    """Pretend to resize an image (slow, CPU-heavy work in real life)."""
    return _record(self, name, 0.05)


@app.task(bind=True, name="l04.send_email", shared=False)
def send_email(self, to):
    """Pretend to send an email (fast, urgent work)."""
    return _record(self, to)


# -- priority -----------------------------------------------------------------------------------
@app.task(bind=True, name="l04.job", shared=False)
def job(self, label):
    return _record(self, label, 0.01)


@full_app.task(bind=True, name="l04full.job", shared=False)
def full_job(self, label):
    return _record(self, label, 0.01)


# -- prefetch and head-of-line blocking -----------------------------------------------------------
@app.task(bind=True, name="l04.work", shared=False)
def work(self, label, seconds):
    """Early ack (Celery's default): the message is acknowledged when the task starts."""
    return _record(self, label, seconds)


@app.task(bind=True, name="l04.work_late", acks_late=True, shared=False)
def work_late(self, label, seconds):
    """Late ack: the message is acknowledged when the task has finished."""
    return _record(self, label, seconds)


@dataclass
class Blocking:
    """What one head-of-line experiment measured."""

    setting: str
    held_by_a: int          # messages worker A had taken when B started (running + prefetched)
    stuck: int              # short tasks A ran after the long one finished (they waited behind it)
    shorts_on_a: int
    shorts_on_b: int


def head_of_line(task, prefetch_multiplier: int, queue: str, long_seconds: float = 0.6,
                 shorts: int = 6, short_seconds: float = 0.02) -> Blocking:
    """Two workers, one slot each, both ``prefetch_multiplier``: who runs the short tasks?

    (The lab's check runs this; lesson 04 runs the same experiment in its cells.)

    1. queue one long task, then ``shorts`` short ones, while no worker consumes ``queue``;
    2. start worker A; wait until it runs the long task and has stopped taking messages;
    3. start worker B (the long task lasts until then, and ``long_seconds`` more); wait until
       every task ran; stop both.

    Short tasks that A took (prefetched) wait behind the long one although B is idle.
    """
    runs.clear()
    b_is_up.clear()
    task.apply_async(("long", long_seconds), queue=queue)
    for i in range(shorts):
        task.apply_async((f"short-{i + 1}", short_seconds), queue=queue)
    total = shorts + 1
    a = start_worker(task.app, concurrency=1, queues=[queue], hostname=f"A-{queue}@kernel",
                     prefetch_multiplier=prefetch_multiplier)
    b = None
    try:
        queues.wait_until(lambda: "long" in runs.begun, timeout=10)   # A runs the long task...
        held = total - queues.wait_settled(task.app, queue, quiet=0.3, timeout=5)   # ...and took what it could
        b = start_worker(task.app, concurrency=1, queues=[queue], hostname=f"B-{queue}@kernel",
                         prefetch_multiplier=prefetch_multiplier)
        b_is_up.set()
        runs.wait_for(total, timeout=10)
        names = worker_names(a, b)
    finally:
        b_is_up.set()   # never leave the long task waiting
        stop_all(a, b)
    items = runs.items
    long_run = next(r for r in items if r.label == "long")
    short_runs = [r for r in items if r.label != "long"]
    on_a = [r for r in short_runs if names.get(r.thread, "").startswith("A-")]
    stuck = [r for r in on_a if r.started >= long_run.finished - 0.005]
    return Blocking(
        setting=f"prefetch_multiplier={prefetch_multiplier}, {'acks_late' if task.acks_late else 'early ack'}",
        held_by_a=held, stuck=len(stuck),
        shorts_on_a=sum(1 for r in short_runs if names.get(r.thread, "").startswith("A-")),
        shorts_on_b=sum(1 for r in short_runs if names.get(r.thread, "").startswith("B-")))


# -- the same experiment with worker processes (worker_disable_prefetch) ---------------------------
@app.task(bind=True, name="l04.hol_proc", shared=False)
def hol_proc(self, label, seconds):
    """For worker *processes* (lesson 04, section 5): ``[label, worker pid, started, finished]``.

    Wall-clock times (``time.time()``), comparable across processes. The task labelled "long"
    notes in Redis that it began (``l04:long-begun:<queue>``), then lasts until the kernel sets
    ``l04:b-up:<queue>`` (worker B is up), and ``seconds`` more.
    """
    from celerylab.inspect_broker import redis_client

    started = time.time()
    queue = (self.request.delivery_info or {}).get("routing_key")
    if label == "long":
        client = redis_client(self.app.conf.broker_url)  # in a class, the learner's prefix on every key
        client.set(f"l04:long-begun:{queue}", 1)
        deadline = time.monotonic() + 15
        while not client.exists(f"l04:b-up:{queue}") and time.monotonic() < deadline:
            time.sleep(0.02)
    time.sleep(seconds)
    return [label, os.getpid(), started, time.time()]


# -- RabbitMQ -------------------------------------------------------------------------------------
# The lesson's RabbitMQ experiments (the seed's configuration, and one that works) are in its
# cells; they run live when the kit's broker is RabbitMQ, and show a recording otherwise
# (celerylab.recorded).
def on_rabbitmq(a) -> bool:
    """True when ``a``'s broker is AMQP (RabbitMQ), i.e. ``CELERYLAB_BROKER_URL=amqp://...``."""
    return str(a.conf.broker_url or "").startswith(("amqp://", "amqps://", "pyamqp://"))


app.set_current()  # the lesson's main app stays Celery's current app
