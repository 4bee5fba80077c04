"""Claims of lessons 03 and 04 about current Celery features, checked against the installed code.

worker_disable_prefetch (Redis only), worker_eta_task_limit (kombu's QoS max_prefetch), quorum
queues (task_default_queue_type, worker_detect_quorum_queues, per-consumer QoS) and native delayed
delivery (a countdown on a quorum queue is published to celery_delayed_27). The RabbitMQ side of
the last two runs live in the lessons on the RabbitMQ track (notebooks/recorded/l03-*, l04-quorum-*).
"""
from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import Mock

import pytest
from celery import Celery
from celery.app.defaults import NAMESPACES
from celery.utils.quorum_queues import detect_quorum_queues
from celery.worker.consumer.tasks import Tasks
from kombu.common import QoS
from kombu.transport.native_delayed_delivery import calculate_routing_key

import celerylab


def _app(**conf):
    return Celery("claims0304", broker="memory://", backend="cache+memory://", set_as_current=False,
                  config_source=conf or None)


# -- worker_disable_prefetch --------------------------------------------------------------------
def _can_consume_patched(app) -> bool:
    """Start a worker for ``app`` in this process: did Celery replace its channel's can_consume?"""
    with celerylab.run_worker(app, concurrency=1) as w:
        qos = w.controller.consumer.task_consumer.channel.qos
        return "can_consume" in vars(qos)   # an instance attribute: the patch in consumer/tasks.py


def test_disable_prefetch_defaults_to_false():
    assert NAMESPACES["worker"]["disable_prefetch"].default is False


def test_disable_prefetch_applies_on_redis_only(embedded):
    on_redis = celerylab.create_app("claims0304_redis", worker_disable_prefetch=True)
    on_redis_default = celerylab.create_app("claims0304_redis_default")
    on_memory = _app(worker_disable_prefetch=True)
    try:
        assert on_redis.connection_for_write().transport.driver_type == "redis"
        assert _can_consume_patched(on_redis) is True
        assert _can_consume_patched(on_redis_default) is False
        assert on_memory.connection_for_write().transport.driver_type == "memory"
        assert _can_consume_patched(on_memory) is False   # ignored (Celery logs a warning)
    finally:
        for a in (on_redis, on_redis_default, on_memory):
            a.close()


# -- worker_eta_task_limit ----------------------------------------------------------------------
def test_eta_task_limit_defaults_to_none():
    assert NAMESPACES["worker"]["eta_task_limit"].default is None


def test_eta_task_limit_becomes_the_workers_max_prefetch(embedded):
    app = celerylab.create_app("claims0304_eta", worker_eta_task_limit=7)
    try:
        with celerylab.run_worker(app, concurrency=1) as w:
            assert w.controller.consumer.qos.max_prefetch == 7
    finally:
        app.close()


def test_qos_increments_stop_at_max_prefetch_and_a_low_limit_lowers_the_value():
    qos = QoS(Mock(), 4, max_prefetch=5)
    assert [qos.increment_eventually() for _ in range(3)] == [5, 5, 5]
    unlimited = QoS(Mock(), 4)
    assert [unlimited.increment_eventually() for _ in range(3)] == [5, 6, 7]
    high = QoS(Mock(), 16, max_prefetch=5)   # initial prefetch above the limit
    assert high.increment_eventually() == 5


# -- quorum queues --------------------------------------------------------------------------------
def test_default_queue_type_quorum_declares_x_queue_type_and_is_detected():
    app = _app(task_default_queue="jobs", task_default_queue_type="quorum")
    assert app.amqp.queues["jobs"].queue_arguments == {"x-queue-type": "quorum"}
    assert detect_quorum_queues(app, "amqp") == (True, "jobs")
    assert detect_quorum_queues(app, "redis") == (False, "")   # only RabbitMQ (driver "amqp")
    classic = _app(task_default_queue="jobs")
    assert classic.amqp.queues["jobs"].queue_arguments is None
    assert detect_quorum_queues(classic, "amqp") == (False, "")


def _qos_global(app) -> bool:
    consumer = SimpleNamespace(app=app, connection=SimpleNamespace(
        qos_semantics_matches_spec=False,   # what py-amqp reports for RabbitMQ >= 3.3
        transport=SimpleNamespace(driver_type="amqp")))
    return Tasks.qos_global(Mock(), consumer)


def test_worker_uses_per_consumer_qos_when_it_detects_quorum_queues():
    assert NAMESPACES["worker"]["detect_quorum_queues"].default is True
    assert _qos_global(_app(task_default_queue_type="quorum")) is False
    assert _qos_global(_app()) is True   # classic queues on RabbitMQ: global QoS
    assert _qos_global(_app(task_default_queue_type="quorum", worker_detect_quorum_queues=False)) is True


