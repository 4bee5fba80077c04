"""Classrooms: learners sharing one real broker never see each other's tasks.

Each learner sets ``CELERYLAB_LEARNER``: on Redis their keys, queues and events get their own
prefix, on RabbitMQ they work in their own virtual host. Two learners here use the same app
name, task names and queue, on one redis-server (and one rabbitmq-server, where installed).
"""
from __future__ import annotations

import time

import pytest
import redis

import celerylab
from celerylab import broker as kit_broker
from celerylab.queues import queue_length
from celerylab.errors import BrokerUnreachableError, CeleryLabError
from celerylab.servers import RedisServer

pytestmark = pytest.mark.slow


def learner_app(monkeypatch, url: str, name: str):
    """What learner ``name``'s notebook does: same code for everyone, their own env."""
    monkeypatch.setenv("CELERYLAB_BROKER_URL", url)
    monkeypatch.setenv("CELERYLAB_LEARNER", name)
    app = celerylab.create_app("classroom")

    @app.task(name="classroom.whose", shared=False)
    def whose(i):
        return [name, i]

    return app, whose


def two_learners_never_cross(monkeypatch, url: str):
    alice, alice_task = learner_app(monkeypatch, url, "alice")
    bob, bob_task = learner_app(monkeypatch, url, "bob")
    sent = {"alice": [alice_task.delay(i) for i in range(10)], "bob": [bob_task.delay(i) for i in range(10)]}
    # only alice's worker runs: it does all of alice's tasks and none of bob's
    with celerylab.run_worker(alice, hostname="alice@class"):
        assert [r.get(timeout=20) for r in sent["alice"]] == [["alice", i] for i in range(10)]
        time.sleep(0.5)
        assert {r.state for r in sent["bob"]} == {"PENDING"}
    assert queue_length(bob, "celery") == 10
    assert queue_length(alice, "celery") == 0
    with celerylab.run_worker(bob, hostname="bob@class"):
        assert [r.get(timeout=20) for r in sent["bob"]] == [["bob", i] for i in range(10)]
    return alice, bob


@pytest.fixture
def no_kit_broker():
    yield
    celerylab.cleanup()
    kit_broker._current = None


def test_two_learners_on_one_redis(monkeypatch, tmp_path, redis_server_bin, no_kit_broker):
    with RedisServer(datadir=str(tmp_path)) as server:
        two_learners_never_cross(monkeypatch, server.url)
        keys = [k.decode() for k in redis.Redis.from_url(server.url).keys("*")]
        assert keys and all(k.startswith(("alice:", "bob:")) for k in keys), keys


