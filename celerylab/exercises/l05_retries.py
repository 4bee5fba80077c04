"""Exercises for labs/05_retries.ipynb: retry by hand, back off automatically, charge once.

In the lab::

    from celerylab.exercises.l05_retries import *   # q1, q2, q3, ____ and the pretend services
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

Every check runs the learner's task on a real worker in the kernel and judges what happened:
how many attempts, how far apart, how it ended (q1, q2), how many charges were made (q3).
"""
from __future__ import annotations

import json
import threading
import uuid
from collections import Counter

from celerylab.grading import Attempts, BehaviourCheck, RetriesOn, Trial, bind
from celerylab.grading.kinds import fmt_call
from celerylab.grading.outcomes import ExerciseIncorrect, ____, describe, describe_exc  # noqa: F401
from celerylab.i18n import N_, _

from ._bind import BindHint
from celerylab.store import redis_client

from ._process import spawn_task_worker


class _Flaky:
    """Calls per key; a key fails with ConnectionError on its first ``fails`` calls."""

    def __init__(self):
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def call(self, key) -> int:
        with self._lock:
            self.calls[key] += 1
            return self.calls[key]


_inventory = _Flaky()
_quotes = _Flaky()


def inventory_api(sku):
    """Stock level of ``sku``. SKUs must look like ``SKU-...`` (else ValueError).
    ``SKU-...-flaky`` fails with ConnectionError twice, then answers; ``SKU-...-down`` always fails."""
    if not isinstance(sku, str) or not sku.startswith("SKU-"):
        raise ValueError(f"not a SKU: {sku!r}")
    n = _inventory.call(sku)
    if sku.endswith("-down") or (sku.endswith("-flaky") and n <= 2):
        raise ConnectionError(f"inventory service: connection reset ({sku})")
    return {"sku": sku, "in_stock": 7}


def quotes_api(symbol):
    """Price of ``symbol``: fails with ConnectionError on its first two calls per symbol, then
    answers. ``"DOWN"`` always fails; a symbol that is not upper-case letters raises ValueError."""
    if not isinstance(symbol, str) or not symbol.isalpha() or not symbol.isupper():
        raise ValueError(f"not a ticker symbol: {symbol!r}")
    n = _quotes.call(symbol)
    if symbol == "DOWN" or n <= 2:
        raise ConnectionError(f"quotes service: timed out ({symbol})")
    return {"symbol": symbol, "price": 101.5}


# -- payments: a pretend card processor that records charges (q3) ----------------------------
# Kept in Redis (the broker's, see celerylab.store), so a charge made by a worker process counts too.
_CHARGES_KEY = "lab05:charges"
_RECEIPTS_KEY = "lab05:receipts"


def charge_card(order_id, amount) -> None:
    """Charge the customer's card for ``order_id`` (every call is a real charge)."""
    redis_client().rpush(_CHARGES_KEY, json.dumps([order_id, amount]))


def send_receipt(order_id) -> None:
    """E-mail the receipt. The first call for each order times out (TimeoutError)."""
    if redis_client().hincrby(_RECEIPTS_KEY, str(order_id), 1) == 1:
        raise TimeoutError(f"mail server timed out (receipt for order {order_id})")


def charges() -> list:
    """The charges made so far: ``[(order_id, amount), ...]``."""
    return [tuple(json.loads(raw)) for raw in redis_client().lrange(_CHARGES_KEY, 0, -1)]


def _reset_payments() -> None:
    redis_client().delete(_CHARGES_KEY, _RECEIPTS_KEY)


class SyncInventory(BindHint, RetriesOn):
    task = "sync_inventory"
    countdown = 0.2
    window = (0.1, 1.0)
    scenarios = [
        Attempts(("SKU-1-flaky",), retries=2, succeeds=True, value={"sku": "SKU-1-flaky", "in_stock": 7},
                 about=N_("a service that fails twice, then answers")),
        Attempts(("SKU-2-down",), retries=2, succeeds=False, raises="ConnectionError",
                 about=N_("a service that stays down")),
        Attempts(("2-down",), retries=0, succeeds=False, raises="ValueError", about=N_("not a SKU")),
    ]
    correct = N_("sync_inventory retries twice, 0.2 s apart, then fails with the ConnectionError; bad SKUs fail "
                 "at once.")
    hints = (
        N_("Catch only `ConnectionError` around `inventory_api(sku)` and ask for a retry with "
           "`raise self.retry(...)`; a ValueError should escape and fail the task at once."),
        N_("`raise self.retry(exc=exc, countdown=0.2, max_retries=2)`: `max_retries` counts retries, "
           "not runs (2 retries = 3 runs), and `exc=exc` makes the last failure raise the "
           "ConnectionError instead of MaxRetriesExceededError."),
    )
    solution_text = """
        @app.task(bind=True)
        def sync_inventory(self, sku):
            try:
                return inventory_api(sku)
            except ConnectionError as exc:
                raise self.retry(exc=exc, countdown=0.2, max_retries=2)
    """

    def prepare(self) -> None:
        _inventory.reset()


