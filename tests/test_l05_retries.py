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


def test_a_manual_retry_reruns_the_same_id_after_its_countdown(lesson):
    l05, view = lesson
    res = l05.flaky_api.delay(fail_times=2)
    assert res.get(timeout=10) == "answered on attempt 3"
    assert l05.runs(view, res) == 3
    gaps = l05.attempt_gaps(view, res, ndigits=3)
    assert all(0.19 <= g < 0.35 for g in gaps), gaps


def test_max_retries_3_means_four_runs_and_what_is_raised(lesson):
    l05, view = lesson
    with_exc, without = l05.always_down.delay(pass_exc=True), l05.always_down.delay(pass_exc=False)
    assert isinstance(with_exc.get(timeout=10, propagate=False), ConnectionError)
    assert isinstance(without.get(timeout=10, propagate=False), MaxRetriesExceededError)
    assert l05.runs(view, with_exc) == 4 and l05.runs(view, without) == 4


def test_without_a_countdown_the_retry_waits_180_seconds(lesson):
    l05, _ = lesson
    res = l05.no_countdown.delay()
    l05.publish_log.wait_for_retries(res.id, 1)
    [wait] = l05.publish_log.planned_waits(res.id, 3)
    assert 179 < wait <= 180
    assert l05.wait_for_state(res, "RETRY") == "RETRY"
    res.revoke()


def test_retry_backoff_below_one_second_still_waits_a_second(lesson):
    l05, view = lesson
    res = l05.fetch_rates_fast.delay("USD")
    assert res.get(timeout=10) == "USD rates (attempt 2)"
    [gap] = l05.attempt_gaps(view, res, ndigits=3)
    assert 0.99 <= gap < 1.2


def test_the_seed_formula_keeps_a_herd_together_and_jitter_spreads_it(lesson):
    l05, view = lesson
    herd = [l05.seed_backoff.delay(c, scale=0.1) for c in range(4)]
    spread = [l05.jitter_backoff.delay(c, scale=0.1) for c in range(4)]
    for res in herd + spread:
        res.get(timeout=10, propagate=False)
    herd_back, jitter_back = l05.since_first_run(view, herd), l05.since_first_run(view, spread)
    assert len(herd_back) == 4  # four runs each
    for n in (1, 2, 3):
        assert max(herd_back[n]) - min(herd_back[n]) < 0.03, (n, herd_back[n])
        assert abs(herd_back[n][0] - 0.1 * (2 ** n - 1)) < 0.05, (n, herd_back[n])
        # a jittered countdown shorter than the trip through the broker starts late by that trip
        plan = l05.planned_since_first_run(range(4), n, 0.1)
        assert all(-0.01 < got - want < 0.1 for got, want in zip(jitter_back[n], plan)), (n, jitter_back[n], plan)


def test_a_task_that_runs_twice_charges_once_by_task_id(lesson):
    l05, _ = lesson
    l05.reset_ledger()
    l05.charge_naive.delay(1, 9.99).get(timeout=10)
    assert l05.ledger() == ["order 1: 9.99 EUR"] * 2
    l05.reset_ledger()
    l05.charge_once.delay(2, 9.99).get(timeout=10)
    twice = [l05.charge_once.apply_async((3, 5.0), task_id="test-l05-payment-3") for _ in range(2)]
    for res in twice:
        res.get(timeout=10)
    time.sleep(0.2)
    assert l05.ledger() == ["order 2: 9.99 EUR", "order 3: 5.00 EUR"]


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
