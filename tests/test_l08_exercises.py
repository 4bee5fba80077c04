"""Lab 08's checks: an answer that misses one stated requirement fails (more in test_l08_production)."""
from __future__ import annotations


import pytest

import celerylab
from celerylab.grading import ExerciseIncorrect

M = "celerylab.lessons.l08_production"
pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")


# `lab`: lesson 08's module on a fresh embedded broker (tests/conftest.py)


def test_q2_soft_limit_of_one_second_and_thumbnails_in_order(lab, capsys):
    from celery.exceptions import SoftTimeLimitExceeded

    from celerylab.exercises.l08_production import make_thumbnail, q2

    app = celerylab.create_app("t-lab08-ex")

    def body(images):
        done = []
        try:
            for image in images:
                done.append(make_thumbnail(image))
        except SoftTimeLimitExceeded:
            pass
        return done

    good = app.task(soft_time_limit=1, name="t08.good", shared=False)(body)
    q2.check(namespace={"thumbnails": good})
    assert capsys.readouterr().out.startswith("Correct: q2:")
    # stops at a soft limit, but not the 1 second asked for
    half = app.task(soft_time_limit=0.5, name="t08.half", shared=False)(body)
    with pytest.raises(ExerciseIncorrect, match="soft_time_limit=0.5: the exercise asks for 1 second"):
        q2.check(namespace={"thumbnails": half})

    @app.task(soft_time_limit=1, name="t08.reversed", shared=False)
    def backwards(images):  # all the thumbnails, not in order
        return list(reversed(body(images)))

    with pytest.raises(ExerciseIncorrect, match="in order"):
        q2.check(namespace={"thumbnails": backwards})


def test_q3_concurrency_below_the_cores_fails_without_a_worker(lab, monkeypatch):
    from celerylab.exercises.l08_production import q3

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    with pytest.raises(ExerciseIncorrect, match="concurrency=2 on 4 cores: 2 of them would stay idle"):
        q3.check(namespace={"pool": "prefork", "concurrency": 2})


@pytest.mark.slow
def test_q1_needs_both_settings(lab, capsys):
    from celerylab.exercises.l08_production import q1

    q1.check(namespace={"settings": {"task_acks_late": True, "task_reject_on_worker_lost": True}})
    assert capsys.readouterr().out.startswith("Correct: q1:")
    # late acks alone: a killed pool process still acknowledges (WorkerLostError)
    with pytest.raises(ExerciseIncorrect, match="pool process .* WorkerLostError"):
        q1.check(namespace={"settings": {"task_acks_late": True}})
    # requeue on a lost pool process without late acks: the message was acknowledged already
    with pytest.raises(ExerciseIncorrect, match="pool process"):
        q1.check(namespace={"settings": {"task_reject_on_worker_lost": True}})
