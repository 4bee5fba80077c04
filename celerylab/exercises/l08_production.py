"""Exercises for labs/08_production.ipynb: lose nothing, respect a soft limit, pick the pool.

In the lab::

    from celerylab.exercises.l08_production import *   # q1, q2, q3, ____, make_thumbnail
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

q1 and q3 start real ``celery worker`` processes with the learner's choices and run the tasks
of :mod:`celerylab.lessons.l08_production` on them (kill -9 included); q2 runs the learner's
own task on a worker in the kernel.
"""
from __future__ import annotations

import ctypes
import os
import time

from celery.exceptions import SoftTimeLimitExceeded

from celerylab.grading import BehaviourCheck, bind
from celerylab.grading.outcomes import ExerciseIncorrect, ____, describe, describe_exc  # noqa: F401
from celerylab.i18n import N_, _

from ._bind import BindHint
from celerylab.worker import ALL_POOLS

LESSON = "celerylab.lessons.l08_production"


def _thumbnail_name(image: str) -> str:
    return f"thumb-{image}"


def make_thumbnail(image: str) -> str:
    """Pretend to resize one image: takes 0.1 s, returns the thumbnail's name."""
    for _ in range(10):
        time.sleep(0.01)
    return _thumbnail_name(image)


def _raise_in_thread(thread_ident: int, exc_type) -> bool:
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident), ctypes.py_object(exc_type))
    return done == 1


def _spawn(lab, settings: dict, queue: str, restore_fast: bool = False):
    """A prefork worker with the learner's settings (the visibility timeout is the check's)."""
    import celerylab

    conf = dict(settings)
    options = dict(conf.pop("broker_transport_options", None) or {})
    # The check decides how long a lost message stays invisible: 2 s for the worker that
    # comes back, kombu's demo default (30 s) for the others, so nothing is restored early.
    options["visibility_timeout"] = 2 if restore_fast else 30
    options["unacked_restore_interval"] = 0.25
    return celerylab.spawn_worker(LESSON, queues=[queue], concurrency=2, broker_transport_options=options, **conf)


class NoLostTasks(BehaviourCheck):
    """``settings``: Celery settings with which a task survives a killed pool process and a killed worker."""

    name = "settings"
    timeout = 20.0
    correct = N_("with these settings a task survives a killed pool process and a killed worker.")
    hints = (
        N_("By default a worker acknowledges a message just *before* running the task. Which setting "
           "moves the acknowledgement to after the task?"),
        N_("`task_acks_late=True` covers a killed worker. When only the pool process dies, the worker "
           "still acknowledges the message unless a second setting tells it to requeue: "
           "`task_reject_on_worker_lost`."),
    )
    solution_text = """
        settings = {"task_acks_late": True, "task_reject_on_worker_lost": True}
    """

    def _check(self, ns):
        from celerylab.lessons import l08_production as lab

        settings = self.value_named(ns, self.name)
        if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
            raise ExerciseIncorrect(_("`{name}` is {what}: it should be a dict of Celery "
                                      "settings, like {{'task_acks_late': True}}",
                                      name=self.name, what=describe(settings)))
        tag = f"lab08-{os.getpid()}-{time.monotonic_ns()}"
        child_q, group_q = f"{tag}-a", f"{tag}-b"
        lab.reset(f"{tag}-child", f"{tag}-group")
        first = _spawn(lab, settings, child_q)
        second = _spawn(lab, settings, group_q)
        back = None
        try:
            first.wait_ready(), second.wait_ready()
            # 1. kill -9 the whole worker while it runs a task
            group = lab.slow.apply_async((1.0, f"{tag}-group"), queue=group_q)
            lab.running_pid(f"{tag}-group", timeout=self.timeout)
            lab.kill_workers(second)
            # 2. kill -9 only the pool process running a task
            child = lab.slow.apply_async((0.5, f"{tag}-child"), queue=child_q)
            lab.kill_process(lab.running_pid(f"{tag}-child", timeout=self.timeout))
            outcome = child.get(timeout=self.timeout, propagate=False)
            if child.state != "SUCCESS":
                if type(outcome).__name__ == "WorkerLostError":
                    raise ExerciseIncorrect(_("when the pool process running a task was killed, the task failed with "
                                              "WorkerLostError and its message was acknowledged: it was not run again"))
                raise ExerciseIncorrect(_("when the pool process running a task was killed, the task ended "
                                          "{state} ({outcome})", state=child.state,
                                          outcome=describe_exc(outcome) if isinstance(outcome, BaseException)
                                          else describe(outcome)))
            lab.kill_workers(first)
            lab.reaped()
            # 3. a worker comes back: is the task of the killed worker still there?
            where = lab.where_is(group.id)
            back = _spawn(lab, settings, group_q, restore_fast=True)
            back.wait_ready()
            if not lab.wait_for(lambda: group.state == "SUCCESS", timeout=self.timeout):
                if where == "gone":
                    raise ExerciseIncorrect(_("when the whole worker was killed, the task it was running was lost: "
                                              "the worker had acknowledged its message before running it"))
                raise ExerciseIncorrect(_("when the whole worker was killed, the task it was running did not run "
                                          "again (state {state})", state=group.state))
        finally:
            lab.kill_workers(*[w for w in (first, second, back) if w is not None])
            lab.reaped()