def test_a_worker_on_another_machine_serves_only_its_learner(monkeypatch, tmp_path, redis_server_bin, no_kit_broker):
    """`python -m celerylab worker --lesson 00` with alice's CELERYLAB_LEARNER, as another machine
    would start it: it runs alice's tasks and leaves bob's queued."""
    import os
    import subprocess
    import sys

    from celerylab import processes
    from celerylab.ports import port_in_use

    with RedisServer(datadir=str(tmp_path)) as server:
        env = {**processes.child_env(), "CELERYLAB_BROKER_URL": server.url, "CELERYLAB_LEARNER": "alice",
               "CELERYLAB_LOG_DIR": str(tmp_path / "logs")}
        worker = subprocess.Popen([sys.executable, "-m", "celerylab", "worker", "--lesson", "00", "--pool", "threads",
                                   "--concurrency", "2"], env=env, start_new_session=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            from celerylab.lessons import l00_start

            sent, apps = {}, []
            for name in ("alice", "bob"):
                monkeypatch.setenv("CELERYLAB_BROKER_URL", server.url)
                monkeypatch.setenv("CELERYLAB_LEARNER", name)
                app = celerylab.create_app(f"classroom-{name}")
                apps.append(app)
                sent[name] = [app.send_task("l00.add", (i, i)) for i in range(5)]
            assert [r.get(timeout=30) for r in sent["alice"]] == [0, 2, 4, 6, 8]
            assert {r.state for r in sent["bob"]} == {"PENDING"}
            assert redis.Redis.from_url(server.url).llen("bob:celery") == 5
            sent.clear()  # results unsubscribe when collected: while the server is still there
            for app in apps:
                app.close()
        finally:
            processes.kill_group(worker.pid, wait=5)
            worker.wait(5)
        assert l00_start  # the lesson module the worker served


def test_two_learners_on_one_rabbitmq_each_in_a_vhost(monkeypatch, rabbitmq_server, no_kit_broker):
    server = rabbitmq_server
    # a learner whose virtual host the instructor has not created yet: one clear line
    monkeypatch.setenv("CELERYLAB_BROKER_URL", server.url)
    monkeypatch.setenv("CELERYLAB_LEARNER", "carol")
    with pytest.raises(BrokerUnreachableError, match="rabbitmqctl add_vhost carol"):
        celerylab.start_broker()
    for name in ("alice", "bob"):
        server.ctl("add_vhost", name)
        server.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    alice, bob = two_learners_never_cross(monkeypatch, server.url)
    assert alice.conf.broker_url.endswith("/alice") and bob.conf.broker_url.endswith("/bob")
    queues = server.ctl("list_queues", "-p", "alice", "name", "messages")
    assert "celery\t0" in queues


def test_a_bad_learner_name_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("CELERYLAB_LEARNER", "alice smith")
    with pytest.raises(CeleryLabError, match="CELERYLAB_LEARNER='alice smith': use 1-40 letters"):
        kit_broker.learner()
    monkeypatch.setenv("CELERYLAB_LEARNER", "team-3")
    assert kit_broker.learner_prefix() == "team-3:"
    assert kit_broker.with_learner_vhost("amqp://u:p@host:5672//") == "amqp://u:p@host:5672/team-3"
    assert kit_broker.with_learner_vhost("redis://host:6379/0") == "redis://host:6379/0"


# -- the instructor's commands (celerylab/classroom.py) -------------------------------------------
def test_class_create_gives_each_learner_a_redis_user_confined_to_their_prefix(tmp_path, redis_server_bin):
    from celerylab import classroom

    with RedisServer(datadir=str(tmp_path / "redis")) as server:
        out = tmp_path / "class.csv"
        urls = classroom.create_class(server.url, ["alice", "bob"], str(out))
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        assert classroom.read_names(str(out)) == ["alice", "bob"]
        alice = redis.Redis.from_url(urls["alice"])
        bob = redis.Redis.from_url(urls["bob"])
        alice.set("alice:x", 1)
        bob.set("bob:x", 2)
        for forbidden in (lambda: alice.get("bob:x"), lambda: alice.set("x", 1), lambda: alice.keys("*"),
                          lambda: alice.flushdb(), lambda: alice.publish("bob:/0.celeryev/task.sent", "x")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                forbidden()
        pubsub = alice.pubsub()
        pubsub.psubscribe("alice:/0.celeryev/*")   # her own live view: allowed
        assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
        pubsub.psubscribe("*")                      # everybody's events: not
        with pytest.raises(redis.exceptions.NoPermissionError):
            pubsub.get_message(timeout=5)
        pubsub.close()
        # the same passwords when the instructor runs create again (after a Redis restart)
        assert classroom.create_class(server.url, ["alice", "bob"], str(out)) == urls
        admin = classroom.RedisClass(server.url)
        assert admin.reset("alice").endswith("1 keys deleted")
        assert alice.get("alice:x") is None and bob.get("bob:x") == b"2"   # alice reconnects, bob untouched
        admin.remove("alice")
        assert b"alice" not in admin.client.execute_command("ACL", "USERS")
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis.from_url(urls["alice"]).ping()
        admin.close()
        for client in (alice, bob):
            client.close()


def test_class_command_line(tmp_path, redis_server_bin):
    import subprocess
    import sys

    with RedisServer(datadir=str(tmp_path / "redis")) as server:
        run = lambda *a: subprocess.run([sys.executable, "-m", "celerylab", "class", *a, "--broker", server.url],  # noqa: E731
                                        capture_output=True, text=True, timeout=60)
        made = run("create", "alice,bob", "--out", str(tmp_path / "class.csv"))
        assert made.returncode == 0 and "class created: 2 learners (alice, bob)" in made.stdout, made.stderr
        assert run("reset", "alice").stdout.startswith("alice: ")
        removed = run("remove", str(tmp_path / "class.csv"))
        assert removed.stdout.splitlines()[1].startswith("bob: user removed")
        assert run("create", "alice smith").stderr.startswith("celerylab: learner name 'alice smith'")
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    (tmp_path / "subs" / "mallory").mkdir()
    graded = subprocess.run([sys.executable, "-m", "celerylab", "class", "grade", "alice,bob", str(tmp_path / "subs")],
                            capture_output=True, text=True, timeout=60)
    assert "no submission from: alice, bob" in graded.stdout
    assert "not in the class (not graded): mallory" in graded.stdout
    assert graded.returncode == 2 and "no notebooks from any learner of the class" in graded.stderr


def test_class_create_on_rabbitmq_a_vhost_and_user_each(rabbitmq_server):
    from kombu import Connection

    from celerylab import classroom

    server = rabbitmq_server
    urls = classroom.create_class(server.url, ["alice", "bob"], None, ctl=server.ctl)
    assert urls["alice"].startswith(f"amqp://alice:") and urls["alice"].endswith(f":{server.port}/alice")
    with Connection(urls["alice"], connect_timeout=5) as conn:
        conn.connect()
        conn.SimpleQueue("homework").put({"n": 1})
    into_bobs = urls["alice"].rsplit("/", 1)[0] + "/bob"
    with pytest.raises(Exception, match="(?i)access|refused|not_allowed"):
        with Connection(into_bobs, connect_timeout=5) as conn:
            conn.connect()
    admin = classroom.RabbitClass(server.ctl)
    assert [q.split("\t")[0] for q in admin.queues("alice")] == ["homework"]
    admin.reset("alice")
    assert admin.queues("alice") == []
    admin.remove_many(["alice", "bob"])
    assert admin._names("vhosts") == {"/"} and admin._names("users") == {"guest"}
