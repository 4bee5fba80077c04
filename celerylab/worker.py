"""``run_worker``: a real Celery worker inside the kernel, as a context manager.

Shaped like ``celery.contrib.testing.worker.start_worker`` but made for lessons:

* leaving the ``with`` block is a warm shutdown that *waits for running tasks* (the contrib
  version returns while a long task carries on in an orphaned thread);
* logs go to a file (``celerylab.where()`` shows it), never into cell output;
* entering and leaving it repeatedly in one kernel leaks no threads or connections;
* a kernel that exits with the worker still running stops it (``celerylab.cleanup``).
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

from celery import Celery
from celery.exceptions import WorkerShutdown
from celery.signals import celeryd_after_setup
from celery.worker import WorkController
from celery.worker.consumer import Consumer
from kombu.asynchronous import set_event_loop

from . import logs, processes
from .errors import UnknownPoolError, WorkerStartError
from .i18n import _

IN_KERNEL_POOLS = ("threads", "solo")
ALL_POOLS = ("prefork", "threads", "solo", "eventlet", "gevent")


def check_pool(pool: str, allowed=ALL_POOLS) -> None:
    if pool not in allowed:
        raise UnknownPoolError(_("unknown pool {pool}: choose one of {pools}", pool=repr(pool), pools=", ".join(allowed)))


def _guard_joins_per_thread() -> None:
    """Keep Celery's "never call result.get() within a task" guard working in one process.

    A worker sets a process-wide flag that makes ``AsyncResult.get()`` raise. That is right in
    a prefork child, but with the worker inside the kernel it would also refuse ``.get()`` in
    the notebook itself. This makes the guard apply only on threads that are running a task,
    which is what it means in a real worker.

    The result backends read the same flag to skip work a prefork child never needs: the rpc://
    backend would not declare the notebook's reply queue (so every result is dropped), and the
    Redis backend would not subscribe to a task's result as it is sent.
    """
    import celery.backends.redis
    import celery.backends.rpc
    import celery.result
    from celery._state import get_current_task, task_join_will_block

    if getattr(celery.result.task_join_will_block, "_celerylab", False):
        return

    def will_block() -> bool:
        return task_join_will_block() and get_current_task() is not None

    will_block._celerylab = True
    for module in (celery.result, celery.backends.rpc, celery.backends.redis):
        module.task_join_will_block = will_block


def _pool_cls(app: Celery, pool: str):
    """The pool class for an in-kernel worker, with ``app`` current on its threads.

    Celery's thread pool looks tasks up in the *current* app, which is thread-local: on a
    fresh pool thread it is the process default, not the lesson's app, and every task fails
    with NotRegistered (silently: the exception stays inside the pool's future). In a real
    worker process the app is the default; here several apps may share the kernel.
    """
    if pool != "threads":
        return pool
    from concurrent.futures import ThreadPoolExecutor

    from celery.concurrency.thread import TaskPool

    class KitThreadPool(TaskPool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.executor = ThreadPoolExecutor(max_workers=self.limit, initializer=app.set_current,
                                               thread_name_prefix="celerylab-task")

    return KitThreadPool


def _request_shutdown() -> None:
    """Run on a worker's event loop: leave it the way SIGTERM does (a warm shutdown)."""
    raise WorkerShutdown(0)


def _wake() -> None:
    """Nothing: queued with ``call_soon`` to wake a worker's loop from its poll."""


class _KitConsumer(Consumer):
    """Celery's consumer, except that it sends its buffered task events before it shuts down.

    A worker with an event loop keeps task events (task-succeeded...) in a buffer that the loop
    sends a moment later (``buffer_group=['task'] if c.hub`` in celery/worker/consumer/events.py).
    At shutdown ``Events._close`` turns the dispatcher off without sending that buffer, so a worker
    stopped right after ``.get()`` returned loses the task's last event and monitors show the task
    as still running. Here the pool has drained by the time the consumer shuts down (warm
    shutdown), so the buffer holds every task event: send it, then shut down as Celery does (its
    worker-offline event then still comes last).
    """

    def shutdown(self):
        dispatcher = self.event_dispatcher
        if dispatcher is not None:
            try:
                dispatcher.flush()
            except Exception:  # noqa: BLE001 - the broker may be gone; Celery drops them too
                pass
        super().shutdown()


_DEFAULT_CONSUMER = "celery.worker.consumer:Consumer"


@celeryd_after_setup.connect(weak=False)
def _kit_consumer_in_spawned_workers(sender=None, instance=None, **kwargs):
    """In a ``celery worker`` process the kit started (``spawn_worker``): use ``_KitConsumer`` too.

    Sent after the worker read its settings and before it builds its consumer; only the worker
    object changes, not the app's settings.
    """
    if (os.environ.get(processes.PARENT_PID_ENV) and instance is not None
            and getattr(instance, "consumer_cls", None) == _DEFAULT_CONSUMER):
        instance.consumer_cls = _KitConsumer


class _KitWorkController(WorkController):
    def __init__(self, *args, **kwargs):
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer):
        super().on_consumer_ready(consumer)
        self.ready.set()


