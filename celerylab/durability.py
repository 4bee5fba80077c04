"""Does a batch of tasks survive a broker restart? Lesson 08b's experiments, for tests/test_durability.py.

Lesson 08b runs the same experiments in its cells (settings, publishing, counting); from this
module it uses only plumbing: :class:`Ledger` (where tasks record that they ran), :class:`Queued`
(a row of its table) and :func:`chart`.

:func:`batch_through_restart` sends ``n`` tasks to a broker of our own (a
:class:`celerylab.servers.RedisServer` or :class:`~celerylab.servers.RabbitMQServer`), lets a
worker start on them, restarts the broker in the middle of the batch, and counts how many tasks
ever ran to the end. Each task records its number in a Redis set of its own (the *ledger*, on a
separate embedded Redis), so the count does not depend on the broker that is being restarted.

* Redis without persistence: a restart empties the broker: every message still queued is lost.
* Redis with ``appendonly yes`` (AOF, ``appendfsync always``): every write is on disk before Redis
  answers; after the restart the queue and the unacknowledged messages are back, and a worker
  with ``acks_late`` finishes the batch, except at most the messages it had just popped (``BRPOP``)
  when the connection dropped, before kombu recorded them as unacknowledged.
* RabbitMQ: Celery's queues are durable and its messages persistent by default, so a restarted
  RabbitMQ still holds them.

A task may run twice (the restart can come between its end and its acknowledgement): that is
at-least-once delivery, and why the ledger is a set.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import celerylab

from .resp_server import EmbeddedRedisServer


@dataclass
class Survival:
    sent: int
    done_before: int  # finished before the restart
    done: int  # finished in the end (each task counted once)
    runs: int  # executions, repeats included
    seconds: float
    restarts: int = 0  # worker processes started again after one exited (see batch_through_restart)

    @property
    def lost(self) -> int:
        return self.sent - self.done

    def line(self) -> str:
        return (f"sent {self.sent}, done before the restart {self.done_before}, "
                f"done in the end {self.done}, lost {self.lost}")


class Ledger:
    """A Redis set on an embedded server: which task numbers ran to the end (and a count of runs).

    Plumbing for lesson 08b: it lives on a server that is never restarted, so counting what ran
    does not depend on the broker being restarted."""

    def __init__(self):
        import redis

        self.server = EmbeddedRedisServer("127.0.0.1", 0).start()
        self.url = f"redis://127.0.0.1:{self.server.port}/0"
        self.client = redis.Redis.from_url(self.url)
        self.client.delete("done", "runs")

    def done(self) -> int:
        return int(self.client.scard("done"))

    def runs(self) -> int:
        return int(self.client.get("runs") or 0)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


_Ledger = Ledger  # the old name


def batch_through_restart(server, n: int = 40, task_seconds: float = 0.02, restart_after: int = 10,
                          crash: bool = True, timeout: float = 60.0, on_progress=None) -> Survival:
    """Send ``n`` tasks, start a worker process, restart ``server`` after ``restart_after`` are done.

    ``crash=True`` kills the broker (SIGKILL) instead of stopping it cleanly. ``on_progress(done)``
    is called while waiting. Returns what survived.
    """
    from .spawn import spawn_worker

    ledger = Ledger()
    conf = dict(
        broker_url=server.url,
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,  # acknowledge after the task ran: a message in flight is not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        # Celery 6's default: on connection loss, stop waiting on running acks_late tasks
        # (they cannot be acknowledged any more; the broker hands them out again)
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    if server.url.startswith("redis"):
        # the unacknowledged messages of the old connection come back after 2 s, not 30 s
        conf["broker_transport_options"] = {"visibility_timeout": 2, "unacked_restore_interval": 0.5,
                                            "unacked_restore_throttle": 0.5}
    client = celerylab.create_app(f"durability-client-{server.name}", **conf)
    started = time.monotonic()
    worker = None
    try:
        with client.producer_or_acquire() as producer:
            for i in range(n):
                client.send_task("durability.step", (i, ledger.url, task_seconds), producer=producer)
        # a worker process, as in production: it reconnects by itself after the restart
        def start_worker():
            return spawn_worker("celerylab.lessons.l08b_durability", pool="threads", concurrency=2,
                                hostname=f"durability-{server.name}@%h", **conf).wait_ready()

        worker = start_worker()
        restarts = 0
        deadline = time.monotonic() + timeout
        while ledger.done() < restart_after and time.monotonic() < deadline:
            time.sleep(0.01)
        done_before = ledger.done()
        server.restart(crash=crash)
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if not worker.alive:
                # kombu 5.7's Redis transport can crash the worker when the connection drops while
                # it waits for a message ("Unrecoverable error: AttributeError ... 'hostname'" in its
                # log); a supervisor (systemd, Kubernetes) would start it again, and so do we
                worker.kill()
                worker = start_worker()
                restarts += 1
            done = ledger.done()
            if on_progress:
                on_progress(done)
            if done == n:
                break
            if done != last:
                last, quiet_since = done, time.monotonic()
            elif time.monotonic() - quiet_since > 15:  # nothing more is coming (reconnects back off)
                break
            time.sleep(0.05)
        return Survival(n, done_before, ledger.done(), ledger.runs(), time.monotonic() - started, restarts)
    finally:
        if worker is not None:
            worker.kill()  # the batch is over: nothing to finish
        client.close()
        ledger.close()


@dataclass
class Queued:
    broker: str
    before: int  # messages waiting before the restart
    after: int  # ... and after it

    def line(self) -> str:
        verdict = "kept every message" if self.after == self.before else "LOST messages"
        return f"{self.broker:40} queued before: {self.before:3} | after the restart: {verdict}"


def _waiting(url: str, queue: str = "celery", purge: bool = False) -> int:
    """Messages waiting in ``queue``, on a connection of its own (none pooled from before a restart)."""
    from kombu import Connection

    with Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        try:
            count = channel.queue_declare(queue, passive=True).message_count
        except conn.channel_errors:  # no such queue (any more)
            return 0
        if purge:
            channel.queue_purge(queue)
        return count


def queued_through_restart(server, label: str, n: int = 40, crash: bool = True,
                           confirm_publish: bool = False) -> Queued:
    """Send ``n`` tasks with no worker running, restart ``server``, count what is still queued.

    ``confirm_publish`` (RabbitMQ): each publish waits for the broker's confirm, which RabbitMQ
    sends for a persistent message once it is on disk.
    """
    extra = {"broker_transport_options": {"confirm_publish": True}} if confirm_publish else {}
    app = celerylab.create_app(f"durability-queued-{server.name}", broker_url=server.url,
                               result_backend=None, task_ignore_result=True, **extra)
    with app.producer_or_acquire() as producer:
        for i in range(n):
            app.send_task("durability.step", (i,), producer=producer)
    before = _waiting(server.url)
    server.restart(crash=crash)
    return Queued(label, before, _waiting(server.url, purge=True))


def chart(rows):
    """Bars: messages queued before and after each restart (a static plotly figure)."""
    import plotly.graph_objects as go

    labels = [r.broker for r in rows]
    fig = go.Figure([go.Bar(name="queued before the restart", x=labels, y=[r.before for r in rows],
                            marker_color="#8c8c8c"),
                     go.Bar(name="still queued after it", x=labels, y=[r.after for r in rows],
                            marker_color="#59a14f")])
    fig.update_layout(barmode="group", height=340, margin=dict(l=20, r=20, t=50, b=20),
                      title="What a broker restart leaves in the queue", yaxis_title="messages")
    return fig
