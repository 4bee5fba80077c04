"""Claims the course makes about Celery, kombu and Flower themselves, checked against the installed versions.

Quiz questions (celerylab/quiz/bank.py) name these tests as their evidence when the claim is about the
library's own defaults or code rather than something a lesson shows live. Each test exercises the
installed code (or reads its defaults) and fails if the claim stopped being true.
"""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from unittest.mock import Mock

import pytest
from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery import Celery
from celery.app.defaults import NAMESPACES
from celery.contrib.testing.mocks import TaskMessage
from celery.worker.request import Request


@pytest.fixture
def app():
    app = Celery("claims", broker="memory://", backend="cache+memory://", set_as_current=False)
    yield app
    app.close()


def _request(app, task, **headers):
    """A worker-side Request for one message of ``task`` whose ack/reject calls are recorded."""
    message = TaskMessage(task.name, **headers)
    acks, rejects = [], []
    req = Request(message, app=app, task=task,
                  on_ack=lambda *a: acks.append(True),
                  on_reject=lambda logger, errors, requeue: rejects.append(requeue))
    return req, acks, rejects


def _einfo(exc):
    try:
        raise exc
    except type(exc):
        return ExceptionInfo()


# -- acknowledgement -------------------------------------------------------------------------
def test_acks_late_is_off_by_default(app):
    assert app.conf.task_acks_late is False


def test_early_ack_happens_when_the_pool_accepts_the_task_not_when_the_worker_receives_it(app):
    @app.task(shared=False)
    def job():
        return 1

    req, acks, _ = _request(app, job)
    assert acks == []                      # received (and prefetched): not acknowledged yet
    req.on_accepted(pid=123, time_accepted=time.monotonic())
    assert acks == [True]                  # the pool took it, just before running it

    @app.task(shared=False, acks_late=True)
    def late():
        return 1

    req, acks, _ = _request(app, late)
    req.on_accepted(pid=123, time_accepted=time.monotonic())
    assert acks == []                      # acks_late: still unacknowledged while it runs


def test_acks_on_failure_and_on_timeout_replace_the_deprecated_combined_setting(app):
    task_ns = NAMESPACES["task"]
    old = task_ns["acks_on_failure_or_timeout"]
    assert old.deprecate_by == "6.0" and "task_acks_on_failure" in old.alt and "task_acks_on_timeout" in old.alt
    assert task_ns["acks_on_failure"].default is None and task_ns["acks_on_timeout"].default is None

    @app.task(shared=False, acks_late=True)
    def job():
        return 1

    assert job.acks_on_failure is True and job.acks_on_timeout is True   # None falls back to "ack"


def test_acks_on_failure_false_rejects_a_failed_task_without_requeue(app):
    """What a RabbitMQ dead-letter exchange needs: the failed message rejected, not acked."""
    @app.task(shared=False, acks_late=True, acks_on_failure=False)
    def job():
        return 1

    req, acks, rejects = _request(app, job)
    req.on_failure(_einfo(ValueError("boom")))
    assert acks == [] and rejects == [False]

    @app.task(shared=False, acks_late=True)
    def default():
        return 1

    req, acks, rejects = _request(app, default)
    req.on_failure(_einfo(ValueError("boom")))
    assert acks == [True] and rejects == []


def test_worker_lost_requeues_for_ever_unless_retry_on_worker_lost(app):
    """reject_on_worker_lost requeues however often it happened; retry_on_worker_lost counts it as a retry."""
    assert app.conf.task_retry_on_worker_lost is False

    @app.task(shared=False, acks_late=True, reject_on_worker_lost=True, max_retries=3)
    def poison():
        return 1

    # the 100th time its pool process died: still requeued (nothing counts these)
    req, acks, rejects = _request(app, poison, retries=100)
    req.on_failure(_einfo(WorkerLostError("killed")))
    assert rejects == [True] and acks == []

    @app.task(shared=False, acks_late=True, reject_on_worker_lost=True, retry_on_worker_lost=True, max_retries=3)
    def counted():
        return 1

    sent = []
    counted.signature_from_request = Mock(side_effect=lambda request, **kw: sent.append(kw) or Mock())
    req, acks, rejects = _request(app, counted, retries=1)
    req.on_failure(_einfo(WorkerLostError("killed")))
    assert sent and sent[0]["retries"] == 2            # re-sent as retry number 2
    assert acks == [True] and rejects == []            # the old message is acked, not requeued

    sent.clear()
    req, acks, rejects = _request(app, counted, retries=3)   # max_retries used up
    req.on_failure(_einfo(WorkerLostError("killed")))
    assert sent == [] and rejects == [] and acks == [True]   # not requeued again: failed, the loop ends


