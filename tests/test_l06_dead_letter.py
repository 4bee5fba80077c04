"""Lesson 06's experiment and tasks: what the notebook claims about Redis, asserted on real workers."""
from __future__ import annotations

import importlib
import os

import pytest

import celerylab

pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")


@pytest.fixture(scope="module")
def l06():
    saved = os.environ.pop("CELERYLAB_BROKER_URL", None)
    broker = celerylab.current_broker()
    if broker is not None:
        broker.stop()
    celerylab.start_broker()
    import celerylab.lessons.l06_dead_letter as module

    if module.app.conf.broker_url != celerylab.current_broker().url:
        module = importlib.reload(module)  # imported earlier on another broker: its apps on this one
    yield module
    celerylab.cleanup()
    if saved is not None:
        os.environ["CELERYLAB_BROKER_URL"] = saved


def test_on_redis_the_dead_letter_exchange_is_bound_but_never_used(l06):
    exp = l06.experiment_app("redis")
    assert l06.route_works(exp) == 1, "a message published to the exchange reaches the dead-letter queue"
    rows = l06.dead_letter_experiment(exp)
    assert list(rows) == [label for _, label in l06.CASES]
    for label, row in rows.items():
        assert row == {"state": "FAILURE", "work": 0, "dead": 0, "unacked": 0}, label


def test_poison_and_exhausted_retries_land_once_then_replay_after_the_fix(l06):
    l06.reset()
    dlq = l06.dlq
    dlq.purge()
    with celerylab.run_worker(l06.app):
        l06.warehouse_down("B-2")
        results = [l06.process_order.delay(o) for o in (
            {"id": 1, "sku": "A-1", "qty": 2}, {"id": 2, "sku": "A-1", "qty": "three"}, {"id": 4, "sku": "B-2", "qty": 5})]
        assert [r.get(timeout=10, propagate=False) and r.state for r in results] == ["SUCCESS", "FAILURE", "FAILURE"]
        l06.wait_for_length(dlq, 2)
        by_order = {e.args[0]["id"]: e for e in dlq.entries()}
        assert (by_order[2].exception, by_order[2].retries) == ("ValueError", 0)
        assert (by_order[4].exception, by_order[4].retries) == ("ConnectionError", 2)
        l06.deploy_fix()
        l06.warehouse_back()
        assert sorted(r.get(timeout=10) for r in dlq.replay()) == ["order 2: 3 x A-1 reserved",
                                                                   "order 4: 5 x B-2 reserved"]
        assert len(dlq) == 0
        rejected = l06.reject_order.delay({"id": 7, "sku": "A-1", "qty": -1})
        rejected.get(timeout=10, propagate=False)
        l06.wait_for_length(dlq, 1)
        assert dlq.entries()[0].exception == "Reject"
        dlq.purge()
    l06.reset()


def test_wait_for_length_gives_up(l06):
    with pytest.raises(TimeoutError, match="holds 0 entries"):
        l06.wait_for_length(l06.dlq, 1, timeout=0.1)


def test_rabbitmq_dead_letters_only_rejected_messages(rabbitmq_url):
    import subprocess
    import sys

    code = ("from celerylab.lessons import l06_dead_letter as l06; "
            "assert l06.rabbitmq_dead_lettering() == l06.RABBITMQ_EXPECTED; print('ok')")
    env = dict(os.environ, CELERYLAB_BROKER_URL=rabbitmq_url)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]
