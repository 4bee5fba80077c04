"""How many messages wait in a queue, band by band: what kombu's Redis transport really stores.

kombu's Redis transport keeps each queue as Redis **lists** (``LPUSH`` to add, ``BRPOP`` to take;
no Streams). Priority is emulated with one list per *band*: ``priority_steps`` (default
``[0, 3, 6, 9]``) decides the bands, a message goes to the band at or below its priority
(1 and 2 join band 0; 4 and 5 join band 3), and band ``n`` lives in the list
``queue + sep + n`` (band 0 is the bare queue name). Workers ask for band 0 first: on Redis
**0 is the highest priority**.

A queue's length is therefore the sum over its band lists. Messages a worker has already taken
(prefetched, or waiting for their ETA) are not in any list: they sit in the ``unacked`` hash
until acknowledged.

::

    from celerylab import queues
    queues.band_lengths(app, "celery")   # {0: 4, 3: 3, 6: 3, 9: 1}
    queues.queue_length(app, "celery")   # 11
    queues.unacked(app)                  # messages taken by workers, not yet acknowledged
    queues.unacked(app, routing_key="l06_work")   # ... only those routed with that key
"""
from __future__ import annotations

import time
from typing import Callable

from celery import Celery

# kombu's defaults (``kombu.transport.redis``) and its band rules live in one place: events.py.
from .events import DEFAULT_PRIORITY_STEPS, DEFAULT_SEP, band_for
from .events import band_key as _band_key


def is_redis(app: Celery) -> bool:
    return str(app.conf.broker_url or "").startswith(("redis://", "rediss://"))


def transport_options(app: Celery) -> dict:
    return dict(app.conf.broker_transport_options or {})


def priority_steps(app: Celery) -> list[int]:
    """The Redis priority bands this app uses (``broker_transport_options['priority_steps']``)."""
    return sorted(transport_options(app).get("priority_steps", DEFAULT_PRIORITY_STEPS))


def band_of(app: Celery, priority: int | None) -> int:
    """The band a message with ``priority`` lands in on Redis (kombu's rule; None counts as 0)."""
    return band_for(0 if priority is None else priority, priority_steps(app))


def band_key(app: Celery, queue: str, band: int) -> str:
    """The Redis list holding ``queue``'s messages of one band."""
    opts = transport_options(app)
    return _band_key(queue, band, opts.get("sep", DEFAULT_SEP), opts.get("global_keyprefix", ""))


def redis_client(app: Celery):
    if not is_redis(app):
        scheme = str(app.conf.broker_url or "").split(":", 1)[0] or "none"
        raise ValueError(f"band lengths live in Redis lists; this app's broker is {scheme!r}")
    import redis

    return redis.Redis.from_url(app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)


def band_lengths(app: Celery, queue: str = "celery") -> dict[int, int]:
    """``{band: messages waiting}`` for every band of ``queue`` (Redis brokers)."""
    steps = priority_steps(app)
    client = redis_client(app)
    try:
        pipe = client.pipeline(transaction=False)
        for band in steps:
            pipe.llen(band_key(app, queue, band))
        return {band: int(n) for band, n in zip(steps, pipe.execute())}
    finally:
        client.close()


def queue_length(app: Celery, queue: str = "celery") -> int:
    """Messages waiting in ``queue``: every band list on Redis; the broker's count elsewhere."""
    if is_redis(app):
        return sum(band_lengths(app, queue).values())
    with app.connection_for_write() as conn:
        try:
            return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
        except Exception:  # the queue does not exist (yet)
            return 0


def unacked(app: Celery, routing_key: str | None = None) -> int:
    """Messages workers took and have not acknowledged yet (Redis ``unacked`` hash).

    kombu stores each entry as ``[message, exchange, routing_key]``. With ``routing_key``, only the
    entries delivered with that routing key count: a message left behind by another experiment
    (a kernel stopped while its worker held an ETA task) does not change this experiment's count.
    """
    opts = transport_options(app)
    client = redis_client(app)
    key = opts.get("global_keyprefix", "") + opts.get("unacked_key", "unacked")
    try:
        if routing_key is None:
            return int(client.hlen(key))
        from kombu.utils.json import loads

        return sum(1 for raw in client.hvals(key) if loads(raw)[2] == routing_key)
    finally:
        client.close()


def key_types(app: Celery, queue: str = "celery") -> dict[str, str]:
    """``{redis key: its type}`` for ``queue``'s band lists that exist (they are lists, not streams).

    The separator in band keys is shown as ``|`` so the names print readably.
    """
    client = redis_client(app)
    sep = transport_options(app).get("sep", DEFAULT_SEP)
    try:
        out = {}
        for band in priority_steps(app):
            key = band_key(app, queue, band)
            kind = client.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind != "none":
                out[key.replace(sep, "|")] = kind
        return out
    finally:
        client.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_settled(app: Celery, queue: str = "celery", quiet: float = 0.2, timeout: float = 5.0) -> int:
    """Wait until ``queue``'s length has not changed for ``quiet`` seconds; return that length.

    Use it after starting a worker to let it finish prefetching before you look.
    """
    deadline = time.monotonic() + timeout
    last = queue_length(app, queue)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = queue_length(app, queue)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last
