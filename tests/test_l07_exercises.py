"""Lab 07's checks: an answer that misses one stated requirement fails (more cases in test_l07_monitoring)."""
from __future__ import annotations

import json
import logging

import pytest
from celery import current_task

import celerylab
from celerylab.alerts import Rule
from celerylab.exercises import l07_monitoring as ex
from celerylab.grading import ExerciseIncorrect


def share_rule(floor=4, at_least=False):
    def expr(h):
        failed = h.increase("celery_task_failed_total", 2, name="l07.charge")
        done = failed + h.increase("celery_task_succeeded_total", 2, name="l07.charge")
        if done < floor:
            return None
        share = failed / done
        return share + 1e-9 if at_least else share  # at_least: fires at exactly 25 % too

    return Rule("ChargeFailing", expr, above=0.25)


def test_q1_edges_of_the_threshold_and_the_floor(capsys):
    ex.q1.check({"charge_failing": share_rule()})
    assert capsys.readouterr().out.startswith("Correct: q1:")
    # "more than 25 %", not "at least"
    with pytest.raises(ExerciseIncorrect, match=r"fired on '1 of 4 charges fails \(exactly 25 %\)'"):
        ex.q1.check({"charge_failing": share_rule(at_least=True)})
    # "fewer than 4" is no data; 4 is enough
    with pytest.raises(ExerciseIncorrect, match=r"never fired on '2 of 4 charges fail"):
        ex.q1.check({"charge_failing": share_rule(floor=5)})


def test_q2_counting_must_not_take_messages(embedded):
    app = celerylab.create_app("lab07_exercises_test")

    def pops(client, queue):  # counts right, by taking every message off
        names = [queue] + [f"{queue}\x06\x16{b}" for b in (3, 6, 9)]
        return sum(1 for name in names for _ in iter(lambda n=name: client.rpop(n), None))

    with pytest.raises(ExerciseIncorrect, match="took 7 message"):
        ex.q2.check({"app": app, "queue_length": pops})


def test_q3_message_level_and_task_id(embedded):
    app = celerylab.create_app("lab07_exercises_test")

    def formatter(**fields):
        class F(logging.Formatter):
            def format(self, record):
                task = current_task
                data = {"level": record.levelname, "message": record.getMessage(),
                        "task_id": task.request.id if task else None}
                data.update({k: v(record) for k, v in fields.items()})
                return json.dumps(data)
        return F

    with pytest.raises(ExerciseIncorrect, match="record.getMessage"):  # the % arguments not filled in
        ex.q3.check({"app": app, "TaskJsonFormatter": formatter(message=lambda r: r.msg)})
    with pytest.raises(ExerciseIncorrect, match="'level' is"):
        ex.q3.check({"app": app, "TaskJsonFormatter": formatter(level=lambda r: r.levelno)})
    with pytest.raises(ExerciseIncorrect, match="not the id of the task"):  # the logger's name is no id
        ex.q3.check({"app": app, "TaskJsonFormatter": formatter(task_id=lambda r: r.name)})
    with pytest.raises(ExerciseIncorrect, match="outside a task, 'task_id'"):
        ex.q3.check({"app": app, "TaskJsonFormatter": formatter(
            task_id=lambda r: current_task.request.id if current_task else "none")})
