"""Lesson 11's claims about eager mode, start_worker and the pytest plugin, against the installed Celery."""
from __future__ import annotations

import gc
import inspect
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from importlib.metadata import distribution, entry_points
from unittest import mock

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.exceptions import NotRegistered, Retry
from kombu.exceptions import EncodeError

import celerylab
from celerylab.lessons import l11_testing as given


@pytest.fixture
def eager_app():
    app = Celery("t11", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                    task_always_eager=True)

    @app.task(shared=False)
    def echo(value):
        return value

    @app.task(bind=True, shared=False)
    def fetch_rate(self, currency):
        return given.fetch_rate(self, currency)

    app.echo, app.fetch_rate = echo, fetch_rate
    yield app
    app.close()


def test_eager_delay_serializes_arguments_but_apply_and_results_are_not(eager_app):
    echo = eager_app.echo
    with pytest.raises(EncodeError):
        echo.delay({1, 2})
    assert echo.delay(("a", "b")).get() == ["a", "b"]  # a tuple arrives as a list, as on a worker
    assert echo.delay(datetime(2026, 1, 1)).get() == datetime(2026, 1, 1)  # kombu's JSON tags datetimes
    assert echo.apply(({1, 2},)).get() == {1, 2}  # apply() skips the serializer
    assert echo.apply((("a", "b"),)).get() == ("a", "b")

    @eager_app.task(shared=False)
    def as_set(tags):
        return set(tags)

    assert as_set.delay(["a", "b"]).get() == {"a", "b"}  # by default the return value is not serialized


def test_task_store_eager_result_serializes_and_stores_the_eager_return_value(eager_app):
    assert eager_app.conf.task_store_eager_result is False  # Celery's default
    eager_app.conf.task_store_eager_result = True  # read when a task is defined

    @eager_app.task(shared=False)
    def as_set(tags):
        return set(tags)

    result = as_set.delay(["a", "b"])
    assert result.state == "FAILURE" and isinstance(result.result, EncodeError)
    with pytest.raises(EncodeError):
        result.get()
    eager_app.conf.task_always_eager = False  # read the backend as a caller would
    assert eager_app.AsyncResult(result.id).state == "FAILURE"  # the backend holds the failure

    @eager_app.task(shared=False)
    def as_list(tags):
        return sorted(set(tags))

    stored = as_list.apply((["b", "a", "b"],))
    assert eager_app.AsyncResult(stored.id).get(timeout=5) == ["a", "b"]  # stored, as JSON


def test_eager_retries_run_at_once_and_propagation_stops_them(eager_app):
    fetch_rate = eager_app.fetch_rate
    started = time.monotonic()
    with mock.patch.object(given, "rates_api", side_effect=ConnectionError("down")) as api:
        result = fetch_rate.apply(("EUR",))
    assert time.monotonic() - started < 5  # countdown=30 x 3, not waited for
    assert api.call_count == 4 and result.state == "FAILURE" and isinstance(result.result, ConnectionError)
    with mock.patch.object(given, "rates_api", side_effect=ConnectionError("down")):
        failed = fetch_rate.delay("EUR")  # eager, task_eager_propagates off: no raise at the call
    assert failed.state == "FAILURE"
    with pytest.raises(ConnectionError):
        failed.get()  # the exception comes out of get()
    eager_app.conf.task_eager_propagates = True
    with mock.patch.object(given, "rates_api", side_effect=ConnectionError("down")) as api:
        with pytest.raises(Retry):
            fetch_rate.delay("EUR")
    assert api.call_count == 1


def test_celery_declares_no_pytest_plugin_entry_point():
    assert {ep.group for ep in distribution("celery").entry_points} == {"console_scripts"}
    assert not [ep for ep in entry_points(group="pytest11") if ep.value.startswith("celery")]
    import celery.contrib.pytest as plugin  # the plugin module itself is there, for -p

    assert {"celery_app", "celery_worker", "celery_config"} <= set(vars(plugin))
    from celery.contrib.testing.app import DEFAULT_TEST_CONFIG

    assert (DEFAULT_TEST_CONFIG["broker_url"], DEFAULT_TEST_CONFIG["result_backend"]) == ("memory://",
                                                                                          "cache+memory://")
    from kombu.transport.memory import Transport

    assert Transport.polling_interval == 1.0  # memory:// polls its queues once a second


def test_a_task_registered_after_start_worker_needs_reload(embedded):
    app = celerylab.create_app("t11_reload", task_default_queue="t11-reload")
    try:
        with start_worker(app, perform_ping_check=False) as worker:
            @app.task(shared=False, name="t11.late")
            def late(x):
                return x * 2

            before = late.delay(2)
            with pytest.raises(NotRegistered):
                before.get(timeout=10)  # the worker does not know the task: it fails it as unregistered
            worker.reload()
            assert late.delay(3).get(timeout=10) == 6
    finally:
        gc.collect()
        app.close()


def test_start_worker_defaults_and_fixture_scopes():
    params = inspect.signature(start_worker).parameters
    assert (params["pool"].default, params["concurrency"].default, params["perform_ping_check"].default,
            params["shutdown_timeout"].default) == ("solo", 1, True, 10.0)
    from _pytest.fixtures import getfixturemarker

    import celery.contrib.pytest as plugin

    scopes = {name: getfixturemarker(getattr(plugin, name)).scope
              for name in ("celery_config", "celery_app", "celery_worker")}
    assert scopes == {"celery_config": "session", "celery_app": "function", "celery_worker": "function"}


def test_start_worker_with_the_ping_check_on_an_ordinary_app_fails_with_a_bare_assertion():
    # a fresh interpreter: once celery.contrib.testing.tasks is imported, every app gets celery.ping
    code = textwrap.dedent("""
        import sys
        from celery import Celery
        from celery.contrib.testing.worker import start_worker

        app = Celery("plain", broker="memory://", backend="cache+memory://")
        try:
            with start_worker(app):
                pass
        except AssertionError as exc:
            print("AssertionError", repr(str(exc)), "celery.ping" in app.tasks)
        else:
            sys.exit("no AssertionError")
        from celery.contrib.testing.app import TestApp  # imports celery.contrib.testing.tasks

        test_app = TestApp()
        with start_worker(test_app):  # the defaults: ping check on, so celery.ping answered "pong"
            print("TestApp", "celery.ping" in test_app.tasks)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["AssertionError", "''", "False", "TestApp", "True"], run.stdout + run.stderr[-2000:]
