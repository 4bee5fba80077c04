"""Tasks and helpers for notebooks/08_production.ipynb.

Worker subprocesses import this module (``spawn_worker("celerylab.lessons.l08_production")``),
so every task lives here. Tasks leave *notes* in the lesson's Redis (``l08:notes:<label>``:
one ``start:<pid>`` / ``end:<pid>`` entry per execution), which lets the notebook count how
often a task really ran, in which process, even when the process running it was killed.
In a class the keys carry the learner's prefix (``alice:l08:notes:<label>``): see :func:`db`.
"""
from __future__ import annotations

import os
import signal
import time

import threading

import redis
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded

from celerylab.broker import redis_client
from celerylab.inspect_broker import create_redis_app

# The lesson shows the Redis transport at work (the unacked hash, the visibility timeout,
# priority band lists) and keeps its notes in Redis: on a RabbitMQ class broker it runs on
# the kernel's private Redis (its worker processes share it).
app = create_redis_app("l08_production")

# The lesson's own keys. In a class (CELERYLAB_LEARNER=alice) db() puts the learner's prefix in
# front of every key, as Celery does for its own: alice:l08:notes:<label>, alice:unacked...
NOTES = "l08:notes:"
CHARGES = "l08:charges:"
DONE = "l08:idem:"
LABELS = "l08:labels"    # a set of every label noted, so reset() finds the keys without KEYS/SCAN

_clients: dict[int, redis.Redis] = {}


