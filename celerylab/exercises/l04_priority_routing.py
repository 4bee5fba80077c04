"""Exercises for labs/04_priority_routing.ipynb: routes, Redis priority bands, ten real levels,
head-of-line blocking.

In the lab::

    from celerylab.exercises.l04_priority_routing import *   # q1..q4 and ____
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

Every check runs real workers in the kernel: which queue each message came from, the order one
worker slot (prefetch 1) runs queued tasks in, and which of two workers ran the short tasks.
"""
from __future__ import annotations

import itertools
import os
from celerylab.grading import BehaviourCheck, Trial, bind
from celerylab.inspect_broker import create_redis_app
from celerylab.grading.kinds import fmt_call, short
from celerylab.grading.outcomes import ExerciseIncorrect, ____, describe  # noqa: F401
from celerylab.i18n import N_, _

_ids = itertools.count(1)


class RoutesByName(BehaviourCheck):
    """``task_routes``: resize_image -> images, send_email -> email, everything else -> celery."""

    name = "task_routes"
    timeout = 6.0
    expected = {"resize_image": "images", "send_email": "email", "log_visit": "celery"}
    correct = N_("images go to 'images', emails to 'email', and everything else stays on 'celery'.")
    hints = (
        N_("`task_routes` maps a task's *name* to options: {'shop.resize_image': {'queue': 'images'}, ...}. "
           "The names are the ones given in the decorators above."),
        N_("Name each task exactly (a pattern like 'shop.*' would catch log_visit too). Tasks with no "
           "route stay on the default queue, 'celery'."),
    )
    solution_text = """
        task_routes = {
            "shop.resize_image": {"queue": "images"},
            "shop.send_email": {"queue": "email"},
        }
    """

    def _check(self, ns):
        routes = self.value_named(ns, self.name)
        tasks = {name: self.task_named(ns, name) for name in self.expected}
        if not isinstance(routes, (dict, list, tuple)):
            raise ExerciseIncorrect(_("`{name}` is {got}: it should be a dict from task name to {{'queue': ...}}",
                                      name=self.name, got=describe(routes)))
        app = tasks["resize_image"].app
        saved = app.conf.task_routes
        app.conf.task_routes = routes
        app.amqp.flush_routes()                 # Celery reads task_routes once and caches the router:
        app.amqp.__dict__.pop("router", None)   # make it read the learner's routes now
        try:
            with Trial(self.timeout) as trial:
                sent = {}
                for name, task in tasks.items():
                    sent[name] = self.send(trial, task, ("x",))
                outcomes = trial.run(app, [p.task_id for p in sent.values()], queues=set(self.expected.values()))
                for name, pub in sent.items():
                    got, want = outcomes[pub.task_id].queue, self.expected[name]
                    if got != want:
                        raise ExerciseIncorrect(_("{task} went to the queue {got}, not {want}",
                                                  task=short(pub.name), got=repr(got), want=repr(want)))
                    self.succeeded(fmt_call(name, ("x",)), outcomes[pub.task_id])
        finally:
            app.conf.task_routes = saved
            app.amqp.flush_routes()
            app.amqp.__dict__.pop("router", None)


def _run_in_order(check, app, task_ids, queue, timeout):
    """Start one worker slot, prefetch 1, on ``queue``; the first argument of each task in the order run."""
    with Trial(timeout) as trial:
        outcomes = trial.run(app, task_ids, queues=[queue], concurrency=1, prefetch_multiplier=1)
    missing = [t for t in task_ids if not outcomes[t].started]
    if missing:
        raise ExerciseIncorrect(_("{count} of the tasks did not run within {timeout:g} s",
                                  count=len(missing), timeout=timeout))
    ran = sorted(outcomes.values(), key=lambda o: o.started[0].at)
    return [o.started[0].data["args"][0] if o.started[0].data["args"] else None for o in ran]


class UrgentFirst(BehaviourCheck):
    """``send_jobs()`` sends backup, invoice, alert (in that order); one worker runs alert, invoice, backup."""

    sender = "send_jobs"
    sent_order = ["backup", "invoice", "alert"]
    expected = ["alert", "invoice", "backup"]
    timeout = 6.0
    correct = N_("one worker ran alert, then invoice, then backup, although they were sent the other way round.")
    hints = (
        N_("On Redis, priority 0 is the *highest*, and priorities share bands: with the default "
           "priority_steps [0, 3, 6, 9], 0, 1 and 2 are the same band (first in, first out)."),
        N_("Pick priorities from different bands: alert 0, invoice 3 (or 4, 5), backup 6 or more."),
    )
    solution_text = """
        def send_jobs():
            job.apply_async(("backup",), priority=9)
            job.apply_async(("invoice",), priority=5)
            job.apply_async(("alert",), priority=0)
    """

    def _check(self, ns):
        send = self.callable_named(ns, self.sender)
        job = self.task_named(ns, "job")
        call = fmt_call(self.sender)
        with Trial(self.timeout) as trial:
            before = len(trial.recorder.events)
            self.run_learner(trial, call, send, name=self.sender)
            pubs = [e for e in trial.recorder.published(before)]
        if not pubs:
            raise ExerciseIncorrect(_("{call} sent no task messages: send each job with job.apply_async(...)",
                                      call=call))
        labels = [p.data["args"][0] if p.data["args"] else None for p in pubs]
        if labels != self.sent_order:
            raise ExerciseIncorrect(_("{call} sent {labels}; send them in the order {order} and let "
                                      "priority decide the order they run in",
                                      call=call, labels=repr(labels), order=repr(self.sent_order)))
        queues = {p.data["queue"] or "celery" for p in pubs}
        if len(queues) != 1:
            raise ExerciseIncorrect(_("{call} sent the jobs to different queues ({queues}): "
                                      "keep them on one queue and use priority",
                                      call=call, queues=", ".join(sorted(queues))))
        queue = queues.pop()
        default = job.app.conf.task_default_queue or "celery"
        if queue != default:
            raise ExerciseIncorrect(_("{call} sent the jobs to the queue {queue}; send them to the default "
                                      "queue, {default}", call=call, queue=repr(queue), default=repr(default)))
        order = _run_in_order(self, job.app, [p.task_id for p in pubs], queue, self.timeout)
        if order != self.expected:
            prios = ", ".join(f"{label}={p.data['priority']}" for label, p in zip(labels, pubs))
            raise ExerciseIncorrect(_("with priorities {priorities} one worker ran them in the order {order}; "
                                      "alert should run first and backup last",
                                      priorities=prios, order=repr(order)))


