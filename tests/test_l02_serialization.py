"""Lesson 02's module: the json+sets serializer, the pickle payload, names, request, the seed's bug."""
from __future__ import annotations

import pickle
import socket

import pytest
from kombu.exceptions import EncodeError
from kombu.serialization import dumps, loads, registry

import celerylab
from celerylab import worker_log
from celerylab.lessons import l02_serialization as l02


@pytest.fixture
def app(embedded):
    """A fresh app on this test's broker; lesson 02's tasks are shared, so it has them too."""
    app = celerylab.create_app("test_l02")
    app.control.purge()
    yield app
    app.close()


def test_json_plus_sets_round_trips_sets_and_is_registered():
    assert registry.name_to_type[l02.SETS_SERIALIZER] == l02.SETS_CONTENT_TYPE
    value = [{"tags": {"b", "a"}}, {}, {"nested": [frozenset({3, 1})]}]
    content_type, encoding, data = dumps(value, l02.SETS_SERIALIZER)
    assert content_type == "application/x-json-sets" and encoding == "utf-8"
    assert '{"__set__":["a","b"]}' in data
    assert loads(data, content_type, encoding, accept=[content_type]) == [{"tags": {"a", "b"}}, {}, {"nested": [{1, 3}]}]
    assert l02.decode_with_sets(data.encode()) == loads(data, content_type, encoding, accept=[content_type])
    with pytest.raises(EncodeError, match="timedelta"):
        import datetime
        dumps(datetime.timedelta(1), l02.SETS_SERIALIZER)


def test_plain_json_refuses_sets_at_send_time(app):
    with pytest.raises(EncodeError, match="set is not JSON serializable"):
        app.tasks["l02.unique"].delay({"a"})
    from celerylab import inspect_broker as ib
    assert ib.queue_length("celery") == 0


def test_the_pickle_payload_runs_code_when_loaded_and_only_then():
    l02.EVIDENCE.clear()
    data = pickle.dumps(l02.PicklePayload("marked"))
    assert l02.EVIDENCE == []
    assert pickle.loads(data) == "marked"
    assert l02.EVIDENCE == ["marked"]
    l02.EVIDENCE.clear()


def test_a_json_only_worker_refuses_the_pickle_payload(app):
    l02.EVIDENCE.clear()
    with celerylab.run_worker(app) as worker:
        mark = worker_log.mark(worker.logfile)
        attack = app.tasks["l02.describe"].apply_async((l02.PicklePayload(),), serializer="pickle")
        lines = worker_log.wait_for(worker.logfile, "Refusing to deserialize", since=mark, count=2)
        assert app.tasks["l02.shout"].delay("after").get(timeout=10) == "AFTER!"  # the worker carries on
    assert "ContentDisallowed" in lines[1]
    assert l02.EVIDENCE == []
    assert attack.state == "PENDING"


def test_a_worker_that_accepts_the_custom_serializer_gets_a_set(app):
    app.conf.accept_content = ["json", l02.SETS_SERIALIZER]
    with celerylab.run_worker(app):
        got = app.tasks["l02.unique"].apply_async(({"b", "a", "c"},), serializer=l02.SETS_SERIALIZER).get(timeout=10)
        failed = app.tasks["l02.make_set"].delay(["x", "x"])
        outcome = failed.get(timeout=10, propagate=False)
    assert got == {"received": "set", "unique": ["a", "b", "c"]}
    assert failed.state == "FAILURE" and type(outcome).__name__ == "EncodeError"


def test_request_fields_and_the_seed_logging_bug(app):
    with celerylab.run_worker(app) as worker:
        res = app.tasks["l02.whoami"].delay(retry_once=True)
        info = res.get(timeout=10)
        broken = app.tasks["l02.seed_logging"].delay(7)
        broken_outcome = broken.get(timeout=10, propagate=False)
        mark = worker_log.mark(worker.logfile)
        fixed = app.tasks["l02.fixed_logging"].delay(7)
        fixed_outcome = fixed.get(timeout=10, propagate=False)
        logged = worker_log.wait_for(worker.logfile, "failed for order 7", since=mark)
    assert info["id"] == res.id and info["retries"] == 1 and info["task"] == "l02.whoami"
    assert info["delivery_info"]["routing_key"] == "celery"
    assert info["hostname"] == socket.gethostname()  # an in-kernel worker: the machine's name
    assert isinstance(broken_outcome, NameError) and "ConnectionError" in broken.traceback
    assert isinstance(fixed_outcome, ConnectionError)
    assert logged == [f"task {fixed.id} failed for order 7"]


def test_a_worker_process_knows_its_modules_and_refuses_unknown_names(app):
    process = celerylab.spawn_worker("celerylab.lessons.l02_serialization", pool="solo", concurrency=1,
                                     queues=[l02.PROCESS_QUEUE], hostname="test-l02@%h").wait_ready()
    try:
        known = app.control.inspect(destination=[process.nodename], timeout=5).registered()[process.nodename]
        assert "celerylab.lessons.l02_shop.billing.tasks.invoice" in known
        assert "celerylab.lessons.l02_shop.emails.tasks.send_welcome" in known
        assert "l02.shout" in known
        mark = worker_log.mark(process.logfile)
        lost = app.send_task("test_l02.nobody_defines_me", args=[1], queue=l02.PROCESS_QUEUE)
        outcome = lost.get(timeout=10, propagate=False)
        assert lost.state == "FAILURE" and type(outcome).__name__ == "NotRegistered"
        assert worker_log.wait_for(process.logfile, "unregistered task", since=mark)
        assert app.send_task("l02.shout", args=["hi"], queue=l02.PROCESS_QUEUE).get(timeout=10) == "HI!"
        remote = app.send_task("l02.whoami", queue=l02.PROCESS_QUEUE).get(timeout=10)
        assert remote["hostname"] == process.nodename
    finally:
        process.terminate()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_request_hostname_is_the_node_name_on_any_worker_process(app, pool):
    """Lesson 02: request.hostname depends on how the worker started, not on its pool."""
    process = celerylab.spawn_worker("celerylab.lessons.l02_serialization", pool=pool, concurrency=1,
                                     queues=[l02.PROCESS_QUEUE], hostname=f"test-l02-{pool}@%h").wait_ready()
    try:
        remote = app.send_task("l02.whoami", queue=l02.PROCESS_QUEUE).get(timeout=20)
    finally:
        process.terminate()
    assert remote["hostname"] == process.nodename != socket.gethostname()


def test_the_envelope_around_a_small_body_is_most_of_the_message(app):
    """Lesson 02 section 4: on Redis a tiny task's envelope (headers, properties) is roughly 0.8 KB."""
    from celerylab import inspect_broker as ib

    for serializer in ("json", "msgpack", "pickle"):
        app.tasks["l02.describe"].apply_async((42,), serializer=serializer, queue="t_l02_envelope")
        msg = ib.peek("t_l02_envelope")[-1]
        assert 700 <= msg.size - len(msg.body) <= 1000, (serializer, msg.size, len(msg.body))
        assert len(msg.body) < 150
    ib.redis_client().delete("t_l02_envelope")
