"""Exercises for labs/03_scheduling.ipynb: a timezone-aware ETA, a deadline, a beat schedule, a
visibility timeout.

In the lab::

    from celerylab.exercises.l03_scheduling import *   # q1..q4, ____, crontab, datetime, timedelta, timezone
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

Every check runs the learner's code for real: tasks on an in-kernel worker, schedules on an
embedded beat (crontab entries get a shifted clock, so "03:30" comes within a second), the
visibility timeout on a worker whose restore sweep runs every second.
"""
from __future__ import annotations

import os
import threading
import time
from datetime import date, datetime, timedelta, timezone  # noqa: F401 - for the learner

from celery.result import AsyncResult
from celery.schedules import crontab

from celerylab.grading import BehaviourCheck, Trial, bind
from celerylab.inspect_broker import create_redis_app
from celerylab.grading.kinds import fmt_call, short
from celerylab.grading.outcomes import ExerciseIncorrect, ____, describe  # noqa: F401
from celerylab.i18n import N_, _


def _wall(event) -> float:
    """A recorder event's wall-clock time (events are stamped with time.monotonic())."""
    return time.time() - (time.monotonic() - event.at)


def _parse(stamp):
    if not stamp:
        return None
    if isinstance(stamp, datetime):
        return stamp
    return datetime.fromisoformat(str(stamp))


class RemindInOneSecond(BehaviourCheck):
    """``send_reminder(text)`` sends ``remind(text)`` to run about 1 s later, with an aware eta."""

    sender = "send_reminder"
    task = "remind"
    args = ("dentist at 3",)
    timeout = 6.0
    correct = N_("send_reminder schedules remind one second ahead with a timezone-aware eta, and a worker runs "
                 "it then.")
    hints = (
        N_("`apply_async` takes `eta=`, a datetime. Build it from *now*, plus one second: "
           "`timedelta(seconds=1)`."),
        N_("`datetime.utcnow()` and `datetime.now()` have no timezone (naive): Celery reads naive "
           "datetimes as UTC. `datetime.now(timezone.utc)` has one."),
    )
    solution_text = """
        def send_reminder(text):
            return remind.apply_async(args=[text], eta=datetime.now(timezone.utc) + timedelta(seconds=1))
    """

    def _check(self, ns):
        send = self.callable_named(ns, self.sender)
        task = self.task_named(ns, self.task)
        call = fmt_call(self.sender, self.args)
        with Trial(self.timeout) as trial:
            value = self.run_learner(trial, call, send, *self.args, name=self.sender)
            pub = self.sent(trial, call, value)
            if pub.name != task.name:
                raise ExerciseIncorrect(_("{call} sent {sent}, not {want}",
                                          call=call, sent=repr(short(pub.name)), want=repr(self.task)))
            eta = _parse(pub.data.get("eta"))
            if eta is None:
                raise ExerciseIncorrect(_("{call} sent the task without an eta: it would run at once", call=call))
            if eta.tzinfo is None:
                raise ExerciseIncorrect(_("{call} sent eta={eta}, a naive datetime (no timezone): Celery "
                                          "reads it as UTC, which is only right by luck; give it a timezone",
                                          call=call, eta=eta.isoformat()))
            ahead = eta.timestamp() - _wall(pub)
            if not 0.6 <= ahead <= 1.6:
                raise ExerciseIncorrect(_("{call} set the eta {ahead:.1f} s after sending: it should be about 1 s",
                                          call=call, ahead=ahead))
            outcome = trial.run(task.app, [pub.task_id], queues=[pub.data["queue"] or "celery"])[pub.task_id]
            got = self.succeeded(fmt_call(self.task, self.args), outcome)
            waited = outcome.started[0].at - pub.at
            if waited < 0.6:
                raise ExerciseIncorrect(_("the worker started remind {waited:.1f} s after it was sent: "
                                          "it should wait about 1 s", waited=waited))
            if got != f"Reminder: {self.args[0]}":
                raise ExerciseIncorrect(_("remind returned {got}; keep the task as given", got=describe(got)))