class FetchQuotes(BindHint, RetriesOn):
    """Automatic retries with exponential backoff: the waits must double (1 s, then 2 s)."""

    task = "fetch_quotes"
    countdown = 1.0
    window = (0.6, 3.0)
    timeout = 8.0
    expected_waits = (1.0, 2.0)
    tolerance = 0.4
    scenarios = [
        Attempts(("ACME",), retries=2, succeeds=True, value={"symbol": "ACME", "price": 101.5},
                 about=N_("a service that times out twice")),
        Attempts(("DOWN",), retries=2, succeeds=False, raises="ConnectionError",
                 about=N_("a service that stays down")),
        Attempts(("acme",), retries=0, succeeds=False, raises="ValueError", about=N_("not a ticker symbol")),
    ]
    correct = N_("fetch_quotes is retried automatically, 1 s then 2 s apart, and gives up after two retries.")
    hints = (
        N_("No try/except this time: `@app.task(autoretry_for=(ConnectionError,), ...)` retries the "
           "task whenever that exception escapes it."),
        N_("Add `retry_backoff=True` (waits 1, 2, 4... s), `retry_jitter=False` (else each wait is "
           "random, possibly 0) and `max_retries=2`."),
    )
    solution_text = """
        @app.task(autoretry_for=(ConnectionError,), retry_backoff=True, retry_jitter=False, max_retries=2)
        def fetch_quotes(symbol):
            return quotes_api(symbol)
    """

    def prepare(self) -> None:
        _quotes.reset()

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        if not tuple(getattr(task, "autoretry_for", ()) or ()):
            raise ExerciseIncorrect(_("`{task}` has no autoretry_for: declare which exceptions Celery "
                                      "should retry (`autoretry_for=(ConnectionError,)`), no try/except needed",
                                      task=self.task))
        if getattr(task, "retry_backoff", False) and getattr(task, "retry_jitter", True):
            # with backoff, jitter makes each wait random (0 to the backoff): a run could pass by chance
            raise ExerciseIncorrect(_("`{task}` keeps retry_jitter on (the default): each wait would be "
                                      "random; turn it off with retry_jitter=False", task=self.task))
        self._waits = {}
        super()._check(ns)

    def _judge(self, call, s, o, lo, hi):
        super()._judge(call, s, o, lo, hi)
        if s.retries < 2:
            return
        # the waits each retry was planned with (its ETA minus the failure): a busy machine runs a
        # retry late, so the gaps the worker shows would judge the load, not the answer
        waits = o.retry_delays
        for n, (got, soonest, want) in enumerate(zip(waits, o.retry_delays_from_start, self.expected_waits), start=1):
            # too short judged from the failed attempt's start, too long from the retry's publication
            if soonest < want - self.tolerance or got > want + self.tolerance:
                shown = ", ".join(_("{seconds:.1f} s", seconds=w) for w in waits)
                raise ExerciseIncorrect(_("{call}: the retries were planned {waits} after each failure; with "
                                          "exponential backoff and no jitter they are 1 s, then 2 s",
                                          call=call, waits=shown))


