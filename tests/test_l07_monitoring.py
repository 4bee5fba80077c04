"""Lesson 07's helpers (polling, JSON logs, Sentry in memory) and its lab's checks on wrong answers."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

import celerylab
from celerylab import jsonlog
from celerylab.grading.outcomes import ExerciseIncorrect, ExerciseNotAttempted


@pytest.fixture
def lesson(embedded):
    """Lesson 07's module, with its tasks on a fresh app of this test's broker."""
    from celerylab.lessons import l07_monitoring as module

    app = celerylab.create_app("test_l07")
    ns = SimpleNamespace(app=app, log=module.log, poll_states=module.poll_states,
                         sentry_to_memory=module.sentry_to_memory, sentry_events=module.sentry_events,
                         sentry_off=module.sentry_off)
    for task in (module.ok, module.fail, module.slow, module.charge, module.seed_logging_example,
                 module.bound_logging_example):
        bind = task.name == "l07.bound_logging_example"
        fn = task.run.__func__ if bind else task.run
        setattr(ns, task.name.split(".")[1], app.task(name=task.name, bind=bind, shared=False)(fn))
    yield ns
    module.sentry_off()
    app.close()


def test_polling_sees_pending_then_success(lesson):
    with celerylab.run_worker(lesson.app, hostname="orders@l07-test"):
        assert lesson.poll_states(lesson.slow.delay(0.3)) == ["PENDING", "SUCCESS"]
        assert lesson.app.AsyncResult("no-such-id").state == "PENDING"


def test_json_log_line_carries_the_task_id(lesson, tmp_path):
    with celerylab.run_worker(lesson.app, hostname="orders@l07-test"):
        paid = lesson.charge.delay(7, 19.99)
        assert paid.get(timeout=10) == {"order_id": 7, "charged": 19.99}
    line = jsonlog.last_line(lesson.log.jsonl_path)
    assert line["task_id"] == paid.id and line["task_name"] == "l07.charge"
    assert line["message"] == "charging order" and line["order_id"] == 7 and line["amount"] == 19.99
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")


def test_json_formatter_outside_a_task_and_with_an_exception(tmp_path):
    log = jsonlog.task_logger("l07.test.plain", path=tmp_path / "plain.jsonl")
    try:
        raise ValueError('bad "value"\nsecond line')
    except ValueError:
        log.exception("it broke")
    log.info("hello %s", "there", extra={"order_id": 3})
    lines = (tmp_path / "plain.jsonl").read_text().splitlines()
    assert len(lines) == 2                                  # one record, one line, whatever it holds
    first, second = map(json.loads, lines)
    assert first["task_id"] is None and first["exc_type"] == "ValueError" and "second line" in first["exc"]
    assert second["message"] == "hello there" and second["order_id"] == 3
    again = jsonlog.task_logger("l07.test.plain", path=tmp_path / "plain.jsonl")   # a re-run cell
    assert sum(getattr(h, "_celerylab_json", False) for h in again.handlers) == 1


def test_seed_logging_example_fails_and_bind_fixes_it(lesson):
    with celerylab.run_worker(lesson.app, hostname="orders@l07-test"):
        broken = lesson.seed_logging_example.delay().get(propagate=False, timeout=10)
        assert isinstance(broken, NameError) and "self" in str(broken)
        fixed = lesson.bound_logging_example.delay()
        assert fixed.get(timeout=10) == fixed.id


def test_sentry_captures_a_task_exception_in_memory(lesson):
    lesson.sentry_to_memory()                 # before the worker starts, as in production
    with celerylab.run_worker(lesson.app, hostname="orders@l07-test"):
        bad = lesson.charge.delay(1, -5)
        assert isinstance(bad.get(propagate=False, timeout=10), ValueError)
        events = lesson.sentry_events(bad.id, timeout=5)
    assert len(events) == 1
    exc = events[0]["exception"]["values"][-1]
    assert exc["type"] == "ValueError" and "positive" in exc["value"]
    assert events[0]["transaction"] == "l07.charge"
    lesson.sentry_off()
    assert lesson.sentry_events() == []


# -- the lab's checks reject wrong answers with a useful line ------------------------------
def test_q1_rejects_rules_that_page_for_the_wrong_reasons():
    from celerylab.alerts import failure_rate
    from celerylab.exercises.l07_monitoring import q1

    good = failure_rate(window=2, above=0.25, min_tasks=4, alert="ChargeFailing", labels={"name": "l07.charge"})
    q1.check({"charge_failing": good})
    cases = {
        "every task": failure_rate(window=2, above=0.25, min_tasks=4),
        "no floor": failure_rate(window=2, above=0.25, min_tasks=1, labels={"name": "l07.charge"}),
        "no window": failure_rate(window=600, above=0.25, min_tasks=4, labels={"name": "l07.charge"}),
        "too eager": failure_rate(window=2, above=0.10, min_tasks=4, labels={"name": "l07.charge"}),
    }
    for about, rule in cases.items():
        with pytest.raises(ExerciseIncorrect):
            q1.check({"charge_failing": rule})
    with pytest.raises(ExerciseIncorrect, match="Rule"):
        q1.check({"charge_failing": 0.25})
    from celerylab.grading.outcomes import ____

    with pytest.raises(ExerciseNotAttempted):
        q1.check({"charge_failing": ____})


def test_q2_rejects_llen_of_the_bare_queue(embedded):
    from celerylab.exercises.l07_monitoring import q2

    app = celerylab.create_app("lab07_test")

    def bare(client, queue):
        return client.llen(queue)

    with pytest.raises(ExerciseIncorrect, match="band 0"):
        q2.check({"app": app, "queue_length": bare})

    def every_band(client, queue):
        return sum(client.llen(queue + (f"\x06\x16{b}" if b else "")) for b in (0, 3, 6, 9))

    q2.check({"app": app, "queue_length": every_band})


def test_q3_rejects_hand_built_json_and_missing_ids(embedded):
    from celery import current_task

    from celerylab.exercises.l07_monitoring import q3

    app = celerylab.create_app("lab07_test")

    class HandMade(logging.Formatter):
        def format(self, record):
            task = current_task
            return '{"level": "%s", "message": "%s", "task_id": "%s"}' % (
                record.levelname, record.getMessage(), task.request.id if task else None)

    class Good(logging.Formatter):
        def format(self, record):
            task = current_task
            return json.dumps({"level": record.levelname, "message": record.getMessage(),
                               "task_id": task.request.id if task else None})

    class NotYet(logging.Formatter):
        def format(self, record):
            raise NotImplementedError()

    with pytest.raises(ExerciseIncorrect):
        q3.check({"app": app, "TaskJsonFormatter": HandMade})
    with pytest.raises(ExerciseNotAttempted):
        q3.check({"app": app, "TaskJsonFormatter": NotYet})
    q3.check({"app": app, "TaskJsonFormatter": Good})


def test_sentry_misses_a_worker_started_before_init_and_catches_a_restarted_one():
    """Lesson 07, section 7, in a fresh interpreter (sentry_sdk patches Celery once per process)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import celerylab
        from celerylab.lessons import l07_monitoring as l07
        worker = celerylab.start_worker(l07.app, hostname="orders@l07-sentry-test")
        l07.sentry_to_memory()
        bad = l07.charge.delay(1, -5)
        bad.get(propagate=False, timeout=10)
        before = len(l07.sentry_events(bad.id, timeout=0.5))
        worker = celerylab.start_worker(l07.app, hostname="orders@l07-sentry-test")  # a restart
        bad = l07.charge.delay(2, -5)
        bad.get(propagate=False, timeout=10)
        after = len(l07.sentry_events(bad.id, timeout=5))
        worker.stop()
        l07.sentry_off()
        celerylab.cleanup()
        print("RESULT", before, after)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "RESULT 0 1" in out.stdout, (out.stdout[-500:], out.stderr[-2000:])
