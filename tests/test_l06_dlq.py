"""celerylab.dlq: an application-level dead-letter queue on Redis, and its threshold alert.

The DLQ tests run real tasks on one in-kernel worker (shared by the module to keep them quick):
what lands in the list is what Celery's task_failure signal reports, nothing simulated.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

import celerylab
from celerylab.dlq import DeadLetter, DeadLetterQueue, ThresholdAlert
from celerylab.store import redis_client

FIXED: set = set()          # order ids whose "bug" is fixed: process() succeeds for them
RUNS: list = []             # (order, retries, dlq_replays header) of every run
TASKS: dict = {}            # tasks the tests reach by name


@pytest.fixture(scope="module")
def world():
    """One embedded broker, an app with a poison-message task, a DLQ and a worker."""
    import os

    saved = os.environ.pop("CELERYLAB_BROKER_URL", None)
    broker = celerylab.current_broker()
    if broker is not None:
        broker.stop()
    celerylab.start_broker()
    app = celerylab.create_app("test_dlq")

    @app.task(name="t06.process", bind=True, autoretry_for=(ValueError,), max_retries=2, default_retry_delay=0.05)
    def process(self, order, note=None):
        RUNS.append((order, self.request.retries, self.request.get("dlq_replays")))
        if order >= 13 and order not in FIXED:
            raise ValueError(f"order {order} is corrupt")
        return order

    @app.task(name="t06.flaky", bind=True, max_retries=3)
    def flaky(self, order):
        if self.request.retries < 2:
            raise self.retry(exc=ConnectionError("down"), countdown=0.05)
        return order

    @app.task(name="t06.reject", bind=True, acks_late=True)
    def reject(self, order):
        from celery.exceptions import Reject

        raise Reject(f"order {order} rejected", requeue=False)

    @app.task(name="t06.other_fails")
    def other_fails():
        raise KeyError("not watched")

    other_app = celerylab.create_app("test_dlq_other")

    @other_app.task(name="t06.other_app_fails")
    def other_app_fails():
        raise RuntimeError("another app")

    app.set_current()
    # One in-kernel worker (quicker); the other app's failing task runs eagerly: it fires the same signal.
    worker = celerylab.start_worker(app, concurrency=4, queues=["celery", "orders"])
    TASKS["reject"] = reject
    yield app, other_app, process, flaky, other_fails, other_app_fails
    worker.stop()
    celerylab.cleanup()
    if saved is not None:
        os.environ["CELERYLAB_BROKER_URL"] = saved


@pytest.fixture
def dlq(world):
    app = world[0]
    q = DeadLetterQueue(app, key="test:dead_letters").install()
    q.purge()
    FIXED.clear()
    RUNS.clear()
    yield q
    q.uninstall()
    q.purge()


def settle(results, dlq=None, n=None, timeout=10.0):
    for r in results:
        r.get(timeout=timeout, propagate=False)
    if dlq is not None and n is not None:
        deadline = time.monotonic() + 2
        while len(dlq) < n and time.monotonic() < deadline:
            time.sleep(0.01)


def test_a_task_lands_once_after_its_last_retry_and_successes_never(world, dlq):
    _, _, process, flaky, *_ = world
    results = [process.delay(1), process.delay(13, note="rush"), flaky.delay(2)]
    settle(results, dlq, 1)
    time.sleep(0.1)  # nothing more may arrive
    assert [r.state for r in results] == ["SUCCESS", "FAILURE", "SUCCESS"]
    entries = dlq.entries()
    assert len(entries) == 1, "a retried task must land once, after its last retry; successes never"
    e = entries[0]
    assert e.task_id == results[1].id
    assert e.task == "t06.process"
    assert e.args == [13] and e.kwargs == {"note": "rush"}
    assert e.exception == "ValueError" and e.message == "order 13 is corrupt"
    assert e.retries == 2 and e.replays == 0
    assert e.queue == "celery"
    assert e.hostname
    assert abs(e.failed_at - time.time()) < 30
    assert [r for r in RUNS if r[0] == 13] == [(13, 0, None), (13, 1, None), (13, 2, None)]


def test_entries_are_plain_json_in_a_redis_list(world, dlq):
    _, _, process, *_ = world
    res = process.delay(14)
    settle([res], dlq, 1)
    raw = redis_client().lrange("test:dead_letters", 0, -1)
    assert len(raw) == 1
    data = json.loads(raw[0])
    assert data["task_id"] == res.id and data["args"] == [14] and data["exception"] == "ValueError"
    assert dlq.inspect() == ["t06.process(14) failed with ValueError: order 14 is corrupt (retries: 2, replays: 0)"]
    assert dlq.counts() == {"t06.process: ValueError": 1}


def test_only_the_apps_watched_tasks_are_recorded(world):
    app, other_app, process, _, other_fails, other_app_fails = world
    only = DeadLetterQueue(app, key="test:only_process", tasks=["t06.process"]).install()
    everything = DeadLetterQueue(app, key="test:all_of_app").install()
    other = DeadLetterQueue(other_app, key="test:other_app").install()
    try:
        for q in (only, everything, other):
            q.purge()
        other_app_fails.apply()  # eagerly, here: task_failure fires with the other app's task
        settle([process.delay(15), other_fails.delay()])
        deadline = time.monotonic() + 2
        while (len(only) < 1 or len(everything) < 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert [e.task for e in only.entries()] == ["t06.process"]
        assert sorted(e.task for e in everything.entries()) == ["t06.other_fails", "t06.process"]
        assert [e.task for e in other.entries()] == ["t06.other_app_fails"]
    finally:
        for q in (only, everything, other):
            q.uninstall()
            q.purge()


def test_a_rejected_task_is_kept_though_redis_drops_its_message(world, dlq):
    res = TASKS["reject"].delay(60)
    settle([res], dlq, 1)
    [entry] = dlq.entries()
    assert entry.task_id == res.id and entry.exception == "Reject"
    assert entry.message == "order 60 rejected"
    assert redis_client().llen("celery") == 0 and redis_client().hlen("unacked") == 0


def test_uninstalled_records_nothing(world, dlq):
    _, _, process, *_ = world
    dlq.uninstall()
    settle([process.delay(16)])
    time.sleep(0.1)
    assert len(dlq) == 0
    dlq.install()
    dlq.install()  # twice is harmless: still one entry per failure
    settle([process.delay(17)], dlq, 1)
    time.sleep(0.1)
    assert len(dlq) == 1


def test_replay_after_the_fix_runs_them_again_and_empties_the_list(world, dlq):
    _, _, process, *_ = world
    failed = [process.delay(20), process.delay(21)]
    settle(failed, dlq, 2)
    FIXED.update({20, 21})
    again = dlq.replay()
    assert len(dlq) == 0
    assert sorted(r.get(timeout=10) for r in again) == [20, 21]
    assert {r.id for r in again}.isdisjoint({r.id for r in failed}), "replays get new task ids by default"
    assert sorted(r[2] for r in RUNS if r[0] in (20, 21) and r[2]) == [1, 1], "replayed runs carry dlq_replays=1"


def test_a_replay_that_fails_again_comes_back_with_replays_counted(world, dlq):
    _, _, process, *_ = world
    settle([process.delay(22)], dlq, 1)
    [again] = dlq.replay()
    settle([again], dlq, 1)
    [entry] = dlq.entries()
    assert entry.task_id == again.id and entry.replays == 1 and entry.args == [22]


def test_replay_selects_by_id_or_predicate_goes_to_its_queue_and_can_keep_the_id(world, dlq):
    _, _, process, *_ = world
    a, b, c = process.delay(30), process.apply_async((31,), queue="orders"), process.delay(32)
    settle([a, b, c], dlq, 3)
    FIXED.update({30, 31, 32})
    assert {e.queue for e in dlq.entries()} == {"celery", "orders"}
    [ra] = dlq.replay(task_id=a.id, same_id=True)
    assert ra.id == a.id
    assert ra.get(timeout=10) == 30
    [rb] = dlq.replay(where=lambda e: e.queue == "orders")
    assert rb.get(timeout=10) == 31
    assert [e.task_id for e in dlq.entries()] == [c.id]
    assert dlq.replay(task_id="no-such-id") == []
    assert dlq.discard(task_id=c.id) == 1
    assert len(dlq) == 0


def test_replay_to_another_queue(world, dlq):
    _, _, process, *_ = world
    settle([process.delay(33)], dlq, 1)
    FIXED.add(33)
    published = []

    from celery.signals import before_task_publish

    def seen(sender=None, routing_key=None, **_):
        published.append(routing_key)

    before_task_publish.connect(seen, weak=False, dispatch_uid="test-dlq-seen")
    try:
        [r] = dlq.replay(queue="orders")
        assert r.get(timeout=10) == 33
    finally:
        before_task_publish.disconnect(seen, dispatch_uid="test-dlq-seen")
    assert published[0] == "orders"


def test_concurrent_replays_send_each_entry_once(world, dlq):
    _, _, process, *_ = world
    settle([process.delay(n) for n in (40, 41, 42, 43)], dlq, 4)
    FIXED.update({40, 41, 42, 43})
    out: list = []
    threads = [threading.Thread(target=lambda: out.extend(dlq.replay())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.get(timeout=10) for r in out) == [40, 41, 42, 43]


def test_purge_returns_how_many_and_empties(world, dlq):
    for n in range(3):
        dlq.push(DeadLetter(task_id=f"id-{n}", task="t06.process", args=[n]))
    assert dlq.purge() == 3
    assert len(dlq) == 0 and dlq.entries() == []
    assert dlq.purge() == 0


def test_max_length_keeps_the_newest(world):
    app = world[0]
    q = DeadLetterQueue(app, key="test:capped", max_length=2)
    q.purge()
    for n in range(4):
        q.push(DeadLetter(task_id=f"id-{n}", task="t", args=[n]))
    assert [e.args for e in q.entries()] == [[2], [3]]
    q.purge()


def test_arguments_json_cannot_carry_are_kept_as_text(world):
    app = world[0]
    q = DeadLetterQueue(app, key="test:odd")
    q.purge()

    class FakeTask:
        name = "t.odd"
        request = None

    FakeTask.app = app
    entry = q.record(FakeTask(), "id-odd", ValueError("bad\n  input"), args=(object,), kwargs={"when": (1, 2)})
    assert entry.kwargs == {"when": [1, 2]}
    assert entry.message == "bad input"
    [stored] = q.entries()
    assert isinstance(stored.args, str)
    q.purge()


# ---------------------------------------------------------------------------------------------
# ThresholdAlert: fake clock and value, so every transition is exact
# ---------------------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def make_alert(for_seconds=1.0, threshold=3, notify=None):
    value = {"n": 0}
    clock = Clock()
    alert = ThresholdAlert("dlq", lambda: value["n"], threshold, for_seconds=for_seconds, notify=notify, clock=clock)
    return alert, value, clock


def test_alert_goes_pending_then_firing_after_its_for_duration_then_resolves():
    notes = []
    alert, value, clock = make_alert(notify=notes.append)
    assert alert.check() == "inactive"
    value["n"] = 3
    assert alert.check() == "pending"
    clock.t = 0.5
    assert alert.check() == "pending"
    clock.t = 1.0
    assert alert.check() == "firing" and alert.firing
    value["n"] = 7
    clock.t = 5
    assert alert.check() == "firing"
    value["n"] = 2
    assert alert.check() == "inactive"
    assert alert.history() == ["pending", "firing", "resolved"]
    assert [(n.state, n.value) for n in notes] == [("pending", 3), ("firing", 3), ("resolved", 2)]
    assert notes[-1].line() == "dlq: resolved"


def test_a_blip_shorter_than_for_never_fires_and_is_not_resolved():
    alert, value, clock = make_alert(for_seconds=1.0)
    value["n"] = 5
    alert.check()
    clock.t = 0.4
    value["n"] = 0
    assert alert.check() == "inactive"
    assert alert.history() == ["pending"]
    value["n"] = 5
    clock.t = 10
    alert.check()
    clock.t = 10.9
    assert alert.check() == "pending", "the for-duration restarts after a dip"


def test_for_zero_fires_at_once_and_a_broken_notifier_does_not_stop_it():
    def broken(_):
        raise RuntimeError("chat is down")

    alert, value, _ = make_alert(for_seconds=0, notify=broken)
    value["n"] = 3
    assert alert.check() == "firing"
    assert alert.history() == ["pending", "firing"]
    assert "chat is down" in alert.error


def test_alert_thread_fires_and_resolves_on_a_live_dlq(world, dlq):
    _, _, process, *_ = world
    alert = dlq.alert(threshold=2, for_seconds=0.2).start(interval=0.02)
    try:
        settle([process.delay(50), process.delay(51)], dlq, 2)
        assert alert.wait_for("firing", 3)
        assert alert.history() == ["pending", "firing"]
        dlq.purge()
        assert alert.wait_for("resolved", 3)
        assert alert.history() == ["pending", "firing", "resolved"]
    finally:
        alert.stop()
    assert not any("alert" in name for name in celerylab.where()["running"])


def test_in_process_fallback_store_is_shared_when_no_redis(monkeypatch):
    from celerylab import store

    monkeypatch.setattr(store, "redis_url", lambda url=None: None)

    class AmqpApp:
        class conf:
            broker_url = "amqp://guest@localhost//"
            result_backend = "rpc://"

    a = store.redis_client(app=AmqpApp())
    b = store.redis_client(app=AmqpApp())
    a.set("k", "v")
    assert b.get("k") == b"v"
    a.delete("k")
