"""Several in-kernel workers at the same time, each with its own event loop.

A Celery worker runs its consumer on kombu's event loop (the "hub"). Celery takes the hub from a
process-wide slot (``kombu.asynchronous.get_event_loop()``) and only creates one when the slot
is empty, so a second :func:`celerylab.start_worker` in the same kernel, started while the
first still runs, shares the first worker's hub and timer. Measured (celery 5.7.0,
kombu 5.7.0): the second worker then never runs its ETA/countdown tasks, and stopping the
workers can hang. In a real deployment every worker is its own process and this cannot happen.

:func:`start_worker` and :func:`run_worker` here empty the slot first, so each worker builds
its own hub. Lessons 03 and 04 use them wherever two workers run at once. (Once
``celerylab.worker`` does this itself, these become plain aliases.)
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

from celery import Celery
from kombu.asynchronous import set_event_loop

from . import worker as _worker


def own_event_loop() -> None:
    """Make the next worker started in this kernel build its own kombu hub."""
    set_event_loop(None)


def start_worker(app: Celery, **kwargs) -> _worker.InKernelWorker:
    """:func:`celerylab.start_worker`, safe to run next to other in-kernel workers."""
    own_event_loop()
    return _worker.start_worker(app, **kwargs)


@contextmanager
def run_worker(app: Celery, **kwargs):
    """:func:`celerylab.run_worker`, safe to run next to other in-kernel workers."""
    own_event_loop()
    with _worker.run_worker(app, **kwargs) as w:
        yield w


def stop_all(*workers, timeout: float = 60.0) -> None:
    """Stop several workers at once (each warm shutdown takes up to a second; do them together)."""
    threads = [threading.Thread(target=w.stop, kwargs={"timeout": timeout}, name="celerylab-stop")
               for w in workers if w is not None]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
