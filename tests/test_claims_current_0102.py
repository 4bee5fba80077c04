"""Claims of lessons 01 and 02 about Celery 5.7 features, checked against the installed Celery.

* lesson 01: ``AsyncResult.exists()`` tells "the backend holds a record for this id" from "no record",
  and nothing writes a record when a task is sent (``result_extended`` included);
* lesson 02: typed task arguments with ``@app.task(pydantic=True)``: what the caller sends, what
  the task receives, how the return value is stored, the decorator's options, and what the caller
  sees when validation fails on the worker.
"""
from __future__ import annotations

import json
import pickle

import pytest
from celery import Celery, states
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator


@pytest.fixture
def app():
    app = Celery("claims-0102", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.result_extended = True
    app.control.purge()  # the memory transport is shared by the process: start from an empty queue
    yield app
    app.control.purge()
    app.close()


# -- lesson 01: exists() --------------------------------------------------------------------------
def test_exists_needs_a_record_written_by_a_worker_not_the_send(app):
    @app.task(shared=False)
    def add(x, y):
        return x + y

    assert app.conf.result_extended is True
    sent = add.delay(1, 2)                                  # no worker: it stays queued
    assert sent.state == states.PENDING and sent.exists() is False
    assert app.AsyncResult("never-sent").exists() is False  # the same answer as a sent task
    app.backend.store_result(sent.id, {"pid": 1}, states.STARTED)  # what track_started makes a worker do
    assert sent.exists() is True
    app.backend.store_result(sent.id, 3, states.SUCCESS)
    assert sent.exists() is True
    app.backend.forget(sent.id)                             # as when the result expires
    assert sent.exists() is False


# -- lesson 02: pydantic=True ---------------------------------------------------------------------
class Order(BaseModel):
    sku: str
    qty: int = Field(gt=0)


class Receipt(BaseModel):
    sku: str
    qty: int
    note: str | None = None
    received: str


class Tagged(BaseModel):
    sku: str

    @field_validator("sku")
    @classmethod
    def add_prefix(cls, value: str, info: ValidationInfo) -> str:
        return f"{info.context['prefix']}{value}@{info.context['celery_task_name']}"


def _sent_body(app):
    """The (args, kwargs, embed) of the message waiting on the memory broker."""
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("celery")
        message = queue.get(timeout=1)
        message.ack()
        body = message.payload
        queue.close()
    return body


def test_pydantic_caller_sends_a_json_dict_and_the_task_receives_the_model(app):
    @app.task(shared=False, pydantic=True)
    def place(order: Order) -> Receipt:
        return Receipt(sku=order.sku, qty=order.qty, received=type(order).__name__)

    place.delay(Order(sku="A-1", qty=2))
    args, kwargs, _ = _sent_body(app)
    assert args == [{"sku": "A-1", "qty": 2}] and kwargs == {}   # a plain dict, JSON
    got = place(*args)                                          # what the worker calls
    assert got == {"sku": "A-1", "qty": 2, "note": None, "received": "Order"}  # the model, dumped
    assert place({"sku": "A-1", "qty": "2"})["qty"] == 2        # lax by default: "2" -> 2


def test_pydantic_options_strict_context_dump_kwargs(app):
    @app.task(shared=False, pydantic=True, pydantic_strict=True)
    def strict(order: Order) -> Receipt:
        return Receipt(sku=order.sku, qty=order.qty, received="Order")

    with pytest.raises(ValidationError):
        strict({"sku": "A-1", "qty": "2"})

    @app.task(shared=False, name="tagged", pydantic=True, pydantic_context={"prefix": "shop-"},
              pydantic_dump_kwargs={"exclude_none": True})
    def tagged(item: Tagged) -> Receipt:
        return Receipt(sku=item.sku, qty=1, received="Tagged")

    assert tagged({"sku": "A-1"}) == {"sku": "shop-A-1@tagged", "qty": 1, "received": "Tagged"}  # no "note"


def test_pydantic_bad_argument_fails_on_the_worker_and_reaches_the_caller_as_a_plain_exception(app):
    @app.task(shared=False, pydantic=True)
    def place(order: Order) -> Receipt:
        return Receipt(sku=order.sku, qty=order.qty, received="Order")

    place.delay({"sku": "A-1", "qty": 0})                  # the caller validates no dict: sent
    args, _, _ = _sent_body(app)
    with pytest.raises(ValidationError) as info:           # the worker's call raises, before the body
        place(*args)
    stored = json.loads(json.dumps(app.backend.prepare_exception(info.value)))  # what a JSON backend stores
    assert stored["exc_type"] == "ValidationError" and stored["exc_message"] == []  # no arguments to rebuild it
    rebuilt = app.backend.exception_to_python(stored)      # what the caller's .get() raises
    assert type(rebuilt) is Exception and "ValidationError" in str(rebuilt)


# -- lesson 02: a worker stopped right after .get() can lose its last task event ---------------------
def test_a_worker_closes_its_event_dispatcher_without_sending_buffered_task_events(app):
    """A worker with an event loop buffers task events (buffer_group=['task']); at shutdown the
    Events step disables the dispatcher, and what was still buffered is never published."""
    import inspect

    from celery.worker.consumer.events import Events

    published = []
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname="w@h", enabled=True, buffer_group=["task"])
        dispatcher._publish = lambda event, producer, routing_key, **kw: published.append(routing_key)
        dispatcher.send("task-succeeded", uuid="x")
        assert published == [] and len(dispatcher._group_buffer["task"]) == 1  # buffered, not sent
        dispatcher.send("worker-heartbeat")                    # other groups go out at once
        assert published == ["worker.heartbeat"]
        dispatcher.disable()                                   # what Events._close does at shutdown
        dispatcher.flush()
        assert published == ["worker.heartbeat"]               # the task event is gone
    start, close = inspect.getsource(Events.start), inspect.getsource(Events._close)
    assert "buffer_group=['task'] if c.hub" in start           # buffering only with an event loop
    assert "disable" in close and "flush" not in close


