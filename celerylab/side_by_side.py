"""Several in-kernel workers at the same time.

A Celery worker runs its consumer on kombu's event loop (the "hub"), which Celery takes from a
process-wide slot and only creates when the slot is empty. Two in-kernel workers used to share
one hub: the second never ran its ETA/countdown tasks, and stopping could hang (celery 5.7.0,
kombu 5.7.0). :func:`celerylab.start_worker` now empties the slot itself, so each worker builds its
own hub, as it would in its own process; :func:`start_worker` and :func:`run_worker` here are
plain aliases kept for code written before that fix.

:func:`stop_all` stops several workers at once: each warm shutdown waits up to a second for its
consumer, so stopping them one after the other adds up.
"""
from __future__ import annotations

import threading

from kombu.asynchronous import set_event_loop

from .worker import run_worker, start_worker  # noqa: F401 - aliases

__all__ = ["own_event_loop", "run_worker", "start_worker", "stop_all"]


def own_event_loop() -> None:
    """Make the next worker started in this kernel build its own kombu hub (start_worker does this)."""
    set_event_loop(None)


def stop_all(*workers, timeout: float = 60.0) -> None:
    """Stop several workers at once (``None`` entries are skipped)."""
    threads = [threading.Thread(target=w.stop, kwargs={"timeout": timeout}, name="celerylab-stop")
               for w in workers if w is not None]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