_running_hostnames: set[str] = set()


def _default_hostname(app: Celery) -> str:
    """``<app>@kernel``, or ``<app>-2@kernel``... while others run: stable across kernel restarts."""
    n = 1
    while True:
        name = f"{app.main}@kernel" if n == 1 else f"{app.main}-{n}@kernel"
        if name not in _running_hostnames:
            return name
        n += 1


class InKernelWorker:
    """Handle for a running in-kernel worker: ``hostname``, ``queues``, ``logfile``, ``stop()``."""

    def __init__(self, app: Celery, pool: str, concurrency: int, queues, hostname: str | None,
                 loglevel: str, ready_timeout: float, **options):
        check_pool(pool, IN_KERNEL_POOLS)
        _guard_joins_per_thread()
        self.app = app
        self.pool = pool
        self.concurrency = concurrency
        self.queues = list(queues) if queues else None
        self.hostname = hostname or _default_hostname(app)
        # Celery takes the worker's event loop (kombu's "hub") from a process-wide slot and only
        # builds one when the slot is empty: a second in-kernel worker would share the first
        # one's hub and timer (its ETA tasks never run, stopping can hang). Empty the slot so
        # each worker builds its own, as each would in its own process.
        set_event_loop(None)
        _running_hostnames.add(self.hostname)
        self.logname = f"worker-{self.hostname.split('@')[0]}"
        self.logfile = logs.to_file(self.logname, loglevel)
        if "consumer_cls" not in options and app.conf.worker_consumer == _DEFAULT_CONSUMER:
            options["consumer_cls"] = _KitConsumer  # sends buffered task events before stopping
        queues_state = app.amqp.queues
        consume_from_before = queues_state._consume_from
        self._controller = _KitWorkController(
            app=app,
            hostname=self.hostname,
            pool_cls=_pool_cls(app, pool),
            concurrency=concurrency,
            queues=self.queues,
            loglevel=loglevel,
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=False,
            ready_callback=None,
            **options,
        )
        self._thread = threading.Thread(target=self._run, name=f"celerylab-{self.hostname}", daemon=True)
        self._error: BaseException | None = None
        self._thread.start()
        deadline = time.monotonic() + ready_timeout
        while not self._controller.ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                queues_state._consume_from = consume_from_before
                self.stop()
                if self._error:
                    raise WorkerStartError(_("worker {worker} did not start: {error} (log: {log})",
                                             worker=self.hostname, error=self._error, log=self.logfile))
                raise WorkerStartError(_("worker {worker} did not start within {timeout:.0f} s (log: {log})",
                                         worker=self.hostname, timeout=ready_timeout, log=self.logfile))
        # Celery records a worker's ``queues`` in the app itself (``app.amqp.queues.select``),
        # which is right for a worker process but would make every later worker on this app in
        # the kernel consume only those queues. The consumer has subscribed by now: put it back.
        queues_state._consume_from = consume_from_before
        self._forget = processes.register(f"in-kernel worker {self.hostname}", self.stop)

    def _run(self) -> None:
        self.app.set_current()  # the solo pool runs tasks on this thread
        try:
            self._controller.start()
        except BaseException as exc:  # noqa: BLE001 - reported by the starter
            self._error = exc

    @property
    def controller(self) -> WorkController:
        return self._controller

    def stop(self, timeout: float = 60.0) -> None:
        """Warm shutdown: take no new tasks, wait for running ones to finish, then stop."""
        if self._thread is None:
            return
        controller = self._controller
        hub = getattr(controller, "hub", None)
        if hub is not None and controller.ready.is_set() and self._thread.is_alive():
            # Shut down on the worker's own thread, as a worker process does on SIGTERM. The
            # broker connection belongs to that thread: over AMQP a shutdown from here would
            # send basic.cancel and wait for the reply that the worker's loop reads instead.
            # The loop runs its pending callbacks as one batch (a set, in no order) and an
            # exception ends the batch: raised from there, the shutdown could drop an ack that
            # a finished task queued beside it (its message would go back to the queue). So it
            # is raised from the loop's tick, after the batch, and a callback only wakes the loop.
            hub.on_tick.add(_request_shutdown)
            hub.call_soon(_wake)
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop_from_here(controller, timeout)
        self._thread = None
        forget = getattr(self, "_forget", None)
        if forget:
            forget()
        logs.detach(self.logname)
        _running_hostnames.discard(self.hostname)

    def _stop_from_here(self, controller, timeout: float) -> None:
        """Stop a worker whose loop is not running (it failed to start) from this thread."""
        pool = getattr(controller, "pool", None)
        if pool is not None and getattr(pool, "executor", None) is not None:
            # Stop consuming first, then let the thread pool drain before the worker tears down.
            consumer = getattr(controller, "consumer", None)
            if consumer is not None and consumer.task_consumer is not None:
                try:
                    consumer.task_consumer.cancel()
                except Exception:  # the connection may already be gone
                    pass
            pool.executor.shutdown(wait=True)
        controller.stop(in_sighandler=False)
        self._thread.join(timeout)

    def __repr__(self) -> str:
        return f"<worker {self.hostname} pool={self.pool} x{self.concurrency} queues={self.queues or ['celery']}>"