# -- lesson 01: the other writers of a record: a worker's revoke, update_state; result_extended's fields --
def test_a_revoke_update_state_and_extended_fields_on_a_real_worker(embedded):
    import gc
    import threading
    import time

    from celery.contrib.testing.worker import start_worker

    import celerylab

    app = celerylab.create_app("claims-0102-worker", task_default_queue="c0102", result_extended=True)
    release = threading.Event()

    @app.task(bind=True, shared=False, name="c0102.progress")
    def progress(self, x, label=None):
        self.update_state(state="PROGRESS", meta={"done": 0})  # task code writes a record itself
        release.wait(10)
        return x * 2

    try:
        queued = app.send_task("c0102.progress", args=(1,), queue="c0102-nobody")  # no worker consumes it
        assert queued.exists() is False
        with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False) as worker:
            for task_id in (queued.id, "made-up-id"):
                replies = app.control.revoke(task_id, reply=True, timeout=5, limit=1)
                assert replies, "no worker replied to the revoke"
                assert app.AsyncResult(task_id).exists() is True  # a record, written by the worker's revoke
                assert app.AsyncResult(task_id).state == states.REVOKED

            running = progress.delay(3, label="a")
            deadline = time.monotonic() + 10
            while running.state != "PROGRESS":
                assert time.monotonic() < deadline, "no PROGRESS record within 10 s"
                time.sleep(0.02)
            assert running.exists() is True  # written by update_state, before any final state
            release.set()
            assert running.get(timeout=10) == 6
            done = app.AsyncResult(running.id)
            assert (done.name, done.args, done.kwargs, done.retries, done.queue) == (
                "c0102.progress", [3], {"label": "a"}, 0, "c0102")
            assert done.worker and done.worker in worker.hostname  # names the worker (here its host part)
    finally:
        release.set()
        gc.collect()
        app.close()


class Draft(BaseModel):
    sku: str
    note: str | None = "none given"  # dumped without None, it validates back to a different model


class WithJsonHook(BaseModel):
    sku: str

    def __json__(self):
        return {"hooked": self.sku}


def test_pydantic_dump_kwargs_also_dump_the_callers_models_and_when_a_model_is_sent_as_is(app):
    from kombu.exceptions import EncodeError

    @app.task(shared=False, pydantic=True, pydantic_dump_kwargs={"exclude_none": True})
    def place(order: Receipt) -> Receipt:
        return order

    place.delay(Receipt(sku="A-1", qty=2, note=None, received="x"))
    args, _, _ = _sent_body(app)
    assert args == [{"sku": "A-1", "qty": 2, "received": "x"}]  # exclude_none dropped "note" from the message

    @app.task(shared=False, pydantic=True, pydantic_dump_kwargs={"exclude_none": True})
    def draft(d: Draft) -> None:
        return None

    with pytest.raises(EncodeError):  # dump + validate gives note="none given" != None: sent as is, JSON refuses
        draft.delay(Draft(sku="A-1", note=None))
    draft.delay(Draft(sku="A-1", note="n"))  # the same model with an equal round trip is dumped
    assert _sent_body(app)[0] == [{"sku": "A-1", "note": "n"}]

    @app.task(shared=False, pydantic=True)
    def hooked(item: WithJsonHook) -> None:
        return None

    hooked.delay(WithJsonHook(sku="A-1"))  # left to kombu's JSON, which calls __json__
    assert _sent_body(app)[0] == [{"hooked": "A-1"}]

    place.apply_async((Receipt(sku="A-1", qty=2, received="x"),), serializer="pickle")
    with app.connection_for_read() as conn:
        message = conn.default_channel.basic_get("celery", no_ack=True)  # raw: no decoding, no accept list
    assert message.content_type == "application/x-python-serialize"
    args = pickle.loads(message.body)[0]  # read here only: this test sent it
    assert args == (Receipt(sku="A-1", qty=2, received="x"),)  # pickle: the model itself, not dumped