# -- publishing --------------------------------------------------------------------------------
def test_task_publish_retry_is_on_by_default_with_its_policy(app):
    assert app.conf.task_publish_retry is True
    assert app.conf.task_publish_retry_policy == {
        "max_retries": 3, "interval_start": 0, "interval_max": 1, "interval_step": 0.2}


def test_task_id_is_kept_by_a_retry_but_new_for_a_second_send(app):
    """Why an idempotency key must come from the business operation, not from the task id."""
    @app.task(shared=False, bind=True)
    def charge(self, order_id):
        return order_id

    first, second = charge.apply_async(("o-1",)), charge.apply_async(("o-1",))
    assert first.id != second.id                       # the same operation sent twice: two ids
    from celery.app.task import Context
    request = Context(id=first.id, args=("o-1",), kwargs={}, retries=0, delivery_info={})
    retry = charge.signature_from_request(request, retries=1)
    assert retry.options["task_id"] == first.id        # a retry of one message keeps its id


# -- time --------------------------------------------------------------------------------------
def test_naive_eta_is_read_as_utc_whatever_the_app_timezone(app):
    app.conf.timezone = "Asia/Shanghai"                # UTC+8, no DST

    @app.task(shared=False)
    def job():
        return 1

    naive = datetime(2030, 1, 1, 12, 0)
    req, _, _ = _request(app, job, eta=naive.isoformat())
    assert req.eta == naive.replace(tzinfo=timezone.utc)                      # 12:00 UTC ...
    assert req.eta != naive.replace(tzinfo=timezone(timedelta(hours=8)))       # ... not 12:00 in Shanghai


# -- serialization -----------------------------------------------------------------------------
def test_kombu_json_keeps_datetimes_but_turns_tuples_into_lists():
    from kombu.serialization import dumps, loads

    when = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    ctype, enc, body = dumps({"when": when, "pair": (1, 2)}, serializer="json")
    back = loads(body, ctype, enc)
    assert back["when"] == when and isinstance(back["when"], datetime)
    assert back["pair"] == [1, 2]
    with pytest.raises(Exception):
        dumps({"s": {1, 2}}, serializer="json")


# -- Redis transport ---------------------------------------------------------------------------
def test_redis_transport_defaults_priority_steps_and_visibility_timeout():
    from kombu.transport import redis

    assert redis.Channel.priority_steps == [0, 3, 6, 9]
    assert redis.Channel.visibility_timeout == 3600


def test_redis_clamps_priority_10_to_9_the_band_taken_last():
    from kombu.transport import redis

    chan = SimpleNamespace(priority_steps=redis.Channel.priority_steps, sep=redis.Channel.sep,
                           max_priority=redis.Channel.max_priority, min_priority=redis.Channel.min_priority,
                           default_priority=redis.Channel.default_priority)
    chan.priority = lambda n: redis.Channel.priority(chan, n)
    pri = redis.Channel._get_message_priority(chan, {"properties": {"priority": 10}})
    assert pri == 9
    assert redis.Channel._q_for_pri(chan, "q", pri) == "q\x06\x169"
    assert redis.Channel._q_for_pri(chan, "q", 0) == "q"
    # consumers ask for the bands in priority_steps order: 0 (the plain list) first, 9 last
    assert chan.priority_steps[0] == 0 and chan.priority_steps[-1] == 9


def test_kombu_redis_transport_uses_lists_and_bands_not_streams():
    import inspect

    from kombu.transport import TRANSPORT_ALIASES, redis

    assert not [name for name in TRANSPORT_ALIASES if "stream" in name.lower()]
    put, get = inspect.getsource(redis.Channel._put), inspect.getsource(redis.Channel._brpop_start)
    assert "lpush" in put and "xadd" not in put.lower()
    assert "brpop" in get.lower() and "xread" not in get.lower()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stock_redis_server_snapshots_with_rdb_but_has_aof_off(tmp_path):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    import redis as redis_py

    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis_py.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis_py.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("save") == {"save": "3600 1 300 100 60 10000"}
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- pools and time limits ---------------------------------------------------------------------
def test_gevent_pool_enforces_the_hard_time_limit_only():
    pytest.importorskip("gevent")
    import gevent

    from celery.concurrency import gevent as gevent_pool

    pool = gevent_pool.TaskPool(limit=1)
    pool.start()
    try:
        for limits, expected_fired, expected_done in (
                ({"soft_timeout": 0.05}, [], [1]),                         # soft alone: ignored, runs to the end
                ({"soft_timeout": 0.02, "timeout": 0.05}, [(False, 0.05)], [])):   # hard: interrupted
            fired, done = [], []
            greenlet = pool.on_apply(lambda: (gevent.sleep(0.3), done.append(1)), args=(), kwargs={},
                                     callback=lambda result: None,
                                     timeout_callback=lambda soft, limit: fired.append((soft, limit)), **limits)
            greenlet.join(timeout=10)
            assert (fired, done) == (expected_fired, expected_done), limits
    finally:
        pool.stop()


