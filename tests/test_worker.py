"""run_worker (in the kernel) and spawn_worker (subprocess): real workers that leave nothing behind."""
from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from types import SimpleNamespace
import threading
import time

import pytest

import celerylab
from celerylab.errors import UnknownPoolError, WorkerStartError


def kit_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("celerylab-") and
                  not t.name.startswith("celerylab-broker"))


@pytest.fixture
def app(embedded):
    """A fresh app on this test's broker with lesson 00's tasks (same names a subprocess worker has)."""
    from celerylab.lessons import l00_start

    app = celerylab.create_app("test_worker", task_track_started=True)
    for task in (l00_start.add, l00_start.sleep_then_return, l00_start.fail):
        app.task(name=task.name)(task.run)
    yield app
    app.close()


@pytest.fixture
def tasks(app):
    return SimpleNamespace(**{name.split(".")[1]: app.tasks[name] for name in app.tasks if name.startswith("l00.")})


def test_run_worker_runs_real_tasks(app, tasks):
    add, fail = tasks.add, tasks.fail

    with celerylab.run_worker(app) as worker:
        assert add.delay(2, 3).get(timeout=10) == 5
        failed = fail.delay("nope")
        with pytest.raises(ValueError, match="nope"):
            failed.get(timeout=10)
        assert worker.hostname == "test_worker@kernel"


def test_leaving_waits_for_running_tasks(app, tasks):
    sleep_then_return = tasks.sleep_then_return

    with celerylab.run_worker(app):
        result = sleep_then_return.delay(1.5, "finished")
        deadline = time.monotonic() + 5
        while result.state != "STARTED":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        left_at = time.monotonic()
    assert time.monotonic() - left_at >= 1.0  # it waited for the task
    assert result.state == "SUCCESS" and result.result == "finished"
    assert not [t for t in threading.enumerate() if t.name.startswith("celerylab-task")]


def test_three_cycles_in_one_kernel_leak_nothing(app, tasks, embedded):
    add = tasks.add

    def connections_settle_at(limit):
        gc.collect()  # closed connections are released when their pools are collected
        deadline = time.monotonic() + 3
        while embedded._server.client_count > limit and time.monotonic() < deadline:
            time.sleep(0.05)
        return embedded._server.client_count

    with celerylab.run_worker(app):
        assert add.delay(1, 1).get(timeout=10) == 2
    threads, connections = len(threading.enumerate()), connections_settle_at(0)
    for i in range(3):
        with celerylab.run_worker(app):
            assert add.delay(i, i).get(timeout=10) == 2 * i
    assert len(threading.enumerate()) == threads
    assert connections_settle_at(connections) <= connections
    assert kit_threads() == []


def test_worker_logs_go_to_a_file_not_the_output(app, tasks, capfd):
    add = tasks.add

    with celerylab.run_worker(app) as worker:
        add.delay(1, 2).get(timeout=10)
    out, err = capfd.readouterr()
    assert "succeeded" not in out + err and "Connected to" not in out + err
    assert "l00.add" in worker.logfile.read_text()


def test_get_inside_a_task_is_still_refused(app):
    # The kit keeps Celery's deadlock guard per thread: .get() in the notebook works, in a task it raises.
    @app.task(name="l00.test_nested_get")
    def nested():
        return app.tasks["l00.add"].delay(1, 1).get(timeout=5)

    with celerylab.run_worker(app):
        with pytest.raises(RuntimeError, match="Never call result.get"):
            nested.delay().get(timeout=10)


def test_unknown_pool_is_one_clear_error(app):
    with pytest.raises(UnknownPoolError, match="unknown pool 'turbo'"):
        with celerylab.run_worker(app, pool="turbo"):
            pass
    with pytest.raises(UnknownPoolError, match="threads, solo"):
        with celerylab.run_worker(app, pool="prefork"):  # prefork needs its own process
            pass
    with pytest.raises(UnknownPoolError):
        celerylab.spawn_worker("celerylab.lessons.l00_start", pool="turbo")


def group_alive(pgid: int) -> bool:
    from celerylab.processes import group_alive as alive

    return alive(pgid)


@pytest.mark.slow
def test_spawned_prefork_worker_runs_tasks_and_kill_takes_the_group(app, tasks):
    add = tasks.add

    worker = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="prefork", concurrency=2).wait_ready()
    try:
        assert add.delay(20, 22).get(timeout=15) == 42
        children = worker.children()
        assert len(children) == 2
    finally:
        worker.kill()
    assert not group_alive(worker.pid)
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert celerylab.where()["running"] == [f"embedded broker {celerylab.current_broker().url}"]


