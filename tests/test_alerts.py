"""Alert rules: PromQL-like windows on scraped history; each seed rule fires and resolves."""
from __future__ import annotations

import threading
import time

import pytest

import celerylab
from celerylab.alerts import (AlertRuleError, Evaluator, History, Rule, backlog, failure_rate, seed_rules,
                              slow_tasks, worker_offline)
from celerylab.metrics import Snapshot, start_exporter

T0 = 1_000_000.0


def lab(**labels) -> tuple:
    return tuple(sorted(labels.items()))


def snap(t: float, **series) -> Snapshot:
    """``snap(1.0, failed=2, succeeded=5, queue=30, up={"a": 1}, slow=(count, le_0_5))``"""
    s = {}
    base = {"name": "t", "hostname": "h", "queue_name": "celery"}
    if "succeeded" in series:
        s[("celery_task_succeeded_total", lab(**base))] = float(series["succeeded"])
    if "failed" in series:
        s[("celery_task_failed_total", lab(exception="E", **base))] = float(series["failed"])
    if "queue" in series:
        s[("celery_queue_length", lab(queue_name="celery"))] = float(series["queue"])
    for host, up in series.get("up", {}).items():
        s[("celery_worker_up", lab(hostname=host))] = float(up)
    if "slow" in series:
        count, fast = series["slow"]
        s[("celery_task_runtime_count", lab(**base))] = float(count)
        for le in ("0.25", "0.5", "1.0", "+Inf"):
            s[("celery_task_runtime_bucket", lab(le=le, **base))] = float(fast if le != "+Inf" else count)
    return Snapshot(T0 + t, s)


def run(rule: Rule, snaps) -> list[str]:
    ev = Evaluator(lambda: None, [rule])
    for s in snaps:
        ev.step(s)
    return ev.transitions(rule.name)


def test_increase_counts_new_series_from_zero_and_survives_resets():
    h = History()
    h.add(snap(0))
    h.add(snap(1, failed=2))                    # series born after the window started: from 0
    assert h.increase("celery_task_failed_total", 5) == 2
    h.add(snap(2, failed=5))
    assert h.increase("celery_task_failed_total", 0.5) == 3      # 5 - 2 (value at t=1)
    h.add(snap(3, failed=1))                    # exporter restarted: counter reset
    assert h.increase("celery_task_failed_total", 0.5) == 1
    assert h.latest("celery_queue_length") is None


def test_failure_rate_fires_and_resolves():
    rule = failure_rate(window=2, above=0.10, min_tasks=5)
    snaps = [snap(0, succeeded=0, failed=0), snap(1, succeeded=5, failed=5), snap(2, succeeded=5, failed=5),
             snap(3.5, succeeded=5, failed=5), snap(4, succeeded=5, failed=5)]
    assert run(rule, snaps) == ["inactive", "firing", "inactive"]


def test_failure_rate_floor_and_labels():
    quiet = [snap(0, succeeded=0, failed=0), snap(1, succeeded=0, failed=1)]
    assert run(failure_rate(window=2, above=0.10, min_tasks=5), quiet) == ["inactive"]
    other = failure_rate(window=2, above=0.10, labels={"name": "someone-else"})
    assert run(other, [snap(0, succeeded=0, failed=0), snap(1, succeeded=0, failed=9)]) == ["inactive"]
    assert 'name="someone-else"' in other.promql


def test_backlog_waits_for_its_duration_then_resolves():
    rule = backlog(above=20, for_=1)
    snaps = [snap(0, queue=30), snap(0.5, queue=30), snap(1.0, queue=30), snap(1.5, queue=0)]
    assert run(rule, snaps) == ["inactive", "pending", "firing", "inactive"]
    blip = [snap(0, queue=30), snap(0.5, queue=0)]                     # a burst that drains: never fires
    assert run(backlog(above=20, for_=1), blip) == ["inactive", "pending", "inactive"]


def test_worker_offline_fires_and_resolves():
    snaps = [snap(0, up={"a": 1}), snap(1, up={"a": 0}), snap(2, up={"a": 1})]
    assert run(worker_offline(), snaps) == ["inactive", "firing", "inactive"]
    assert run(worker_offline(), [snap(0)]) == ["inactive"]           # no workers known: no data


