"""celerylab.events: real Celery events from real tasks into the timeline and flow state."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import redis

import celerylab
from celerylab.events import FlowState, Throttle, Watcher, active_watcher, band_for, band_key


def watch_threads():
    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith(("celerylab-events", "celerylab-redraw", "celerylab-queue-depth")))


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_events")

    @app.task(name="ev.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="ev.fail", shared=False)
    def fail(message="boom"):
        raise ValueError(message)

    @app.task(name="ev.flaky", shared=False, bind=True, max_retries=3, default_retry_delay=0.1)
    def flaky(self, times):
        if self.request.retries < times:
            raise self.retry(exc=KeyError(f"try {self.request.retries}"))
        return self.request.retries

    @app.task(name="ev.nap", shared=False)
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    app.t = SimpleNamespace(add=add, fail=fail, flaky=flaky, nap=nap)
    yield app
    celerylab.stop_watching()
    app.close()


def types_of(watcher, uuid):
    return [r.type for r in watcher.timeline if r.uuid == uuid]


def test_events_of_real_tasks_reach_the_timeline(app):
    t = app.t
    with Watcher(app) as w:
        with celerylab.run_worker(app, hostname="evw@test"):
            ok = t.add.apply_async((2, 3), priority=5)
            assert ok.get(timeout=10) == 5
            bad = t.fail.delay("nope")
            with pytest.raises(ValueError):
                bad.get(timeout=10)
            w.wait_for(lambda s: s.states["succeeded"] == 1 and s.states["failed"] == 1)

    # (task-sent and task-received come from two connections: either may arrive first)
    assert sorted(types_of(w, ok.id)) == ["task-received", "task-sent", "task-started", "task-succeeded"]
    sent = next(r for r in w.timeline if r.uuid == ok.id and r.type == "task-sent")
    assert (sent.name, sent.queue, sent.routing_key, sent.priority, sent.retries) == ("ev.add", "celery", "celery", 5, 0)
    done = next(r for r in w.timeline if r.uuid == ok.id and r.type == "task-succeeded")
    assert done.hostname == "evw@test" and done.runtime is not None and 0 <= done.runtime < 5
    assert done.state == "succeeded" and done.time <= done.received + 1
    failed = next(r for r in w.timeline if r.uuid == bad.id and r.type == "task-failed")
    assert "nope" in failed.exception and failed.name == "ev.fail"
    kinds = {r.type for r in w.timeline}
    assert {"worker-online", "worker-offline"} <= kinds
    s = w.summary()
    assert s.tasks == 2 and s.in_flight == 0
    assert s.bands == {"celery": {0: 1, 3: 1}}
    assert s.workers["evw@test"].online is False
    assert s.workers["evw@test"].events["started"] == 2


def test_retried_and_revoked_events(app):
    t = app.t
    with Watcher(app) as w:
        with celerylab.run_worker(app, hostname="evr@test"):
            retried = t.flaky.delay(2)
            assert retried.get(timeout=15) == 2
            later = t.add.apply_async((1, 1), countdown=1.5)
            w.wait_for(lambda s: any(r.uuid == later.id and r.type == "task-received" for r in w.timeline))
            later.revoke()
            w.wait_for(lambda s: s.states["revoked"] == 1, timeout=15)
            w.wait_for(lambda s: s.states["succeeded"] == 1)

    flaky_types = types_of(w, retried.id)
    assert flaky_types.count("task-retried") == 2
    assert flaky_types.count("task-started") == 3
    assert flaky_types.count("task-sent") == 3          # the first send and two re-publishes
    assert w.state.tasks[retried.id].state == "succeeded"
    assert w.state.tasks[retried.id].retries == 2
    assert "task-revoked" in types_of(w, later.id) and "task-started" not in types_of(w, later.id)
    runs = [r for r in w.state.runs if r.uuid == retried.id]
    assert [r.outcome for r in runs] == ["retried", "retried", "succeeded"]
    assert [m.kind for m in w.state.marks if m.uuid in (retried.id, later.id)] == ["retried", "retried", "revoked"]
    s = w.summary()
    assert s.events["task-retried"] == 2 and s.states["revoked"] == 1 and s.in_flight == 0


def test_start_stop_restart_leaves_no_thread_or_connection(app, embedded):
    from celery.signals import before_task_publish

    client = redis.Redis.from_url(embedded.url)
    baseline_threads = watch_threads()
    baseline_receivers = len(before_task_publish.receivers)
    baseline_clients = len(client.client_list())
    for _ in range(3):
        w = Watcher(app).start()
        assert len(watch_threads()) == 3 and active_watcher(app) is w
        w.stop()
        assert watch_threads() == baseline_threads
        assert active_watcher(app) is None
    deadline = time.monotonic() + 5
    while len(client.client_list()) > baseline_clients and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(client.client_list()) == baseline_clients
    # the same watcher starts again and still records
    w.start()
    with celerylab.run_worker(app):
        app.t.add.delay(1, 2).get(timeout=10)
        w.wait_for(lambda s: s.states["succeeded"] >= 1)
    w.stop()
    assert watch_threads() == baseline_threads
    assert len(before_task_publish.receivers) == baseline_receivers
    client.close()


def test_watching_again_replaces_the_previous_watcher(app):
    first = celerylab.watch(app, show=False)
    second = celerylab.watch(app, show=False)      # a re-run cell
    try:
        assert not first.running and second.running
        assert active_watcher(app) is second
        assert len([n for n in watch_threads() if n.startswith("celerylab-events")]) == 1
    finally:
        second.stop(settle=0)
    assert watch_threads() == []


def test_cleanup_stops_a_watcher(app):
    w = Watcher(app).start()
    stopped = celerylab.cleanup()
    assert any("event watcher" in name for name in stopped)
    assert not w.running and watch_threads() == []


def test_flow_counts_equal_what_was_sent(app):
    t = app.t
    plan = {("celery", 0): 7, ("celery", 3): 4, ("celery", 9): 2, ("reports", 0): 5, ("reports", 6): 3}
    priorities = {0: None, 3: 4, 6: 7, 9: 9}
    results = []
    with Watcher(app, sample_queues=False) as w:
        with celerylab.run_worker(app, queues=["celery", "reports"], hostname="flow@test"):
            for (queue, band), n in plan.items():
                for i in range(n):
                    results.append(t.add.apply_async((i, i), queue=queue, priority=priorities[band]))
            failing = [t.fail.apply_async(("x",), queue="reports") for _ in range(2)]
            for r in results:
                r.get(timeout=15)
            for r in failing:
                with pytest.raises(ValueError):
                    r.get(timeout=15)
            s = w.wait_for(lambda s: s.in_flight == 0 and s.tasks == 23)

    assert s.states["succeeded"] == 21 and s.states["failed"] == 2
    assert s.bands == {"celery": {0: 7, 3: 4, 9: 2}, "reports": {0: 7, 6: 3}}
    assert s.queues == {"celery": {"succeeded": 13}, "reports": {"succeeded": 8, "failed": 2}}
    assert s.events["task-sent"] == 23 and s.events["task-received"] == 23
    assert s.workers["flow@test"].events["succeeded"] == 21
    assert sum(s.flows.values()) == 23
    assert s.flows[("reports", 0, "flow@test", "failed")] == 2
    assert s.line() == ("23 tasks (succeeded: 21, failed: 2) | in flight: 0 | "
                        "queues: celery=13, reports=10 | workers: flow ran 23")


def test_throttle_coalesces_a_burst():
    calls = []
    th = Throttle(lambda: (calls.append(time.monotonic()), time.sleep(0.002)), max_per_second=10)
    try:
        start = time.monotonic()
        for _ in range(500):
            th.poke()
            time.sleep(0.002)          # a 1-second burst of 500 pokes
        time.sleep(0.3)
    finally:
        th.stop()
    elapsed = time.monotonic() - start
    assert 5 <= len(calls) <= elapsed * 10 + 1
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert min(gaps) >= 0.099
    assert calls[-1] > start + 0.9     # the end of the burst was drawn too


def test_a_burst_of_real_events_gives_at_most_ten_redraws_a_second(app):
    t = app.t
    redraws = []
    with Watcher(app, sample_queues=False) as w:
        w.subscribe(lambda: redraws.append((time.monotonic(), w.summary().states["succeeded"])))
        with celerylab.run_worker(app, hostname="burst@test"):
            with app.producer_or_acquire() as producer:
                results = [t.add.apply_async((i, 1), producer=producer) for i in range(125)]  # 500 task events
            for r in results:
                r.get(timeout=20)
            w.wait_for(lambda s: s.states["succeeded"] == 125)
            time.sleep(0.3)
    events = sum(1 for r in w.timeline if r.type.startswith("task-"))
    assert events == 500
    times = [t for t, _ in redraws]
    assert len(times) < events / 10
    for i, start in enumerate(times):   # no 1-second window holds more than 10 redraws (+1 for the edge)
        assert sum(1 for x in times[i:] if x < start + 1.0) <= 11
    assert redraws[-1][1] == 125       # the last redraw saw the final state


def test_band_helpers_follow_kombu():
    from kombu.transport.redis import Channel

    steps = [0, 3, 6, 9]
    assert [band_for(p, steps) for p in (None, 0, 2, 3, 5, 6, 8, 9, 12)] == [0, 0, 0, 3, 3, 6, 6, 9, 9]
    assert band_key("celery", 0) == "celery" and band_key("celery", 3) == "celery\x06\x163"

    class Fake:
        priority_steps = steps
        sep = "\x06\x16"
        priority = Channel.priority
        _q_for_pri = Channel._q_for_pri
        global_keyprefix = ""
    fake = Fake()
    for p in range(10):
        assert fake._q_for_pri("q", fake.priority(p)) == band_key("q", band_for(p, steps))


def test_state_handles_out_of_order_events():
    fs = FlowState()
    base = 1000.0
    u = "u1"
    fs.apply({"type": "task-received", "uuid": u, "name": "n", "retries": 0, "hostname": "w@h", "timestamp": base + 0.1})
    fs.apply({"type": "task-started", "uuid": u, "hostname": "w@h", "timestamp": base + 0.2})
    fs.apply({"type": "task-succeeded", "uuid": u, "hostname": "w@h", "runtime": 0.1, "timestamp": base + 0.3})
    # the client stamps task-sent after publishing: it can be newer than the worker's events
    fs.apply({"type": "task-sent", "uuid": u, "name": "n", "retries": 0, "queue": "q", "routing_key": "q",
              "hostname": "c@h", "timestamp": base + 0.35})
    s = fs.summary()
    assert s.states["succeeded"] == 1 and s.tasks == 1 and s.queues == {"q": {"succeeded": 1}}
    assert fs.runs[0].outcome == "succeeded" and fs.runs[0].slot == 0
    fs.apply({"type": "mystery"})
    assert len(fs.timeline) == 4
    # ... and arrive first, before the (older) worker events
    fs.apply({"type": "task-sent", "uuid": "u2", "name": "n", "retries": 0, "queue": "q", "timestamp": base + 2.5})
    fs.apply({"type": "task-received", "uuid": "u2", "retries": 0, "hostname": "w@h", "timestamp": base + 2.1})
    fs.apply({"type": "task-started", "uuid": "u2", "hostname": "w@h", "timestamp": base + 2.2})
    fs.apply({"type": "task-succeeded", "uuid": "u2", "hostname": "w@h", "timestamp": base + 2.3})
    assert fs.tasks["u2"].state == "succeeded" and fs.summary().states["succeeded"] == 2


def test_runs_survive_a_started_that_overtakes_the_retried_before_it():
    """Seen live: a worker's task-started (retry 1) can arrive before task-retried (run 0)."""
    fs = FlowState()
    ev = lambda t, ts, **kw: fs.apply({"type": t, "uuid": "u", "hostname": "w@h", "timestamp": ts, **kw})  # noqa: E731
    ev("task-received", 1.0, name="n", retries=0)
    ev("task-started", 1.1)
    ev("task-received", 1.3, retries=1)
    ev("task-started", 1.5)                         # run 1 starts ...
    ev("task-retried", 1.2, exception="E()")        # ... before run 0's retry is heard of
    ev("task-succeeded", 1.6, runtime=0.1)
    assert [(r.start, r.end, r.outcome, r.slot) for r in fs.runs] == [(1.1, 1.2, "retried", 0),
                                                                      (1.5, 1.6, "succeeded", 0)]
    assert [m.kind for m in fs.marks] == ["retried"]
    assert fs.summary().states["succeeded"] == 1