# -- native delayed delivery ----------------------------------------------------------------------
def _published(app, task, **options) -> dict:
    """The exchange and routing key apply_async publishes to (send_task_message intercepted)."""
    seen = {}

    def fake_send(producer, name, message, **kwargs):
        seen.update(kwargs)

    app.amqp.send_task_message = fake_send
    task.apply_async(("x",), **options)
    exchange = seen.get("exchange")
    return {"exchange": getattr(exchange, "name", exchange), "routing_key": seen.get("routing_key"),
            "queue": getattr(seen.get("queue"), "name", seen.get("queue"))}


def _delayed_app(exchange_type):
    app = Celery("claims0304_delayed", broker="amqp://guest:guest@127.0.0.1:1//", set_as_current=False)
    app.conf.update(task_default_queue="reminders", task_default_queue_type="quorum",
                    task_default_exchange="reminders", task_default_exchange_type=exchange_type)

    @app.task(name="claims0304.remind", shared=False)
    def remind(x):
        return x

    return app, remind


def test_countdown_on_a_quorum_queue_with_a_topic_exchange_goes_to_celery_delayed_27():
    app, task = _delayed_app("topic")
    sent = _published(app, task, countdown=10)
    assert sent["exchange"] == "celery_delayed_27"
    assert sent["routing_key"] == calculate_routing_key(10, "reminders")
    assert sent["routing_key"].endswith("1.0.1.0.reminders")   # 10 in binary, one bit per level
    assert sent["queue"] is None
    now = _published(app, task)   # no countdown: straight to the queue
    assert now["exchange"] != "celery_delayed_27"


def test_countdown_with_a_direct_exchange_is_not_delayed_in_the_broker():
    app, task = _delayed_app("direct")
    sent = _published(app, task, countdown=10)
    assert sent["exchange"] != "celery_delayed_27"   # Celery logs a warning; the worker holds the task


def test_delayed_level_queues_hold_two_to_the_level_seconds():
    from kombu.transport import native_delayed_delivery as ndd
    declared = []
    channel = Mock()
    connection = Mock(channel=Mock(return_value=channel))
    real_queue = ndd.Queue

    def spy(name, **kwargs):
        declared.append((name, kwargs.get("queue_arguments")))
        return real_queue(name, **kwargs)

    ndd.Queue = spy
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ndd.Exchange, "declare", lambda self, *a, **k: None)
            mp.setattr(ndd.Exchange, "bind_to", lambda self, *a, **k: None)
            mp.setattr(real_queue, "declare", lambda self, *a, **k: None)
            mp.setattr(real_queue, "bind_to", lambda self, *a, **k: None)
            ndd.declare_native_delayed_delivery_exchanges_and_queues(connection, "quorum")
    finally:
        ndd.Queue = real_queue
    args = dict(declared)
    assert sorted(args) == sorted(f"celery_delayed_{n}" for n in range(28))
    assert args["celery_delayed_1"]["x-message-ttl"] == 2000
    assert args["celery_delayed_27"]["x-message-ttl"] == 2 ** 27 * 1000
    assert args["celery_delayed_1"]["x-dead-letter-exchange"] == "celery_delayed_0"
    assert all(a["x-queue-type"] == "quorum" for a in args.values())


# -- the RabbitMQ recordings the lessons show ----------------------------------------------------
def test_the_0304_recordings_say_what_the_lessons_teach():
    """The sentences next to them (lesson 03 section 8, lesson 04 section 6) rest on these values;
    the RabbitMQ track re-runs both cells live and fails if RabbitMQ answers differently."""
    import re
    from pathlib import Path

    from celerylab import recorded

    import nbformat

    shown = {name: path.name for path in Path(recorded.RECORDED_DIR.parent).glob("0[34]_*.ipynb")
             for cell in nbformat.read(path, as_version=4).cells
             for name in re.findall(r'recorded\.show\("([^"]+)"', cell.source)}
    assert shown.get("l03-native-delayed-delivery") == "03_scheduling.ipynb"
    assert shown.get("l04-quorum-queues") == "04_priority_routing.ipynb"

    delayed = recorded.load("l03-native-delayed-delivery")
    assert delayed.broker.startswith("RabbitMQ 3.10")
    assert delayed.result == {
        "quorum queue, topic exchange": {"held by the worker": 0, "waiting in RabbitMQ": {"celery_delayed_0": 1},
                                         "the task for now ran first": True},
        "quorum queue, direct exchange": {"held by the worker": 1, "waiting in RabbitMQ": {},
                                          "the task for now ran first": False}}
    quorum = recorded.load("l04-quorum-queues").result
    assert quorum["order run"] == ["p0", "p9", "p5", "p1", "p8"]        # the order sent: no priority
    assert quorum["worker's prefetch limit (Celery chose)"] == "per consumer"
    assert "invalid arg 'x-max-priority'" in quorum["declare quorum + x-max-priority"]
    assert "does not support global qos" in quorum["consume with global QoS"]
