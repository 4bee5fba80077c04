"""A broker restarted in the middle of a batch: what survives (lesson 08b's experiment).

Redis without persistence loses every queued task; Redis with an append-only file and
RabbitMQ (durable queues, persistent messages) lose none. A worker with ``acks_late`` finishes
the batch after the broker comes back.
"""
from __future__ import annotations

import pytest

from celerylab.durability import batch_through_restart
from celerylab.servers import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _kit_broker_is_embedded(embedded):
    """The experiment brings its own broker; the kit's own stays the embedded one."""


def test_redis_with_aof_loses_at_most_the_messages_in_flight_through_a_restart(redis_server_bin, tmp_path):
    """A clean restart: what was queued or held unacknowledged runs in the end; a message popped
    (BRPOP) just as the connection dropped, not yet recorded as unacknowledged, can be gone."""
    with RedisServer(datadir=str(tmp_path), appendonly=True) as server:
        got = batch_through_restart(server, n=40, restart_after=10, crash=False)
    assert 10 <= got.done_before < got.sent, "the restart came after the batch: nothing was tested"
    assert got.lost <= 2, got.line()  # the worker's prefetch window: concurrency 2 x multiplier 1
    assert got.runs >= got.done >= 38


def test_redis_with_aof_killed_loses_at_most_the_messages_in_flight(redis_server_bin, tmp_path):
    """SIGKILL: kombu's Redis transport takes a message (BRPOP) and only then records it as
    unacknowledged; one popped in that instant is gone. Everything still queued survives."""
    with RedisServer(datadir=str(tmp_path), appendonly=True) as server:
        got = batch_through_restart(server, n=40, restart_after=10, crash=True)
    assert got.done_before < got.sent
    assert got.lost <= 2, got.line()  # the worker's prefetch window: concurrency 2 x multiplier 1


def test_redis_without_persistence_loses_the_queued_tasks(redis_server_bin, tmp_path):
    with RedisServer(datadir=str(tmp_path), appendonly=False) as server:
        got = batch_through_restart(server, n=40, restart_after=10, crash=True)
    assert got.done_before < got.sent
    assert got.lost > 0, got.line()
    # what ran before the restart, plus at most what the worker held then: the rest is gone
    assert got.done <= got.done_before + 4, got.line()


def test_rabbitmq_keeps_durable_queues_and_with_confirms_survives_a_kill(rabbitmq_server):
    """Queued tasks (no worker): a clean restart keeps them; a kill right after publishing keeps
    them only when the publisher waited for confirms.

    (A worker mid-batch through a RabbitMQ restart is not tested here: after reconnecting, the
    worker sometimes takes no more messages; see the note on issue 8.)
    """
    from celerylab.durability import queued_through_restart

    restarted = queued_through_restart(rabbitmq_server, "restarted", crash=False)
    confirmed = queued_through_restart(rabbitmq_server, "killed, confirms", crash=True, confirm_publish=True)
    assert (restarted.before, restarted.after) == (40, 40)
    assert (confirmed.before, confirmed.after) == (40, 40)


def test_a_task_that_ends_while_redis_restarts_runs_twice(redis_server_bin, tmp_path):
    """At-least-once (lesson 08b, section 3): a late-acked task still running when the connection
    drops finishes, cannot be acknowledged, and is delivered again once Redis is back."""
    import time

    import redis

    import celerylab
    from celerylab.durability import Ledger

    conf = dict(result_backend=None, task_ignore_result=True, task_acks_late=True, worker_prefetch_multiplier=1,
                broker_connection_retry=True, broker_connection_max_retries=None,
                worker_cancel_long_running_tasks_on_connection_loss=False,  # let the running task finish
                broker_transport_options={"visibility_timeout": 2, "unacked_restore_interval": 0.5,
                                          "unacked_restore_throttle": 0.5})
    with RedisServer(datadir=str(tmp_path), appendonly=True) as server:
        ledger = Ledger()
        client = celerylab.create_app("t-twice", broker_url=server.url, **conf)
        workers = []

        def start():
            workers.append(celerylab.spawn_worker("celerylab.lessons.l08b_durability", pool="threads", concurrency=1,
                                                  broker_url=server.url, **conf).wait_ready())
        try:
            client.send_task("durability.step", (0, ledger.url, 1.5))
            start()
            broker = redis.Redis.from_url(server.url)
            deadline = time.monotonic() + 20
            while not broker.hlen("unacked") and time.monotonic() < deadline:  # the task is running
                time.sleep(0.02)
            broker.close()
            assert time.monotonic() < deadline, "the task never started"
            server.restart(crash=False)
            deadline = time.monotonic() + 30
            while ledger.runs() < 2 and time.monotonic() < deadline:
                if not workers[-1].alive:  # kombu 5.7 can crash the worker on reconnect: start it again
                    start()
                time.sleep(0.05)
            assert (ledger.done(), ledger.runs()) == (1, 2)
        finally:
            for w in workers:
                w.kill()
            client.close()
            ledger.close()
