"""Look inside the broker: the messages waiting on a Redis list, and the results Celery stored.

Lessons 01 and 02 use it to show what ``task.delay()`` really puts on Redis::

    from celerylab import inspect_broker as ib
    ib.queue_length("celery")             # messages waiting (the list and its priority bands)
    msg = ib.peek("celery")[0]            # the oldest waiting message, decoded, NOT removed
    msg.show(names={result.id: "result.id"})
    ib.stored_result(result.id)           # the result backend's record of a task, or None
    ib.result_ttl(result.id)              # seconds left before it expires

How kombu's Redis transport stores a message: ``LPUSH`` of one JSON document (the "envelope")
onto a list named after the queue; workers take from the other end (``BRPOP``), so the oldest
message is the last element. The envelope holds ``headers`` (task name, id, retries, eta...),
``properties`` (routing, priority, ``body_encoding``) and ``body``: the task's arguments,
serialized with the task's serializer (json, msgpack, pickle...) and then base64-encoded.

Peeking never removes anything, and never unpickles: a pickle body is only decoded when you
say so with ``payload(accept=...)`` (unpickling runs code: lesson 02).

In a class (``CELERYLAB_LEARNER=alice``) every name here is the learner's own: :func:`redis_client`
puts ``alice:`` in front of every key (``ib.redis_client().delete("l02_peek")`` deletes
``alice:l02_peek``, the list alice's Celery apps use), so the names this module gives and takes
(:func:`band_lists`, :func:`result_key`) carry no prefix.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

from .events import DEFAULT_PRIORITY_STEPS as PRIORITY_STEPS  # kombu's defaults, one place
from .events import DEFAULT_SEP as SEP
from .events import band_key
#: Where the Redis result backend keeps a task's result.
RESULT_KEY_PREFIX = "celery-task-meta-"
#: Serializers safe to decode while peeking (pickle is left out on purpose).
SAFE_CONTENT = ("application/json", "application/x-msgpack", "application/data")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ORIGIN = re.compile(r"^gen\d+@.+$")


def redis_url() -> str:
    """The Redis this module reads: the kit's broker when it is Redis; on another broker
    (RabbitMQ), the kernel's private Redis (:func:`celerylab.broker.experiment_redis_url`)."""
    from .broker import experiment_redis_url

    return experiment_redis_url()


def redis_app_conf() -> dict:
    """Settings for a lesson app whose cells show Redis internals (lists, bands, unacked hash):
    ``{}`` on a Redis broker, else broker and results on :func:`redis_url`'s private Redis."""
    from .broker import start_broker

    url = redis_url()
    return {} if url == start_broker().url else {"broker_url": url, "result_backend": url}


def create_redis_app(name: str, **conf):
    """:func:`celerylab.create_app` on :func:`redis_url`: the kit's broker when it is Redis, else the
    kernel's private Redis (with the demo transport options ``create_app`` gives any Redis)."""
    import json
    import os

    from .app import APP_CONF_ENV, create_app

    if "broker_url" in json.loads(os.environ.get(APP_CONF_ENV) or "{}"):
        private = {}  # a worker process told which broker to use (spawn_worker(..., broker_url=...))
    else:
        private = redis_app_conf()
    return create_app(name, **{**private, **conf})


def redis_client(url: str | None = None):
    """A redis-py client on the kit's broker (or ``url``); on RabbitMQ, on :func:`redis_url`.

    In a class it puts the learner's prefix in front of every key (:func:`celerylab.broker.redis_client`),
    the keys the learner's Celery apps use and the learner's Redis user may touch.
    """
    from .broker import redis_client as learner_client

    if url is None:
        url = redis_url()
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"inspect_broker reads Redis lists; the broker is {url.split(':', 1)[0]}://")
    return learner_client(url)


def _client(client):
    return client if client is not None else redis_client()


def band_lists(queue: str = "celery", steps=PRIORITY_STEPS) -> list[str]:
    """The Redis lists behind one queue, highest priority first: ``celery``, ``celery\\x06\\x163``...

    Named as :func:`redis_client` names them: in a class, without the learner's prefix (the client adds it).
    """
    return [band_key(queue, band) for band in sorted(steps)]


def queue_length(queue: str = "celery", client=None) -> int:
    """Messages waiting in ``queue``: ``LLEN`` of its list plus its priority-band lists.

    (Messages a worker has already taken, even if not yet acknowledged, are not counted.)
    """
    c = _client(client)
    return sum(c.llen(name) for name in band_lists(queue))