class RespectSoftLimit(BindHint, BehaviourCheck):
    """``thumbnails(images)``: a soft time limit of 1 s, and what was done so far when it hits."""

    task = "thumbnails"
    limit = 1.0
    timeout = 8.0
    correct = N_("thumbnails stops at its soft time limit and returns the thumbnails it made.")
    hints = (
        N_("Two parts: the limit goes in the decorator, `@app.task(soft_time_limit=...)`; inside, wrap "
           "the loop in `try:` / `except SoftTimeLimitExceeded:` (from `celery.exceptions`)."),
        N_("Append each thumbnail to a list as you go; in the `except` block, return that list. "
           "Return it after the loop too, when every image is done in time."),
    )
    solution_text = """
        @app.task(soft_time_limit=1)
        def thumbnails(images):
            done = []
            try:
                for image in images:
                    done.append(make_thumbnail(image))
            except SoftTimeLimitExceeded:
                pass  # out of time: return what is done (the rest could be sent as a new task)
            return done
    """

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        soft, hard = task.soft_time_limit, task.time_limit
        if soft is None:
            raise ExerciseIncorrect(_("thumbnails has no soft time limit: give the decorator soft_time_limit=1"))
        if not isinstance(soft, (int, float)) or isinstance(soft, bool) or abs(soft - self.limit) > 1e-6:
            raise ExerciseIncorrect(_("thumbnails has soft_time_limit={soft}: the exercise asks for 1 second",
                                      soft=repr(soft)))
        if hard is not None and hard <= soft:
            raise ExerciseIncorrect(_("thumbnails has time_limit={hard}, not above its soft limit: the hard "
                                      "limit would kill it before it can clean up", hard=repr(hard)))
        few = ["cat.jpg", "dog.jpg"]
        many = [f"photo-{i:02}.jpg" for i in range(40)]
        with self.trial() as trial:
            quick = self.send(trial, task, (few,), name=self.task)
            slow = self.send(trial, task, (many,), name=self.task)
            fired: list[bool] = []

            def enforce(rec) -> bool:
                # what a prefork worker does: raise SoftTimeLimitExceeded in the task when time is up
                started = rec.of(slow.task_id, "started")
                if started and not fired and time.monotonic() - started[0].at >= soft:
                    fired.append(_raise_in_thread(started[0].thread, SoftTimeLimitExceeded))
                return False

            outcomes = trial.run(task.app, [quick.task_id, slow.task_id], give_up=enforce)
            few_call = f"thumbnails({few!r})"
            got = self.succeeded(few_call, outcomes[quick.task_id])
            if got != [_thumbnail_name(i) for i in few]:
                raise ExerciseIncorrect(_("{call} returned {got}: it should return the thumbnails, in order",
                                          call=few_call, got=describe(got)))
            call = "thumbnails(40 images)"
            outcome = outcomes[slow.task_id]
            if outcome.state == "FAILURE" and isinstance(outcome.exc, SoftTimeLimitExceeded):
                raise ExerciseIncorrect(_("{call} failed with SoftTimeLimitExceeded when its soft limit hit: "
                                          "catch it and return what is done", call=call))
            got = self.succeeded(call, outcome)
            expected = [_thumbnail_name(i) for i in many]
            if not isinstance(got, list) or not got or got != expected[:len(got)]:
                raise ExerciseIncorrect(_("{call} returned {got} at its soft limit: it should return "
                                          "the thumbnails made so far", call=call, got=describe(got)))
            if len(got) == len(expected):
                raise ExerciseIncorrect(_("{call} made all 40 thumbnails: it should stop at its soft limit", call=call))


