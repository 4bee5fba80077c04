"""Exercises for labs/06_dead_letter.ipynb: a failure hook, retries that end in the DLQ, replay.

In the lab::

    from celerylab.exercises.l06_dead_letter import *   # q1, q2, q3, ____ and the helpers
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

The dead-letter list is the Redis list ``dead_letters`` on the broker; each entry is one JSON
object with the keys ``task_id``, ``task``, ``args``, ``kwargs``, ``exception``, ``queue``.
Every check runs tasks on a real worker in the kernel and reads that list.
"""
from __future__ import annotations

import json
import threading
import uuid
from collections import Counter

from celerylab.grading import BehaviourCheck, Trial, bind, call_with_deadline
from celerylab.grading.kinds import fmt_call
from celerylab.grading.outcomes import (ExerciseIncorrect, ExerciseNotAttempted, ____, describe,  # noqa: F401
                                        describe_exc)

from ._bind import BindHint
from celerylab.store import redis_client

DEAD_LETTERS = "dead_letters"
KEYS = ("task_id", "task", "args", "kwargs", "exception", "queue")


def parse_row(row):
    """A CSV row as a dict: ``"7,Widget,9.50"`` -> ``{"id": 7, "name": "Widget", "price": 9.5}``.
    Raises ValueError for a row that is not ``id,name,price`` with numbers where numbers go."""
    parts = str(row).split(",")
    if len(parts) != 3:
        raise ValueError(f"expected id,name,price: {row!r}")
    return {"id": int(parts[0]), "name": parts[1].strip(), "price": float(parts[2])}


_bank = Counter()
_bank_lock = threading.Lock()


def bank_api(card):
    """Authorise a payment on ``card``. Cards ending in ``-flaky`` time out once, then work;
    ``-down`` never answers (ConnectionError); a card that is not ``4...`` is refused (ValueError)."""
    if not isinstance(card, str) or not card.startswith("4"):
        raise ValueError(f"card refused: {card!r}")
    with _bank_lock:
        _bank[card] += 1
        n = _bank[card]
    if card.endswith("-down") or (card.endswith("-flaky") and n == 1):
        raise ConnectionError(f"bank did not answer for {card}")
    return f"authorised {card}"


def dead_letters() -> list:
    """The entries of the dead-letter list, oldest first, as dicts."""
    return [json.loads(raw) for raw in redis_client().lrange(DEAD_LETTERS, 0, -1)]


def _entries(client) -> list:
    out = []
    for raw in client.lrange(DEAD_LETTERS, 0, -1):
        try:
            out.append(json.loads(raw))
        except ValueError:
            raise ExerciseIncorrect(f"an entry in {DEAD_LETTERS!r} is not JSON: "
                                    f"{raw[:60].decode(errors='replace')!r}") from None
    return out


def _judge_entry(entry, call: str, task_id: str, task_name: str, args, exception: str, kwargs=None,
                 queue: str | None = None) -> None:
    if not isinstance(entry, dict):
        raise ExerciseIncorrect(f"the entry for {call} is {describe(entry)}, not a JSON object")
    missing = [k for k in KEYS if k not in entry]
    if missing:
        raise ExerciseIncorrect(f"the entry for {call} has no key {', '.join(repr(k) for k in missing)} "
                                f"(it should have {', '.join(KEYS)})")
    if entry["task_id"] != task_id:
        raise ExerciseIncorrect(f"the entry for {call} has task_id {describe(entry['task_id'])}, not the task's id")
    if entry["task"] != task_name:
        raise ExerciseIncorrect(f"the entry for {call} has task {describe(entry['task'])}: use the task's "
                                f"registered name, `sender.name`")
    if entry["args"] != json.loads(json.dumps(list(args))):
        raise ExerciseIncorrect(f"the entry for {call} has args {describe(entry['args'])}, not the task's arguments")
    if kwargs is not None and entry["kwargs"] != json.loads(json.dumps(kwargs)):
        raise ExerciseIncorrect(f"the entry for {call} has kwargs {describe(entry['kwargs'])}, not the task's "
                                f"keyword arguments")
    if queue is not None and entry["queue"] != queue:
        raise ExerciseIncorrect(f"the entry for {call} has queue {entry['queue']!r}; it came from "
                                f"{queue!r} (sender.request.delivery_info['routing_key'])")
    if entry["exception"] != exception:
        raise ExerciseIncorrect(f"the entry for {call} has exception {describe(entry['exception'])}; the "
                                f"exception's class name, {exception!r}, was expected")


