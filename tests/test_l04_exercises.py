"""Lab 04's checks: right answers pass, wrong ones fail with a message that names the problem."""
from __future__ import annotations

import pytest

import celerylab
from celerylab.exercises import l04_priority_routing as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted


@pytest.fixture
def ns(embedded):
    app = celerylab.create_app("test_lab04")
    tasks = {}
    def echo(x):
        return x

    for name in ("resize_image", "send_email", "log_visit", "job"):
        tasks[name] = app.task(name=f"test_shop.{name}", shared=False)(echo)
    app.control.purge()
    yield {"app": app, **tasks}
    app.close()


def check(q, ns, **names):
    q.check(namespace={**ns, **names})


def fails(q, ns, match, **names):
    with pytest.raises(ExerciseIncorrect, match=match):
        check(q, ns, **names)


def test_q1_routes(ns, capsys):
    check(ex.q1, ns, task_routes={"test_shop.resize_image": {"queue": "images"},
                                  "test_shop.send_email": {"queue": "email"}})
    assert "Correct: q1:" in capsys.readouterr().out
    assert ns["app"].conf.task_routes is None  # the check leaves the app as it found it
    fails(ex.q1, ns, "log_visit went to the queue 'images'", task_routes={
        "test_shop.send_email": {"queue": "email"}, "test_shop.*": {"queue": "images"}})
    fails(ex.q1, ns, "send_email went to the queue 'celery', not 'email'",
          task_routes={"test_shop.resize_image": {"queue": "images"}})
    fails(ex.q1, ns, "should be a dict", task_routes="images")
    with pytest.raises(ExerciseNotAttempted):
        check(ex.q1, ns, task_routes=ex.____)


def sender(job, priorities, order=("backup", "invoice", "alert"), **options):
    def send_jobs():
        for kind in order:
            job.apply_async((kind,), priority=priorities[kind], **options)
    return send_jobs


def test_q2_priorities(ns, capsys):
    job = ns["job"]
    check(ex.q2, ns, send_jobs=sender(job, {"backup": 6, "invoice": 3, "alert": 0}))
    assert "Correct: q2:" in capsys.readouterr().out
    # RabbitMQ thinking: higher is more urgent
    fails(ex.q2, ns, r"order \['backup', 'invoice', 'alert'\]", send_jobs=sender(job, {"backup": 0, "invoice": 5, "alert": 9}))
    # one band: first in, first out
    fails(ex.q2, ns, r"order \['backup', 'invoice', 'alert'\]", send_jobs=sender(job, {"backup": 2, "invoice": 1, "alert": 0}))
    # the right priorities, but not on the default queue
    fails(ex.q2, ns, "send them to the default queue, 'celery'",
          send_jobs=sender(job, {"backup": 6, "invoice": 3, "alert": 0}, queue="jobs"))
    # sending them in the wanted order instead of using priority
    fails(ex.q2, ns, "send them in the order", send_jobs=sender(job, {"backup": 0, "invoice": 0, "alert": 0},
                                                                 order=("alert", "invoice", "backup")))


def test_q3_ten_levels(ns, capsys):
    check(ex.q3, ns, transport_options={"priority_steps": list(range(10))})
    assert "Correct: q3:" in capsys.readouterr().out
    fails(ex.q3, ns, r"order \[2, 1, 0, 5, 4, 3, 8, 7, 6, 9\]", transport_options={})
    # ten levels, not three: bands that split 0-3 only pass a check with priorities 1-3, not this one
    fails(ex.q3, ns, r"order \[0, 1, 2, 5, 4, 3, 8, 7, 6, 9\]: each of the ten",
          transport_options={"priority_steps": [0, 1, 2, 3, 6, 9]})
    fails(ex.q3, ns, "should be a dict", transport_options=["priority_steps"])


def test_q4_prefetch_and_late_acks(ns, capsys):
    check(ex.q4, ns, prefetch_multiplier=1, acks_late=True)
    assert "Correct: q4:" in capsys.readouterr().out
    fails(ex.q4, ns, "1 short task", prefetch_multiplier=1, acks_late=False)
    fails(ex.q4, ns, "short task", prefetch_multiplier=4, acks_late=True)  # late acks, but A reserves 4
    fails(ex.q4, ns, "no limit", prefetch_multiplier=0, acks_late=True)
    fails(ex.q4, ns, "True or False", prefetch_multiplier=1, acks_late="yes")