class PoolForCpu(BehaviourCheck):
    """``pool`` and ``concurrency``: a worker that computes CPU-bound tasks on several cores."""

    timeout = 20.0
    correct = N_("that pool runs CPU-bound tasks in several processes at once, one per core.")
    hints = (
        N_("Threads share one GIL and gevent's coroutines share one thread: either way, one core "
           "computes Python at a time. Which pool runs tasks in separate processes?"),
        N_("`pool = \"prefork\"`, with as many processes as the machine has cores: `os.cpu_count()`."),
    )
    solution_text = """
        pool = "prefork"
        concurrency = os.cpu_count()
    """

    def _check(self, ns):
        import celerylab
        from celerylab.lessons import l08_production as lab

        pool = self.value_named(ns, "pool")
        concurrency = self.value_named(ns, "concurrency")
        if pool not in ALL_POOLS:
            raise ExerciseIncorrect(_("`pool` is {what}: choose one of {pools}",
                                      what=describe(pool), pools=", ".join(ALL_POOLS)))
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ExerciseIncorrect(_("`concurrency` is {what}: it should be a whole number, 1 or more",
                                      what=describe(concurrency)))
        cores = os.cpu_count() or 1
        if concurrency > 4 * cores:
            raise ExerciseIncorrect(_("concurrency={concurrency} on {cores} cores: for CPU-bound work more processes "
                                      "than cores only add switching and memory", concurrency=concurrency, cores=cores))
        if pool == "prefork" and concurrency < cores:  # other pools: the measurement below tells
            raise ExerciseIncorrect(_("concurrency={concurrency} on {cores} cores: {idle} of them would "
                                      "stay idle while tasks wait", concurrency=concurrency, cores=cores,
                                      idle=cores - concurrency))
        queue = f"lab08-cpu-{os.getpid()}-{time.monotonic_ns()}"
        worker = celerylab.spawn_worker(LESSON, pool=pool, concurrency=concurrency, queues=[queue])
        try:
            worker.wait_ready()
            n = lab.calibrate(0.1)
            got = lab.measure(lab.cpu, (n,), 4, queue=queue, timeout=self.timeout)
        finally:
            lab.kill_workers(worker)
            lab.reaped()
        if got["processes"] < 2 and pool in ("threads", "gevent", "eventlet", "solo"):
            how = {"threads": N_("its threads share one GIL"), "solo": N_("solo runs one task at a time"),
                   }.get(pool, N_("its coroutines take turns in one thread"))
            raise ExerciseIncorrect(_("the {pool} pool ran the 4 CPU-bound tasks in one process ({how}): "
                                      "they kept at most one core busy", pool=pool, how=_(how)))
        if cores >= 2 and (got["overlap"] < 2 or got["processes"] < 2):
            raise ExerciseIncorrect(_("pool={pool}, concurrency={concurrency} ran the 4 CPU-bound tasks one at a "
                                      "time: a machine with {cores} cores can compute more at once",
                                      pool=repr(pool), concurrency=concurrency, cores=cores))


__all__ = ["____", "make_thumbnail", "SoftTimeLimitExceeded"] + bind(globals(), NoLostTasks, RespectSoftLimit,
                                                                      PoolForCpu)
