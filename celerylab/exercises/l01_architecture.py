"""Exercises for labs/01_architecture.ipynb: the message on the broker, STARTED, revoke, no blocking.

In the lab::

    from celerylab.exercises.l01_architecture import *   # q1..q4, ____
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

Every check runs the learner's code against the real broker and a real worker (the grader
worker, in this kernel) and judges what happened there: what sits on the Redis list, which
states the result backend recorded, whether a task ran at all.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from celery.result import AsyncResult

from celerylab import inspect_broker
from celerylab.grading import BehaviourCheck, bind
from celerylab.grading.kinds import fmt_call, short
from celerylab.grading.probe import BODY_ENDED
from celerylab.i18n import N_, _
from celerylab.grading.outcomes import ExerciseIncorrect, ____, describe, describe_exc  # noqa: F401
from celerylab.states import FINAL, trace_states

#: The queue q1 fills and no worker consumes until the check has read it.
Q1_QUEUE = "lab01_waiting"


def _redis(app):  # in a class, the learner's prefix on every key (inspect_broker.redis_client)
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        raise ExerciseIncorrect(_("this check reads the broker's Redis lists, but the broker is {scheme}",
                                  scheme=repr(url.split(':', 1)[0])))
    return inspect_broker.redis_client(url)


class OldestWaiting(BehaviourCheck):
    """``oldest_waiting(queue)`` reads the oldest message on a queue's Redis list without taking it."""

    function = "oldest_waiting"
    task = "add"
    correct = N_("oldest_waiting reads the next message off the Redis list without removing it, "
                 "and a worker then runs both messages.")
    hints = (
        N_("The queue is a Redis list named after it. kombu pushes new messages on the left (LPUSH) and "
           "workers pop from the right (BRPOP): the oldest message is the *last* element, `r.lindex(queue, -1)`. "
           "LINDEX and LRANGE read without removing; LPOP/RPOP would take the message away from the worker."),
        N_("The element is a JSON envelope: `env = json.loads(raw)`. The task name and id are in `env['headers']`; "
           "`env['body']` is base64: `json.loads(base64.b64decode(env['body']))` is `[args, kwargs, embed]`."),
    )
    solution_text = """
        def oldest_waiting(queue):
            r = redis_client(app.conf.broker_url)     # in a class, your prefix on every key
            raw = r.lindex(queue, -1)                  # oldest: workers take from the right
            envelope = json.loads(raw)
            args, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
            return {"task": envelope["headers"]["task"], "id": envelope["headers"]["id"], "args": args}
    """

    def _check(self, ns):
        fn = self.callable_named(ns, self.function)
        add = self.task_named(ns, self.task)
        client = _redis(add.app)
        client.delete(*inspect_broker.band_lists(Q1_QUEUE))
        call = fmt_call(self.function, (Q1_QUEUE,))
        with self.trial() as trial:
            first = add.apply_async((20, 22), queue=Q1_QUEUE)
            second = add.apply_async((1, 2), queue=Q1_QUEUE)
            got = self.run_learner(trial, call, fn, Q1_QUEUE, name=self.function)
            if not isinstance(got, dict):
                raise ExerciseIncorrect(_("{call} returned {got}; return a dict with the keys "
                                          "'task', 'id' and 'args'", call=call, got=describe(got)))
            missing = [k for k in ("task", "id", "args") if k not in got]
            if missing:
                raise ExerciseIncorrect(_("{call} returned a dict without {missing}",
                                          call=call, missing=", ".join(map(repr, missing))))
            waiting = client.llen(Q1_QUEUE)
            if waiting < 2:
                raise ExerciseIncorrect(_("after {call} only {waiting} of the 2 messages are still on the list: "
                                          "read with LINDEX or LRANGE, don't pop (a worker would never see "
                                          "the message you took)", call=call, waiting=waiting))
            if got["id"] == second.id:
                raise ExerciseIncorrect(_("{call} returned the newest message, not the oldest: which end of the "
                                          "list do workers take from?", call=call))
            if got["id"] != first.id:
                raise ExerciseIncorrect(_("{call} returned the id {got}, which is not the id of the "
                                          "oldest message", call=call, got=repr(got["id"])))
            if got["task"] != add.name:
                raise ExerciseIncorrect(_("{call} returned the task name {got}; the message's "
                                          "headers say {want}", call=call, got=repr(got["task"]), want=repr(add.name)))
            if list(got["args"]) != [20, 22]:
                raise ExerciseIncorrect(_("{call} returned the args {got}; decode the "
                                          "message's body to find the arguments", call=call, got=describe(got["args"])))
            outcomes = trial.run(add.app, [first.id, second.id], queues=[Q1_QUEUE])
            for result, args in ((first, (20, 22)), (second, (1, 2))):
                self.succeeded(fmt_call(short(add.name), args), outcomes[result.id])


