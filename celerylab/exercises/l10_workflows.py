"""Exercises for labs/10_workflows.ipynb: a chain, a chord, an error callback, a rate limit.

In the lab::

    from celerylab.exercises.l10_workflows import *   # q1..q4, ____
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

Every check calls the learner's code first with no worker running (so whatever it sent
itself is counted, and a function that waits for a result cannot pass), then starts a real
worker in the kernel and judges what ran there: which tasks, with which arguments, who sent
them and when.
"""
from __future__ import annotations

import time

from celery.result import AsyncResult

from celerylab.grading import BehaviourCheck, bind
from celerylab.grading.kinds import fmt_call, short
from celerylab.grading.outcomes import ExerciseIncorrect, ____, describe, describe_exc  # noqa: F401
from celerylab.grading.probe import BODY_ENDED
from celerylab.i18n import N_, _


def _runs(trial, name: str) -> list:
    """The worker's (not eager) start events of the task called ``name``, oldest first."""
    return [e for e in trial.recorder.events
            if e.kind == "started" and e.name == name and not e.data.get("eager")]


def _failures(trial) -> list:
    return [e for e in trial.recorder.events if e.kind == "failed"]


class _SendsFirst(BehaviourCheck):
    """Call the learner's function before any worker runs: what it sent itself is what it published."""

    def call_first(self, trial, fn, *args, app=None):
        if app is not None:  # messages an earlier, refused attempt left behind would run in this trial
            app.control.purge()
        call = fmt_call(self.function, args)
        before = len(trial.recorder.events)
        value = self.run_learner(trial, call, fn, *args, name=self.function)
        pubs = trial.recorder.published(before)
        if not isinstance(value, AsyncResult):
            self.sent(trial, call, value)  # raises with the wording for what it returned
        if not pubs:
            raise ExerciseIncorrect(_("{call} returned an AsyncResult, but no task message was sent for it", call=call))
        return call, value, pubs


class OrderPipeline(_SendsFirst):
    """``order_pipeline(order_id)``: reserve -> charge -> e-mail as a chain, the e-mail immutable."""

    function = "order_pipeline"
    args = (42,)
    timeout = 8.0
    correct = N_("order_pipeline sends one message; the worker runs reserve_stock, charge_order and "
                 "email_customer in turn, each result feeding the next, and the e-mail step gets only the order id.")
    hints = (
        N_("Write the three steps as signatures and join them with `|`: the worker sends each next step "
           "with the previous result as its first argument. Send the chain with `.delay()` or "
           "`.apply_async()` and return what that gives you."),
        N_("`email_customer` needs the order id, not the charge: make its signature immutable with "
           "`.si(order_id)`, so the chain does not add the previous result to its arguments."),
    )
    solution_text = """
        def order_pipeline(order_id):
            workflow = reserve_stock.s(order_id) | charge_order.s() | email_customer.si(order_id)
            return workflow.delay()
    """

    def _check(self, ns):
        fn = self.callable_named(ns, self.function)
        reserve = self.task_named(ns, "reserve_stock")
        charge = self.task_named(ns, "charge_order")
        email = self.task_named(ns, "email_customer")
        (order_id,) = self.args
        with self.trial() as trial:
            call, value, pubs = self.call_first(trial, fn, order_id, app=reserve.app)
            if len(pubs) > 1:
                names = ", ".join(short(p.name) for p in pubs)
                raise ExerciseIncorrect(_("{call} sent {count} task messages itself ({names}): send only the "
                                          "chain, whose first step is one message; the worker sends each next step",
                                          call=call, count=len(pubs), names=names))
            if pubs[0].name != reserve.name:
                raise ExerciseIncorrect(_("{call} sent {task} first; the first step is reserve_stock",
                                          call=call, task=short(pubs[0].name)))
            trial.start_worker(reserve.app, [reserve.app.conf.task_default_queue], concurrency=2)
            done = trial.recorder.wait(lambda rec: bool(_failures(trial)) or len(
                [e for e in rec.events if e.kind == "succeeded" and e.name == email.name]) >= 1, self.timeout)
            time.sleep(0.05)  # the chain's result is stored just after the postrun signal
            failures = _failures(trial)
            for failed in failures:
                exc = failed.data.get("exc")
                # Celery checks the arguments when the worker sends the next step: the step before fails
                if isinstance(exc, TypeError) and f"{short(email.name)}()" in str(exc):
                    raise ExerciseIncorrect(_("email_customer failed with {error}: the chain added the "
                                              "previous step's result to its arguments; make its signature immutable",
                                              error=describe_exc(exc)))
                raise self.failed(fmt_call(short(failed.name), ()), exc)
            if not done:
                ran = [short(e.name) for e in trial.recorder.events if e.kind == "started"]
                if not ran:
                    raise ExerciseIncorrect(_("the chain did not reach email_customer within {timeout:g} s "
                                              "(ran: nothing)", timeout=self.timeout))
                raise ExerciseIncorrect(_("the chain did not reach email_customer within {timeout:g} s "
                                          "(ran: {ran})", timeout=self.timeout, ran=", ".join(ran)))
            r_runs, c_runs, e_runs = _runs(trial, reserve.name), _runs(trial, charge.name), _runs(trial, email.name)
            for name, runs in (("reserve_stock", r_runs), ("charge_order", c_runs), ("email_customer", e_runs)):
                if len(runs) != 1:
                    raise ExerciseIncorrect(_("{task} ran {count} times on the worker; each step runs once",
                                              task=name, count=len(runs)))
            reserved = trial.outcome(r_runs[0].task_id).value
            if c_runs[0].data["args"][:1] != [reserved]:
                raise ExerciseIncorrect(_("charge_order got {args}; it should get "
                                          "reserve_stock's result as its argument",
                                          args=describe(c_runs[0].data["args"])))
            if e_runs[0].data["args"] != [order_id]:
                raise ExerciseIncorrect(_("email_customer got {args}; it should get "
                                          "the order id only (an immutable signature)",
                                          args=describe(e_runs[0].data["args"])))
            if value.id != e_runs[0].task_id:
                raise ExerciseIncorrect(_("{call} returned the AsyncResult of another step; return the chain's "
                                          "(what sending the chain returns: its last step)", call=call))
            got = AsyncResult(value.id, app=reserve.app).get(timeout=2)
            expected = email.run(order_id)
            if got != expected:
                raise ExerciseIncorrect(_("{call} ended with {got}, not email_customer's message",
                                          call=call, got=describe(got)))


