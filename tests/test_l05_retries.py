"""Lesson 05's tasks and helpers on a real worker: what the notebook claims, asserted."""
from __future__ import annotations

import importlib
import os
import random
import time

import pytest
from celery.exceptions import MaxRetriesExceededError

import celerylab
from celerylab.events import Watcher

# If the lesson module was imported before (on another broker) it is reloaded onto this module's
# broker; Celery then warns that its (shared) task names were registered before. Harmless here.
pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")


@pytest.fixture(scope="module")
def lesson():
    saved = os.environ.pop("CELERYLAB_BROKER_URL", None)
    broker = celerylab.current_broker()
    if broker is not None:
        broker.stop()
    celerylab.start_broker()
    import celerylab.lessons.l05_retries as l05

    if l05.app.conf.broker_url != celerylab.current_broker().url:
        l05 = importlib.reload(l05)  # imported earlier on another broker: its app on this one
    worker = celerylab.start_worker(l05.app, concurrency=10)
    watcher = Watcher(l05.app, sample_queues=False).start()
    # warm up: the first ETA messages a fresh worker schedules can start tens of ms late
    warm = [l05.flaky_api.delay(fail_times=1) for _ in range(4)]
    for res in warm:
        res.get(timeout=10)
    yield l05, watcher
    watcher.stop(settle=0)
    worker.stop()
    celerylab.cleanup()
    if saved is not None:
        os.environ["CELERYLAB_BROKER_URL"] = saved


def attempts(view, result, timeout=5.0):
    """The task's task-started events (one per run), as the notebook counts them."""
    deadline = time.monotonic() + timeout
    while not [e for e in view.timeline if e.uuid == result.id and e.type in ("task-succeeded", "task-failed")]:
        assert time.monotonic() < deadline, f"no final event for {result.id}"
        time.sleep(0.02)
    return [e for e in view.timeline if e.uuid == result.id and e.type == "task-started"]


def gaps(view, result, ndigits=3):
    starts = [e.time for e in attempts(view, result)]
    return [round(b - a, ndigits) for a, b in zip(starts, starts[1:])]


def test_a_manual_retry_reruns_the_same_id_after_its_countdown(lesson):
    l05, view = lesson
    res = l05.flaky_api.delay(fail_times=2)
    assert res.get(timeout=10) == "answered on attempt 3"
    assert len(attempts(view, res)) == 3
    assert {e.uuid for e in attempts(view, res)} == {res.id}
    measured = gaps(view, res)
    assert all(0.19 <= g < 0.35 for g in measured), measured
    types = [e.type for e in view.timeline if e.uuid == res.id]
    assert types.count("task-retried") == 2 and types.count("task-sent") == 3


def test_max_retries_3_means_four_runs_and_what_is_raised(lesson):
    l05, view = lesson
    with_exc, without = l05.always_down.delay(pass_exc=True), l05.always_down.delay(pass_exc=False)
    assert isinstance(with_exc.get(timeout=10, propagate=False), ConnectionError)
    assert isinstance(without.get(timeout=10, propagate=False), MaxRetriesExceededError)
    assert len(attempts(view, with_exc)) == 4 and len(attempts(view, without)) == 4


def test_without_a_countdown_the_retry_waits_180_seconds(lesson):
    from datetime import datetime

    from celery import signals

    l05, _ = lesson
    published = []

    def remember(sender=None, headers=None, **kwargs):
        published.append((time.time(), dict(headers or {})))

    signals.before_task_publish.connect(remember, weak=False, dispatch_uid="test-l05-published")
    try:
        res = l05.no_countdown.delay()
        deadline = time.monotonic() + 10
        while not [h for _, h in published if h.get("id") == res.id and h.get("retries") == 1]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        signals.before_task_publish.disconnect(remember, dispatch_uid="test-l05-published")
    [wait] = [datetime.fromisoformat(h["eta"]).timestamp() - when
              for when, h in published if h.get("id") == res.id and h.get("retries") == 1]
    assert 179 < wait <= 180
    assert l05.wait_for_state(res, "RETRY") == "RETRY"
    res.revoke()


def test_retry_backoff_below_one_second_still_waits_a_second(lesson):
    l05, view = lesson
    res = l05.fetch_rates_fast.delay("USD")
    assert res.get(timeout=10) == "USD rates (attempt 2)"
    [gap] = gaps(view, res)
    assert 0.99 <= gap < 1.2