def db() -> redis.Redis:
    """A Redis client on the broker, one per process (a forked pool child makes its own); keys
    get the learner's prefix (none outside a class)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        client = _clients[pid] = redis_client(app.conf.broker_url, decode_responses=True)
    return client


def note(label: str, what: str) -> None:
    pipe = db().pipeline()
    pipe.rpush(NOTES + label, f"{what}:{os.getpid()}")
    pipe.sadd(LABELS, label)
    pipe.execute()


# ---------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------
@app.task(name="l08.slow")
def slow(seconds: float, label: str) -> str:
    """Sleep ``seconds``, noting start and end: the stand-in for any long job."""
    note(label, "start")
    time.sleep(seconds)
    note(label, "end")
    return label


@app.task(name="l08.slow_late", acks_late=True)
def slow_late(seconds: float, label: str) -> str:
    """:func:`slow`, acknowledged after it returns (``acks_late=True`` on this one task)."""
    return slow.run(seconds, label)


@app.task(name="l08.slow_requeue", acks_late=True, reject_on_worker_lost=True)
def slow_requeue(seconds: float, label: str) -> str:
    """:func:`slow`, acknowledged late and requeued if its pool process dies (both set on this task)."""
    return slow.run(seconds, label)


@app.task(name="l08.poison", acks_late=True, reject_on_worker_lost=True)
def poison(label: str) -> None:
    """Kills the process that runs it (a segfault, the OOM killer, a C extension's abort());
    requeued each time its process dies (``reject_on_worker_lost``): a poison message."""
    note(label, "start")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="l08.poison_retry", bind=True, acks_late=True, reject_on_worker_lost=True,
          retry_on_worker_lost=True, max_retries=2, default_retry_delay=0)
def poison_retry(self, label: str) -> None:
    """:func:`poison` with ``retry_on_worker_lost`` (Celery 5.7): each lost process becomes a retry,
    so ``max_retries`` (2 here: three executions) ends the loop; ``default_retry_delay`` is the
    countdown of those retries (0 here, 180 s by default)."""
    note(label, "start")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="l08.fail_late", acks_late=True)
def fail_late(label: str) -> None:
    """Raises: a late-acked task that fails (``acks_on_failure`` left at its default, True: ack)."""
    note(label, "start")
    raise ValueError(label)


@app.task(name="l08.fail_late_reject", acks_late=True, acks_on_failure=False)
def fail_late_reject(label: str) -> None:
    """:func:`fail_late` with ``acks_on_failure=False``: the failed message is rejected, not acked."""
    note(label, "start")
    raise ValueError(label)


@app.task(name="l08.hang_late", acks_late=True, time_limit=0.3)
def hang_late(label: str, seconds: float = 1.0) -> str:
    """Runs past its hard time limit, late-acked (``acks_on_timeout`` at its default, True: ack)."""
    note(label, "start")
    time.sleep(seconds)
    return "finished"


@app.task(name="l08.hang_late_requeue", acks_late=True, time_limit=0.3, acks_on_timeout=False)
def hang_late_requeue(label: str, seconds: float = 1.0) -> str:
    """:func:`hang_late` with ``acks_on_timeout=False``: the timed-out message is rejected *with
    requeue*, so it comes back, times out again, comes back..."""
    note(label, "start")
    time.sleep(seconds)
    return "finished"


@app.task(name="l08.charge", bind=True)
def charge(self, order_id: str, amount: int, seconds: float = 0.0, key: str | None = None) -> str:
    """Charge a customer: the side effect must happen once, however often the task runs.

    ``key`` is the idempotency key (``None``: no protection). The first execution to claim it
    (``SET key NX``) performs the charge; every later execution sees it taken and skips.
    """
    note(order_id, "start")
    if key is None or db().set(DONE + key, self.request.id or "local", nx=True, ex=3600):
        db().rpush(CHARGES + order_id, amount)
        outcome = "charged"
    else:
        outcome = "skipped (already done)"
    time.sleep(seconds)
    note(order_id, "end")
    return outcome


@app.task(name="l08.polite", soft_time_limit=0.3, time_limit=3)
def polite(label: str, seconds: float = 5.0) -> str:
    """Respects its soft time limit: catches SoftTimeLimitExceeded, cleans up, returns."""
    note(label, "start")
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        note(label, "cleanup")
        return "stopped cleanly at the soft limit"
    return "finished"


@app.task(name="l08.stubborn", time_limit=0.5)
def stubborn(label: str, seconds: float = 1.5) -> str:
    """Runs past its hard time limit (no soft limit, nothing to catch)."""
    note(label, "start")
    time.sleep(seconds)
    note(label, "end")
    return "finished"


@app.task(name="l08.cpu")
def cpu(n: int) -> list:
    """CPU-bound: pure-Python arithmetic, holds the GIL the whole time.

    Returns [pid, start, end, cpu seconds this thread used].
    """
    start, used = time.time(), time.thread_time()
    total = 0
    for i in range(n):
        total += i * i % 7
    return [os.getpid(), start, time.time(), time.thread_time() - used]


@app.task(name="l08.io")
def io(seconds: float) -> list:
    """IO-bound: waits (like a slow HTTP call). Returns [pid, start, end]."""
    start = time.time()
    time.sleep(seconds)
    return [os.getpid(), start, time.time()]


@app.task(name="l08.pid")
def pid() -> int:
    return os.getpid()


@app.task(name="l08.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="l08.add_quiet", ignore_result=True)
def add_quiet(x: int, y: int) -> int:
    return x + y


# ---------------------------------------------------------------------------------------
# Helpers for the notebook (and the lab's checks)
# ---------------------------------------------------------------------------------------
def reset(*labels: str) -> None:
    """Forget the notes (and charges, and idempotency keys named like the label) of these labels,
    so a re-run cell starts from zero; no labels: of every label noted so far."""
    everything = not labels
    if everything:
        labels = tuple(db().smembers(LABELS))
    keys = [p + label for label in labels for p in (NOTES, CHARGES, DONE)]
    pipe = db().pipeline()
    if keys:
        pipe.delete(*keys)
        pipe.srem(LABELS, *labels)
    if everything:
        pipe.delete(LABELS)
    pipe.execute()


def notes(label: str) -> list[str]:
    return db().lrange(NOTES + label, 0, -1)


def runs(label: str) -> int:
    """How many times a task with this label started (in any process)."""
    return sum(1 for n in notes(label) if n.startswith("start:"))


def finished(label: str) -> int:
    return sum(1 for n in notes(label) if n.startswith("end:"))


def charges(order_id: str) -> int:
    return db().llen(CHARGES + order_id)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until it is true; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def running_pid(label: str, timeout: float = 10.0, nth: int = 1) -> int:
    """Wait until the ``nth`` execution of ``label`` has started; the pid of the process running it."""
    if not wait_for(lambda: runs(label) >= nth, timeout):
        raise TimeoutError(f"{label!r} did not start {nth} time(s) within {timeout:.0f} s")
    starts = [n for n in notes(label) if n.startswith("start:")]
    return int(starts[nth - 1].split(":")[1])


def wait_until_running(*labels: str, timeout: float = 10.0) -> list[int]:
    """Wait until a task of each label has started; the pids of the processes running them."""
    return [running_pid(label, timeout) for label in labels]


def kill_process(pid: int) -> None:
    """``kill -9 pid``: one process, no warning, no cleanup."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_reapers: list[threading.Thread] = []


def kill_workers(*workers) -> None:
    """``kill -9`` every process of these spawned workers at once (main and pool processes).

    They are dead when this returns. Reaping them (``WorkerProcess.kill``, which waits until
    the whole process group has gone) goes on in the background: :func:`reaped` waits for it.
    """
    for worker in workers:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for worker in workers:
        reaper = threading.Thread(target=worker.kill, name="celerylab-l08-reaper", daemon=True)
        reaper.start()
        _reapers.append(reaper)


def reaped(timeout: float = 20.0) -> bool:
    """Wait for the background reaping started by :func:`kill_workers`; True when all are done."""
    deadline = time.monotonic() + timeout
    while _reapers:
        _reapers[0].join(max(0.0, deadline - time.monotonic()))
        if _reapers[0].is_alive():
            return False
        _reapers.pop(0)
    return True


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped by its parent, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def where_is(task_id: str) -> str:
    """Where the broker holds a task's message: "queued", "unacked" (taken, not yet acked) or "gone".

    Redis keeps waiting messages in one list per queue (and per priority band) and messages a
    worker has taken but not acknowledged in the ``unacked`` hash, until they are acked or
    restored to their queue after the visibility timeout. The queues looked at are those this
    process's app has sent to (``app.amqp.queues``: ``celery`` and every ``queue=`` used).
    """
    client = db()
    sep = "\x06\x16"
    for queue in list(app.amqp.queues):
        for key in (queue, *(f"{queue}{sep}{band}" for band in range(1, 10))):  # its priority band lists
            if any(task_id in m for m in client.lrange(key, 0, -1)):
                return "queued"
    for key in ("unacked", "poison_unacked"):  # the lesson's poisoned worker keeps its own (section 1)
        if client.type(key) == "hash" and any(task_id in m for m in client.hvals(key)):
            return "unacked"
    return "gone"


def queue_length(queue: str = "celery") -> int:
    """Messages waiting in a queue, every priority band included (what a worker has not taken)."""
    client = db()
    sep = "\x06\x16"
    return client.llen(queue) + sum(client.llen(f"{queue}{sep}{band}") for band in (1, 2, 3, 4, 5, 6, 7, 8, 9))


# Tasks run by a worker in *this* process (``run_worker``), timed from Celery's signals:
# task_prerun fires before the task body, task_postrun after its result has been stored.
_started: dict[str, float] = {}
_durations: dict[str, list[float]] = {}
_stats_lock = threading.Lock()


@signals.task_prerun.connect(weak=False, dispatch_uid="l08-prerun")
def _on_prerun(sender=None, task_id=None, **_):
    with _stats_lock:
        _started[task_id] = time.perf_counter()


@signals.task_postrun.connect(weak=False, dispatch_uid="l08-postrun")
def _on_postrun(sender=None, task_id=None, **_):
    with _stats_lock:
        start = _started.pop(task_id, None)
        if start is not None:
            _durations.setdefault(getattr(sender, "name", str(sender)), []).append(time.perf_counter() - start)


def forget_counts() -> None:
    with _stats_lock:
        _started.clear()
        _durations.clear()


def executed(task_name: str) -> int:
    """How many tasks of this name a worker in this process has finished (since forget_counts)."""
    with _stats_lock:
        return len(_durations.get(task_name, ()))


def median_duration(task_name: str) -> float:
    """Median seconds from task_prerun to task_postrun (body plus storing the result)."""
    with _stats_lock:
        values = sorted(_durations.get(task_name, ()))
    return values[len(values) // 2] if values else 0.0


# ---------------------------------------------------------------------------------------
# Pool measurements
# ---------------------------------------------------------------------------------------
def max_overlap(intervals) -> int:
    """The most intervals ``(start, end)`` running at one moment."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


def _batch(values, sent_at: float) -> dict:
    """Per batch of task results ``[pid, start, end(, cpu_seconds)]``: seconds from sending to
    the last end, processes used, most tasks running at once and (CPU-bound tasks) cores busy."""
    out = {"seconds": max(v[2] for v in values) - sent_at, "processes": len({v[0] for v in values}),
           "overlap": max_overlap([(v[1], v[2]) for v in values])}
    if all(len(v) > 3 for v in values):
        # CPU seconds the tasks used per second from the first start to the last end: how many
        # cores they kept busy. Sending and queueing are left out, so broker latency does not count.
        span = max(v[2] for v in values) - min(v[1] for v in values)
        out["cores"] = sum(v[3] for v in values) / span if span > 0 else 0.0
    return out


def _collect(batch, timeout: float) -> list:
    values = [r.get(timeout=timeout) for r in batch]
    for r in batch:
        r.forget()
    return values


def measure(task, args, count: int, queue: str, timeout: float = 60.0) -> dict:
    """Send ``count`` copies of ``task(*args)`` to ``queue`` and wait for them all.

    Returns the seconds until the last one ended, how many processes ran them, the most running
    at once and, for :func:`cpu` (which returns ``[pid, start, end, cpu_seconds]``), ``"cores"``:
    the CPU seconds they used per second of the batch, i.e. how many cores they kept busy.
    """
    sent_at = time.time()
    batch = [task.apply_async(args, queue=queue) for _ in range(count)]
    return _batch(_collect(batch, timeout), sent_at)


def measure_each(task, args, count: int, queues, timeout: float = 60.0) -> dict:
    """:func:`measure` on each queue, one after another: every pool gets the whole machine."""
    return {q: measure(task, args, count, q, timeout) for q in queues}


def measure_together(task, args, count: int, queues, timeout: float = 60.0) -> dict:
    """:func:`measure` on every queue *at the same time* (for IO-bound tasks, which wait rather
    than compute: running the batches side by side costs no accuracy and saves time)."""
    sent_at = time.time()
    batches = {q: [] for q in queues}
    for _ in range(count):
        for q in queues:
            batches[q].append(task.apply_async(args, queue=q))
    return {q: _batch(_collect(batch, timeout), sent_at) for q, batch in batches.items()}


def calibrate(seconds: float = 0.15) -> int:
    """The ``n`` for :func:`cpu` that takes about ``seconds`` of CPU in this process."""
    n = 200_000
    while True:
        start = time.process_time()
        cpu.run(n)
        spent = time.process_time() - start
        if spent > 0.03:
            return max(1, int(n * seconds / spent))
        n *= 4


# ---------------------------------------------------------------------------------------
# Figures and demos
# ---------------------------------------------------------------------------------------
class Figure:
    """A plotly figure shown as plotly JSON (the pinned ``plotly_mimetype`` renderer) plus one
    line of text, which is what nbval compares."""

    def __init__(self, fig, text: str):
        self.fig = fig
        self.text = text

    def _repr_mimebundle_(self, **kwargs):
        import plotly.io as pio

        bundle = dict(pio.renderers["plotly_mimetype"].to_mimebundle(self.fig.to_dict()))
        bundle["text/plain"] = self.text
        return bundle


def pool_figure(timings: dict, title: str = "Seconds per batch and pool") -> Figure:
    """Grouped bars: ``timings[pool][kind]["seconds"]`` (rounded to 0.01 s) per pool and kind
    of work (``"CPU-bound"``, ``"IO-bound"``...)."""
    import plotly.graph_objects as go

    pools = list(timings)
    kinds = list(dict.fromkeys(kind for per_pool in timings.values() for kind in per_pool))
    fig = go.Figure()
    for kind in kinds:
        fig.add_bar(name=kind, x=pools, y=[round(timings[p][kind]["seconds"], 2) for p in pools])
    fig.update_layout(barmode="group", height=320, title=title, margin=dict(l=60, r=20, t=50, b=40),
                      yaxis=dict(title="seconds for the batch (lower is better)", rangemode="tozero"))
    text = "; ".join(f"{p}: " + ", ".join(f"{k} {timings[p][k]['seconds']:.2f} s" for k in kinds if k in timings[p])
                     for p in pools)
    return Figure(fig, f"(bar chart, seconds per batch) {text}")


# ---------------------------------------------------------------------------------------
# A stock redis-server (section 3 of the lesson): what persistence Redis has out of the box
# ---------------------------------------------------------------------------------------
#: ``CONFIG GET save`` / ``CONFIG GET appendonly`` on a redis-server started with no configuration
#: file, recorded for machines without redis-server; tests/test_l08_production.py re-checks it
#: against the installed redis-server.
RECORDED_STOCK_REDIS = {"version": "7.0.15", "config": {"save": "3600 1 300 100 60 10000", "appendonly": "no"}}


def stock_redis_server():
    """A :class:`celerylab.servers.RedisServer` started with Redis's own defaults: only port, bind
    address and data folder on the command line (the kit's servers turn snapshots off)."""
    from celerylab.servers import LOOPBACK, RedisServer

    class StockRedisServer(RedisServer):
        def command(self) -> list[str]:
            return [self.binary(), "--port", str(self.port), "--bind", LOOPBACK, "--dir", self.datadir]

    return StockRedisServer()