class TotalStock(_SendsFirst):
    """``total_stock(skus)``: a chord, one ``stock_level`` per SKU, summed by ``sum_levels``."""

    function = "total_stock"
    args = (["SKU-1", "SKU-2", "SKU-3", "SKU-4"],)
    timeout = 8.0
    correct = N_("total_stock fans out one stock_level per SKU side by side, and sum_levels runs once, "
                 "after all of them, with their results in order.")
    hints = (
        N_("A chord: a group of `stock_level.s(sku)`, one per SKU (the header), and `sum_levels.s()` (the "
           "body), which Celery sends with the list of the header's results once every one of them finished."),
        N_("`return chord(stock_level.s(sku) for sku in skus)(sum_levels.s())`, or "
           "`(group(...) | sum_levels.s()).delay()`. Don't `.get()` anything: the worker sends the body."),
    )
    solution_text = """
        def total_stock(skus):
            return chord(stock_level.s(sku) for sku in skus)(sum_levels.s())
    """

    def _check(self, ns):
        fn = self.callable_named(ns, self.function)
        level = self.task_named(ns, "stock_level")
        summer = self.task_named(ns, "sum_levels")
        (skus,) = self.args
        with self.trial() as trial:
            call, value, pubs = self.call_first(trial, fn, list(skus), app=level.app)
            checks = [p for p in pubs if p.name == level.name]
            if any(p.name == summer.name for p in pubs):
                raise ExerciseIncorrect(_("{call} sent sum_levels itself, before the stock checks ran: let the "
                                          "chord send it when the last check finishes", call=call))
            if len(checks) != len(skus):
                raise ExerciseIncorrect(_("{call} sent {count} stock_level messages for {skus} SKUs: "
                                          "send one per SKU, all at once (the chord's header)",
                                          call=call, count=len(checks), skus=len(skus)))
            trial.start_worker(level.app, [level.app.conf.task_default_queue], concurrency=4)
            done = trial.recorder.wait(lambda rec: bool(_failures(trial)) or rec.final(value.id) is not None,
                                       self.timeout)
            for failed in _failures(trial):
                raise self.failed(fmt_call(short(failed.name), failed.data.get("args", ())), failed.data.get("exc"))
            if not done:
                raise ExerciseIncorrect(_("the task behind what {call} returned did not finish within {timeout:g} s",
                                          call=call, timeout=self.timeout))
            runs, bodies = _runs(trial, level.name), _runs(trial, summer.name)
            if sorted(e.data["args"][0] for e in runs) != sorted(skus):
                raise ExerciseIncorrect(_("stock_level ran for {args}; it should run once for each SKU",
                                          args=sorted(e.data["args"][:1] for e in runs)))
            if len(bodies) != 1:
                raise ExerciseIncorrect(_("sum_levels ran {count} times; it should run once, after all checks",
                                          count=len(bodies)))
            body_sent = trial.recorder.of(bodies[0].task_id, "published")
            last_check = max(BODY_ENDED.get(e.task_id, e.at) for e in runs)
            if not body_sent or body_sent[0].at < last_check:
                raise ExerciseIncorrect(_("sum_levels was sent before every stock check had finished: fan in with a "
                                          "chord"))
            levels = [level.run(sku) for sku in skus]
            if bodies[0].data["args"] != [levels]:
                raise ExerciseIncorrect(_("sum_levels got {args}; it should get the list "
                                          "of the stock levels, in the order of the SKUs",
                                          args=describe(bodies[0].data["args"])))
            if value.id != bodies[0].task_id:
                raise ExerciseIncorrect(_("{call} returned the AsyncResult of another task; return the chord's "
                                          "(its body's, sum_levels)", call=call))
            got = trial.outcome(value.id).value
            if got != sum(levels):
                raise ExerciseIncorrect(_("{call} ended with {got}; the total is {total}",
                                          call=call, got=describe(got), total=sum(levels)))


