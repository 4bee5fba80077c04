"""Lab 01's checks: the solutions pass, typical mistakes fail with a message naming the mistake."""
from __future__ import annotations

import base64
import json
import time

import pytest
import redis

import celerylab
from celerylab.exercises import l01_architecture as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_lab01")
    yield app
    app.close()


def _add(app):
    @app.task(name="test_lab01.add", shared=False)
    def add(x, y):
        return x + y

    return add


def _oldest(app, pick):
    def oldest_waiting(queue):
        r = redis.Redis.from_url(app.conf.broker_url)
        raw = pick(r, queue)
        envelope = json.loads(raw)
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        return {"task": envelope["headers"]["task"], "id": envelope["headers"]["id"], "args": args}

    return oldest_waiting


def test_q1_solution_passes_and_mistakes_are_named(app, capsys):
    add = _add(app)
    with pytest.raises(ExerciseNotAttempted):
        ex.q1.check({"add": add, "oldest_waiting": ex.____})
    ex.q1.check({"add": add, "oldest_waiting": _oldest(app, lambda r, q: r.lindex(q, -1))})
    assert capsys.readouterr().out.startswith("Correct: q1:")
    with pytest.raises(ExerciseIncorrect, match="newest message"):
        ex.q1.check({"add": add, "oldest_waiting": _oldest(app, lambda r, q: r.lindex(q, 0))})
    with pytest.raises(ExerciseIncorrect, match="don't pop"):
        ex.q1.check({"add": add, "oldest_waiting": _oldest(app, lambda r, q: r.rpop(q))})
    with pytest.raises(ExerciseIncorrect, match="return a dict"):
        ex.q1.check({"add": add, "oldest_waiting": lambda queue: "nothing"})


def test_q2_needs_started_to_be_recorded(app, capsys):
    @app.task(name="test_lab01.resize_untracked", shared=False)
    def resize(seconds):
        time.sleep(seconds)
        return "resized"

    with pytest.raises(ExerciseIncorrect, match="stayed PENDING"):
        ex.q2.check({"resize": resize})

    @app.task(name="test_lab01.resize", shared=False, track_started=True)
    def resize_tracked(seconds):
        time.sleep(seconds)
        return "resized"

    ex.q2.check({"resize": resize_tracked})
    assert "Correct: q2:" in capsys.readouterr().out

    @app.task(name="test_lab01.resize_wrong_value", shared=False, track_started=True)
    def resize_wrong_value(seconds):
        time.sleep(seconds)
        return "done"

    with pytest.raises(ExerciseIncorrect, match="it should return 'resized'"):
        ex.q2.check({"resize": resize_wrong_value})

    @app.task(name="test_lab01.resize_no_sleep", shared=False, track_started=True)
    def resize_no_sleep(seconds):
        return "resized"

    # STARTED may or may not be seen for a task that does not sleep: either way it fails
    with pytest.raises(ExerciseIncorrect, match="it should sleep 0.6 s|stayed PENDING"):
        ex.q2.check({"resize": resize_no_sleep})
    with pytest.raises(ExerciseIncorrect, match="plain function"):
        ex.q2.check({"resize": lambda seconds: None})


def test_q3_the_charge_must_never_run(app, capsys):
    @app.task(name="test_lab01.charge", shared=False)
    def charge(amount):
        return f"charged {amount}"

    def cancel_properly(amount):
        result = charge.apply_async(args=[amount], countdown=1)
        result.revoke()
        return result

    ex.q3.check({"charge": charge, "schedule_and_cancel": cancel_properly})
    assert "Correct: q3:" in capsys.readouterr().out
    with pytest.raises(ExerciseIncorrect, match="ran on the worker: it was not revoked"):
        ex.q3.check({"charge": charge, "schedule_and_cancel": lambda amount: charge.apply_async([amount], countdown=1)})

    def revoke_at_once(amount, **options):
        result = charge.apply_async(args=[amount], **options)
        result.revoke()
        return result

    # revoked, but not scheduled 1 to 3 s ahead: it may never run (the revoke can win), it still fails
    with pytest.raises(ExerciseIncorrect, match="to run at once: it should run 1 to 3 seconds from now"):
        ex.q3.check({"charge": charge, "schedule_and_cancel": revoke_at_once})
    with pytest.raises(ExerciseIncorrect, match="s from now: it should run 1 to 3 seconds from now"):
        ex.q3.check({"charge": charge, "schedule_and_cancel": lambda amount: revoke_at_once(amount, countdown=0.2)})
    with pytest.raises(ExerciseIncorrect, match="at most"):
        ex.q3.check({"charge": charge, "schedule_and_cancel": lambda amount: charge.apply_async([amount], countdown=60)})


def test_q4_chain_passes_blocking_is_caught(app, capsys):
    prices = {"book": 12}

    @app.task(name="test_lab01.price", shared=False)
    def price(item):
        return prices[item]

    @app.task(name="test_lab01.add_tax", shared=False)
    def add_tax(amount):
        return round(amount * 1.2, 2)

    @app.task(name="test_lab01.checkout_blocking", shared=False)
    def checkout_blocking(item):
        return add_tax(price.delay(item).get(timeout=5))

    ns = {"price": price, "add_tax": add_tax}
    ex.q4.check({**ns, "checkout": lambda item: (price.s(item) | add_tax.s()).delay()})
    assert "Correct: q4:" in capsys.readouterr().out
    with pytest.raises(ExerciseIncorrect, match=r"called \.get\(\) inside a task"):
        ex.q4.check({**ns, "checkout": lambda item: checkout_blocking.delay(item)})
    @app.task(name="test_lab01.checkout_allowed_to_wait", shared=False)
    def checkout_waiting(item):  # waits anyway, with Celery's guard turned off
        return add_tax.delay(price.delay(item).get(timeout=5, disable_sync_subtasks=False)).get(
            timeout=5, disable_sync_subtasks=False)

    with pytest.raises(ExerciseIncorrect, match="a task waited for another"):
        ex.q4.check({**ns, "checkout": lambda item: checkout_waiting.delay(item)})
    with pytest.raises(ExerciseIncorrect, match=r"ended with 12 .*add_tax\(price\(item\)\)"):
        ex.q4.check({**ns, "checkout": lambda item: (price.s(item) | add_tax.s()).delay().parent})
    with pytest.raises(ExerciseIncorrect, match="add_tax never ran"):
        ex.q4.check({**ns, "checkout": lambda item: price.delay(item)})
    with pytest.raises(ExerciseIncorrect, match="not an AsyncResult"):
        ex.q4.check({**ns, "checkout": lambda item: add_tax(price(item))})