def test_threads_pool_ignores_time_limits():
    from celery.concurrency import thread

    pool = thread.TaskPool(limit=1)
    pool.start()
    try:
        fired, done = [], []
        result = pool.on_apply(lambda: (time.sleep(0.3), done.append(1)), args=(), kwargs={},
                               callback=lambda result: None, soft_timeout=0.02, timeout=0.05,
                               timeout_callback=lambda soft, limit: fired.append((soft, limit)))
        result.f.result(timeout=10)
        assert fired == [] and done == [1]             # ran its full 0.3 s, no limit fired
    finally:
        pool.stop()


def test_sigterm_is_a_warm_shutdown_and_sigquit_a_cold_one():
    import os

    from celery.apps import worker as worker_app

    if os.environ.get("REMAP_SIGTERM"):
        pytest.skip("REMAP_SIGTERM is set in this environment")
    term, quit_ = worker_app.install_worker_term_handler, worker_app.install_worker_term_hard_handler
    assert (term.keywords["sig"], term.keywords["how"]) == ("SIGTERM", "Warm")
    assert (quit_.keywords["sig"], quit_.keywords["how"]) == ("SIGQUIT", "Cold")


# -- monitoring --------------------------------------------------------------------------------
def test_task_sent_events_are_off_by_default(app):
    assert app.conf.task_send_sent_event is False
    assert app.conf.worker_send_task_events is False


def test_flower_turns_on_task_events_itself():
    from flower import events
    from flower.options import options

    assert options.enable_events is True               # Flower's default
    assert events.Events.events_enable_interval == 5000  # ms: re-sent every 5 s for workers started later
    calls = []
    capp = SimpleNamespace(control=SimpleNamespace(enable_events=lambda: calls.append("enable_events")))

    class Loop:
        async def run_in_executor(self, executor, fn):
            return fn()

    ev = events.Events(capp, Loop(), max_tasks_in_memory=10)
    asyncio.run(ev.on_enable_events())
    assert calls == ["enable_events"]


def test_flower_serves_prometheus_metrics_itself():
    """No separate exporter needed for Flower's view: it serves /metrics (open even with --basic-auth)."""
    from flower import events, urls
    from flower.views import monitor

    routes = {spec[0]: spec[1] for spec in urls.handlers if isinstance(spec, tuple)}
    assert routes[r"/metrics"] is monitor.Metrics and routes[r"/healthcheck"] is monitor.Healthcheck
    assert not hasattr(monitor.Metrics.get, "__wrapped__")     # not wrapped by tornado's @authenticated
    names = {m._name for m in vars(events.get_prometheus_metrics()).values() if hasattr(m, "_name")}
    # (a Counter keeps its name without _total; it is exposed as flower_events_total)
    assert {"flower_events", "flower_task_runtime_seconds", "flower_worker_online"} <= names


def test_kafka_transport_has_no_fanout_priority_or_ttl(app):
    import ast
    from pathlib import Path

    import kombu.transport
    from kombu.transport import TRANSPORT_ALIASES, virtual

    # (read, not imported: kombu 5.7's module fails to import without the confluent-kafka client)
    assert TRANSPORT_ALIASES["confluentkafka"] == "kombu.transport.confluentkafka:Transport"
    source = (Path(kombu.transport.__file__).parent / "confluentkafka.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    for feature in ("Fanout", "Priority", "TTL"):
        assert f"* Supports {feature}: No" in ast.get_docstring(tree)
    transport = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Transport")
    assert [ast.unparse(b) for b in transport.bases] == ["virtual.Transport"]
    overrides = {t.id for n in transport.body if isinstance(n, ast.Assign) for t in n.targets
                 if isinstance(t, ast.Name)}
    assert "implements" not in overrides               # so it has the virtual transport's features:
    assert virtual.Transport.implements.exchange_type == frozenset({"direct", "topic"})   # no fanout
    # remote control (inspect, broadcast revoke, Flower's enable_events) is a fanout broadcast
    assert app.control.mailbox.type == "fanout"