class AlertOnFailure(_SendsFirst):
    """``send_with_alert(sku)`` sends ``check_stock`` with an error callback that records the failure."""

    function = "send_with_alert"
    timeout = 6.0
    good, bad = "SKU-7", "SKU-8-BAD"
    correct = N_("send_with_alert's error callback recorded the failed check (its task id and the error), and "
                 "nothing for the check that succeeded.")
    hints = (
        N_("`apply_async(..., link_error=record_failure.s())` attaches an error callback: Celery calls it when "
           "the task fails. A callback task with three parameters `(request, exc, traceback)` is called in the "
           "worker with the failed task's request (`request.id`) and the exception."),
        N_("In `record_failure`, append `{\"task_id\": request.id, \"error\": repr(exc)}` to `alerts`; "
           "`send_with_alert` returns `check_stock.apply_async((sku,), link_error=record_failure.s())`."),
    )
    solution_text = """
        @app.task
        def record_failure(request, exc, traceback):
            alerts.append({"task_id": request.id, "error": repr(exc)})

        def send_with_alert(sku):
            return check_stock.apply_async((sku,), link_error=record_failure.s())
    """

    def _check(self, ns):
        fn = self.callable_named(ns, self.function)
        check = self.task_named(ns, "check_stock")
        self.task_named(ns, "record_failure")
        alerts = self.value_named(ns, "alerts")
        if not isinstance(alerts, list):
            raise ExerciseIncorrect(_("`alerts` is {what}; keep it a list (the setup cell makes it one)",
                                      what=describe(alerts)))
        alerts.clear()
        with self.trial() as trial:
            ok = self.call_first(trial, fn, self.good, app=check.app)[1]
            bad_call, bad = self.call_first(trial, fn, self.bad)[:2]
            trial.start_worker(check.app, [check.app.conf.task_default_queue], concurrency=2)
            trial.recorder.wait(lambda rec: rec.final(ok.id) is not None and rec.final(bad.id) is not None,
                                self.timeout)
            for result, sku in ((ok, self.good), (bad, self.bad)):
                if trial.recorder.final(result.id) is None:
                    sku_call = f"check_stock({sku!r})"
                    raise ExerciseIncorrect(_("{call} did not finish on the worker within {timeout:g} s",
                                              call=sku_call, timeout=self.timeout))
            if trial.outcome(bad.id).state != "FAILURE":
                bad_check = f"check_stock({self.bad!r})"
                raise ExerciseIncorrect(_("{call} did not fail: it should send {check}, which fails",
                                          call=bad_call, check=bad_check))
            trial.recorder.wait(lambda rec: bool(alerts), 2.0)  # a callback sent as a task runs a bit later
            time.sleep(0.3)  # anything recorded for the good SKU too has arrived by now
            callback_failed = [e for e in _failures(trial) if e.task_id not in (ok.id, bad.id)]
        if not alerts:
            check_call = f"check_stock({self.bad!r})"
            if callback_failed:
                raise ExerciseIncorrect(_("{call} failed, but nothing was appended to `alerts` (a callback failed "
                                          "on the worker with {error}): attach an error callback (link_error) "
                                          "when you send it", call=check_call,
                                          error=describe_exc(callback_failed[0].data.get("exc"))))
            raise ExerciseIncorrect(_("{call} failed, but nothing was appended to `alerts`: "
                                      "attach an error callback (link_error) when you send it", call=check_call))
        entries = [a for a in alerts if isinstance(a, dict)]
        if len(entries) != len(alerts):
            raise ExerciseIncorrect(_("`alerts` holds {what}; append one dict per failure with "
                                      "the keys 'task_id' and 'error'", what=describe(alerts[0])))
        if any(e.get("task_id") == ok.id for e in entries) or len(entries) > 1:
            raise ExerciseIncorrect(_("`alerts` holds {count} entries after one failure: record only "
                                      "failures (link_error, not link)", count=len(entries)))
        entry = entries[0]
        if entry.get("task_id") != bad.id:
            raise ExerciseIncorrect(_("the alert's 'task_id' is {what}, not the id of "
                                      "the check that failed", what=describe(entry.get("task_id"))))
        if "unknown SKU" not in str(entry.get("error", "")):
            raise ExerciseIncorrect(_("the alert's 'error' is {what}: record the "
                                      "exception the task raised (its message says what went wrong)",
                                      what=describe(entry.get("error"))))