def test_slow_tasks_fires_and_resolves():
    rule = slow_tasks(threshold=0.5, window=2)
    snaps = [snap(0, slow=(0, 0)), snap(1, slow=(3, 2)), snap(2, slow=(3, 2)), snap(3.5, slow=(3, 2))]
    assert run(rule, snaps) == ["inactive", "firing", "inactive"]


def test_slow_tasks_threshold_must_be_a_bucket():
    rule = slow_tasks(threshold=0.3, window=2)
    ev = Evaluator(lambda: None, [rule])
    with pytest.raises(AlertRuleError) as err:
        ev.step(snap(0, slow=(1, 1)))
    assert "0.25" in str(err.value) and "\n" not in str(err.value)


def test_seed_rules_scale_and_bad_names():
    rules = seed_rules(scale=1 / 60)
    assert [r.name for r in rules] == ["HighFailureRate", "QueueBacklog", "WorkerOffline", "SlowTasks"]
    assert "[5s]" in rules[0].promql and rules[1].above == 1000
    with pytest.raises(AlertRuleError):
        Evaluator(lambda: None, [worker_offline(), worker_offline()])
    ev = Evaluator(lambda: None, rules)
    with pytest.raises(AlertRuleError):
        ev.wait_for("NoSuchRule", "firing", timeout=0.1)
    with pytest.raises(AlertRuleError):
        ev.wait_for("WorkerOffline", "burning", timeout=0.1)


def test_notify_gets_every_transition():
    got = []
    ev = Evaluator(lambda: None, [backlog(above=20, for_=0)], notify=got.append)
    for s in (snap(0, queue=30), snap(1, queue=0)):
        ev.step(s)
    assert [t.line() for t in got] == ["FIRING   QueueBacklog", "resolved QueueBacklog"]


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_alerts")

    @app.task(name="talerts.ok", shared=False)
    def ok():
        return 1

    @app.task(name="talerts.fail", shared=False)
    def fail():
        raise ValueError("no")

    @app.task(name="talerts.slow", shared=False)
    def slow(seconds):
        time.sleep(seconds)

    yield app
    app.close()


@pytest.mark.slow
def test_live_rules_fire_and_resolve_on_a_real_exporter(app):
    """All four rules against a live exporter scraped over HTTP, with one in-kernel worker."""
    exporter = start_exporter(app, queues=["backlog"], worker_timeout=300)
    rules = [failure_rate(window=1.5, above=0.10, min_tasks=3), backlog(above=5, for_=0.5),
             worker_offline(), slow_tasks(threshold=0.25, window=1.5)]
    alerts = Evaluator(exporter.url, rules, interval=0.1).start()
    try:
        for _ in range(6):
            app.tasks["talerts.ok"].apply_async(queue="backlog")
        with celerylab.run_worker(app, hostname="w@alerts-test"):
            exporter.wait_until("celery_worker_up", 1)
            for _ in range(3):
                app.tasks["talerts.fail"].delay()
            app.tasks["talerts.ok"].delay()
            app.tasks["talerts.slow"].delay(0.4)
            for name in ("HighFailureRate", "QueueBacklog", "SlowTasks"):
                alerts.wait_fired(name)
        alerts.wait_fired("WorkerOffline")                 # the worker stopped: worker-offline event
        with celerylab.run_worker(app, hostname="w@alerts-test", queues=["celery", "backlog"]):
            for rule in rules:
                alerts.wait_resolved(rule.name, timeout=10)
            # checked while the worker still runs: stopping it fires WorkerOffline again
            for rule in rules:
                assert alerts.transitions(rule.name)[-1] == "inactive"
    finally:
        alerts.stop()
        exporter.stop()


def test_cleanup_stops_the_evaluator(app):
    exporter = start_exporter(app)
    ev = Evaluator(exporter.url, [worker_offline()], interval=0.05).start()
    time.sleep(0.2)
    celerylab.cleanup()
    assert not [t for t in threading.enumerate() if t.name == "celerylab-alerts"]
    assert ev._thread is None