class FlashSaleDeadline(BehaviourCheck):
    """``send_flash_sale(item)`` sends ``announce(item)`` so it is dropped unless started within ~0.5 s."""

    sender = "send_flash_sale"
    task = "announce"
    timeout = 6.0
    correct = N_("a flash sale runs when a worker is free, and is skipped (REVOKED) when the worker comes back "
                 "too late.")
    hints = (
        N_("One `apply_async` option sets a deadline for *starting* the task; a worker that gets the "
           "message later marks it REVOKED instead of running it."),
        N_("`expires=` takes seconds (or an aware datetime): `expires=0.5`."),
    )
    solution_text = """
        def send_flash_sale(item):
            return announce.apply_async(args=[item], expires=0.5)
    """

    deadline = (0.3, 0.8)  #: accepted deadline, seconds after sending ("within half a second")

    def _check(self, ns):
        from celery.signals import before_task_publish

        send = self.callable_named(ns, self.sender)
        task = self.task_named(ns, self.task)
        expires = {}

        def _note_expires(headers=None, **_):  # the deadline each message carries
            headers = headers or {}
            expires[headers.get("id")] = (headers.get("expires"), time.time())

        before_task_publish.connect(_note_expires, weak=False)
        try:
            self._run(send, task, expires)
        finally:
            before_task_publish.disconnect(_note_expires)

    def _run(self, send, task, expires):
        with Trial(self.timeout) as trial:
            late_call = fmt_call(self.sender, ("boots",))
            late = self.sent(trial, late_call, self.run_learner(trial, late_call, send, "boots", name=self.sender))
            stamp, sent_at = expires.get(late.task_id, (None, None))
            if stamp is None:
                raise ExerciseIncorrect(_("{call} sent the task without a deadline (expires): a worker "
                                          "would run it however late", call=late_call))
            left = _parse(stamp).timestamp() - sent_at
            lo, hi = self.deadline
            if not lo <= left <= hi:
                raise ExerciseIncorrect(_("{call} gave the task {left:.1f} s to start: it should be dropped "
                                          "unless a worker starts it within half a second", call=late_call, left=left))
            time.sleep(1.0)  # no worker yet: a half-second deadline passes
            ok_call = fmt_call(self.sender, ("scarves",))
            ok = self.sent(trial, ok_call, self.run_learner(trial, ok_call, send, "scarves", name=self.sender))
            late_result, ok_result = AsyncResult(late.task_id, app=task.app), AsyncResult(ok.task_id, app=task.app)

            def settled(rec) -> bool:
                def done(pub, result):
                    return rec.final(pub.task_id) is not None or result.state == "REVOKED"
                return done(late, late_result) and done(ok, ok_result)

            queues = {late.data["queue"] or "celery", ok.data["queue"] or "celery"}
            outcomes = trial.run(task.app, [ok.task_id, late.task_id], queues=queues, give_up=settled)
            if outcomes[late.task_id].started:
                raise ExerciseIncorrect(_("{call} still ran when a worker came back a second later: "
                                          "give it a deadline of about half a second", call=late_call))
            if late_result.state != "REVOKED":
                raise ExerciseIncorrect(_("{call} did not run, but its state is {state}, not REVOKED",
                                          call=late_call, state=late_result.state))
            if ok_result.state == "REVOKED":
                raise ExerciseIncorrect(_("{call} was skipped although a worker was free at once: "
                                          "the deadline is too short", call=ok_call))
            self.succeeded(fmt_call(self.task, ("scarves",)), outcomes[ok.task_id])


# -- q3: a beat schedule ---------------------------------------------------------------------
_SUNDAY, _WEDNESDAY = date(2024, 6, 23), date(2024, 6, 26)
#: "every day": the other five days of that week, and a 31st (a day_of_month range can miss it)
_OTHER_DAYS = [date(2024, 6, d) for d in (24, 25, 27, 28, 29)] + [date(2024, 7, 31)]
#: date.weekday()'s names, for the messages (shown with _(); strftime("%A") would not follow CELERYLAB_LANG)
_WEEKDAYS = (N_("Monday"), N_("Tuesday"), N_("Wednesday"), N_("Thursday"), N_("Friday"), N_("Saturday"),
             N_("Sunday"))


def _with_clock(entry_schedule, clock, app):
    """The learner's crontab, same fields, on ``clock`` (celery's own crontab.__reduce__ gives them)."""
    cls, args, kwargs = entry_schedule.__reduce__()
    kwargs = dict(kwargs or {})
    kwargs.update(nowfun=clock, app=app)
    return cls(*args, **kwargs)