@pytest.mark.slow
def test_terminate_is_a_warm_shutdown(app, tasks):
    sleep_then_return = tasks.sleep_then_return

    worker = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="threads", concurrency=1,
                                    task_track_started=True).wait_ready()
    result = sleep_then_return.delay(1.5, "warm")
    deadline = time.monotonic() + 10
    while result.state != "STARTED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.terminate()
    assert result.get(timeout=5) == "warm"  # SIGTERM let the running task finish
    assert not group_alive(worker.pid)


def test_a_worker_that_cannot_start_says_why(app):
    worker = celerylab.spawn_worker("celerylab.lessons.no_such_module", pool="solo")
    with pytest.raises(WorkerStartError, match="exited with status"):
        worker.wait_ready(timeout=20)


@pytest.mark.slow
def test_no_orphans_when_the_kernel_is_killed(tmp_path):
    """SIGKILL the 'kernel' (atexit never runs): its worker and broker subprocess die on their own."""
    script = tmp_path / "kernel.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys, time
        import celerylab
        w = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="prefork", concurrency=2).wait_ready()
        b = subprocess.Popen([sys.executable, "-m", "celerylab", "broker", "--port", "0"],
                             env=celerylab.processes.child_env(), start_new_session=True,
                             stdout=subprocess.DEVNULL)
        print(w.pid, b.pid, *w.children(), flush=True)
        time.sleep(60)
    """))
    env = {k: v for k, v in os.environ.items() if k != "CELERYLAB_BROKER_URL"}
    kernel = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    pids = [int(p) for p in kernel.stdout.readline().split()]
    assert len(pids) == 4
    kernel.send_signal(signal.SIGKILL)
    kernel.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split(") ")[1][0] != "Z"
              for p in pids):
        assert time.monotonic() < deadline, "orphans survived the kernel"
        time.sleep(0.1)


@pytest.mark.slow
def test_no_orphans_after_a_normal_exit(tmp_path):
    script = tmp_path / "kernel.py"
    script.write_text(textwrap.dedent("""
        import celerylab
        from celerylab.lessons.l00_start import app, add
        w = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="prefork", concurrency=2).wait_ready()
        with celerylab.run_worker(app):
            assert add.delay(1, 2).get(timeout=10) == 3
        print(w.pid, *w.children(), celerylab.current_broker().port, flush=True)
        # exit without cleanup(): atexit must do it
    """))
    env = {k: v for k, v in os.environ.items() if k != "CELERYLAB_BROKER_URL"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    *pids, port = [int(p) for p in out.stdout.split()]
    from celerylab.ports import port_in_use

    assert not port_in_use(port)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"


@pytest.mark.slow
def test_kill_9_mid_batch_with_late_acks_loses_nothing(app, tasks):
    """acks_late + task_reject_on_worker_lost: SIGKILL the whole worker mid-batch, N sent -> N results."""
    sleep_then_return = tasks.sleep_then_return

    conf = dict(task_acks_late=True, task_reject_on_worker_lost=True,
                broker_transport_options={"visibility_timeout": 3})
    # The client's app must use the same short visibility timeout when it restores messages.
    n = 12
    first = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="prefork", concurrency=2,
                                   prefetch_multiplier=1, **conf).wait_ready()
    results = [sleep_then_return.delay(0.3, i) for i in range(n)]
    deadline = time.monotonic() + 10
    while sum(r.state == "SUCCESS" for r in results) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.kill()  # SIGKILL to the group: no chance to ack, reject or requeue anything
    done_before = sum(r.state == "SUCCESS" for r in results)
    assert done_before < n, "the batch finished before the kill; make the tasks longer"
    second = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="prefork", concurrency=2,
                                    prefetch_multiplier=1, **conf).wait_ready()
    try:
        values = [r.get(timeout=30) for r in results]
    finally:
        second.terminate()
    assert sorted(values) == list(range(n))


def test_two_in_kernel_workers_side_by_side(app, tasks):
    """Each in-kernel worker has its own event loop: both run countdown tasks, both stop cleanly."""
    first = celerylab.start_worker(app, queues=["one"], hostname="first@kernel")
    second = celerylab.start_worker(app, queues=["two"], hostname="second@kernel")
    try:
        a = tasks.add.apply_async((1, 1), queue="one", countdown=0.3)
        b = tasks.add.apply_async((2, 2), queue="two", countdown=0.3)
        assert (a.get(timeout=10), b.get(timeout=10)) == (2, 4)
    finally:
        started = time.monotonic()
        second.stop()
        first.stop()
    assert time.monotonic() - started < 10
    assert kit_threads() == []


def test_a_worker_on_chosen_queues_does_not_narrow_later_workers(app, tasks):
    with celerylab.run_worker(app, queues=["reports"]):
        assert tasks.add.apply_async((1, 2), queue="reports").get(timeout=10) == 3
    with celerylab.run_worker(app):  # default queue again, as a fresh worker would
        assert tasks.add.delay(2, 2).get(timeout=10) == 4


def test_command_is_the_equivalent_celery_worker_command_line():
    from celerylab.spawn import worker_command

    command = worker_command("celerylab.lessons.l00_start", "prefork", 2, ["a", "b"], "w1@%h", "INFO",
                             prefetch_multiplier=1,
                             conf=dict(task_acks_late=True, worker_max_tasks_per_child=2, task_time_limit=1.5,
                                       broker_transport_options={"visibility_timeout": 3}))
    assert command == ("celery -A celerylab.lessons.l00_start worker --pool=prefork --concurrency=2"
                       " --queues=a,b --hostname=w1@%h --loglevel=INFO --task-events --without-mingle"
                       " --without-gossip --prefetch-multiplier=1 --max-tasks-per-child=2 --time-limit=1.5"
                       " -- task_acks_late=true 'broker_transport_options=(json){\"visibility_timeout\":3}'")
    # No settings: nothing after "--"; no queues: no --queues (the worker consumes "celery").
    plain = worker_command("m", "solo", 1, None, "w@%h", "WARNING")
    assert "--" not in plain.split() and "--queues" not in plain


def test_every_option_in_command_is_one_celery_worker_accepts():
    from celerylab.spawn import SETTING_OPTIONS

    out = subprocess.run([sys.executable, "-m", "celery", "worker", "--help"], capture_output=True, text=True,
                         timeout=60).stdout
    for option in [*SETTING_OPTIONS.values(), "--pool", "--concurrency", "--queues", "--hostname", "--loglevel",
                   "--task-events", "--without-mingle", "--without-gossip", "--disable-prefetch"]:
        assert option in out.split() or option + "," in out.split(), option


@pytest.mark.slow
def test_a_spawned_workers_command_starts_the_same_worker(app, tmp_path):
    """Run ``w.command`` itself (no kit settings in the environment): it answers ping and has the settings."""
    import shlex

    from celerylab.app import APP_CONF_ENV

    w = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="prefork", concurrency=1, queues=["cmd"],
                               hostname="cmd-check@%h", task_acks_late=True, worker_max_tasks_per_child=3,
                               broker_transport_options={"visibility_timeout": 7})
    w.kill()  # only its command line is used here
    argv = shlex.split(w.command)
    assert argv[:4] == ["celery", "-A", "celerylab.lessons.l00_start", "worker"]
    env = celerylab.processes.child_env()
    env.pop(APP_CONF_ENV, None)
    env["CELERYLAB_BROKER_URL"], env["CELERYLAB_RESULT_BACKEND"] = app.conf.broker_url, app.conf.result_backend
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", *argv], env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        node = "cmd-check@" + os.uname().nodename
        deadline = time.monotonic() + 30
        replies = []
        while not replies:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the command's worker never answered ping"
            replies = app.control.ping(destination=[node], timeout=1)
        assert replies == [{node: {"ok": "pong"}}]
        conf = app.control.inspect(destination=[node], timeout=5).conf()[node]
        assert conf["task_acks_late"] is True
        assert conf["broker_transport_options"]["visibility_timeout"] == 7
        pool = app.control.inspect(destination=[node], timeout=5).stats()[node]["pool"]
        assert pool["max-concurrency"] == 1 and "prefork" in pool["implementation"]
        assert pool["max-tasks-per-child"] == 3  # an option of the worker, not in app.conf
        assert [q["name"] for q in app.control.inspect(destination=[node], timeout=5).active_queues()[node]] == ["cmd"]
    finally:
        celerylab.processes.kill_group(proc.pid, signal.SIGKILL, wait=5)
        proc.wait(10)


@pytest.mark.slow
def test_a_hard_time_limit_fires_on_prefork_but_not_on_threads(app, tasks):
    """Lesson 00 section 6: the threads pool lets a task run past time_limit; prefork kills it."""
    from celery.exceptions import TimeLimitExceeded

    process = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="prefork", concurrency=1,
                                     queues=["t-limit"]).wait_ready()
    try:
        with celerylab.run_worker(app):
            on_threads = tasks.sleep_then_return.apply_async((1.0, "ran"), time_limit=0.5)
            assert on_threads.get(timeout=10) == "ran"
        on_prefork = tasks.sleep_then_return.apply_async((1.0, "ran"), time_limit=0.5, queue="t-limit")
        outcome = on_prefork.get(timeout=10, propagate=False)
    finally:
        process.terminate()
    assert on_prefork.state == "FAILURE" and isinstance(outcome, TimeLimitExceeded)


def _stops_that_lose_the_last_event(app, add, stops, start=None, **worker_options):
    """Start a worker, run one task, stop the worker as soon as .get() returns; count the tasks a
    live view still shows as started after the worker is gone (their task-succeeded event lost)."""
    from celerylab.events import Watcher

    watcher = Watcher(app).start()
    try:
        for i in range(stops):
            worker = start() if start else celerylab.start_worker(app, concurrency=1, **worker_options)
            assert add.delay(i, 1).get(timeout=10) == i + 1
            # right after the result, as a lesson cell that replaces its worker
            worker.terminate() if start else worker.stop()
            # the worker sends worker-offline after its task events: once it is here, they are too
            watcher.wait_for(lambda s: s.events.get("worker-offline", 0) > i, timeout=10)
        summary = watcher.summary()
        assert summary.tasks == stops
        return summary.states["started"]
    finally:
        watcher.stop()


def test_stopping_a_worker_right_after_get_loses_no_task_event(app, tasks):
    # Celery's own consumer drops that last buffered event at shutdown (a race: some stops in 20 lose it);
    # tests/test_claims_current_0102.py::test_a_worker_closes_its_event_dispatcher_without_sending_buffered_task_events
    # shows that deterministically. The kit's consumer flushes first: none lost.
    assert _stops_that_lose_the_last_event(app, tasks.add, stops=10) == 0


@pytest.mark.slow
def test_a_spawned_worker_stopped_right_after_get_loses_no_task_event(app, tasks):
    def start():
        return celerylab.spawn_worker("celerylab.lessons.l00_start", concurrency=1).wait_ready()

    assert _stops_that_lose_the_last_event(app, tasks.add, stops=4, start=start) == 0


def test_celery_worker_processes_the_kit_starts_use_the_flushing_consumer(monkeypatch):
    from celerylab import processes
    from celerylab.worker import _DEFAULT_CONSUMER, _KitConsumer, _kit_consumer_in_spawned_workers

    started_by_kit, own_consumer, outside = (SimpleNamespace(consumer_cls=_DEFAULT_CONSUMER),
                                             SimpleNamespace(consumer_cls="my.app:Consumer"),
                                             SimpleNamespace(consumer_cls=_DEFAULT_CONSUMER))
    monkeypatch.setenv(processes.PARENT_PID_ENV, "1")
    _kit_consumer_in_spawned_workers(instance=started_by_kit)
    _kit_consumer_in_spawned_workers(instance=own_consumer)
    monkeypatch.delenv(processes.PARENT_PID_ENV)
    _kit_consumer_in_spawned_workers(instance=outside)
    assert started_by_kit.consumer_cls is _KitConsumer
    assert own_consumer.consumer_cls == "my.app:Consumer"   # a consumer the app chose is kept
    assert outside.consumer_cls == _DEFAULT_CONSUMER        # a worker not started by the kit: Celery's


def _left_in_the_broker(app, queue="celery"):
    from celerylab import queues

    return celerylab.broker.redis_client(app.conf.broker_url).llen(queue), queues.unacked(app)


def test_a_late_ack_task_that_finishes_while_its_worker_stops_is_acked_not_requeued(app, tasks):
    # A warm shutdown waits for the running task and its acknowledgement: nothing goes back to
    # the queue (a message restored here would run the task again on the next worker).
    late = app.task(name="test_worker.late_sleep", acks_late=True)(tasks.sleep_then_return.run)
    worker = celerylab.start_worker(app, concurrency=1)
    result = late.delay(0.5, "done")
    deadline = time.monotonic() + 5
    while result.state != "STARTED":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    worker.stop()  # warm: waits for the task, which then acks
    assert result.get(timeout=1) == "done"
    assert _left_in_the_broker(app) == (0, 0)


def test_callbacks_queued_on_the_loop_with_the_stop_all_run(app):
    # The loop runs its queued callbacks as one batch in no order (a set). A stop raised from
    # that batch would drop the others, among them the acks of tasks that just finished.
    worker = celerylab.start_worker(app, concurrency=1)
    ran = []
    for i in range(50):
        worker.controller.hub.call_soon(ran.append, i)
    worker.stop()
    assert sorted(ran) == list(range(50))