def test_the_seed_formula_keeps_a_herd_together_and_jitter_spreads_it(lesson):
    """Judged by each retry's planned wait (its message's ETA minus the moment it was published),
    which a loaded machine cannot change, and by each run starting at its ETA or later."""
    from datetime import datetime

    from celery import signals

    l05, view = lesson
    published = []  # (the publish time, the retry message's headers); the worker runs in this process

    def remember(sender=None, headers=None, **kwargs):
        if (headers or {}).get("eta"):
            published.append((time.time(), dict(headers)))

    signals.before_task_publish.connect(remember, weak=False, dispatch_uid="test-l05-herd")
    try:
        herd = [l05.seed_backoff.delay(c, scale=0.1) for c in range(4)]
        spread = [l05.jitter_backoff.delay(c, scale=0.1) for c in range(4)]
        for res in herd + spread:
            res.get(timeout=10, propagate=False)
    finally:
        signals.before_task_publish.disconnect(remember, dispatch_uid="test-l05-herd")

    def plan(res):
        """{retry n: (planned wait, ETA)} from the retry messages of one task."""
        return {h["retries"]: (datetime.fromisoformat(h["eta"]).timestamp() - when,
                               datetime.fromisoformat(h["eta"]).timestamp())
                for when, h in published if h["id"] == res.id}

    for res in herd + spread:
        runs = [e.time for e in attempts(view, res)]
        assert len(runs) == 4  # the first run and three retries
        etas = [eta for _, eta in sorted(plan(res).values(), key=lambda p: p[1])]
        # every retry ran at its ETA or later, never early; late only by trips through the broker
        assert all(-0.01 < start - eta < 0.5 for start, eta in zip(runs[1:], etas)), (runs, etas)
    for n in (1, 2, 3):
        herd_waits = [plan(res)[n][0] for res in herd]
        # the seed's formula: every client plans the same wait, 0.1 × 2**(n-1): they stay a herd
        assert all(abs(w - 0.1 * 2 ** (n - 1)) < 0.02 for w in herd_waits), (n, herd_waits)
        # full jitter: each client its own random share, as jitter_for drew it; the herd spreads
        jitter_waits = [plan(res)[n][0] for res in spread]
        drawn = [l05.jitter_for(c, n - 1, 0.1) for c in range(4)]
        assert all(abs(w - d) < 0.02 for w, d in zip(jitter_waits, drawn)), (n, jitter_waits, drawn)
        assert max(drawn) - min(drawn) > 0.02, drawn


def test_a_retry_keeps_the_task_id_and_charges_again_without_deduplication(lesson):
    l05, view = lesson
    l05.reset_ledger()
    res = l05.charge_naive.delay(1, 9.99)
    res.get(timeout=10)
    assert len(attempts(view, res)) == 2 and {e.uuid for e in attempts(view, res)} == {res.id}
    assert l05.ledger() == ["order 1: 9.99 EUR"] * 2


def test_a_task_id_key_catches_a_retry_but_not_the_same_order_sent_twice(lesson):
    l05, view = lesson
    l05.reset_ledger()
    clicks = [l05.charge_by_task_id.apply_async((2, 9.99)) for _ in range(2)]
    for res in clicks:
        res.get(timeout=10)
    assert clicks[0].id != clicks[1].id
    assert sum(len(attempts(view, r)) for r in clicks) == 4      # each message retried once
    assert l05.ledger() == ["order 2: 9.99 EUR"] * 2               # retries caught, the 2nd send not


def test_a_business_key_charges_once_per_order(lesson):
    l05, view = lesson
    l05.reset_ledger()
    twice = [l05.charge_once.apply_async((3, 5.0)) for _ in range(2)]
    redelivered = [l05.charge_once.apply_async((4, 7.5), task_id="test-l05-payment-4") for _ in range(2)]
    for res in twice + redelivered:
        res.get(timeout=10)
    assert twice[0].id != twice[1].id and sum(len(attempts(view, r)) for r in twice) == 4
    assert redelivered[0].id == redelivered[1].id
    assert sorted(l05.ledger()) == ["order 3: 5.00 EUR", "order 4: 7.50 EUR"]


def test_jitter_samples_are_seeded_and_leave_random_alone():
    from celerylab.lessons.l05_retries import jitter_figure, jitter_samples

    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    a = jitter_samples(retries=3, samples=100, seed=5)
    assert random.random() == expected_next, "the caller's random sequence is untouched"
    assert a == jitter_samples(retries=3, samples=100, seed=5)
    assert set(a[0]) == {0, 1} and max(a[2]) <= 4
    assert 30 < a[0].count(0) < 70, "about half of the first retries wait 0 s"
    bundle = jitter_figure(a)._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in bundle and bundle["text/plain"].startswith("jittered countdowns")


def test_backoff_figure_shows_the_measured_waits_and_the_formula():
    from celerylab.lessons.l05_retries import backoff_figure

    fig = backoff_figure({"a": [1.0, 2.0, 4.0]})
    data = fig.fig.to_dict()["data"]
    assert list(data[0]["y"]) == [1.0, 2.0, 4.0]
    assert list(data[1]["y"]) == [1, 2, 4]
    assert fig.text == "measured waits (s): a: [1.0, 2.0, 4.0]"