class FailureHook(BindHint, BehaviourCheck):
    """Failing ``import_row`` calls land in ``dead_letters`` once each, with the agreed keys;
    a call that succeeds leaves nothing."""

    task = "import_row"
    #: (args, kwargs, queue, fails): one bad row by keyword, one from another queue
    calls = [(("7,Widget,9.50",), {}, "celery", False), ((), {"row": "8,Gadget,lots"}, "celery", True),
             (("9;Gizmo;1.0",), {}, "lab06_import", True)]
    correct = "every failed import_row lands in dead_letters once, with its id, name, arguments and exception."
    hints = (
        "In `record_dead_letter`, build a dict with the six keys and push it as JSON onto the list: "
        "`redis_client().rpush(\"dead_letters\", json.dumps(entry))`.",
        "`sender` is the task: `sender.name` is its name and `sender.request.delivery_info"
        "[\"routing_key\"]` its queue; `type(exception).__name__` is the exception's class name; "
        "`list(args)` makes the arguments JSON-friendly.",
    )
    solution_text = """
        def record_dead_letter(sender=None, task_id=None, exception=None, args=None, kwargs=None, **extra):
            entry = {"task_id": task_id, "task": sender.name, "args": list(args or []),
                     "kwargs": dict(kwargs or {}), "exception": type(exception).__name__,
                     "queue": (sender.request.delivery_info or {}).get("routing_key")}
            redis_client().rpush("dead_letters", json.dumps(entry))
    """

    def _check(self, ns):
        hook = self.callable_named(ns, "record_dead_letter")
        task = self.task_named(ns, self.task)
        if not _hook_connected(hook):
            raise ExerciseIncorrect("record_dead_letter is not connected to the task_failure signal: "
                                    "run the cell that connects it")
        client = redis_client()
        # a hook that still raises NotImplementedError is "not attempted" (Celery would only log it)
        probe = call_with_deadline(hook, sender=task, task_id="lab06-probe", exception=ValueError("probe"),
                                   args=["probe"], kwargs={}, timeout=self.timeout)
        if isinstance(probe.error, NotImplementedError):
            raise ExerciseNotAttempted("`record_dead_letter` still raises NotImplementedError: write your code there")
        client.delete(DEAD_LETTERS)
        with Trial(self.timeout) as trial:
            sent = []
            for args, kwargs, queue, fails in self.calls:
                call = f"{fmt_call(self.task + '.apply_async', (args,), kwargs and {'kwargs': kwargs})}"
                value = self.run_learner(trial, call, task.apply_async, args, kwargs, queue=queue, name=self.task)
                sent.append((args, kwargs, queue, fails, self.sent(trial, call, value)))
            outcomes = trial.run(task.app, [pub.task_id for *_, pub in sent], queues=sorted({c[2] for c in self.calls}))
            failures = sum(1 for *_, fails, _ in sent if fails)
            trial.recorder.wait(lambda _: client.llen(DEAD_LETTERS) >= failures, 1.0)
        entries = _entries(client)
        for args, kwargs, queue, fails, pub in sent:
            call = fmt_call(self.task, args, kwargs)
            o = outcomes[pub.task_id]
            self.finished(call, o)
            if isinstance(o.exc, NotImplementedError):
                raise self.failed(call, o.exc)
            if not fails and o.state == "FAILURE":
                raise self.failed(call, o.exc)
            if fails and o.state != "FAILURE":
                raise ExerciseIncorrect(f"{call} returned {describe(o.value)}; it should fail")
            mine = [e for e in entries if isinstance(e, dict) and e.get("task_id") == pub.task_id]
            if not fails and mine:
                raise ExerciseIncorrect(f"{call} succeeded, but an entry for it landed in {DEAD_LETTERS!r}")
            if fails and not mine:
                if entries:  # say what is wrong with what did land
                    _judge_entry(entries[0], call, pub.task_id, task.name, args, "ValueError", kwargs, queue)
                raise ExerciseIncorrect(f"{call} failed, but nothing landed in {DEAD_LETTERS!r}: does "
                                        f"record_dead_letter push onto that list?")
            if len(mine) > 1:
                raise ExerciseIncorrect(f"{call} landed in {DEAD_LETTERS!r} {len(mine)} times: is the hook "
                                        f"connected more than once?")
            if fails:
                _judge_entry(mine[0], call, pub.task_id, task.name, args, "ValueError", kwargs, queue)


