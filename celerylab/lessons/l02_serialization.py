"""Tasks for notebooks/02_serialization.ipynb: serializers, task names, autodiscovery, bind=True.

Importing this module (as a worker subprocess does with ``celery -A``) also

* registers a custom serializer, ``json+sets`` (JSON that carries sets), with kombu, so every
  process that imports the lesson can encode and decode it;
* asks the app to autodiscover the ``tasks`` modules of the pretend project
  ``celerylab.lessons.l02_shop`` (imported when a worker starts).
"""
from __future__ import annotations

import json

from celery.utils.log import get_task_logger
from kombu.serialization import register
from pydantic import BaseModel, Field

import celerylab
from celerylab.inspect_broker import create_redis_app

# The lesson reads messages as Redis stores them: on a RabbitMQ class broker it runs on a private Redis.
app = create_redis_app("l02_serialization")
app.autodiscover_tasks(["celerylab.lessons.l02_shop.billing", "celerylab.lessons.l02_shop.emails"])

logger = get_task_logger(__name__)

# ---------------------------------------------------------------------------------------
# A custom serializer: JSON plus sets
# ---------------------------------------------------------------------------------------
SETS_SERIALIZER = "json+sets"
SETS_CONTENT_TYPE = "application/x-json-sets"


def _sets_default(obj):
    if isinstance(obj, (set, frozenset)):
        return {"__set__": sorted(obj, key=repr)}
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _sets_hook(obj):
    if obj.keys() == {"__set__"}:
        return set(obj["__set__"])
    return obj


def encode_with_sets(obj) -> str:
    """JSON where a set becomes ``{"__set__": [sorted items]}``."""
    return json.dumps(obj, default=_sets_default, separators=(",", ":"))


def decode_with_sets(data) -> object:
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    return json.loads(data, object_hook=_sets_hook)


register(SETS_SERIALIZER, encode_with_sets, decode_with_sets, content_type=SETS_CONTENT_TYPE,
         content_encoding="utf-8")


# ---------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------
@app.task(name="l02.describe")
def describe(value):
    """What the worker received: the type name and repr of ``value``."""
    return {"type": type(value).__name__, "repr": repr(value)}


@app.task(name="l02.make_set")
def make_set(words):
    """Returns a set: the work is done, but a JSON result backend cannot store it."""
    return set(words)


@app.task(name="l02.unique")
def unique(words):
    """Receives a collection; returns its type name and sorted distinct items (JSON-friendly)."""
    return {"received": type(words).__name__, "unique": sorted(set(words))}


@app.task(name="l02.shout")
def shout(text):
    return f"{text.upper()}!"


@app.task(name="l02.whoami", bind=True)
def whoami(self, retry_once=False):
    """What ``self.request`` says about this execution (``bind=True`` gives the task ``self``)."""
    if retry_once and self.request.retries == 0:
        raise self.retry(countdown=0.2)
    r = self.request
    return {"id": r.id, "retries": r.retries, "hostname": r.hostname,
            "delivery_info": dict(r.delivery_info or {}), "args": list(r.args or ()), "task": r.task}


@app.task(name="l02.seed_logging")
def seed_logging(order_id):
    """The seed article's logging example, as written: ``self`` without ``bind=True``."""
    try:
        raise ConnectionError(f"payment service unreachable for order {order_id}")
    except Exception:
        logger.error("Task failed", extra={"task_id": self.request.id, "args": self.request.args},  # noqa: F821
                     exc_info=True)
        raise


@app.task(name="l02.fixed_logging", bind=True)
def fixed_logging(self, order_id):
    """The same with ``bind=True``: the log line names the task id, the real error propagates."""
    try:
        raise ConnectionError(f"payment service unreachable for order {order_id}")
    except Exception:
        logger.error("task %s failed for order %s", self.request.id, order_id, exc_info=True)
        raise


# ---------------------------------------------------------------------------------------
# Typed arguments: pydantic=True
# ---------------------------------------------------------------------------------------
class Order(BaseModel):
    sku: str
    qty: int = Field(gt=0)  # at least one
    unit_cents: int


class Receipt(BaseModel):
    sku: str
    total_cents: int
    received: str  # the type the task function was given


@app.task(name="l02.place_order", pydantic=True)
def place_order(order: Order) -> Receipt:
    """Typed: the worker validates the JSON it receives into an ``Order``; the ``Receipt`` returned
    is stored as JSON (a dict)."""
    return Receipt(sku=order.sku, total_cents=order.qty * order.unit_cents, received=type(order).__name__)


# ---------------------------------------------------------------------------------------
# Pickle's danger, made harmless: code that runs while a message is being *decoded*
# ---------------------------------------------------------------------------------------
#: What ran during unpickling, in this process. A json-only worker leaves it empty.
EVIDENCE: list[str] = []


def leave_a_mark(note: str) -> str:
    """Harmless stand-in for an attacker's code: it only appends ``note`` to ``EVIDENCE``."""
    EVIDENCE.append(note)
    return note


class PicklePayload:
    """An object whose pickle says "call leave_a_mark(note)" when it is loaded.

    ``pickle.loads`` calls whatever ``__reduce__`` names, before any task code runs: a real
    attacker would name ``os.system`` instead. Never unpickle data you did not produce.
    """

    def __init__(self, note: str = "code ran while the message was decoded"):
        self.note = note

    def __reduce__(self):
        return (leave_a_mark, (self.note,))


#: Queue only the lesson's worker subprocess consumes (so the in-kernel worker never takes it).
PROCESS_QUEUE = "l02_process"
