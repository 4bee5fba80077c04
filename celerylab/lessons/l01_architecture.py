"""Tasks for notebooks/01_architecture.ipynb: the four components and a task's states.

Sleeps are short (tenths of a second) so the lesson runs in seconds; each intermediate state
lasts long enough (>= 0.4 s) for a client polling every 10 ms to see it.
"""
from __future__ import annotations

import time

import celerylab
from celerylab.inspect_broker import create_redis_app

# The lesson reads Redis lists and keys: on a RabbitMQ class broker it runs on a private Redis.
app = create_redis_app("l01_architecture")


@app.task(name="l01.add")
def add(x, y):
    return x + y


@app.task(name="l01.slow")
def slow(seconds, value=None):
    """Sleeps, then returns ``value``. Its state stays PENDING while it runs (no tracking)."""
    time.sleep(seconds)
    return value


@app.task(name="l01.slow_tracked", track_started=True)
def slow_tracked(seconds, value=None):
    """The same, with ``track_started=True``: the worker records STARTED before running it."""
    time.sleep(seconds)
    return value


@app.task(name="l01.fail")
def fail(message="boom"):
    raise ValueError(message)


@app.task(name="l01.flaky", bind=True, max_retries=3, default_retry_delay=0.4)
def flaky(self, failures=1):
    """Fails ``failures`` times (asking for a retry each time), then succeeds."""
    if self.request.retries < failures:
        raise self.retry(exc=ConnectionError(f"attempt {self.request.retries + 1} failed"))
    return f"succeeded after {self.request.retries} retries"


@app.task(name="l01.add_and_wait")
def add_and_wait(x, y):
    """Anti-pattern: starts a subtask and blocks on its result. Celery refuses (RuntimeError)."""
    return add.delay(x, y).get(timeout=5)


#: A queue only the lesson's short-lived-results worker consumes (``result_expires=1``).
EXPIRING_QUEUE = "l01_expiring"
