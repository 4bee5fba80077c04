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
from celerylab.i18n import N_, _

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
            raise ExerciseIncorrect(_("an entry in {dlq} is not JSON: {raw}", dlq=repr(DEAD_LETTERS),
                                      raw=repr(raw[:60].decode(errors="replace")))) from None
    return out


def _judge_entry(entry, call: str, task_id: str, task_name: str, args, exception: str, kwargs=None,
                 queue: str | None = None) -> None:
    if not isinstance(entry, dict):
        raise ExerciseIncorrect(_("the entry for {call} is {got}, not a JSON object", call=call, got=describe(entry)))
    missing = [k for k in KEYS if k not in entry]
    if missing:
        raise ExerciseIncorrect(_("the entry for {call} has no key {missing} (it should have {keys})", call=call,
                                  missing=", ".join(repr(k) for k in missing), keys=", ".join(KEYS)))
    if entry["task_id"] != task_id:
        raise ExerciseIncorrect(_("the entry for {call} has task_id {got}, not the task's id", call=call,
                                  got=describe(entry["task_id"])))
    if entry["task"] != task_name:
        raise ExerciseIncorrect(_("the entry for {call} has task {got}: use the task's registered name, "
                                  "`sender.name`", call=call, got=describe(entry["task"])))
    if entry["args"] != json.loads(json.dumps(list(args))):
        raise ExerciseIncorrect(_("the entry for {call} has args {got}, not the task's arguments", call=call,
                                  got=describe(entry["args"])))
    if kwargs is not None and entry["kwargs"] != json.loads(json.dumps(kwargs)):
        raise ExerciseIncorrect(_("the entry for {call} has kwargs {got}, not the task's keyword arguments",
                                  call=call, got=describe(entry["kwargs"])))
    if queue is not None and entry["queue"] != queue:
        raise ExerciseIncorrect(_("the entry for {call} has queue {got}; it came from "
                                  "{want} (sender.request.delivery_info['routing_key'])",
                                  call=call, got=repr(entry["queue"]), want=repr(queue)))
    if entry["exception"] != exception:
        raise ExerciseIncorrect(_("the entry for {call} has exception {got}; the "
                                  "exception's class name, {want}, was expected",
                                  call=call, got=describe(entry["exception"]), want=repr(exception)))


