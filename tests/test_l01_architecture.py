"""Lesson 01's helpers: peeking at messages on Redis, result records, state traces, worker logs."""
from __future__ import annotations

import base64
import json
import pickle
import time

import pytest
from celery.result import AsyncResult
from kombu.exceptions import ContentDisallowed

import celerylab
from celerylab import inspect_broker as ib
from celerylab import worker_log
from celerylab.states import arrow, trace, trace_states


@pytest.fixture
def app(embedded):
    """A fresh app on this test's broker. Lesson 01's tasks are shared tasks (Celery's default), so
    every app finalized after the lesson module is imported gets them, under the same names."""
    import celerylab.lessons.l01_architecture  # noqa: F401 - registers the shared tasks

    app = celerylab.create_app("test_l01")

    @app.task(name="test_l01.flaky", bind=True, max_retries=3, default_retry_delay=0.2, shared=False)
    def flaky(self, failures=1):
        if self.request.retries < failures:
            raise self.retry(exc=ConnectionError("once"))
        return self.request.retries

    @app.task(name="test_l01.add_and_wait", shared=False)
    def add_and_wait(x, y):
        return app.tasks["l01.add"].delay(x, y).get(timeout=5)

    app.control.purge()
    yield app
    app.close()


def test_peek_decodes_a_waiting_message_without_removing_it(app):
    result = app.tasks["l01.add"].delay(2, 3)
    assert ib.queue_length("celery") == 1
    assert ib.key_type("celery") == "list"
    [msg] = ib.peek("celery")
    assert ib.queue_length("celery") == 1  # still there
    assert msg.task == "l01.add" and msg.id == result.id
    assert msg.content_type == "application/json"
    assert msg.properties["body_encoding"] == "base64"
    assert msg.properties["delivery_info"]["routing_key"] == "celery"
    assert json.loads(base64.b64decode(msg.body))[0] == [2, 3]
    assert msg.args == [2, 3] and msg.kwargs == {}
    assert msg.size == len(msg.raw) > len(msg.body)


def test_peek_returns_messages_in_the_order_a_worker_takes_them(app):
    add = app.tasks["l01.add"]
    first, second = add.delay(1, 1), add.delay(2, 2)
    low = add.apply_async((3, 3), priority=6)  # kombu on Redis: a higher number is a lower band
    ids = [m.id for m in ib.peek("celery")]
    assert ids == [first.id, second.id, low.id]
    assert ib.queue_length("celery") == 3
    assert ib.band_lists("celery") == ["celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169"]


def test_show_is_stable_across_runs(app, capsys):
    outputs = []
    for _ in range(2):
        app.control.purge()
        result = app.tasks["l01.add"].delay(2, 3)
        ib.peek("celery")[0].show(names={result.id: "result.id"})
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "'<result.id>'" in outputs[0] and "gen<pid>@<hostname>" in outputs[0]
    assert '[[2, 3], {}, {"callbacks": null' in outputs[0]


def test_a_pickle_body_is_never_unpickled_by_peek(app, capsys):
    ran = []

    class Payload:
        def __reduce__(self):
            return (ran.append, ("ran",))

    app.tasks["l01.add"].apply_async((Payload(), 1), serializer="pickle")
    [msg] = ib.peek("celery")
    msg.show()
    assert "not decoded" in capsys.readouterr().out
    with pytest.raises(ContentDisallowed):
        msg.payload()
    assert ran == []
    assert msg.body_bytes[0] == pickle.PROTO[0]  # a pickle stream, left as bytes


def test_result_record_type_and_ttl(app):
    with celerylab.run_worker(app):
        result = app.tasks["l01.add"].delay(2, 3)
        assert result.get(timeout=10) == 5
    key = ib.result_key(result.id)
    assert key == f"celery-task-meta-{result.id}"
    assert ib.key_type(key) == "string"
    record = ib.stored_result(result.id)
    assert record["status"] == "SUCCESS" and record["result"] == 5
    assert 86_000 < ib.result_ttl(result.id) <= 86_400
    assert ib.stored_result("no-such-id") is None and ib.result_ttl("no-such-id") is None


def test_trace_sees_every_state_from_the_start(app):
    with celerylab.run_worker(app):
        assert trace(app.tasks["l01.slow"], 0.4) == ["PENDING", "SUCCESS"]
        assert trace(app.tasks["l01.slow_tracked"], 0.4) == ["PENDING", "STARTED", "SUCCESS"]
        assert trace(app.tasks["test_l01.flaky"], 1) == ["PENDING", "RETRY", "SUCCESS"]
        assert trace(app.tasks["l01.fail"], "x") == ["PENDING", "FAILURE"]
        later = app.tasks["l01.add"].apply_async((1, 1), countdown=0.5)
        later.revoke()
        assert trace_states(later)[-1] == "REVOKED"
    assert arrow(["PENDING", "SUCCESS"]) == "PENDING -> SUCCESS"


def test_trace_states_times_out_with_what_it_saw(app):
    stranded = app.tasks["l01.add"].apply_async((1, 2), queue="test_l01_nobody")
    with pytest.raises(TimeoutError, match=r"\['PENDING'\]"):
        trace_states(stranded, timeout=0.2)
    assert AsyncResult("never-sent", app=app).state == "PENDING"


def test_get_inside_a_lesson_task_is_refused(app):
    with celerylab.run_worker(app):
        blocked = app.tasks["test_l01.add_and_wait"].delay(2, 3)
        outcome = blocked.get(timeout=10, propagate=False)
    assert blocked.state == "FAILURE"
    assert isinstance(outcome, RuntimeError) and "Never call result.get() within a task" in str(outcome)


