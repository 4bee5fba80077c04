"""Shared fixtures: every test gets its own log folder and leaves no kit process behind."""
from __future__ import annotations

import faulthandler
import gc
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_unconfigure(config):
    """If the interpreter has not exited 2 minutes after the tests (a thread that never ends),
    print every thread's stack and exit with an error rather than hang CI."""
    faulthandler.dump_traceback_later(120, exit=True)


@pytest.fixture(autouse=True)
def _isolated_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("CELERYLAB_LOG_DIR", str(tmp_path / "logs"))
    yield


@pytest.fixture(autouse=True)
def _celery_logging_restored():
    """Undo what Celery's own logging setup did in a test (``celery.contrib.testing.worker.start_worker``
    calls ``app.log.setup``): it gives ``celery.task`` a stderr handler with propagate off and sets a
    process-wide "already set up" flag, so later tests' task log lines never reached the kit's worker
    log files (test_l02_serialization's seed-logging test failed after test_claims_current_0102)."""
    import logging

    from celery.app.log import Logging

    task_logger, root = logging.getLogger("celery.task"), logging.getLogger()
    saved = (list(root.handlers), root.level, list(task_logger.handlers), task_logger.propagate,
             task_logger.level, Logging._setup)
    yield
    root.handlers[:], task_logger.handlers[:] = saved[0], saved[2]
    root.level, task_logger.propagate, task_logger.level, Logging._setup = saved[1], saved[3], saved[4], saved[5]


@pytest.fixture
def embedded(monkeypatch):
    """A fresh embedded broker for this test, stopped afterwards."""
    import celerylab

    monkeypatch.delenv("CELERYLAB_BROKER_URL", raising=False)
    broker = celerylab.current_broker()
    if broker is not None:
        broker.stop()
    broker = celerylab.start_broker()
    yield broker
    # results the test left behind unsubscribe when collected: let them do it while the broker runs
    gc.collect()
    celerylab.cleanup()


@pytest.fixture(scope="session")
def redis_server_bin():
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (make test installs it with apt-get where it can)")
    return path


@pytest.fixture
def redis_server(redis_server_bin, tmp_path):
    """A real redis-server on a free loopback port, stopped afterwards."""
    from celerylab.ports import free_port, port_in_use

    port = free_port()
    proc = subprocess.Popen([redis_server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    import time

    deadline = time.monotonic() + 10
    while not port_in_use(port):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def _started_rabbitmq(datadir: str):
    from celerylab.servers import RabbitMQServer, ServerMissingError

    server = RabbitMQServer(datadir=datadir)
    try:
        server.start()
    except ServerMissingError as exc:
        pytest.skip(str(exc))
    return server


@pytest.fixture
def rabbitmq_server(tmp_path):
    """A real rabbitmq-server of this test's own (to restart, or to add vhosts to); skips when not installed."""
    server = _started_rabbitmq(str(tmp_path / "rabbitmq"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def rabbitmq_url(tmp_path_factory):
    """A real rabbitmq-server on loopback for the whole session (skips when not installed)."""
    server = _started_rabbitmq(str(tmp_path_factory.mktemp("rabbitmq")))
    yield server.url
    server.close()


def python() -> str:
    return sys.executable


@pytest.fixture(scope="module")
def lab():
    """Lesson 08's module on a fresh embedded broker (its app is created at import: reload it).

    Celery's tasks are shared between apps, so the reloaded tasks' names are seen twice: the test
    files that use this fixture ignore DuplicateTaskNameWarning.
    """
    import importlib

    import celerylab

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CELERYLAB_BROKER_URL", raising=False)
        old = celerylab.current_broker()
        if old is not None:
            old.stop()
        celerylab.start_broker()
        module = importlib.reload(importlib.import_module("celerylab.lessons.l08_production"))
        module._clients.clear()
        module.reset()
        yield module
        celerylab.cleanup()


@pytest.fixture
def zh(monkeypatch):
    """The kit speaks Chinese (CELERYLAB_LANG=zh_CN, the catalogs reloaded)."""
    from celerylab import i18n

    monkeypatch.setenv(i18n.ENV, "zh_CN")
    i18n.reload()
    assert i18n.language() == "zh_CN"
    yield
    i18n.reload()


@pytest.fixture
def english(monkeypatch):
    """The kit speaks English: CELERYLAB_LANG unset."""
    from celerylab import i18n

    monkeypatch.delenv(i18n.ENV, raising=False)
    i18n.reload()
    yield
    i18n.reload()
