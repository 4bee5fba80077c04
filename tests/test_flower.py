"""Flower as a real subprocess: basic auth, REST API, nothing outlives cleanup or the kernel."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import celerylab
from celerylab.errors import PortInUseError
from celerylab.flower import FlowerMissingError, start_flower
from celerylab.ports import port_in_use

HOST = "orders@flower-test"


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1][0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_flower")

    @app.task(name="tflower.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="tflower.fail", shared=False)
    def fail():
        raise KeyError("nope")

    yield app
    app.close()


def test_api_needs_auth_and_lists_the_worker(app):
    with celerylab.run_worker(app, hostname=HOST):
        flower = start_flower(app, wait_for=[HOST])
        try:
            assert flower.get("/api/workers", auth=False).status == 401
            wrong = flower.password
            flower.password = wrong + "x"
            assert flower.get("/api/workers").status == 401
            flower.password = wrong
            assert HOST in flower.workers()

            sent = [app.tasks["tflower.add"].delay(i, i) for i in range(3)] + [app.tasks["tflower.fail"].delay()]
            seen = flower.wait_tasks([r.id for r in sent])
            states = sorted((t["name"], t["state"]) for t in seen.values())
            assert states == [("tflower.add", "SUCCESS")] * 3 + [("tflower.fail", "FAILURE")]
            assert flower.queue_lengths() == {"celery": 0}
            # /metrics and /healthcheck stay open (Prometheus scrapes without credentials)
            lines = flower.metric_lines("flower_events_total")
            assert any('type="task-succeeded"' in line and HOST in line for line in lines)
            assert flower.get("/healthcheck", auth=False).status == 200
            # the password is in neither the repr nor the command line
            assert flower.password not in repr(flower)
            with open(f"/proc/{flower.proc.pid}/cmdline", "rb") as f:
                assert flower.password.encode() not in f.read()
        finally:
            flower.stop()
    assert not flower.alive


def test_cleanup_stops_flower_and_frees_its_port(app):
    flower = start_flower(app)
    pid, port = flower.proc.pid, flower.port
    assert any(name.startswith("flower on") for name in celerylab.where()["running"])
    celerylab.cleanup()
    assert gone(pid)
    assert not port_in_use(port)


def test_rerunning_the_cell_replaces_flower(app):
    first = start_flower(app)
    second = start_flower(app)
    try:
        assert not first.alive and second.alive
        assert sum(name.startswith("flower on") for name in celerylab.where()["running"]) == 1
    finally:
        second.stop()


def test_port_in_use_is_one_clear_line(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUseError) as err:
            start_flower(app, port=port)
    assert str(port) in str(err.value) and "\n" not in str(err.value)
    assert not any(name.startswith("flower on") for name in celerylab.where()["running"])


def test_flower_not_installed_is_one_clear_line(app, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flower" else real(name, *a))
    with pytest.raises(FlowerMissingError) as err:
        start_flower(app)
    assert "pip install flower" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_flower_dies_with_a_killed_kernel(tmp_path):
    """A kernel killed with SIGKILL runs no atexit: Flower's parent watchdog must end it."""
    script = textwrap.dedent("""
        import sys, time, celerylab
        from celerylab.flower import start_flower
        app = celerylab.create_app("orphan")
        flower = start_flower(app)
        print(flower.proc.pid, flower.port, flush=True)
        time.sleep(60)
    """)
    env = dict(os.environ)
    env.pop("CELERYLAB_BROKER_URL", None)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid, port = map(int, proc.stdout.readline().split())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        assert gone(pid, timeout=10)
        deadline = time.monotonic() + 5  # the kernel frees the listening socket just after the exit
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not port_in_use(port)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_url_prefix_moves_every_page(app):
    flower = start_flower(app, url_prefix="flower")
    try:
        assert flower.url.endswith("/flower/")
        assert flower.get("/healthcheck", auth=False).status == 200       # i.e. /flower/healthcheck
        assert flower.get("/api/workers", auth=False).status == 401
        assert isinstance(flower.workers(), dict)
        assert "127.0.0.1" in flower.iframe().src
    finally:
        flower.stop()


def test_flower_turns_task_events_on_in_a_worker_started_without_them(app):
    """Lesson 07: a worker without -E sends only worker events; Flower's periodic enable_events
    (every 5 s) adds the task group; task-sent still needs the client's task_send_sent_event."""
    app.conf.worker_send_task_events = False
    app.conf.task_send_sent_event = False
    with celerylab.run_worker(app, hostname=HOST) as worker:
        dispatcher = worker.controller.consumer.event_dispatcher
        assert set(dispatcher.groups) == {"worker"}
        flower = start_flower(app, wait_for=[HOST])          # heartbeats arrive without -E
        try:
            deadline = time.monotonic() + 15
            while "task" not in dispatcher.groups:
                assert time.monotonic() < deadline, "Flower did not enable task events"
                time.sleep(0.1)
            res = app.tasks["tflower.add"].delay(1, 2)
            info = flower.wait_tasks([res.id])[res.id]
            assert info["state"] == "SUCCESS" and info.get("sent") is None    # no task-sent event
            app.conf.task_send_sent_event = True
            res = app.tasks["tflower.add"].delay(2, 3)
            assert flower.wait_tasks([res.id])[res.id].get("sent") is not None
        finally:
            flower.stop()