class StartedIsVisible(BehaviourCheck):
    """``resize`` reports STARTED while it runs on a worker."""

    task = "resize"
    seconds = 0.6
    timeout = 8.0
    correct = N_("resize reports STARTED while a worker runs it, then SUCCESS.")
    hints = (
        N_("Celery records STARTED only when asked: for one task with an option of `@app.task(...)`, or for "
           "the whole app with the setting `task_track_started`."),
        N_("`@app.task(track_started=True)`. (Changing `app.conf.task_track_started` once the app is "
           "finalized, by a send or a worker start, does not change a task already bound to it.)"),
    )
    solution_text = """
        @app.task(track_started=True)
        def resize(seconds):
            time.sleep(seconds)
            return "resized"
    """

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        call = fmt_call(self.task, (self.seconds,))
        with self.trial() as trial:
            trial.start_worker(task.app, [task.app.conf.task_default_queue])
            sent = self.run_learner(trial, f"{short(task.name)}.delay({self.seconds})", task.delay, self.seconds,
                                    name=self.task)
            try:
                seen = trace_states(AsyncResult(sent.id, app=task.app), timeout=self.timeout)
            except TimeoutError:
                raise ExerciseIncorrect(_("{call} did not finish on the worker within {timeout:g} s",
                                          call=call, timeout=self.timeout)) from None
        path = " -> ".join(seen)
        if seen[-1] == "FAILURE":
            outcome = AsyncResult(sent.id, app=task.app).result
            raise ExerciseIncorrect(_("{call} failed on the worker with {error}", call=call, error=describe_exc(outcome)))
        if "STARTED" not in seen:
            raise ExerciseIncorrect(_("{call} went {path}: while it ran, its state stayed PENDING. "
                                      "Ask Celery to record STARTED for this task", call=call, path=path))
        if seen[-1] != "SUCCESS":
            raise ExerciseIncorrect(_("{call} went {path}; it should end in SUCCESS", call=call, path=path))
        got = AsyncResult(sent.id, app=task.app).result
        if got != "resized":
            raise ExerciseIncorrect(_("{call} returned {got}; it should return 'resized'", call=call, got=describe(got)))
        started = trial.recorder.of(sent.id, "started")
        finished = trial.recorder.of(sent.id, "succeeded")
        if started and finished and finished[0].at - started[0].at < self.seconds * 0.9:
            raise ExerciseIncorrect(_("{call} ran for {ran:.2f} s; it should sleep "
                                      "{seconds:g} s (time.sleep(seconds))",
                                      call=call, ran=finished[0].at - started[0].at, seconds=self.seconds))


class CancelInTime(BehaviourCheck):
    """``schedule_and_cancel(amount)`` sends ``charge`` with a countdown and revokes it: it never runs."""

    function = "schedule_and_cancel"
    task = "charge"
    args = (25,)
    timeout = 8.0
    max_countdown = 3.0
    min_countdown = 0.8  #: "1 to 3 seconds from now", measured when the function has returned
    correct = N_("schedule_and_cancel sends charge with a countdown and revokes it: the worker discards it, "
                 "it never runs.")
    hints = (
        N_("Send `charge` with `apply_async(args=[amount], countdown=...)` (1 or 2 seconds is plenty), then call "
           "`.revoke()` on the AsyncResult you got, and return it."),
        N_("With a countdown the worker holds the message until its time comes; the revoke reaches it first, so "
           "when the time comes the worker discards the task instead of running it."),
    )
    solution_text = """
        def schedule_and_cancel(amount):
            result = charge.apply_async(args=[amount], countdown=1)
            result.revoke()
            return result
    """

    def _check(self, ns):
        fn = self.callable_named(ns, self.function)
        charge = self.task_named(ns, self.task)
        call = fmt_call(self.function, self.args)
        with self.trial() as trial:
            # a revoke reaches only the workers running when it is sent: start the worker first
            trial.start_worker(charge.app, [charge.app.conf.task_default_queue])
            value = self.run_learner(trial, call, fn, *self.args, name=self.function)
            pub = self.sent(trial, call, value)
            if pub.name != charge.name:
                raise ExerciseIncorrect(_("{call} sent the task {sent}, not {want}",
                                          call=call, sent=repr(short(pub.name)), want=repr(self.task)))
            eta = pub.data.get("eta")
            if eta:
                when = datetime.fromisoformat(eta)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                ahead = (when - datetime.now(timezone.utc)).total_seconds()
                if ahead > self.max_countdown:
                    raise ExerciseIncorrect(_("{call} sent charge {eta} : use a countdown of at most "
                                              "{limit:g} s in this exercise", call=call, eta=eta,
                                              limit=self.max_countdown))
            if not eta or ahead < self.min_countdown:
                trial.recorder.wait(lambda rec: bool(rec.of(pub.task_id, "started"))
                                    or AsyncResult(pub.task_id, app=charge.app).state in FINAL, self.timeout)
                if not eta:
                    raise ExerciseIncorrect(_("{call} sent charge to run at once: "
                                              "it should run 1 to 3 seconds from now (countdown=...)", call=call))
                raise ExerciseIncorrect(_("{call} sent charge to run {ahead:.1f} s from now: "
                                          "it should run 1 to 3 seconds from now (countdown=...)",
                                          call=call, ahead=max(ahead, 0)))
            trial.recorder.wait(lambda rec: bool(rec.of(pub.task_id, "started"))
                                or AsyncResult(pub.task_id, app=charge.app).state in FINAL, self.timeout)
            state = AsyncResult(pub.task_id, app=charge.app).state
            ran = trial.recorder.of(pub.task_id, "started")
        task_call = f"charge{self.args!r}"
        if ran and not eta:
            raise ExerciseIncorrect(_("{task_call} ran on the worker: it was sent without a countdown, so the worker "
                                      "ran it before the revoke arrived", task_call=task_call))
        if ran:
            raise ExerciseIncorrect(_("{task_call} ran on the worker: it was not revoked", task_call=task_call))
        if state != "REVOKED":
            raise ExerciseIncorrect(_("{task_call} did not run, but its state is {state}, not REVOKED",
                                      task_call=task_call, state=state))


