"""celerylab.queues (queue length per Redis priority band) and celerylab.side_by_side (lesson 04)."""
from __future__ import annotations

import threading
import time

import pytest

import celerylab
from celerylab import queues, side_by_side

RUNS: list = []


def make_app(name, **conf):
    app = celerylab.create_app(name, **conf)

    @app.task(name=f"{name}.job", shared=False)
    def job(label):
        RUNS.append((label, threading.get_ident(), time.monotonic()))
        return label

    app.control.purge()
    return app


@pytest.fixture
def app(embedded):
    RUNS.clear()
    app = make_app("test_queues")
    yield app
    app.close()


def test_band_of_follows_kombus_rule(app):
    assert [queues.band_of(app, p) for p in (None, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -1)] == \
        [0, 0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9, 0]
    full = make_app("test_queues_full", broker_transport_options={"priority_steps": list(range(10))})
    assert [queues.band_of(full, p) for p in range(10)] == list(range(10))
    assert queues.priority_steps(app) == [0, 3, 6, 9]


def test_band_lengths_count_every_band_list_and_they_are_redis_lists(app):
    job = app.tasks["test_queues.job"]
    for p in [None, 0, 2, 3, 5, 9, 9]:
        job.apply_async((str(p),), priority=p)
    assert queues.band_lengths(app, "celery") == {0: 3, 3: 2, 6: 0, 9: 2}
    assert queues.queue_length(app, "celery") == 7
    assert queues.key_types(app, "celery") == {"celery": "list", "celery|3": "list", "celery|9": "list"}
    # kombu itself agrees on the total
    with app.connection_for_write() as conn:
        assert conn.default_channel.queue_declare("celery", passive=True).message_count == 7
    assert queues.queue_length(app, "nothing-here") == 0


def test_unacked_counts_messages_a_worker_holds(app):
    job = app.tasks["test_queues.job"]
    job.apply_async(("later",), countdown=1.5)
    with celerylab.run_worker(app, queues=["celery"]):
        assert queues.wait_until(lambda: queues.unacked(app) == 1, timeout=3)
        assert queues.queue_length(app, "celery") == 0
        assert queues.wait_until(lambda: len(RUNS) == 1, timeout=5)
        assert queues.wait_until(lambda: queues.unacked(app) == 0, timeout=3)


def test_wait_settled_returns_once_the_length_stops_changing(app):
    job = app.tasks["test_queues.job"]
    for i in range(5):
        job.delay(str(i))
    start = time.monotonic()
    assert queues.wait_settled(app, "celery", quiet=0.2, timeout=3) == 5
    assert 0.2 <= time.monotonic() - start < 1.5


def test_non_redis_brokers_get_a_clear_error(app):
    other = celerylab.create_app("test_queues_amqp", broker_url="amqp://guest:guest@127.0.0.1:1//")
    with pytest.raises(ValueError, match="'amqp'"):
        queues.band_lengths(other, "celery")
    app.set_current()


def test_two_in_kernel_workers_side_by_side_both_run_countdown_tasks_and_stop_together(app):
    """With one shared event loop the second worker never ran its ETA tasks (celery/kombu 5.7)."""
    job = app.tasks["test_queues.job"]
    w1 = celerylab.start_worker(app, queues=["q1"], hostname="w1@test")
    w2 = celerylab.start_worker(app, queues=["q2"], hostname="w2@test")
    try:
        assert w1.controller.hub is not w2.controller.hub
        r1 = job.apply_async(("q1",), queue="q1", countdown=0.3)
        r2 = job.apply_async(("q2",), queue="q2", countdown=0.3)
        assert {r1.get(timeout=5), r2.get(timeout=5)} == {"q1", "q2"}
    finally:
        start = time.monotonic()
        side_by_side.stop_all(w1, w2)
        stopped_in = time.monotonic() - start
    assert stopped_in < 3  # together, not one after the other
    assert not [n for n in celerylab.where()["running"] if "in-kernel worker" in n]


def test_a_worker_with_one_slot_and_prefetch_1_runs_bands_in_order(app):
    job = app.tasks["test_queues.job"]
    for p in [9, None, 5, 3, 0, 1, 2, 8, 6, 4, 7]:
        job.apply_async((f"p{p}",), priority=p)
    with celerylab.run_worker(app, queues=["celery"], concurrency=1, prefetch_multiplier=1):
        assert queues.wait_until(lambda: len(RUNS) == 11, timeout=5)
    order = [label for label, _, _ in sorted(RUNS, key=lambda r: r[2])]
    # band 0 (None, 0, 1, 2 in the order sent), then 3 (5, 3, 4), 6 (8, 6, 7), 9
    assert order == ["pNone", "p0", "p1", "p2", "p5", "p3", "p4", "p8", "p6", "p7", "p9"]