class FailureHook(BindHint, BehaviourCheck):
    """Failing ``import_row`` calls land in ``dead_letters`` once each, with the agreed keys;
    a call that succeeds leaves nothing."""

    task = "import_row"
    #: (args, kwargs, queue, fails): one bad row by keyword, one from another queue
    calls = [(("7,Widget,9.50",), {}, "celery", False), ((), {"row": "8,Gadget,lots"}, "celery", True),
             (("9;Gizmo;1.0",), {}, "lab06_import", True)]
    correct = N_("every failed import_row lands in dead_letters once, with its id, name, arguments and exception.")
    hints = (
        N_("In `record_dead_letter`, build a dict with the six keys and push it as JSON onto the list: "
           "`redis_client().rpush(\"dead_letters\", json.dumps(entry))`."),
        N_("`sender` is the task: `sender.name` is its name and `sender.request.delivery_info"
           "[\"routing_key\"]` its queue; `type(exception).__name__` is the exception's class name; "
           "`list(args)` makes the arguments JSON-friendly."),
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
            raise ExerciseIncorrect(_("record_dead_letter is not connected to the task_failure signal: "
                                      "run the cell that connects it"))
        client = redis_client()
        # a hook that still raises NotImplementedError is "not attempted" (Celery would only log it)
        probe = call_with_deadline(hook, sender=task, task_id="lab06-probe", exception=ValueError("probe"),
                                   args=["probe"], kwargs={}, timeout=self.timeout)
        if isinstance(probe.error, NotImplementedError):
            raise ExerciseNotAttempted(_("`record_dead_letter` still raises NotImplementedError: write your code "
                                         "there"))
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
                raise ExerciseIncorrect(_("{call} returned {got}; it should fail", call=call, got=describe(o.value)))
            mine = [e for e in entries if isinstance(e, dict) and e.get("task_id") == pub.task_id]
            if not fails and mine:
                raise ExerciseIncorrect(_("{call} succeeded, but an entry for it landed in {dlq}", call=call,
                                          dlq=repr(DEAD_LETTERS)))
            if fails and not mine:
                if entries:  # say what is wrong with what did land
                    _judge_entry(entries[0], call, pub.task_id, task.name, args, "ValueError", kwargs, queue)
                raise ExerciseIncorrect(_("{call} failed, but nothing landed in {dlq}: does "
                                          "record_dead_letter push onto that list?", call=call, dlq=repr(DEAD_LETTERS)))
            if len(mine) > 1:
                raise ExerciseIncorrect(_("{call} landed in {dlq} {times} times: is the hook "
                                          "connected more than once?", call=call, dlq=repr(DEAD_LETTERS),
                                          times=len(mine)))
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
    correct = N_("charge retries the bank twice; only tasks that fail for good land in dead_letters, once each.")
    hints = (
        N_("Let Celery retry: `@app.task(autoretry_for=(ConnectionError,), max_retries=2, "
           "retry_kwargs={\"countdown\": 0.1})`. Your q1 hook does the rest: task_failure is only sent "
           "when a task fails for good, never for a retry."),
        N_("A ValueError (a refused card) should not be retried: leave it out of autoretry_for."),
    )
    solution_text = """
        @app.task(autoretry_for=(ConnectionError,), max_retries=2, retry_kwargs={"countdown": 0.1})
        def charge(card):
            return bank_api(card)
    """
    cases = [
        ("4111-ok", 0, False, N_("a bank that answers")),
        ("4111-flaky", 1, False, N_("a bank that times out once")),
        ("4111-down", 2, True, N_("a bank that never answers")),
        ("5111-refused", 0, True, N_("a refused card")),
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
            about = _(about)  # the case, in the learner's language
            o = outcomes[pub.task_id]
            self.finished(call, o)
            if isinstance(o.exc, NotImplementedError):
                raise self.failed(call, o.exc)
            n = len(o.retried)
            if n != retries:
                if n == 1:
                    text = _("{call} ({about}) was retried 1 time; it should be retried {retries} times",
                             call=call, about=about, retries=retries)
                elif retries == 1:
                    text = _("{call} ({about}) was retried {n} times; it should be retried 1 time",
                             call=call, about=about, n=n)
                else:
                    text = _("{call} ({about}) was retried {n} times; it should be retried {retries} times",
                             call=call, about=about, n=n, retries=retries)
                raise ExerciseIncorrect(text)
            lo, hi = self.pause
            # planned (ETA) delays: from the failed attempt's start for "too soon", from the retry's
            # publication for "too late" (load can only lengthen the first and shorten the second)
            for pause, soonest in zip(o.retry_delays, o.retry_delays_from_start):
                if soonest < lo or pause > hi:
                    pause = soonest if soonest < lo else pause
                    raise ExerciseIncorrect(_("{call} ({about}) was retried {pause:.1f} s after it failed; "
                                              "retry 0.1 s apart", call=call, about=about, pause=pause))
            if lands and o.state != "FAILURE":
                raise ExerciseIncorrect(_("{call} ({about}) returned {got}; it should fail", call=call, about=about,
                                          got=describe(o.value)))
            if not lands and o.state == "FAILURE":
                raise self.failed(_("{call} ({about})", call=call, about=about), o.exc)
            mine = [e for e in entries if isinstance(e, dict) and e.get("task_id") == pub.task_id]
            if not lands and mine:
                raise ExerciseIncorrect(_("{call} ({about}) succeeded in the end, but landed in {dlq}", call=call,
                                          about=about, dlq=repr(DEAD_LETTERS)))
            if lands and not mine:
                raise ExerciseIncorrect(_("{call} ({about}) failed for good, but no entry in {dlq} has "
                                          "its task id: is your q1 hook connected?", call=call, about=about,
                                          dlq=repr(DEAD_LETTERS)))
            if len(mine) > 1:
                raise ExerciseIncorrect(_("{call} ({about}) landed in {dlq} {times} times: once per "
                                          "task, after its last retry", call=call, about=about,
                                          dlq=repr(DEAD_LETTERS), times=len(mine)))


class Replay(BehaviourCheck):
    """``replay_dead_letters()`` sends every entry again (task, args, kwargs, to its queue),
    empties the list and returns the AsyncResults."""

    sender = "replay_dead_letters"
    timeout = 6.0
    correct = N_("replay_dead_letters sends each dead letter back to its queue with its arguments, and empties "
                 "the list.")
    hints = (
        N_("Take the entries off the list one by one (`redis_client().lpop(\"dead_letters\")` returns "
           "None when it is empty), `json.loads` each, and send it with `app.send_task(name, args=..., "
           "kwargs=..., queue=...)`."),
        N_("Use the entry's `queue`: the replayed task must go back where it came from. Collect what "
           "`send_task` returns and return that list."),
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
                raise ExerciseIncorrect(_("{sender}() sent no task: send each entry with app.send_task",
                                          sender=self.sender))
            if len(published) != len(planned):
                raise ExerciseIncorrect(_("{sender}() sent {sent} tasks for {planned} dead letters",
                                          sender=self.sender, sent=len(published), planned=len(planned)))
            left = client.llen(DEAD_LETTERS)
            if left == 1:
                raise ExerciseIncorrect(_("{dlq} still holds 1 entry after the replay: take each entry off the list",
                                          dlq=repr(DEAD_LETTERS)))
            if left:
                raise ExerciseIncorrect(_("{dlq} still holds {left} entries after the replay: take each entry off "
                                          "the list", dlq=repr(DEAD_LETTERS), left=left))
            results = list(value) if isinstance(value, (list, tuple)) else None
            if results is None or len(results) != len(planned):
                raise ExerciseIncorrect(_("{sender}() returned {got}: return the list of "
                                          "AsyncResults that send_task gave you", sender=self.sender,
                                          got=describe(value)))
            outcomes = trial.run(app, [p.task_id for p in published], queues=["celery", "lab06_restock"])
        by_args = {json.dumps(p.data["args"]): outcomes[p.task_id] for p in published}
        for entry in planned:
            call = fmt_call("restock", entry["args"], entry["kwargs"])
            o = by_args.get(json.dumps(entry["args"]))
            if o is None:
                raise ExerciseIncorrect(_("no task was sent with the arguments of the dead letter {call}", call=call))
            value = self.succeeded(call, o)
            args = entry["args"]
            if value != [args[0], args[1] if len(args) > 1 else 1, entry["kwargs"].get("note")]:
                raise ExerciseIncorrect(_("{call} ran with other arguments: pass the entry's args and kwargs",
                                          call=call))
            if o.queue != entry["queue"]:
                raise ExerciseIncorrect(_("{call} went to the queue {got}, not back to {want}", call=call,
                                          got=repr(o.queue), want=repr(entry["queue"])))


__all__ = ["____", "parse_row", "bank_api", "dead_letters", "redis_client", "json"] + bind(
    globals(), FailureHook, RetriesThenDeadLetter, Replay)