def test_a_spawned_worker_applies_its_own_result_expires(app):
    w = celerylab.spawn_worker("celerylab.lessons.l01_architecture", pool="solo", concurrency=1,
                               queues=["l01_expiring"], result_expires=1).wait_ready()
    try:
        kept = app.tasks["l01.add"].apply_async((20, 22), queue="l01_expiring")
        assert kept.get(timeout=10) == 42
        ttl = ib.result_ttl(kept.id)
        assert ttl is None or 0 <= ttl <= 1, ttl  # None: already expired (a slow machine)
        time.sleep(1.3)
        assert AsyncResult(kept.id, app=app).state == "PENDING"
    finally:
        w.terminate()


def test_worker_log_strips_prefixes_and_waits(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("[2026-11-24 00:58:21,794: INFO/MainProcess] old line\n")
    mark = worker_log.mark(log)
    with open(log, "a") as f:
        f.write("[2026-11-24 00:58:22,794: ERROR/celerylab-x@kernel] celery.worker.request: Discarding revoked task: t[1]\n")
        f.write("  plain continuation line\n")
    assert worker_log.lines(log)[0] == "old line"
    assert worker_log.lines(log, since=mark) == ["Discarding revoked task: t[1]", "  plain continuation line"]
    assert worker_log.grep(log, "Discarding") == ["Discarding revoked task: t[1]"]
    assert worker_log.wait_for(log, "continuation", since=mark, timeout=0.1) == ["  plain continuation line"]
    with pytest.raises(TimeoutError):
        worker_log.wait_for(log, "never there", timeout=0.1)
    assert worker_log.mark(tmp_path / "missing.log") == 0 and worker_log.lines(tmp_path / "missing.log") == []


def test_chain_passes_the_result_as_first_argument_and_si_ignores_it(app):
    """Lesson 01's signatures section: a chain prepends the previous result; .si() does not."""
    add, slow = app.tasks["l01.add"], app.tasks["l01.slow"]
    with celerylab.run_worker(app):
        # slow(seconds, value): 0 from add(0, 0) must land in `seconds`, "kept" stays the value.
        assert (add.s(0, 0) | slow.s("kept")).delay().get(timeout=10) == "kept"
        chained = (add.s(2, 3) | add.s(10)).delay()
        assert chained.get(timeout=10) == 15 and chained.parent.get(timeout=10) == 5
        assert (add.s(2, 3) | add.si(1, 1)).delay().get(timeout=10) == 2
    assert str(add.s(2, 3)) == "l01.add(2, 3)" and add.s(2, 3).args == (2, 3)


def test_terms_lesson_01_prints_match_celery_and_kombu():
    """Defaults lesson 01 states: events off, early acks, kombu's unacked hash, visibility timeout, bands."""
    import kombu.transport.redis as redis_transport
    from celery.app.defaults import DEFAULTS

    assert DEFAULTS["worker_send_task_events"] is False and DEFAULTS["task_send_sent_event"] is False
    assert DEFAULTS["task_acks_late"] is False and DEFAULTS["event_exchange"] == "celeryev"
    assert redis_transport.Channel.unacked_key == "unacked"
    assert redis_transport.Channel.visibility_timeout == 3600
    assert redis_transport.Channel.priority_steps == [0, 3, 6, 9]


def test_kafka_transport_has_no_fanout_no_shared_bindings_and_needs_its_client():
    """Lesson 01's Kafka cell (evidence:myth-kafka), re-checked against the installed kombu and Celery."""
    import ast
    import importlib
    import importlib.util
    import pathlib

    import kombu.transport.redis as redis_transport
    import kombu.transport.virtual as virtual_transport
    from celery import Celery
    from celery.events.event import get_exchange
    from kombu import Connection

    path = pathlib.Path(importlib.util.find_spec("kombu.transport.confluentkafka").origin)
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    for feature in ("Fanout", "Priority", "TTL"):
        assert f"* Supports {feature}: No" in doc
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assert [ast.unparse(b) for b in classes["Transport"].bases] == ["virtual.Transport"]
    assert [ast.unparse(b) for b in classes["Channel"].bases] == ["virtual.Channel"]
    defined = {t.id for n in classes["Transport"].body if isinstance(n, ast.Assign) for t in n.targets
               if isinstance(t, ast.Name)}
    assert "implements" not in defined
    assert "fanout" not in virtual_transport.Transport.implements.exchange_type
    assert "fanout" in redis_transport.Transport.implements.exchange_type
    channel_methods = {n.name for n in classes["Channel"].body if isinstance(n, ast.FunctionDef)}
    assert "get_table" not in channel_methods and "get_table" in vars(redis_transport.Channel)
    assert virtual_transport.Channel.get_table is not redis_transport.Channel.get_table
    assert Celery("kafka_check", set_as_current=False).control.mailbox.type == "fanout"
    # Events use a topic exchange on every transport but Redis (and gcpubsub): bound per process on Kafka.
    assert get_exchange(Connection("memory://")).type == "topic"
    if importlib.util.find_spec("confluent_kafka") is None:
        with pytest.raises(Exception):
            importlib.import_module("kombu.transport.confluentkafka")


def test_revoke_terminate_needs_a_pool_that_can_kill_a_running_task():
    """Lesson 01: terminate=True works on prefork, eventlet and gevent; threads and solo cannot."""
    import inspect

    from celery.concurrency import base, eventlet, gevent, prefork, solo, thread

    assert thread.TaskPool.terminate_job is base.BasePool.terminate_job
    assert solo.TaskPool.terminate_job is base.BasePool.terminate_job
    with pytest.raises(NotImplementedError):
        base.BasePool.terminate_job(None, 1)
    assert "terminate_job" in vars(eventlet.TaskPool) and "terminate_job" in vars(gevent.TaskPool)
    assert "self.terminate_job = P.terminate_job" in inspect.getsource(prefork.TaskPool.on_start)
