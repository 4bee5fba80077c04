"""Lab 06's checks on real workers: the solutions pass, typical mistakes fail with a message naming them."""
from __future__ import annotations

import json

import pytest
from celery.signals import task_failure

import celerylab
from celerylab.exercises import l06_dead_letter as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted
from celerylab.store import redis_client

UID = "test-lab06-hook"


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_lab06")
    yield app
    task_failure.disconnect(dispatch_uid=UID)
    app.close()


def hook(keys_from=None):
    """A record_dead_letter; ``keys_from`` changes the entry to make a typical mistake."""
    def record_dead_letter(sender=None, task_id=None, exception=None, args=None, kwargs=None, **extra):
        entry = {"task_id": task_id, "task": sender.name, "args": list(args or []),
                 "kwargs": dict(kwargs or {}), "exception": type(exception).__name__,
                 "queue": (sender.request.delivery_info or {}).get("routing_key")}
        if keys_from:
            entry = keys_from(entry, exception)
        redis_client().rpush("dead_letters", json.dumps(entry))
    return record_dead_letter


def connect(fn):
    task_failure.disconnect(dispatch_uid=UID)
    task_failure.connect(fn, weak=False, dispatch_uid=UID)
    return fn


def test_q1_solution_passes_and_mistakes_are_named(app, capsys):
    @app.task(name="t06l.import_row", shared=False)
    def import_row(row):
        return ex.parse_row(row)

    def unwritten(**_):
        raise NotImplementedError()

    with pytest.raises(ExerciseNotAttempted):
        ex.q1.check({"import_row": import_row, "record_dead_letter": connect(unwritten)})
    good = hook()
    with pytest.raises(ExerciseIncorrect, match="not connected"):
        ex.q1.check({"import_row": import_row, "record_dead_letter": good})
    ex.q1.check({"import_row": import_row, "record_dead_letter": connect(good)})
    assert capsys.readouterr().out.startswith("Correct: q1:")

    no_exception = connect(hook(lambda e, exc: {k: v for k, v in e.items() if k != "exception"}))
    with pytest.raises(ExerciseIncorrect, match="no key 'exception'"):
        ex.q1.check({"import_row": import_row, "record_dead_letter": no_exception})
    message = connect(hook(lambda e, exc: {**e, "exception": str(exc)}))
    with pytest.raises(ExerciseIncorrect, match="class name"):
        ex.q1.check({"import_row": import_row, "record_dead_letter": message})
    fixed_queue = connect(hook(lambda e, exc: {**e, "queue": "celery"}))
    with pytest.raises(ExerciseIncorrect, match="has queue 'celery'; it came from 'lab06_import'"):
        ex.q1.check({"import_row": import_row, "record_dead_letter": fixed_queue})
    no_kwargs = connect(hook(lambda e, exc: {**e, "kwargs": {}}))
    with pytest.raises(ExerciseIncorrect, match="not the task's keyword arguments"):
        ex.q1.check({"import_row": import_row, "record_dead_letter": no_kwargs})
    assert redis_client().llen("dead_letters") == 2, "what the last check saw stays for the learner to read"


def test_q2_retries_before_the_dead_letter(app, capsys):
    connect(hook())

    @app.task(name="t06l.charge", autoretry_for=(ConnectionError,), max_retries=2,
              retry_kwargs={"countdown": 0.1}, shared=False)
    def charge(card):
        return ex.bank_api(card)

    @app.task(name="t06l.charge_everything", autoretry_for=(Exception,), max_retries=2,
              retry_kwargs={"countdown": 0.1}, shared=False)
    def charge_everything(card):
        return ex.bank_api(card)

    @app.task(name="t06l.charge_no_retry", shared=False)
    def charge_no_retry(card):
        return ex.bank_api(card)

    @app.task(name="t06l.charge_slow", autoretry_for=(ConnectionError,), max_retries=2,
              retry_kwargs={"countdown": 1}, shared=False)
    def charge_slow(card):  # retries twice, but 1 s apart, not 0.1 s
        return ex.bank_api(card)

    ex.q2.check({"charge": charge})
    assert capsys.readouterr().out.startswith("Correct: q2:")
    with pytest.raises(ExerciseIncorrect, match=r"retried 1\.\d s after it failed; retry 0.1 s apart"):
        ex.q2.check({"charge": charge_slow})
    with pytest.raises(ExerciseIncorrect, match="refused card.*retried 2 times"):
        ex.q2.check({"charge": charge_everything})
    with pytest.raises(ExerciseIncorrect, match="retried 0 times"):
        ex.q2.check({"charge": charge_no_retry})


def test_q3_replay(app, capsys):
    def good():
        results = []
        while (raw := redis_client().lpop("dead_letters")) is not None:
            entry = json.loads(raw)
            results.append(app.send_task(entry["task"], args=entry["args"], kwargs=entry["kwargs"],
                                         queue=entry["queue"]))
        return results

    def default_queue():
        results = []
        while (raw := redis_client().lpop("dead_letters")) is not None:
            entry = json.loads(raw)
            results.append(app.send_task(entry["task"], args=entry["args"], kwargs=entry["kwargs"]))
        return results

    def keeps_the_list():
        return [app.send_task(e["task"], args=e["args"], kwargs=e["kwargs"], queue=e["queue"])
                for e in ex.dead_letters()]

    def unwritten():
        raise NotImplementedError()

    with pytest.raises(ExerciseNotAttempted):
        ex.q3.check({"app": app, "replay_dead_letters": unwritten})
    ex.q3.check({"app": app, "replay_dead_letters": good})
    assert capsys.readouterr().out.startswith("Correct: q3:")
    with pytest.raises(ExerciseIncorrect, match="not back to 'lab06_restock'"):
        ex.q3.check({"app": app, "replay_dead_letters": default_queue})
    with pytest.raises(ExerciseIncorrect, match="still holds 3 entries"):
        ex.q3.check({"app": app, "replay_dead_letters": keeps_the_list})

    def no_kwargs():
        results = []
        while (raw := redis_client().lpop("dead_letters")) is not None:
            entry = json.loads(raw)
            results.append(app.send_task(entry["task"], args=entry["args"], queue=entry["queue"]))
        return results

    with pytest.raises(ExerciseIncorrect, match="ran with other arguments"):
        ex.q3.check({"app": app, "replay_dead_letters": no_kwargs})

    def returns_nothing():
        good()

    with pytest.raises(ExerciseIncorrect, match="return the list"):
        ex.q3.check({"app": app, "replay_dead_letters": returns_nothing})
