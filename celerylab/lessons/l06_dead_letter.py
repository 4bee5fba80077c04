"""Tasks and helpers for notebooks/06_dead_letter.ipynb: dead letters on Redis and RabbitMQ.

* The dead-letter experiments (Redis ignores ``x-dead-letter-*``; RabbitMQ dead-letters only
  rejected messages; the seed's configuration routes its tasks elsewhere) are in the lesson's
  cells, with their tasks; on RabbitMQ they run live, elsewhere they show a recording
  (:mod:`celerylab.recorded`).
* The main app's ``process_order`` has a poison message (a quantity written as a word) and a
  warehouse that can be down; every final failure lands in the application-level dead-letter
  list :data:`dlq` (a :class:`celerylab.dlq.DeadLetterQueue`).
"""
from __future__ import annotations

import threading
import time

from celery import Celery
from celery.exceptions import Reject

import celerylab
from celerylab.dlq import DeadLetterQueue

app = celerylab.create_app("l06_dead_letter")


def on_rabbitmq(a: Celery | None = None) -> bool:
    return str((a or app).conf.broker_url or "").startswith(("amqp://", "amqps://", "pyamqp://"))


def on_redis(a: Celery | None = None) -> bool:
    return str((a or app).conf.broker_url or "").startswith(("redis://", "rediss://"))


def print_rows(rows: dict) -> None:
    """``{case: {column: value}}`` as a table (the columns of the first row)."""
    keys = list(next(iter(rows.values()), {}))
    first = max([len("case")] + [len(str(label)) for label in rows])
    widths = {k: max([len(k)] + [len(str(row.get(k, ""))) for row in rows.values()]) for k in keys}
    print(f"{'case':{first}}" + "".join(f"  {k:>{widths[k]}}" for k in keys))
    for label, row in rows.items():
        print(f"{label:{first}}" + "".join(f"  {row.get(k, '')!s:>{widths[k]}}" for k in keys))


# ---------------------------------------------------------------------------------------
# The application-level dead-letter queue: a poison message and a warehouse that goes down
# ---------------------------------------------------------------------------------------
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_state = {"fix_deployed": False, "down": set()}
_lock = threading.Lock()


def parse_quantity(qty) -> int:
    if isinstance(qty, int):
        return qty
    if _state["fix_deployed"] and str(qty).lower() in WORDS:
        return WORDS[str(qty).lower()]
    return int(qty)  # "three" -> ValueError: the poison message


def reserve(sku: str, qty: int) -> None:
    with _lock:
        if sku in _state["down"]:
            raise ConnectionError(f"warehouse for {sku} is not answering")


def warehouse_down(*skus) -> None:
    with _lock:
        _state["down"].update(skus)


def warehouse_back() -> None:
    with _lock:
        _state["down"].clear()


def deploy_fix() -> None:
    """The bug fix: quantities written as words ("three") are understood from now on."""
    _state["fix_deployed"] = True


def reset() -> None:
    _state["fix_deployed"] = False
    warehouse_back()


@app.task(name="l06.process_order", bind=True, autoretry_for=(ConnectionError,), max_retries=2,
          retry_kwargs={"countdown": 0.1}, retry_jitter=False)
def process_order(self, order):
    """Reserve stock for an order. A bad quantity fails at once (retrying can't fix data);
    a warehouse that does not answer is retried twice, 0.1 s apart."""
    qty = parse_quantity(order["qty"])
    reserve(order["sku"], qty)
    return f"order {order['id']}: {qty} x {order['sku']} reserved"


#: Every final failure of this app's tasks lands here (a Redis list nobody consumes).
dlq = DeadLetterQueue(app, key="l06:dead_letters").install()


@app.task(name="l06.reject_order", bind=True, acks_late=True)
def reject_order(self, order):
    """Rejects an order it can't handle: on RabbitMQ a dead-lettered message, on Redis a dropped one."""
    if parse_quantity(order["qty"]) <= 0:
        raise Reject(f"order {order['id']}: quantity must be positive", requeue=False)
    return f"order {order['id']} accepted"


# ---------------------------------------------------------------------------------------
# Small helpers for the notebook
# ---------------------------------------------------------------------------------------
def show_source(*tasks) -> None:
    """Print the source of tasks (decorator included), as written in this module."""
    import inspect
    import textwrap

    for i, task in enumerate(tasks):
        fn = inspect.unwrap(getattr(task, "_orig_run", None) or task.run)
        print(("\n" if i else "") + textwrap.dedent(inspect.getsource(fn)).rstrip())


def wait_for_length(queue: DeadLetterQueue, n: int, timeout: float = 5.0) -> int:
    """Wait until the dead-letter list holds ``n`` entries (the failure hook runs just after
    the result is stored, so a client can see FAILURE a moment before the entry)."""
    deadline = time.monotonic() + timeout
    while len(queue) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue.key!r} holds {len(queue)} entries, not {n}, after {timeout} s")
        time.sleep(0.01)
    return len(queue)
