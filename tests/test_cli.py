"""python -m celerylab: broker and worker processes a class can spread over machines."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from celerylab.ports import free_port


@pytest.fixture
def broker_process():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "celerylab", "broker", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert "redis://" in proc.stdout.readline()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_worker_for_a_lesson_serves_tasks_sent_from_elsewhere(broker_process, monkeypatch):
    env = dict(os.environ, CELERYLAB_BROKER_URL=broker_process)
    worker = subprocess.Popen([sys.executable, "-m", "celerylab", "worker", "--lesson", "00", "-P", "solo"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        from celery import Celery

        client = Celery("client", broker=broker_process, backend=broker_process)
        client.conf.update(task_serializer="json", accept_content=["json"])
        assert client.send_task("l00.add", (40, 2)).get(timeout=20) == 42
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)


def test_unknown_lesson_is_one_clear_line(broker_process):
    env = dict(os.environ, CELERYLAB_BROKER_URL=broker_process)
    out = subprocess.run([sys.executable, "-m", "celerylab", "worker", "--lesson", "77"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.startswith("celerylab: no lesson '77'") and out.stderr.count("\n") == 1


def test_worker_without_a_broker_url_says_so():
    env = {k: v for k, v in os.environ.items() if k != "CELERYLAB_BROKER_URL"}
    out = subprocess.run([sys.executable, "-m", "celerylab", "worker", "--lesson", "00"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "CELERYLAB_BROKER_URL" in out.stderr


def test_unknown_pool_on_the_command_line():
    out = subprocess.run([sys.executable, "-m", "celerylab", "worker", "--lesson", "00", "-P", "turbo",
                          "--broker", "redis://127.0.0.1:1/0"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "unknown pool 'turbo'" in out.stderr


def test_grade_gives_a_lab_cell_the_plugins_cell_timeout_well_under_a_minute():
    from celerylab.__main__ import build_parser
    from celerylab.grading.plugin import LAB_CELL_TIMEOUT

    args = build_parser().parse_args(["grade"])
    assert args.cell_timeout == LAB_CELL_TIMEOUT < 60
    assert args.cell_timeout < args.time_limit