class RateLimited(BehaviourCheck):
    """``sync_contacts`` is rate limited: one worker with 4 free slots starts it about 0.5 s apart."""

    task = "sync_contacts"
    n = 4
    timeout = 8.0
    spacing = (0.45, 0.8)  #: accepted gap between two starts on one worker, in seconds
    correct = N_("one worker with 4 free slots started sync_contacts about 0.5 s apart: the rate limit holds.")
    hints = (
        N_("Celery's task option `rate_limit` caps how often *one worker* starts a task: a string such as "
           "`\"10/m\"` or `\"3/s\"`."),
        N_("Two per second: `@app.task(rate_limit=\"2/s\")`. A sleep in the task does not space the starts: "
           "the worker's other slots start the next ones meanwhile."),
    )
    solution_text = """
        @app.task(rate_limit="2/s")
        def sync_contacts(batch):
            return crm_sync(batch)
    """

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        if not getattr(task, "rate_limit", None):
            raise ExerciseIncorrect(_("`{task}` has no rate_limit: the limit is a task option Celery's "
                                      "worker enforces", task=self.task))
        batches = [[f"contact-{i}"] for i in range(self.n)]
        task.app.control.purge()  # nothing left from an earlier attempt
        with self.trial() as trial:
            pubs = [self.send(trial, task, (b,), name=self.task) for b in batches]
            outcomes = trial.run(task.app, [p.task_id for p in pubs], concurrency=4)
            for batch, pub in zip(batches, pubs):
                got = self.succeeded(fmt_call(self.task, (batch,)), outcomes[pub.task_id])
                if got != 1:
                    raise ExerciseIncorrect(_("{call} returned {got}; it should return crm_sync(batch)",
                                              call=fmt_call(self.task, (batch,)), got=describe(got)))
        starts = sorted(o.started[0].at for o in outcomes.values())
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        lo, hi = self.spacing
        if min(gaps) < lo:
            raise ExerciseIncorrect(_("one worker with free slots started {task} {gap:.2f} s after the "
                                      "previous one; at 2 per second they start 0.5 s apart",
                                      task=self.task, gap=min(gaps)))
        if max(gaps) > hi:
            raise ExerciseIncorrect(_("one worker started {task} {gap:.2f} s after the previous one; "
                                      "at 2 per second they start 0.5 s apart (is the limit lower?)",
                                      task=self.task, gap=max(gaps)))


def crm_sync(batch) -> int:
    """The pretend CRM: syncs a batch of contacts, returns how many."""
    return len(batch)


__all__ = ["____", "crm_sync"] + bind(globals(), OrderPipeline, TotalStock, AlertOnFailure, RateLimited)
