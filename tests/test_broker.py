"""The embedded broker: start, reuse, stop, bad input, and the real-URL mode."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
import redis

import celerylab
from celerylab.errors import BrokerUnreachableError, LupaMissingError, PortInUseError
from celerylab.ports import free_port, port_in_use


def test_start_serves_redis_on_loopback(embedded):
    assert embedded.embedded
    assert embedded.url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(embedded.url)
    client.set("k", "v")
    assert client.get("k") == b"v"


def test_rerunning_the_cell_reuses_the_running_broker(embedded):
    redis.Redis.from_url(embedded.url).set("kept", "1")
    again = celerylab.start_broker()
    assert again is embedded
    assert redis.Redis.from_url(again.url).get("kept") == b"1"


def test_stop_frees_the_port_and_the_thread(embedded):
    port = embedded.port
    embedded.stop()
    assert not port_in_use(port)
    assert not [t for t in threading.enumerate() if t.name.startswith("celerylab-broker")]
    assert celerylab.current_broker() is None
    # and a new one can start afterwards
    assert celerylab.start_broker().port


def test_context_manager_stops(monkeypatch):
    monkeypatch.delenv("CELERYLAB_BROKER_URL", raising=False)
    celerylab.cleanup()
    with celerylab.start_broker() as broker:
        port = broker.port
        assert port_in_use(port)
    assert not port_in_use(port)


def test_error_replies_keep_the_connection(embedded):
    client = redis.Redis.from_url(embedded.url)
    conn_id = client.client_id()
    client.lpush("alist", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.get("alist")
    with pytest.raises(redis.exceptions.NoScriptError):
        client.evalsha("0" * 40, 0)
    with pytest.raises(redis.ResponseError):
        client.execute_command("NOSUCHCOMMAND")
    assert client.client_id() == conn_id  # same connection: never closed by the server


def test_busy_port_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("CELERYLAB_BROKER_URL", raising=False)
    celerylab.cleanup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} .* already in use"):
            celerylab.start_broker(port=port)


def test_missing_lupa_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("CELERYLAB_BROKER_URL", raising=False)
    celerylab.cleanup()
    monkeypatch.setitem(sys.modules, "lupa", None)  # makes `import lupa` raise ImportError
    with pytest.raises(LupaMissingError, match="pip install lupa"):
        celerylab.start_broker()


def test_unreachable_url_fails_fast_with_one_line(monkeypatch):
    monkeypatch.setenv("CELERYLAB_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    celerylab.cleanup()
    start = time.monotonic()
    with pytest.raises(BrokerUnreachableError) as info:
        celerylab.start_broker()
    assert time.monotonic() - start < 5
    assert "\n" not in str(info.value) and "CELERYLAB_BROKER_URL" in str(info.value)


def test_unroutable_host_gives_up_within_five_seconds(monkeypatch):
    # 10.255.255.1 is not answered on this network: the connect would hang without a timeout.
    monkeypatch.setenv("CELERYLAB_BROKER_URL", "amqp://guest:guest@10.255.255.1:5672//")
    celerylab.cleanup()
    start = time.monotonic()
    with pytest.raises(BrokerUnreachableError):
        celerylab.start_broker()
    assert time.monotonic() - start < 5.5


def test_cli_reports_bad_input_as_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "celerylab", "broker", "--port", str(port)],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "already in use" in out.stderr


def test_cli_broker_process_serves_workers_elsewhere():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "celerylab", "broker", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"redis://127.0.0.1:{port}/0" in line
        assert redis.Redis(port=port).ping()
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    assert not port_in_use(port)


@pytest.mark.redis_server
def test_real_redis_url_mode_runs_tasks(redis_server, monkeypatch):
    monkeypatch.setenv("CELERYLAB_BROKER_URL", redis_server)
    celerylab.cleanup()
    broker = celerylab.start_broker()
    assert not broker.embedded and broker.url == redis_server
    app = celerylab.create_app("realurl")

    @app.task(name="realurl.mul")
    def mul(x, y):
        return x * y

    with celerylab.run_worker(app, concurrency=2):
        assert mul.delay(6, 7).get(timeout=10) == 42
    # the task really went through that server
    assert redis.Redis.from_url(redis_server).keys("celery-task-meta-*")
    broker.stop()  # a real broker is left running
    assert redis.Redis.from_url(redis_server).ping()