class NoWaitingInTasks(BehaviourCheck):
    """``checkout(item)`` has a worker compute ``add_tax(price(item))`` without any task waiting."""

    function = "checkout"
    args = ("book",)
    expected = 14.4
    timeout = 8.0
    correct = N_("checkout chains price and add_tax: the worker runs both, and no task waits for another.")
    hints = (
        N_("Don't call `.get()` inside a task. Link the two tasks instead: the worker sends `add_tax` itself "
           "when `price` has finished, with price's return value as its first argument."),
        N_("A chain: `(price.s(item) | add_tax.s()).delay()`, which returns the AsyncResult of the last task."),
    )
    solution_text = """
        def checkout(item):
            return (price.s(item) | add_tax.s()).delay()
    """

    def _check(self, ns):
        fn = self.callable_named(ns, self.function)
        price = self.task_named(ns, "price")
        add_tax = self.task_named(ns, "add_tax")
        call = fmt_call(self.function, self.args)
        with self.trial() as trial:
            trial.start_worker(price.app, [price.app.conf.task_default_queue], concurrency=2)
            value = self.run_learner(trial, call, fn, *self.args, name=self.function)
            if not isinstance(value, AsyncResult):
                self.sent(trial, call, value)  # raises with the right message
            done = trial.recorder.wait(lambda rec: rec.final(value.id) is not None, self.timeout)
            if done:
                # what was returned may be the first step of a chain, whose next step is sent when
                # it ends: give that step a moment to run too, so a busy worker is not "never ran"
                steps = {price.name, add_tax.name}
                trial.recorder.wait(lambda rec: steps <= {e.name for e in rec.events
                                                          if e.kind in ("succeeded", "failed")}, 2.0)
            events = list(trial.recorder.events)
        failures = [e for e in events if e.kind == "failed"]
        for e in failures:
            exc = e.data.get("exc")
            if isinstance(exc, RuntimeError) and "within a task" in str(exc):
                raise ExerciseIncorrect(_("{task} called .get() inside a task and Celery refused "
                                          "(RuntimeError): link the tasks instead of waiting", task=short(e.name)))
        if failures:
            e = failures[0]
            raise ExerciseIncorrect(_("{task} failed on the worker with {error}",
                                      task=short(e.name), error=describe_exc(e.data.get("exc"))))
        if not done:
            raise ExerciseIncorrect(_("the task behind what {call} returned did not finish within {timeout:g} s",
                                      call=call, timeout=self.timeout))
        started = {e.name for e in events if e.kind == "started" and not e.data.get("eager")}
        for needed in (price, add_tax):
            if needed.name not in started:
                raise ExerciseIncorrect(_("{task} never ran on the worker; both steps should", task=short(needed.name)))
        runs = {}
        for e in events:
            if e.kind in ("started", "succeeded", "failed") and not e.data.get("eager"):
                runs.setdefault(e.task_id, {"name": e.name})[e.kind if e.kind == "started" else "ended"] = e.at
        for task_id, r in runs.items():  # a body ends before its tracer sends the chain's next task
            r["ended"] = BODY_ENDED.get(task_id, r.get("ended"))
        spans = [r for r in runs.values() if "started" in r and r.get("ended") is not None]
        for outer in spans:
            for inner in spans:
                if inner is not outer and outer["started"] < inner["started"] and inner["ended"] < outer["ended"]:
                    raise ExerciseIncorrect(_("{outer} was running all the time {inner} "
                                              "ran: a task waited for another. Link the tasks instead",
                                              outer=short(outer["name"]), inner=short(inner["name"])))
        got = AsyncResult(value.id, app=price.app).get(timeout=1)
        if got != self.expected:
            raise ExerciseIncorrect(_("{call} ended with {got}; it should end with add_tax(price(item))",
                                      call=call, got=describe(got)))


__all__ = ["____"] + bind(globals(), OldestWaiting, StartedIsVisible, CancelInTime, NoWaitingInTasks)