class PayOnce(BindHint, BehaviourCheck):
    """``pay(order_id, amount)`` charges each order once: retried, delivered twice or sent again."""

    task = "pay"
    timeout = 6.0
    correct = N_("pay charges each order once: a retry, a duplicate message and the same order sent again "
                 "charge nothing more.")
    hints = (
        N_("Three things run `pay` again for one order: a retry and a message delivered twice (both keep "
           "`self.request.id`), and the same order sent again by the shop (a new task id). Only the order "
           "itself is the same in all three: remember that this order has been charged, somewhere every "
           "worker sees: Redis."),
        N_("`redis_client().set(f\"charged:{order_id}\", 1, nx=True, ex=86400)` returns True only for the "
           "first caller; charge the card only then."),
    )
    solution_text = """
        @app.task(bind=True, max_retries=3)
        def pay(self, order_id, amount):
            if redis_client().set(f"charged:{order_id}", 1, nx=True, ex=86400):
                charge_card(order_id, amount)
            try:
                send_receipt(order_id)
            except TimeoutError as exc:
                raise self.retry(exc=exc, countdown=0.1)
            return "paid"
    """

    def _check(self, ns):
        from celerylab.errors import WorkerStartError

        task = self.task_named(ns, self.task)
        _reset_payments()
        run = uuid.uuid4().hex[:8]
        a, b, c = f"A-{run}", f"B-{run}", f"C-{run}"
        twice = f"lab05-pay-{run}"
        elsewhere = f"lab05-elsewhere-{run}"  # the queue only the worker process listens to
        # "where every worker sees it": the duplicate message goes to a worker in a process of its
        # own (as on another machine), which has its own memory; started now, it is ready by then
        process = spawn_task_worker(task, ns, _PREAMBLE.format(main=task.app.main), _PROVIDED, "lab05_pay",
                                    pool="solo", concurrency=1, queues=[elsewhere],
                                    hostname=f"lab05-pay-{run}@%h", broker_url=task.app.conf.broker_url,
                                    result_backend=task.app.conf.result_backend)
        try:
            with Trial(self.timeout) as trial:
                pubs = [self.send(trial, task, (a, 10.0))]
                got = self.run_learner(trial, "pay.apply_async(...)", task.apply_async, (b, 20.0), task_id=twice)
                pubs.append(self.sent(trial, f"pay.apply_async(({b!r}, 20.0), task_id=...)", got))
                pubs.append(self.send(trial, task, (c, 30.0)))
                ids = [p.task_id for p in pubs]
                trial.start_worker(task.app, {p.data["queue"] for p in pubs if p.data["queue"]} or {"celery"}, 4)

                def finished(rec) -> bool:
                    return all(rec.of(t, "succeeded") or rec.of(t, "failed") for t in ids)

                trial.recorder.wait(finished, self.timeout)
                calls = {ids[0]: (a, 10.0), twice: (b, 20.0), ids[-1]: (c, 30.0)}
                for t, args in calls.items():
                    for failed in trial.recorder.of(t, "failed"):
                        raise self.failed(fmt_call(self.task, args), failed.data.get("exc"))
                if not finished(trial.recorder):
                    raise ExerciseIncorrect(_("pay did not finish within {timeout:g} s: does it retry forever?",
                                              timeout=self.timeout))
            made = Counter(order for order, _ in charges())
            if made[a] == 0 or made[c] == 0:
                missing = a if made[a] == 0 else c
                raise ExerciseIncorrect(_("pay({order}, ...) never charged the card: the first run of each "
                                          "task must charge", order=repr(missing)))
            if made[a] > 1:
                raise ExerciseIncorrect(_("pay({order}, 10.0) charged the card {times} times: the retry after the "
                                          "receipt timeout charged again", order=repr(a), times=made[a]))
            if made[b] == 0:
                raise ExerciseIncorrect(_("pay({order}, 20.0) never charged the card", order=repr(b)))
            try:
                process.wait_ready(timeout=30)
            except WorkerStartError as exc:
                raise ExerciseIncorrect(_("a worker process could not load your pay task (it gets the cell's code "
                                          "and the notebook names pay uses): {error}",
                                          error=str(exc).splitlines()[-1])) from None
            task.app.backend.forget(twice)
            again = task.apply_async((b, 20.0), task_id=twice, queue=elsewhere)
            try:
                again.get(timeout=self.timeout, propagate=False)
            except Exception:  # noqa: BLE001 - a timeout, reported below
                raise ExerciseIncorrect(_("the worker process did not finish the repeated message within "
                                          "{timeout:g} s", timeout=self.timeout)) from None
            if again.state == "FAILURE":
                raise ExerciseIncorrect(_("the same message delivered again, to a worker process, failed there with "
                                          "{error}: pay should run anywhere, with what the setup cell imports",
                                          error=describe_exc(again.result)))
            made = Counter(order for order, _ in charges())
            if made[b] > 1:
                raise ExerciseIncorrect(_("the same task message delivered twice, the second time to a worker "
                                          "process of its own, charged the card {times} times: keep the memory "
                                          "of what has been charged where every worker sees it (Redis), not in "
                                          "this kernel", times=made[b]))
            # the shop sends the same order again (a client retry, a double click): a new task id
            resent = task.apply_async((b, 20.0), queue=elsewhere)
            try:
                resent.get(timeout=self.timeout, propagate=False)
            except Exception:  # noqa: BLE001 - a timeout, reported below
                raise ExerciseIncorrect(_("the worker process did not finish the order sent again within "
                                          "{timeout:g} s", timeout=self.timeout)) from None
        finally:
            process.terminate(timeout=10)
        made = Counter(order for order, _ in charges())
        if made[b] > 1:
            raise ExerciseIncorrect(_("pay({order}, 20.0) sent again by the shop, with a new task id, charged the "
                                      "card {times} times: a task id only repeats in a retry or a redelivery; key "
                                      "the memory on the order (the business operation), not on self.request.id",
                                      order=repr(b), times=made[b]))


_PREAMBLE = """\
# written by lab 05's check: the learner's pay task, for a worker process
import celerylab
from celerylab.exercises.l05_retries import *

app = celerylab.create_app({main!r})
"""
_PROVIDED = {"celerylab", "app", "inventory_api", "quotes_api", "charge_card", "send_receipt", "charges",
             "redis_client", "q1", "q2", "q3", "____"}


__all__ = ["____", "inventory_api", "quotes_api", "charge_card", "send_receipt", "charges",
           "redis_client"] + bind(globals(), SyncInventory, FetchQuotes, PayOnce)