_notebook_workers: dict[str, InKernelWorker] = {}


def start_worker(app: Celery, pool: str = "threads", concurrency: int = 4, queues=None,
                 hostname: str | None = None, loglevel: str = "INFO", ready_timeout: float = 15.0,
                 **options) -> InKernelWorker:
    """Start an in-kernel worker that runs until ``.stop()`` (or kernel exit): for notebook cells.

    Re-running the cell replaces the worker it started before (same app and hostname), so a
    lesson never ends up with two workers by accident.
    """
    key = f"{app.main}/{hostname or ''}"
    previous = _notebook_workers.pop(key, None)
    if previous is not None:
        previous.stop()
    worker = InKernelWorker(app, pool, concurrency, queues, hostname, loglevel, ready_timeout, **options)
    _notebook_workers[key] = worker
    return worker


@contextmanager
def run_worker(app: Celery, pool: str = "threads", concurrency: int = 4, queues=None,
               hostname: str | None = None, loglevel: str = "INFO", ready_timeout: float = 15.0, **options):
    """Run a real worker for ``app`` in this kernel while the ``with`` block runs.

    ``pool`` is "threads" or "solo" in the kernel (use :func:`celerylab.spawn_worker` for
    prefork); ``queues`` limits which queues it consumes (like ``celery worker -Q``).
    """
    worker = InKernelWorker(app, pool, concurrency, queues, hostname, loglevel, ready_timeout, **options)
    try:
        yield worker
    finally:
        worker.stop()