def _hook_connected(hook) -> bool:
    """Is ``hook`` (or a bound method of it) among task_failure's receivers?"""
    import weakref

    from celery.signals import task_failure

    for _, receiver in task_failure.receivers:
        target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
        if target is hook or getattr(target, "__func__", None) is hook:
            return True
    return False


class RetriesThenDeadLetter(BindHint, BehaviourCheck):
    """``charge(card)``: a flaky bank is retried (no dead letter), a dead bank lands once after
    two retries, a refused card lands at once."""

    task = "charge"
    timeout = 6.0
    pause = (0.05, 0.6)  #: accepted seconds between a failure and its retry ("0.1 s apart")
    correct = "charge retries the bank twice; only tasks that fail for good land in dead_letters, once each."
    hints = (
        "Let Celery retry: `@app.task(autoretry_for=(ConnectionError,), max_retries=2, "
        "retry_kwargs={\"countdown\": 0.1})`. Your q1 hook does the rest: task_failure is only sent "
        "when a task fails for good, never for a retry.",
        "A ValueError (a refused card) should not be retried: leave it out of autoretry_for.",
    )
    solution_text = """
        @app.task(autoretry_for=(ConnectionError,), max_retries=2, retry_kwargs={"countdown": 0.1})
        def charge(card):
            return bank_api(card)
    """
    cases = [
        ("4111-ok", 0, False, "a bank that answers"),
        ("4111-flaky", 1, False, "a bank that times out once"),
        ("4111-down", 2, True, "a bank that never answers"),
        ("5111-refused", 0, True, "a refused card"),
    ]

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        client = redis_client()
        client.delete(DEAD_LETTERS)
        run = uuid.uuid4().hex[:6]
        with _bank_lock:
            _bank.clear()
        with Trial(self.timeout) as trial:
            cards = [(f"{card[:4]}{run}{card[4:]}", retries, lands, about) for card, retries, lands, about in self.cases]
            sent = [(card, retries, lands, about, self.send(trial, task, (card,))) for card, retries, lands, about in cards]
            outcomes = trial.run(task.app, [pub.task_id for *_, pub in sent], concurrency=4)
            failures = sum(1 for s in sent if s[2])
            trial.recorder.wait(lambda _: client.llen(DEAD_LETTERS) >= failures, 1.0)
        entries = _entries(client)
        for card, retries, lands, about, pub in sent:
            call = fmt_call(self.task, (card,))
            o = outcomes[pub.task_id]
            self.finished(call, o)
            if isinstance(o.exc, NotImplementedError):
                raise self.failed(call, o.exc)
            n = len(o.retried)
            if n != retries:
                raise ExerciseIncorrect(f"{call} ({about}) was retried {n} time{'s' if n != 1 else ''}; "
                                        f"it should be retried {retries} time{'s' if retries != 1 else ''}")
            lo, hi = self.pause
            # planned (ETA) delays: from the failed attempt's start for "too soon", from the retry's
            # publication for "too late" (load can only lengthen the first and shorten the second)
            for pause, soonest in zip(o.retry_delays, o.retry_delays_from_start):
                if soonest < lo or pause > hi:
                    pause = soonest if soonest < lo else pause
                    raise ExerciseIncorrect(f"{call} ({about}) was retried {pause:.1f} s after it failed; "
                                            f"retry 0.1 s apart")
            if lands and o.state != "FAILURE":
                raise ExerciseIncorrect(f"{call} ({about}) returned {describe(o.value)}; it should fail")
            if not lands and o.state == "FAILURE":
                raise self.failed(f"{call} ({about})", o.exc)
            mine = [e for e in entries if isinstance(e, dict) and e.get("task_id") == pub.task_id]
            if not lands and mine:
                raise ExerciseIncorrect(f"{call} ({about}) succeeded in the end, but landed in {DEAD_LETTERS!r}")
            if lands and not mine:
                raise ExerciseIncorrect(f"{call} ({about}) failed for good, but no entry in {DEAD_LETTERS!r} has "
                                        f"its task id: is your q1 hook connected?")
            if len(mine) > 1:
                raise ExerciseIncorrect(f"{call} ({about}) landed in {DEAD_LETTERS!r} {len(mine)} times: once per "
                                        f"task, after its last retry")


