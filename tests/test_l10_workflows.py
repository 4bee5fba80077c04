"""Lesson 10's claims about canvas, checked against the installed Celery on a real (in-process) worker.

The notebook shows most of them live; these cover the ones it states without a live cell
(chord_unlock polling for ever on a backend without a native counter, the two errback styles)
and re-check the surprising ones (what a failed chord's .get() raises).
"""
from __future__ import annotations

import gc
import threading

import pytest
from celery import chord, signals
from celery.exceptions import ChordError, TimeoutError as CeleryTimeoutError

import celerylab


@pytest.fixture
def app(embedded):
    # a result left from an earlier test (its broker stopped) unsubscribes when garbage-collected: one
    # quick try, not Celery's 20 reconnection attempts (that cost 19 s in some test's teardown)
    app = celerylab.create_app("test_l10", result_backend_transport_options={
        "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}})
    yield app
    gc.collect()  # results left by the test unsubscribe now, while the broker still runs
    app.close()


def test_failed_header_part_body_never_runs_get_raises_the_part_error_and_body_stores_chord_error(app):
    ran = []

    @app.task(name="t10w.part", shared=False)
    def part(x):
        if x == 2:
            raise ValueError("part 2 failed")
        return x

    @app.task(name="t10w.body", shared=False)
    def body(values):
        ran.append(values)
        return sum(values)

    with celerylab.run_worker(app, concurrency=3):
        result = chord([part.s(1), part.s(2), part.s(3)], body.s()).apply_async()
        try:
            result.get(timeout=10)
        except ValueError as exc:  # not pytest.raises: its traceback would keep the results alive
            raised = str(exc)
        else:
            raised = None
        assert raised == "part 2 failed"
        stored = result.get(timeout=10, propagate=False)  # waits for the body's own state
    assert result.state == "FAILURE"
    assert isinstance(stored, ChordError) and "Dependency" in str(stored)
    assert ran == []


def test_redis_chord_completes_with_ignore_result_header(app):
    @app.task(name="t10w.quiet", shared=False, ignore_result=True)
    def quiet(x):
        return x * x

    @app.task(name="t10w.total", shared=False)
    def total(values):
        return sum(values)

    with celerylab.run_worker(app, concurrency=2):
        result = chord([quiet.s(2), quiet.s(3)], total.s()).apply_async()
        assert result.get(timeout=10) == 13
        header_id = result.parent.results[0].id
        assert app.backend.get_state(header_id) == "PENDING"  # the header's own result was not stored


def test_chord_unlock_polls_for_ever_when_header_results_are_not_stored(embedded, tmp_path):
    """A backend without a native counter (here file://) sends celery.chord_unlock, which retries each second."""
    fapp = celerylab.create_app("test_l10_file", result_backend=f"file://{tmp_path}")
    assert not fapp.backend.supports_native_join

    @fapp.task(name="t10w.fquiet", shared=False, ignore_result=True)
    def fquiet(x):
        return x

    @fapp.task(name="t10w.ftotal", shared=False)
    def ftotal(values):
        return sum(values)

    retries = []

    def on_retry(sender=None, **_):
        if getattr(sender, "name", "") == "celery.chord_unlock":
            retries.append(sender.name)

    signals.task_retry.connect(on_retry, weak=False, dispatch_uid="t10w-unlock")
    try:
        with celerylab.run_worker(fapp, concurrency=2):
            result = chord([fquiet.s(1), fquiet.s(2)], ftotal.s()).apply_async()
            with pytest.raises(CeleryTimeoutError):
                result.get(timeout=2.5)
            assert len(retries) >= 1 and result.state == "PENDING"
            fapp.control.purge()
    finally:
        signals.task_retry.disconnect(on_retry, dispatch_uid="t10w-unlock")
        fapp.close()


def test_errback_styles_three_arguments_inline_one_argument_as_a_task(app):
    seen = {}
    threads = {}
    published = []

    def on_publish(sender=None, **_):
        published.append(sender)

    @app.task(name="t10w.fails", shared=False)
    def fails():
        threads["task"] = threading.get_ident()
        raise KeyError("gone")

    @app.task(name="t10w.new_style", shared=False)
    def new_style(request, exc, traceback):
        seen["new"] = (request.id, type(exc).__name__)
        threads["new"] = threading.get_ident()

    @app.task(name="t10w.old_style", shared=False)
    def old_style(task_id):
        seen["old"] = task_id

    signals.before_task_publish.connect(on_publish, weak=False, dispatch_uid="t10w-pub")
    try:
        with celerylab.run_worker(app, concurrency=2):
            a = fails.apply_async(link_error=new_style.s())
            a.get(timeout=10, propagate=False)
            b = fails.apply_async(link_error=old_style.s())
            b.get(timeout=10, propagate=False)
            for _ in range(100):
                if "old" in seen and "new" in seen:
                    break
                threading.Event().wait(0.05)
    finally:
        signals.before_task_publish.disconnect(on_publish, dispatch_uid="t10w-pub")
    assert seen["new"] == (a.id, "KeyError")
    assert "t10w.new_style" not in published        # called in the worker, not sent
    assert seen["old"] == b.id and "t10w.old_style" in published  # sent as a task with the id


def test_partial_arguments_go_in_front():
    app = celerylab.create_app("test_l10_partial", task_always_eager=True)

    @app.task(name="t10w.sub", shared=False)
    def sub(x, y):
        return x - y

    assert sub.s(10).apply_async((1,)).get() == -9
    app.close()
    gc.collect()


def test_rpc_backend_refuses_chords_before_anything_is_sent(embedded):
    rpc = celerylab.create_app("test_l10_rpc", result_backend="rpc://")

    @rpc.task(name="t10w.r", shared=False)
    def r(x):
        return x

    published = []
    handler = lambda sender=None, **_: published.append(sender)  # noqa: E731
    signals.before_task_publish.connect(handler, weak=False, dispatch_uid="t10w-rpc")
    try:
        with pytest.raises(NotImplementedError, match="does not support chords"):
            chord([r.s(1), r.s(2)], r.s()).apply_async()
    finally:
        signals.before_task_publish.disconnect(handler, dispatch_uid="t10w-rpc")
        rpc.close()
        gc.collect()
    assert published == []


def test_no_result_backend_refuses_chords_too(embedded):
    bare = celerylab.create_app("test_l10_bare", result_backend=None)

    @bare.task(name="t10w.b", shared=False)
    def b(x):
        return x

    try:
        assert type(bare.backend).__name__ == "DisabledBackend"
        with pytest.raises(NotImplementedError, match="requires a result backend"):
            chord([b.s(1), b.s(2)], b.s()).apply_async()
    finally:
        bare.close()


def test_the_database_backend_has_no_native_counter_so_a_chord_sends_chord_unlock():
    """Lesson 10: "Backends without that counter (the database or file backends) send celery.chord_unlock"."""
    from celery.backends.base import BaseBackend, KeyValueStoreBackend
    from celery.backends.database import DatabaseBackend
    from celery.backends.filesystem import FilesystemBackend
    from celery.backends.redis import RedisBackend

    for backend in (DatabaseBackend, FilesystemBackend):
        assert backend.supports_native_join is False
        assert backend.apply_chord is BaseBackend.apply_chord  # -> fallback_chord_unlock
    assert RedisBackend.supports_native_join is True
    assert RedisBackend.apply_chord is not KeyValueStoreBackend.apply_chord


def test_a_retrying_header_task_holds_the_body_back_until_its_last_retry(app):
    """Lesson 10: "A header task that keeps retrying holds the body back until its last retry"."""
    import time

    attempts, ended, body_started = [], {}, []

    @app.task(name="t10w.flaky_part", bind=True, shared=False, max_retries=2)
    def flaky_part(self, x):
        attempts.append(time.monotonic())
        if x == 1 and self.request.retries < 2:
            raise self.retry(countdown=0.3)
        ended[x] = time.monotonic()
        return x

    @app.task(name="t10w.collect", shared=False)
    def collect(values):
        body_started.append(time.monotonic())
        return sorted(values)

    with celerylab.run_worker(app, concurrency=2):
        result = chord([flaky_part.s(0), flaky_part.s(1)], collect.s()).apply_async()
        assert result.get(timeout=15) == [0, 1]
    assert len(attempts) == 4                      # part 0 once, part 1 three times (two retries)
    assert body_started[0] >= ended[1] >= ended[0]  # the body ran only after the retried part's last run