@dataclass
class BrokerMessage:
    """One message as it sits on a Redis list."""

    raw: bytes
    queue: str = "celery"
    envelope: dict = field(init=False)

    def __post_init__(self):
        self.envelope = json.loads(self.raw)

    # -- the envelope ------------------------------------------------------------------------
    @property
    def headers(self) -> dict:
        return self.envelope.get("headers") or {}

    @property
    def properties(self) -> dict:
        return self.envelope.get("properties") or {}

    @property
    def content_type(self) -> str:
        return self.envelope.get("content-type", "")

    @property
    def content_encoding(self) -> str:
        return self.envelope.get("content-encoding", "")

    @property
    def task(self) -> str | None:
        return self.headers.get("task")

    @property
    def id(self) -> str | None:
        return self.headers.get("id")

    @property
    def body(self) -> str:
        """The body exactly as stored: text, base64-encoded when ``body_encoding`` says so."""
        return self.envelope.get("body", "")

    @property
    def body_bytes(self) -> bytes:
        """The serialized arguments (what the task's serializer produced), base64 undone."""
        body = self.body
        if self.properties.get("body_encoding") == "base64":
            return base64.b64decode(body)
        return body.encode("utf-8") if isinstance(body, str) else body

    @property
    def size(self) -> int:
        """Bytes this message takes on the list (envelope, headers and all)."""
        return len(self.raw)

    def payload(self, accept=SAFE_CONTENT):
        """Decode the body with kombu: ``(args, kwargs, embed)``.

        Raises ``kombu.exceptions.ContentDisallowed`` for a content type not in ``accept``
        (pickle is not accepted unless you add ``"application/x-python-serialize"``).
        """
        from kombu.serialization import loads

        return loads(self.body_bytes, self.content_type, self.content_encoding, accept=list(accept))

    @property
    def args(self):
        return self.payload()[0]

    @property
    def kwargs(self):
        return self.payload()[1]

    # -- printing ----------------------------------------------------------------------------
    def stable(self, value, names: dict | None = None):
        """``value`` with run-specific strings replaced by labels (ids, pids, host names)."""
        names = names or {}
        if isinstance(value, dict):
            return {k: self.stable(v, names) for k, v in value.items()}
        if isinstance(value, list):
            return [self.stable(v, names) for v in value]
        if isinstance(value, str):
            if value in names:
                return f"<{names[value]}>"
            if _UUID.match(value):
                return "<a uuid>"
            if _ORIGIN.match(value):
                return "gen<pid>@<hostname>"
        return value

    def show(self, names: dict | None = None, stable: bool = True) -> None:
        """Print the envelope: headers, properties, body (stored and decoded).

        With ``stable=True`` ids and host names are replaced by labels, so the printout is the
        same on every run: pass ``names={result.id: "result.id"}`` to say whose id it is.
        """
        fix = (lambda v: self.stable(v, names)) if stable else (lambda v: v)
        print(f"content-type: {self.content_type}   content-encoding: {self.content_encoding}")
        print("headers:")
        for key, value in self.headers.items():
            print(f"  {key:<22} {fix(value)!r}")
        print("properties:")
        for key, value in self.properties.items():
            print(f"  {key:<22} {fix(value)!r}")
        print(f"body as stored ({self.properties.get('body_encoding', 'text')}):")
        print(f"  {self.body}")
        print("body decoded:")
        if self.content_type == "application/json":
            print(f"  {self.body_bytes.decode('utf-8', 'replace')}")
        elif self.content_type in SAFE_CONTENT:
            print(f"  {self.payload()!r}")
        else:
            print(f"  {len(self.body_bytes)} bytes of {self.content_type} (not decoded: decoding it could run code)")


def peek(queue: str = "celery", client=None) -> list[BrokerMessage]:
    """The messages waiting in ``queue``, in the order a worker would take them; none removed.

    Bands are read highest priority first; within a list the oldest message comes first.
    """
    c = _client(client)
    out = []
    for name in band_lists(queue):
        raws = c.lrange(name, 0, -1)
        out.extend(BrokerMessage(raw, queue=queue) for raw in reversed(raws))
    return out


def result_key(task_id: str) -> str:
    """The Redis key of a task's result: ``celery-task-meta-<id>`` (as :func:`redis_client` names it:
    in a class the key in Redis is ``alice:celery-task-meta-<id>``)."""
    return f"{RESULT_KEY_PREFIX}{task_id}"


def stored_result(task_id: str, client=None) -> dict | None:
    """The result backend's record of a task (status, result, traceback...), or None if absent."""
    raw = _client(client).get(result_key(task_id))
    return None if raw is None else json.loads(raw)


def result_ttl(task_id: str, client=None) -> float | None:
    """Seconds (to the millisecond) before the stored result expires; None when there is no
    record, -1 when it never expires."""
    ms = _client(client).pttl(result_key(task_id))
    if ms == -2:
        return None
    return -1 if ms == -1 else ms / 1000


def key_type(key: str, client=None) -> str:
    """Redis type of ``key``: ``list``, ``string``, ``hash``... or ``none``."""
    t = _client(client).type(key)
    return t.decode() if isinstance(t, bytes) else str(t)