class Replay(BehaviourCheck):
    """``replay_dead_letters()`` sends every entry again (task, args, kwargs, to its queue),
    empties the list and returns the AsyncResults."""

    sender = "replay_dead_letters"
    timeout = 6.0
    correct = "replay_dead_letters sends each dead letter back to its queue with its arguments, and empties the list."
    hints = (
        "Take the entries off the list one by one (`redis_client().lpop(\"dead_letters\")` returns "
        "None when it is empty), `json.loads` each, and send it with `app.send_task(name, args=..., "
        "kwargs=..., queue=...)`.",
        "Use the entry's `queue`: the replayed task must go back where it came from. Collect what "
        "`send_task` returns and return that list.",
    )
    solution_text = """
        def replay_dead_letters():
            results = []
            while (raw := redis_client().lpop("dead_letters")) is not None:
                entry = json.loads(raw)
                results.append(app.send_task(entry["task"], args=entry["args"], kwargs=entry["kwargs"],
                                             queue=entry["queue"]))
            return results
    """

    def _check(self, ns):
        replay = self.callable_named(ns, self.sender)
        app = self.value_named(ns, "app")
        name = "lab06_check.restock"

        if name not in app.tasks:
            @app.task(name=name, bind=True, shared=False)
            def restock(self, sku, qty=1, note=None):
                return [sku, qty, note]
        task = app.tasks[name]
        client = redis_client()
        client.delete(DEAD_LETTERS)
        run = uuid.uuid4().hex[:6]
        planned = [
            {"task_id": f"old-{run}-1", "task": name, "args": [f"A-{run}"], "kwargs": {}, "exception": "ConnectionError",
             "queue": "celery"},
            {"task_id": f"old-{run}-2", "task": name, "args": [f"B-{run}", 3], "kwargs": {"note": "urgent"},
             "exception": "ConnectionError", "queue": "lab06_restock"},
            {"task_id": f"old-{run}-3", "task": name, "args": [f"C-{run}"], "kwargs": {}, "exception": "ValueError",
             "queue": "celery"},
        ]
        for entry in planned:
            client.rpush(DEAD_LETTERS, json.dumps(entry))
        with Trial(self.timeout) as trial:
            before = len(trial.recorder.events)
            value = self.run_learner(trial, f"{self.sender}()", replay, name=self.sender)
            published = [e for e in trial.recorder.published(before) if e.name == name]
            if not published:
                raise ExerciseIncorrect(f"{self.sender}() sent no task: send each entry with app.send_task")
            if len(published) != len(planned):
                raise ExerciseIncorrect(f"{self.sender}() sent {len(published)} tasks for {len(planned)} dead letters")
            left = client.llen(DEAD_LETTERS)
            if left:
                raise ExerciseIncorrect(f"{DEAD_LETTERS!r} still holds {left} entr{'y' if left == 1 else 'ies'} "
                                        f"after the replay: take each entry off the list")
            results = list(value) if isinstance(value, (list, tuple)) else None
            if results is None or len(results) != len(planned):
                raise ExerciseIncorrect(f"{self.sender}() returned {describe(value)}: return the list of "
                                        f"AsyncResults that send_task gave you")
            outcomes = trial.run(app, [p.task_id for p in published], queues=["celery", "lab06_restock"])
        by_args = {json.dumps(p.data["args"]): outcomes[p.task_id] for p in published}
        for entry in planned:
            call = fmt_call("restock", entry["args"], entry["kwargs"])
            o = by_args.get(json.dumps(entry["args"]))
            if o is None:
                raise ExerciseIncorrect(f"no task was sent with the arguments of the dead letter {call}")
            value = self.succeeded(call, o)
            args = entry["args"]
            if value != [args[0], args[1] if len(args) > 1 else 1, entry["kwargs"].get("note")]:
                raise ExerciseIncorrect(f"{call} ran with other arguments: pass the entry's args and kwargs")
            if o.queue != entry["queue"]:
                raise ExerciseIncorrect(f"{call} went to the queue {o.queue!r}, not back to {entry['queue']!r}")


__all__ = ["____", "parse_row", "bank_api", "dead_letters", "redis_client", "json"] + bind(
    globals(), FailureHook, RetriesThenDeadLetter, Replay)