class BeatSchedule(BehaviourCheck):
    """``beat_schedule``: heartbeat every 0.5 s, nightly_cleanup every day at 03:30."""

    name = "beat_schedule"
    timeout = 6.0
    correct = N_("beat sends heartbeat every half second and nightly_cleanup at 03:30 every day, and nothing else.")
    hints = (
        N_("`beat_schedule` is a dict: entry name -> {'task': <task name>, 'schedule': ...}. A task's "
           "name is `heartbeat.name`. A number as the schedule means every that many seconds."),
        N_("For wall-clock times use `crontab(hour=..., minute=...)`. Leave out what should match every "
           "value (day_of_week...), but not the minute: `crontab(hour=3)` fires every minute from 03:00 to 03:59."),
    )
    solution_text = """
        beat_schedule = {
            "heartbeat": {"task": heartbeat.name, "schedule": 0.5},
            "nightly-cleanup": {"task": nightly_cleanup.name, "schedule": crontab(hour=3, minute=30)},
        }
    """

    def _entry_for(self, schedule_dict, task) -> tuple[str, dict]:
        found = [(name, e) for name, e in schedule_dict.items() if isinstance(e, dict) and e.get("task") == task.name]
        if not found:
            raise ExerciseIncorrect(_("no entry of beat_schedule sends {task} (an entry's 'task' is the task's name: "
                                      "{short}.name)", task=repr(task.name), short=short(task.name)))
        if len(found) > 1:
            raise ExerciseIncorrect(_("{count} entries send {task}: it would be sent {count} times as often",
                                      count=len(found), task=repr(task.name)))
        return found[0]

    def _check(self, ns):
        from celerylab.beat import clock_at, start_beat, stop_beats
        from celerylab.worker import run_worker

        value = self.value_named(ns, self.name)
        heartbeat, cleanup = self.task_named(ns, "heartbeat"), self.task_named(ns, "nightly_cleanup")
        if not isinstance(value, dict):
            raise ExerciseIncorrect(_("`{name}` is {got}: it should be a dict of entries", name=self.name,
                                      got=describe(value)))
        hb_name, hb = self._entry_for(value, heartbeat)
        cl_name, cl = self._entry_for(value, cleanup)
        for name, entry in value.items():
            if not isinstance(entry, dict) or "schedule" not in entry:
                raise ExerciseIncorrect(_("entry {name} has no 'schedule'", name=repr(name)))
        extra = sorted(set(value) - {hb_name, cl_name})
        if extra:
            raise ExerciseIncorrect(_("beat_schedule has {count} entries ({extra} "
                                      "besides the two asked for): beat would send those too",
                                      count=len(value), extra=", ".join(map(repr, extra))))
        if not isinstance(cl["schedule"], crontab):
            raise ExerciseIncorrect(_("entry {name} has schedule {got}: a time of day needs a crontab(...)",
                                      name=repr(cl_name), got=describe(cl["schedule"])))
        if isinstance(hb["schedule"], crontab):
            raise ExerciseIncorrect(_("entry {name} uses a crontab; crontab's smallest step is a minute, "
                                      "heartbeat runs every half second", name=repr(hb_name)))
        app = heartbeat.app
        saved = app.conf.beat_schedule

        # 1. heartbeat, for real: beat sends, a worker runs it
        app.conf.beat_schedule = {hb_name: dict(hb)}
        with Trial(self.timeout) as trial, run_worker(app, queues=["celery"], concurrency=2,
                                                      hostname=f"lab03-beat-{os.getpid()}@celerylab"):
            beat = start_beat(app, name="lab03-check-heartbeat")
            trial.recorder.wait(lambda r: len([e for e in r.events if e.kind == "succeeded"]) >= 3, 1.8)
            beat.stop()
            starts = [e.at for e in trial.recorder.events if e.kind == "started" and e.name == heartbeat.name]
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        if len(starts) < 2:
            raise ExerciseIncorrect(_("in 1.8 s beat had heartbeat run {count} time(s): "
                                      "every half second would be 3 times", count=len(starts)))
        if any(g < 0.35 or g > 0.75 for g in gaps):
            raise ExerciseIncorrect(_("heartbeat ran {gaps} s apart: every 0.5 s was asked",
                                      gaps=", ".join(f"{g:.1f}" for g in gaps)))

        # 2. nightly cleanup: its crontab on clocks that read just before a few times of day
        # (clock reads, on day, the minute that starts 0.4 s later, should it fire)
        cases = [("03:29:59.6", _WEDNESDAY, "03:30", True), ("03:29:59.6", _SUNDAY, "03:30", True),
                 ("15:29:59.6", _WEDNESDAY, "15:30", False), ("03:14:59.6", _WEDNESDAY, "03:15", False),
                 ("02:29:59.6", _WEDNESDAY, "02:30", False)]
        cases += [("03:29:59.6", day, "03:30", True) for day in _OTHER_DAYS]
        beats = []
        try:
            for i, (when, day, *_rest) in enumerate(cases):
                app.conf.beat_schedule = {cl_name: {**cl, "schedule": _with_clock(cl["schedule"], clock_at(when, on=day), app)}}
                beats.append(start_beat(app, name=f"lab03-check-cleanup-{i}"))
            time.sleep(1.0)
        finally:
            stop_beats(*beats)
            app.conf.beat_schedule = saved
            app.control.purge()  # no message the check's beats sent may linger in the queue
        for (_when, day, minute, fires), beat in zip(cases, beats):
            sent = beat.sent_count(cleanup.name)
            weekday = _(_WEEKDAYS[day.weekday()])
            if fires and not sent:
                if day.day == 31:
                    raise ExerciseIncorrect(_("beat did not send nightly_cleanup at {time} on a {weekday} the {day}st",
                                              time=minute, weekday=weekday, day=day.day))
                raise ExerciseIncorrect(_("beat did not send nightly_cleanup at {time} on a {weekday}",
                                          time=minute, weekday=weekday))
            if not fires and sent:
                if day.day == 31:
                    raise ExerciseIncorrect(_("beat sent nightly_cleanup at {time} on a {weekday} the {day}st: "
                                              "only 03:30 should fire", time=minute, weekday=weekday, day=day.day))
                raise ExerciseIncorrect(_("beat sent nightly_cleanup at {time} on a {weekday}: only 03:30 should fire",
                                          time=minute, weekday=weekday))


