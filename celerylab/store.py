"""A Redis client for application data next to Celery: dedup keys, dead letters, counters.

Lessons 05 (idempotency keys) and 06 (the dead-letter list) keep small bits of state in
Redis, next to the queues, as a real application would::

    from celerylab.store import redis_client
    r = redis_client()                  # the broker's Redis (the embedded one by default)
    r.set(f"charged:{task_id}", 1, nx=True)

Which Redis: an explicit ``url``; else the broker when it is Redis; else
``CELERYLAB_RESULT_BACKEND`` when that is Redis; else (a RabbitMQ broker and no Redis at all)
an in-memory fakeredis shared by this process, which in-kernel workers see too but worker
subprocesses do not.

In a class (``CELERYLAB_LEARNER=alice``) every key gets the learner's prefix: ``r.set("charged:1", ...)``
sets ``alice:charged:1``, the keys alice's Redis user may touch (:func:`celerylab.broker.redis_client`).
"""
from __future__ import annotations

import os
import threading

import redis

from .broker import BROKER_URL_ENV, RESULT_BACKEND_ENV, current_broker

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

_lock = threading.Lock()
_local_server = None


def redis_url(url: str | None = None) -> str | None:
    """The Redis URL :func:`redis_client` would use, or None for the in-process fallback."""
    if url:
        return url
    broker = current_broker()
    candidates = [broker.url if broker else None, os.environ.get(BROKER_URL_ENV),
                  broker.result_backend if broker else None, os.environ.get(RESULT_BACKEND_ENV)]
    for candidate in candidates:
        if candidate and candidate.startswith(REDIS_SCHEMES):
            return candidate
    return None


def redis_client(url: str | None = None, app=None) -> redis.Redis:
    """A Redis client (see the module doc for which Redis). ``app``: use its broker's URL."""
    if url is None and app is not None:
        broker_url = str(app.conf.broker_url or "")
        backend = str(app.conf.result_backend or "")
        url = next((u for u in (broker_url, backend) if u.startswith(REDIS_SCHEMES)), None)
    if url is None:
        from .broker import start_broker

        if current_broker() is None:
            start_broker()
        url = redis_url()
    if url is not None:
        from .broker import redis_client as learner_redis  # CELERYLAB_LEARNER's prefix on every key (none without)

        return learner_redis(url, socket_timeout=5, socket_connect_timeout=5)
    return _in_process_client()


def _in_process_client() -> redis.Redis:
    global _local_server
    import fakeredis

    with _lock:
        if _local_server is None:
            _local_server = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=_local_server)
