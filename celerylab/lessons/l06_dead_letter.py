"""Tasks and helpers for notebooks/06_dead_letter.ipynb: dead letters on Redis and RabbitMQ.

* :func:`dead_letter_experiment` sends three failing tasks to a queue declared with
  ``x-dead-letter-exchange`` and counts where their messages went. On Redis nothing reaches the
  dead-letter queue (kombu ignores the argument; a rejected message is dropped); on RabbitMQ
  only the rejected ones do.
* The main app's ``process_order`` has a poison message (a quantity written as a word) and a
  warehouse that can be down; every final failure lands in the application-level dead-letter
  list :data:`dlq` (a :class:`celerylab.dlq.DeadLetterQueue`).
"""
from __future__ import annotations

import threading
import time

from celery import Celery
from celery.exceptions import Reject
from kombu import Exchange, Queue

import celerylab
from celerylab.dlq import DeadLetterQueue

WORK, DEAD, DLX = "l06_work", "l06_dead", "l06.dlx"


def dead_letter_queues() -> tuple:
    """The seed article's RabbitMQ setup: a work queue that dead-letters to exchange ``l06.dlx``
    (routing key ``dead``), and the queue ``l06_dead`` bound to that exchange."""
    dlx = Exchange(DLX, type="direct")
    return (
        Queue(WORK, Exchange(WORK, type="direct"), routing_key=WORK,
              queue_arguments={"x-dead-letter-exchange": DLX, "x-dead-letter-routing-key": "dead"}),
        Queue(DEAD, dlx, routing_key="dead"),
    )


app = celerylab.create_app("l06_dead_letter")


# ---------------------------------------------------------------------------------------
# Where do failed messages go? (the same experiment on Redis and on RabbitMQ)
# ---------------------------------------------------------------------------------------
def on_rabbitmq(a: Celery | None = None) -> bool:
    return str((a or app).conf.broker_url or "").startswith(("amqp://", "amqps://", "pyamqp://"))


def on_redis(a: Celery | None = None) -> bool:
    return str((a or app).conf.broker_url or "").startswith(("redis://", "rediss://"))


def experiment_app(transport: str = "kit") -> Celery:
    """An app whose default queue is the dead-lettering work queue, with three failing tasks.

    ``transport="kit"``: on the kit's broker. ``"redis"``: on the kit's broker if it is Redis,
    else on a private embedded Redis (so the Redis result is the same whatever broker you use).
    """
    conf = dict(task_queues=dead_letter_queues(), task_default_queue=WORK, task_default_exchange=WORK,
                task_default_routing_key=WORK)
    if transport == "redis" and not on_redis():
        url = celerylab.broker.experiment_redis_url()
        conf.update(broker_url=url, result_backend=url)
    exp = celerylab.create_app(f"l06_{transport}_experiment", **conf)

    @exp.task(name="l06x.plain_failure", shared=False)
    def plain_failure(n):
        raise ValueError(f"order {n} is corrupt")

    @exp.task(name="l06x.reject", bind=True, acks_late=True, shared=False)
    def reject(self, n):
        raise Reject(f"order {n} is corrupt", requeue=False)

    @exp.task(name="l06x.late_failure", acks_late=True, acks_on_failure_or_timeout=False, shared=False)
    def late_failure(n):
        raise ValueError(f"order {n} is corrupt")

    app.set_current()  # the lesson's main app stays Celery's current app
    return exp


CASES = (
    ("l06x.plain_failure", "a task raises (default: acked when received)"),
    ("l06x.reject", "acks_late + raise Reject(requeue=False)"),
    ("l06x.late_failure", "acks_late + acks_on_failure_or_timeout=False"),
)


def _count(exp: Celery, queue: Queue, settle: float = 0.3, timeout: float = 3.0) -> int:
    """Messages in ``queue`` (the broker's own count), once it stopped changing for ``settle`` s."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    with exp.connection_for_write() as conn:
        channel = conn.default_channel
        while True:
            n = queue.bind(channel).queue_declare().message_count
            if n != last:
                last, since = n, time.monotonic()
            if time.monotonic() - since >= settle or time.monotonic() > deadline:
                return int(n)
            time.sleep(0.05)


def dead_letter_experiment(exp: Celery, module: str | None = None) -> dict:
    """Run each failing task once on a worker for ``exp``; count the messages left in the work
    queue and the dead-letter queue (and, on Redis, the unacked hash) after each.

    The worker runs in the kernel, or, with ``module`` ("pkg.module:app"), as a subprocess
    (what the RabbitMQ run uses: results travel back over ``rpc://`` to this process).
    """
    work, dead = dead_letter_queues()
    with exp.connection_for_write() as conn:
        for q in (work, dead):
            q.bind(conn.default_channel).declare()
            q.bind(conn.default_channel).purge()
    rows = {}
    if module:
        worker = celerylab.spawn_worker(module, pool="solo", concurrency=1, queues=[WORK])
    else:
        worker = celerylab.run_worker(exp, queues=[WORK], concurrency=1)
    with worker:
        for n, (name, label) in enumerate(CASES, start=1):
            result = exp.send_task(name, args=[n])
            result.get(timeout=10, propagate=False)
            row = {"state": result.state, "work": _count(exp, work), "dead": _count(exp, dead)}
            if on_redis(exp):
                row["unacked"] = int(_redis(exp).hlen("unacked"))
            rows[label] = row
            with exp.connection_for_write() as conn:
                dead.bind(conn.default_channel).purge()
    return rows


def _redis(exp: Celery):
    import redis

    return redis.Redis.from_url(exp.conf.broker_url)


def route_works(exp: Celery) -> int:
    """Publish one message straight to the dead-letter exchange: does it reach ``l06_dead``?
    (It does on both brokers: the binding is fine, the broker just never dead-letters on Redis.)"""
    work, dead = dead_letter_queues()
    with exp.connection_for_write() as conn:
        dead.bind(conn.default_channel).declare()
        dead.bind(conn.default_channel).purge()
        producer = conn.Producer()
        producer.publish({"probe": True}, exchange=dead.exchange, routing_key="dead", serializer="json")
    n = _count(exp, dead)
    with exp.connection_for_write() as conn:
        dead.bind(conn.default_channel).purge()
    return n


def print_rows(rows: dict) -> None:
    keys = ["state", "work", "dead"] + (["unacked"] if any("unacked" in r for r in rows.values()) else [])
    heads = {"state": "state", "work": WORK, "dead": DEAD, "unacked": "unacked"}
    print(f"{'case':48}" + "".join(f"{heads[k]:>10}" for k in keys))
    for label, row in rows.items():
        print(f"{label:48}" + "".join(f"{row[k]!s:>10}" for k in keys))


#: What the experiment shows on RabbitMQ: only rejected messages are dead-lettered.
RABBITMQ_EXPECTED = {label: n for (_, label), n in zip(CASES, (0, 1, 1))}


#: The experiment's app on the kit's broker (a worker subprocess imports it from here).
kit_experiment = experiment_app("kit")


def rabbitmq_dead_lettering() -> dict:
    """On a RabbitMQ kit broker: ``{case: messages that reached l06_dead}``."""
    rows = dead_letter_experiment(kit_experiment, module=f"{__name__}:kit_experiment")
    return {label: row["dead"] for label, row in rows.items()}


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