# -- q4: visibility timeout -------------------------------------------------------------------
_runs: list = []
_lock = threading.Lock()


class ReminderRunsOnce(BehaviourCheck):
    """``transport_options``: Redis transport options under which a 3 s countdown runs once."""

    name = "transport_options"
    countdown = 3.0
    timeout = 8.0
    correct = N_("with this visibility timeout a reminder with a 3 s countdown is sent exactly once.")
    hints = (
        N_("A worker holds a countdown task unacknowledged until it runs. On Redis, a message "
           "unacknowledged for longer than one setting is handed out again."),
        N_("`{'visibility_timeout': N}` with N (seconds) above the longest countdown, eta or retry "
           "delay you use; kombu's default is 3600."),
    )
    solution_text = """
        transport_options = {"visibility_timeout": 60}
    """

    def _check(self, ns):
        import celerylab
        from celerylab.worker import run_worker
        from celery import current_app

        value = self.value_named(ns, self.name)
        if not isinstance(value, dict):
            raise ExerciseIncorrect(_("`{name}` is {got}: it should be a dict, like {{'visibility_timeout': ...}}",
                                      name=self.name, got=describe(value)))
        vt = value.get("visibility_timeout")
        if vt is None:
            raise ExerciseIncorrect(_("`transport_options` has no 'visibility_timeout': the default in this lab is 1 s"))
        if not isinstance(vt, (int, float)) or isinstance(vt, bool) or vt <= 0:
            raise ExerciseIncorrect(_("visibility_timeout={vt}: it should be a number of seconds", vt=repr(vt)))
        learner_app = current_app._get_current_object()
        tag = f"lab03q4-{os.getpid()}-{time.monotonic_ns()}"
        options = {"visibility_timeout": 1, **value, "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
                   "unacked_key": f"{tag}-unacked", "unacked_index_key": f"{tag}-unacked_index",
                   "unacked_mutex_key": f"{tag}-unacked_mutex"}
        # the visibility timeout is a Redis transport option: on Redis, even if the class uses RabbitMQ
        app = create_redis_app(tag, task_default_queue=tag, broker_transport_options=options)

        @app.task(name=f"{tag}.send_reminder", shared=False)
        def send_reminder(who):
            with _lock:
                _runs.append((tag, who))

        try:
            with run_worker(app, queues=[tag], concurrency=2, hostname=f"{tag}@celerylab"):
                send_reminder.apply_async(("ada",), countdown=self.countdown)
                time.sleep(self.countdown + 0.7)
        finally:
            learner_app.set_current()
        n = sum(1 for t, _ in _runs if t == tag)
        if n == 0:
            raise ExerciseIncorrect(_("the reminder did not run within {seconds:.1f} s", seconds=self.countdown + 0.7))
        if n > 1:
            raise ExerciseIncorrect(_("with visibility_timeout={vt} the reminder went out {n} times: "
                                      "a 3 s countdown needs more than that", vt=repr(vt), n=n))


__all__ = ["____", "crontab", "datetime", "timedelta", "timezone"] + bind(
    globals(), RemindInOneSecond, FlashSaleDeadline, BeatSchedule, ReminderRunsOnce)
