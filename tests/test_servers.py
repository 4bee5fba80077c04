"""celerylab.servers: real brokers on loopback for a command, a test or a lesson; nothing left behind."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from celerylab.ports import port_in_use
from celerylab.servers import RabbitMQServer, RedisServer, ServerMissingError, main

pytestmark = pytest.mark.slow

PROBE = textwrap.dedent("""
    import os, redis
    url = os.environ["CELERYLAB_BROKER_URL"]
    redis.Redis.from_url(url).set("seen", "yes")
    print(url, os.environ.get("CELERYLAB_RESULT_BACKEND"))
""")


def test_a_command_runs_with_a_fresh_redis_server_which_stops_after(redis_server_bin):
    proc = subprocess.run([sys.executable, "-m", "celerylab.servers", "redis", "--", sys.executable, "-c", PROBE],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    url, backend = lines[-2].split()
    assert url.startswith("redis://127.0.0.1:") and backend == "None"
    assert lines[-1] == "==> stopping redis-server"
    assert not port_in_use(int(url.rsplit(":", 1)[1].split("/")[0]))


def test_the_command_s_exit_status_is_kept(redis_server_bin):
    assert main(["redis", "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3


def test_without_a_command_it_says_so(capsys):
    with pytest.raises(SystemExit):
        main(["redis"])
    assert "give the command to run after --" in capsys.readouterr().err


def test_aof_keeps_the_data_through_a_crash(redis_server_bin, tmp_path):
    import redis

    for appendonly, expected in ((True, b"kept"), (False, None)):
        with RedisServer(datadir=str(tmp_path / str(appendonly)), appendonly=appendonly) as server:
            redis.Redis.from_url(server.url).set("k", "kept")
            server.restart(crash=True)  # SIGKILL: no clean shutdown, no final save
            assert redis.Redis.from_url(server.url).get("k") == expected


def test_a_missing_server_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(RabbitMQServer, "program", "/nonexistent/rabbitmq-server")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServerMissingError, match=r"rabbitmq-server is not installed \(apt-get install rabbitmq-server"):
        RabbitMQServer().start()
    assert main(["rabbitmq", "--", "true"]) == 2


def test_rabbitmq_stops_with_its_erlang_helpers(tmp_path):
    server = RabbitMQServer(datadir=str(tmp_path))
    try:
        server.start()
    except ServerMissingError as exc:
        pytest.skip(str(exc))
    epmd_before = server._epmd_was_running
    assert "celery" not in server.ctl("list_queues", "name")
    server.close()
    assert not port_in_use(server.port) and not port_in_use(server.dist_port)
    if not epmd_before:
        assert not port_in_use(4369)
    assert os.path.isdir(tmp_path / "mnesia")  # a data folder given by the caller is kept


def test_a_server_dies_with_the_process_that_started_it(redis_server_bin, tmp_path):
    """A kernel killed with SIGKILL runs no cleanup: its redis-server must not live on."""
    script = textwrap.dedent(f"""
        from celerylab.servers import RedisServer
        server = RedisServer(datadir={str(tmp_path)!r}).start()
        print(server.port, server.proc.pid, flush=True)
        import time; time.sleep(60)
    """)
    kernel = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    port, group = map(int, kernel.stdout.readline().split())
    assert port_in_use(port)
    kernel.kill()
    kernel.wait()
    from celerylab.processes import group_alive

    import time
    deadline = time.monotonic() + 5
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(group) and not port_in_use(port)
