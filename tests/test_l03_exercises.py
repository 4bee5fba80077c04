"""Lab 03's checks: right answers pass, wrong ones fail with a message that names the problem."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from celery.schedules import crontab

import celerylab
from celerylab.exercises import l03_scheduling as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted


@pytest.fixture
def ns(embedded):
    app = celerylab.create_app("test_lab03")

    @app.task(name="test_lab03.remind", shared=False)
    def remind(text):
        return f"Reminder: {text}"

    @app.task(name="test_lab03.announce", shared=False)
    def announce(item):
        return f"Flash sale: {item}!"

    @app.task(name="test_lab03.heartbeat", shared=False)
    def heartbeat():
        return "alive"

    @app.task(name="test_lab03.nightly_cleanup", shared=False)
    def nightly_cleanup():
        return "cleaned"

    app.control.purge()
    yield {"app": app, "remind": remind, "announce": announce, "heartbeat": heartbeat,
           "nightly_cleanup": nightly_cleanup, "____": ex.____}
    app.close()


def check(q, ns, **names):
    ns = {**ns, **names}
    q.check(namespace=ns)


def fails(q, ns, match, **names):
    with pytest.raises(ExerciseIncorrect, match=match):
        check(q, ns, **names)


# -- q1 ----------------------------------------------------------------------------------------
def test_q1_aware_eta_one_second_ahead_passes(ns, capsys):
    remind = ns["remind"]
    check(ex.q1, ns, send_reminder=lambda text: remind.apply_async(
        args=[text], eta=datetime.now(timezone.utc) + timedelta(seconds=1)))
    assert capsys.readouterr().out.startswith("Correct: q1:")


def test_q1_wrong_answers(ns):
    remind = ns["remind"]
    with pytest.raises(ExerciseNotAttempted):
        def send_reminder(text):
            raise NotImplementedError()
        check(ex.q1, ns, send_reminder=send_reminder)
    fails(ex.q1, ns, "without an eta", send_reminder=lambda text: remind.delay(text))
    fails(ex.q1, ns, "naive datetime", send_reminder=lambda text: remind.apply_async(
        args=[text], eta=datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(seconds=1)))
    fails(ex.q1, ns, "about 1 s", send_reminder=lambda text: remind.apply_async(args=[text], countdown=5))
    fails(ex.q1, ns, "returned None", send_reminder=lambda text: None)


# -- q2 ----------------------------------------------------------------------------------------
def test_q2_half_second_deadline_passes_and_wrong_deadlines_fail(ns, capsys):
    announce = ns["announce"]
    check(ex.q2, ns, send_flash_sale=lambda item: announce.apply_async(args=[item], expires=0.5))
    assert "Correct: q2:" in capsys.readouterr().out
    fails(ex.q2, ns, "without a deadline", send_flash_sale=lambda item: announce.delay(item))
    fails(ex.q2, ns, "0.0 s to start", send_flash_sale=lambda item: announce.apply_async(args=[item], expires=0.01))
    # a deadline that still drops the late sale here, but is not "within half a second"
    fails(ex.q2, ns, "0.9 s to start", send_flash_sale=lambda item: announce.apply_async(args=[item], expires=0.9))


# -- q3 ----------------------------------------------------------------------------------------
def good_schedule(ns, **cleanup):
    return {
        "heartbeat": {"task": ns["heartbeat"].name, "schedule": 0.5},
        "nightly-cleanup": {"task": ns["nightly_cleanup"].name, "schedule": crontab(**(cleanup or {"hour": 3, "minute": 30}))},
    }


def test_q3_schedule_passes(ns, capsys):
    check(ex.q3, ns, beat_schedule=good_schedule(ns))
    assert "Correct: q3:" in capsys.readouterr().out


def test_q3_wrong_schedules(ns):
    fails(ex.q3, ns, "fires every minute|03:15", beat_schedule=good_schedule(ns, hour=3))
    fails(ex.q3, ns, "15:30", beat_schedule=good_schedule(ns, hour="3,15", minute=30))
    fails(ex.q3, ns, "Sunday", beat_schedule=good_schedule(ns, hour=3, minute=30, day_of_week="mon-fri"))
    # every day means all seven, and the 31st: Wednesday and Sunday alone do not prove it
    fails(ex.q3, ns, "Saturday", beat_schedule=good_schedule(ns, hour=3, minute=30, day_of_week="0-5"))
    fails(ex.q3, ns, "the 31st", beat_schedule=good_schedule(ns, hour=3, minute=30, day_of_month="1-30"))
    extra = good_schedule(ns)
    extra["hourly"] = {"task": ns["heartbeat"].name + "-other", "schedule": 3600}
    fails(ex.q3, ns, "'hourly' besides the two", beat_schedule=extra)
    slow = good_schedule(ns)
    slow["heartbeat"]["schedule"] = 5
    fails(ex.q3, ns, "every half second|every 0.5 s", beat_schedule=slow)
    missing = good_schedule(ns)
    del missing["nightly-cleanup"]
    fails(ex.q3, ns, "no entry", beat_schedule=missing)
    no_cron = good_schedule(ns)
    no_cron["nightly-cleanup"]["schedule"] = 86400
    fails(ex.q3, ns, "crontab", beat_schedule=no_cron)


# -- q4 ----------------------------------------------------------------------------------------
def test_q4_long_visibility_timeout_passes(ns, capsys):
    check(ex.q4, ns, transport_options={"visibility_timeout": 60})
    assert "Correct: q4:" in capsys.readouterr().out


@pytest.mark.slow
def test_q4_short_visibility_timeout_fails(ns):
    fails(ex.q4, ns, "went out [23] times", transport_options={"visibility_timeout": 1.5})
    fails(ex.q4, ns, "no 'visibility_timeout'", transport_options={})
    fails(ex.q4, ns, "should be a dict", transport_options=60)
