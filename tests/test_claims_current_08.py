"""Claims of lessons 08 and 08a about Celery 5.5-5.7 settings, checked against the installed Celery.

Soft shutdown (``worker_soft_shutdown_timeout``, ``worker_enable_soft_shutdown_on_idle``) and the
acknowledgement of late-acked tasks that fail or time out (``task_acks_on_failure``,
``task_acks_on_timeout``). The lessons show each live (notebooks/08a_workers.ipynb section 5,
notebooks/08_production.ipynb section 1c); these tests pin the code paths behind them.
"""
from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import MagicMock, patch

import pytest
from billiard.einfo import ExceptionInfo
from billiard.exceptions import TimeLimitExceeded
from celery import Celery
from celery.app.defaults import NAMESPACES
from celery.apps import worker as apps_worker
from celery.contrib.testing.mocks import TaskMessage
from celery.worker import state
from celery.worker.request import Request
from celery.worker.worker import WorkController


@pytest.fixture
def app():
    app = Celery("claims08", broker="memory://", backend="cache+memory://", set_as_current=False)
    yield app
    app.close()


def _request(app, task):
    """A worker-side Request for one message of ``task`` whose ack/reject calls are recorded."""
    acks, rejects = [], []
    req = Request(TaskMessage(task.name), app=app, task=task,
                  on_ack=lambda *a: acks.append(True),
                  on_reject=lambda logger, errors, requeue: rejects.append(requeue))
    return req, acks, rejects


def _einfo(exc):
    try:
        raise exc
    except type(exc):
        return ExceptionInfo()


# -- soft shutdown ---------------------------------------------------------------------------
def test_soft_shutdown_is_off_by_default():
    worker_ns = NAMESPACES["worker"]
    assert worker_ns["soft_shutdown_timeout"].default == 0.0
    assert worker_ns["enable_soft_shutdown_on_idle"].default is False


def _waits(app, active: bool) -> list[float]:
    """The sleeps ``WorkController.wait_for_soft_shutdown`` makes, with or without a running task."""
    worker = SimpleNamespace(app=app)
    with patch("celery.worker.worker.sleep") as sleep, \
            patch.object(state, "active_requests", {object()} if active else set()):
        WorkController.wait_for_soft_shutdown(worker)
    return [c.args[0] for c in sleep.call_args_list]


def test_soft_shutdown_sleeps_the_whole_timeout_only_while_a_task_runs_unless_on_idle(app):
    assert _waits(app, active=True) == []                 # timeout 0: a plain cold shutdown
    app.conf.worker_soft_shutdown_timeout = 0.6
    assert _waits(app, active=True) == [0.6]              # one sleep of the whole timeout
    assert _waits(app, active=False) == []                # idle: no wait
    app.conf.worker_enable_soft_shutdown_on_idle = True
    assert _waits(app, active=False) == [0.6]             # ... unless on_idle


def test_soft_shutdown_belongs_to_the_cold_shutdown_not_to_the_warm_one():
    """SIGQUIT's handler waits, then cancels the running tasks; SIGTERM's (warm) has no callback."""
    worker = MagicMock()
    order = []
    worker.wait_for_soft_shutdown.side_effect = lambda: order.append("wait")
    worker.consumer.cancel_active_requests.side_effect = lambda: order.append("cancel")
    saved = state.should_terminate
    try:
        with patch.object(apps_worker, "install_worker_term_hard_handler"), \
                patch.object(apps_worker, "bound_open_broker_sockets", create=True):
            apps_worker.on_cold_shutdown(worker)
    finally:
        state.should_terminate = saved
    assert order == ["wait", "cancel"]
    hard = apps_worker.install_worker_term_hard_handler
    assert hard.keywords["sig"] == "SIGQUIT" and hard.keywords["callback"] is apps_worker.on_cold_shutdown
    if apps_worker.REMAP_SIGTERM != "SIGQUIT":
        term = apps_worker.install_worker_term_handler
        assert term.keywords["how"] == "Warm" and "callback" not in term.keywords


# -- a late-acked task that fails or times out -----------------------------------------------
def test_acks_on_failure_and_on_timeout_fall_back_to_the_deprecated_setting(app):
    task_ns = NAMESPACES["task"]
    assert task_ns["acks_on_failure_or_timeout"].default is True
    assert task_ns["acks_on_failure_or_timeout"].deprecate_by == "6.0"
    app.conf.task_acks_on_failure_or_timeout = False

    @app.task(shared=False, acks_late=True)
    def old_name():
        return 1

    @app.task(shared=False, acks_late=True, acks_on_timeout=True)
    def new_name_wins():
        return 1

    assert (old_name.acks_on_failure, old_name.acks_on_timeout) == (False, False)
    assert (new_name_wins.acks_on_failure, new_name_wins.acks_on_timeout) == (False, True)


def test_acks_on_timeout_false_requeues_a_timed_out_task(app):
    """A hard time limit: acked by default; with acks_on_timeout=False rejected *with requeue*."""
    @app.task(shared=False, acks_late=True, time_limit=0.3)
    def default():
        return 1

    @app.task(shared=False, acks_late=True, time_limit=0.3, acks_on_timeout=False)
    def requeue():
        return 1

    req, acks, rejects = _request(app, default)
    req.on_timeout(soft=False, timeout=0.3)
    assert acks == [True] and rejects == []

    req, acks, rejects = _request(app, requeue)
    req.on_timeout(soft=False, timeout=0.3)
    assert acks == [] and rejects == [True]
    # the failure the pool reports afterwards does not change the decision
    req.on_failure(_einfo(TimeLimitExceeded(0.3)))
    assert acks == [] and rejects == [True]


def test_acks_on_failure_false_rejects_a_failed_task_without_requeue(app):
    @app.task(shared=False, acks_late=True, acks_on_failure=False)
    def reject():
        return 1

    req, acks, rejects = _request(app, reject)
    req.on_failure(_einfo(ValueError("boom")))
    assert acks == [] and rejects == [False]


def test_acks_on_failure_and_on_timeout_do_nothing_without_acks_late(app):
    @app.task(shared=False, acks_on_failure=False, acks_on_timeout=False)
    def early():
        return 1

    req, acks, rejects = _request(app, early)
    req.on_timeout(soft=False, timeout=0.3)
    req.on_failure(_einfo(ValueError("boom")))
    assert acks == [] and rejects == []   # early ack: the message was acked when the task started


def test_only_prefork_and_the_greenlet_pools_can_cancel_a_running_task():
    """What a cold or soft shutdown does to a running task depends on the pool's terminate_job."""
    from celery.concurrency import get_implementation

    threads = get_implementation("threads")
    assert threads.terminate_job is get_implementation("solo").terminate_job  # the base class's
    with pytest.raises(NotImplementedError):
        threads.terminate_job(object.__new__(threads), 1)
    for name in ("gevent", "eventlet"):  # kill the greenlet
        assert get_implementation(name).terminate_job is not threads.terminate_job
    import inspect
    # prefork: the started pool's own terminate_job (billiard kills the pool process)
    assert "self.terminate_job = P.terminate_job" in inspect.getsource(get_implementation("prefork").on_start)
