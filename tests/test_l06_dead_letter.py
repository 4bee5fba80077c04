"""Lesson 06's experiment and tasks: what the notebook claims about Redis, asserted on real workers."""
from __future__ import annotations

import importlib
import os
import time

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


def test_on_redis_dead_letter_arguments_are_ignored_and_a_rejected_message_is_dropped(l06):
    """What lesson 06's section 2 shows in its cells, here on a fresh embedded Redis."""
    from celery.exceptions import Reject
    from kombu import Exchange, Queue

    from celerylab import queues

    work = Queue("t06_work", Exchange("t06_work"), routing_key="t06_work",
                 queue_arguments={"x-dead-letter-exchange": "t06.dlx", "x-dead-letter-routing-key": "dead"})
    dead = Queue("t06_dead", Exchange("t06.dlx"), routing_key="dead")
    exp = celerylab.create_app("t06", task_queues=(work, dead), task_default_queue="t06_work",
                               task_default_exchange="t06_work", task_default_routing_key="t06_work")

    @exp.task(name="t06.reject", acks_late=True, shared=False)
    def reject(n):
        raise Reject("corrupt", requeue=False)

    def count(queue):
        with exp.connection_for_write() as conn:
            return queue.bind(conn.default_channel).queue_declare().message_count

    with exp.connection_for_write() as conn:   # the binding works: a direct publish reaches t06_dead
        for q in (work, dead):
            q.bind(conn.default_channel).declare()
        conn.Producer().publish({"probe": True}, exchange=dead.exchange, routing_key="dead", serializer="json")
    assert count(dead) == 1
    with exp.connection_for_write() as conn:
        dead.bind(conn.default_channel).purge()
    with celerylab.run_worker(exp, queues=["t06_work"], concurrency=1):
        reject.delay(1).get(timeout=10, propagate=False)
        time.sleep(0.3)
        assert (count(work), count(dead), queues.unacked(exp)) == (0, 0, 0)
    l06.app.set_current()


def test_unacked_by_routing_key_ignores_a_message_another_experiment_left_held(l06):
    """A worker holding an ETA task of another queue fills the unacked hash; lesson 06 counts only
    the entries routed to its own queue (a CI run read 3 where the lesson stores 2)."""
    from kombu import Exchange, Queue

    from celerylab import queues

    other = Queue("t06_other", Exchange("t06_other"), routing_key="t06_other")
    exp = celerylab.create_app("t06_held", task_queues=(other,), task_default_queue="t06_other",
                               task_default_exchange="t06_other", task_default_routing_key="t06_other")

    @exp.task(name="t06.later", shared=False)
    def later():
        pass

    with celerylab.run_worker(exp, queues=["t06_other"], concurrency=1):
        result = later.apply_async(countdown=30)   # the worker takes it and holds it until its ETA
        assert queues.wait_until(lambda: queues.unacked(exp) >= 1, timeout=5)
        assert queues.unacked(exp, routing_key="t06_other") >= 1
        assert queues.unacked(exp, routing_key="t06_work") == 0
        result.revoke()
    l06.app.set_current()


def test_acks_on_failure_falls_back_to_the_deprecated_name():
    from celery import Celery
    from celery.app.defaults import NAMESPACES

    app = Celery("t06_acks", broker="memory://", set_as_current=False)

    @app.task(acks_late=True, acks_on_failure_or_timeout=False, shared=False)
    def old_name():
        pass

    @app.task(acks_late=True, acks_on_failure=False, shared=False)
    def new_name():
        pass

    @app.task(shared=False)
    def default():
        pass

    assert (old_name.acks_on_failure, old_name.acks_on_timeout) == (False, False)
    assert (new_name.acks_on_failure, new_name.acks_on_timeout) == (False, True)
    assert (default.acks_on_failure, default.acks_on_timeout, default.acks_late) == (True, True, False)
    assert NAMESPACES["task"]["acks_on_failure_or_timeout"].deprecate_by == "6.0"


def test_print_rows_prints_a_table(l06, capsys):
    l06.print_rows({"case a": {"state": "FAILURE", "dead": 0}, "case b": {"state": "FAILURE", "dead": 1}})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["case", "state", "dead"] and lines[2].split()[-1] == "1"


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