class TenLevels(BehaviourCheck):
    """``transport_options``: an app on which priorities 9, 8, ..., 0 (sent in that order) run 0, 1, ..., 9.

    All ten levels are tried: options that split only some of them (e.g. priority_steps
    [0, 1, 2, 3, 6, 9]) leave two priorities in one band, first in, first out.
    """

    name = "transport_options"
    timeout = 6.0
    correct = N_("with these options each priority 0 to 9 gets its own band: ten tasks ran in priority order.")
    sent = tuple(range(9, -1, -1))  #: priorities, in the order they are sent (least urgent first)
    hints = (
        N_("With the default bands [0, 3, 6, 9], priorities 1 and 2 land in band 0 together (first in, "
           "first out). Which transport option lists the bands?"),
        N_("`{'priority_steps': list(range(10))}` gives every priority 0-9 its own band. "
           "(`queue_order_strategy` is another knob: the order a worker polls several queues in.)"),
    )
    solution_text = """
        transport_options = {"priority_steps": list(range(10))}
    """

    def _check(self, ns):
        import celerylab
        from celery import current_app

        value = self.value_named(ns, self.name)
        if not isinstance(value, dict):
            raise ExerciseIncorrect(_("`{name}` is {got}: it should be a dict of broker transport options",
                                      name=self.name, got=describe(value)))
        learner_app = current_app._get_current_object()
        tag = f"lab04q3-{os.getpid()}-{next(_ids)}"
        # priority_steps are a Redis transport option: on Redis, even if the class uses RabbitMQ
        app = create_redis_app(tag, task_default_queue=tag, broker_transport_options=dict(value))
        try:
            @app.task(name=f"{tag}.job", shared=False)
            def job(label):
                return label

            ids = [job.apply_async((f"priority {p}",), priority=p).id for p in self.sent]
            order = _run_in_order(self, app, ids, tag, self.timeout)
        except ExerciseIncorrect:
            raise
        except Exception as exc:  # options Celery/kombu cannot use
            raise ExerciseIncorrect(_("an app with these transport options failed: {error}: {detail}",
                                      error=type(exc).__name__, detail=exc)) from None
        finally:
            app.close()
            learner_app.set_current()
        want = [f"priority {p}" for p in sorted(self.sent)]
        if order != want:
            ran = [int(label.split()[-1]) if isinstance(label, str) else label for label in order]
            raise ExerciseIncorrect(_("priorities 9, 8, ..., 0 (sent in that order) ran in the order {order}: "
                                      "each of the ten priorities needs a band of its own", order=repr(ran)))


class NoHeadOfLine(BehaviourCheck):
    """``prefetch_multiplier`` and ``acks_late``: no short task waits behind a long one on a busy worker."""

    timeout = 10.0
    correct = N_("worker A held only the long task, and worker B ran every short task.")
    hints = (
        N_("A worker reserves concurrency x prefetch_multiplier messages. Start with the multiplier."),
        N_("Prefetch 1 is not enough on its own: with early acks the long task's message is acknowledged "
           "when it starts, and the worker reserves the next one. Acknowledge late."),
    )
    solution_text = """
        prefetch_multiplier = 1
        acks_late = True
    """

    def _check(self, ns):
        prefetch = self.value_named(ns, "prefetch_multiplier")
        acks_late = self.value_named(ns, "acks_late")
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 0:
            raise ExerciseIncorrect(_("`prefetch_multiplier` is {got}: it should be a whole number",
                                      got=describe(prefetch)))
        if prefetch == 0:
            raise ExerciseIncorrect(_("prefetch_multiplier=0 means *no limit*: a worker would take every message"))
        if not isinstance(acks_late, bool):
            raise ExerciseIncorrect(_("`acks_late` is {got}: it should be True or False", got=describe(acks_late)))
        from celery import current_app

        from celerylab.lessons import l04_priority_routing as l04

        learner_app = current_app._get_current_object()
        task = l04.work_late if acks_late else l04.work
        try:
            e = l04.head_of_line(task, prefetch_multiplier=prefetch, queue=f"lab04q4-{os.getpid()}-{next(_ids)}")
        finally:
            learner_app.set_current()
        if e.stuck:
            raise ExerciseIncorrect(_("with prefetch_multiplier={prefetch} and acks_late={acks_late}, worker A took "
                                      "{held} messages, and {stuck} short task(s) waited behind the long one "
                                      "while worker B was free",
                                      prefetch=prefetch, acks_late=acks_late, held=e.held_by_a, stuck=e.stuck))
        if e.shorts_on_b + e.shorts_on_a < 6:
            raise ExerciseIncorrect(_("not every short task ran: try again (the machine may be very busy)"))


__all__ = ["____"] + bind(globals(), RoutesByName, UrgentFirst, TenLevels, NoHeadOfLine)
