"""Lesson 08's helpers and the behaviour the lesson teaches, asserted on real worker processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import celerylab

M = "celerylab.lessons.l08_production"

# The fixture reloads the lesson module (its app must point at this module's broker); Celery's
# tasks are shared between apps, so the reloaded tasks' names are seen twice. Harmless here.
pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")


# `lab`: lesson 08's module on a fresh embedded broker (tests/conftest.py)


# -- helpers -------------------------------------------------------------------------------
def test_max_overlap_counts_simultaneous_intervals(lab):
    assert lab.max_overlap([]) == 0
    assert lab.max_overlap([(0, 1), (1, 2), (2, 3)]) == 1  # touching is not overlapping
    assert lab.max_overlap([(0, 3), (1, 2), (1.5, 4), (5, 6)]) == 3


def test_process_alive(lab):
    assert lab.process_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not lab.process_alive(proc.pid)


def test_notes_count_runs_and_reset_forgets_them(lab):
    lab.reset("t-notes")
    lab.slow.run(0, "t-notes")
    lab.slow.run(0, "t-notes")
    assert lab.runs("t-notes") == 2 and lab.finished("t-notes") == 2
    assert lab.running_pid("t-notes", nth=2) == os.getpid()
    lab.reset("t-notes")
    assert lab.runs("t-notes") == 0
    with pytest.raises(TimeoutError, match="did not start"):
        lab.running_pid("t-notes", timeout=0.1)


def test_wait_until_running_returns_the_pids_in_order(lab):
    lab.reset("t-wait-a", "t-wait-b")
    lab.note("t-wait-b", "start")
    lab.db().rpush(lab.NOTES + "t-wait-a", "start:4242")
    assert lab.wait_until_running("t-wait-a", "t-wait-b") == [4242, os.getpid()]
    with pytest.raises(TimeoutError, match="'t-wait-c' did not start"):
        lab.wait_until_running("t-wait-a", "t-wait-c", timeout=0.1)
    lab.reset("t-wait-a", "t-wait-b")


def test_batch_counts_processes_overlap_and_cores(lab):
    # [pid, start, end, cpu seconds]: two processes, each running two 1 s tasks back to back
    cpu = [[1, 10.0, 11.0, 0.9], [2, 10.0, 11.0, 0.9], [1, 11.0, 12.0, 0.9], [2, 11.0, 12.0, 0.9]]
    got = lab._batch(cpu, sent_at=9.5)
    assert got["seconds"] == 2.5 and got["processes"] == 2 and got["overlap"] == 2
    assert got["cores"] == pytest.approx(1.8)  # CPU seconds per second from first start to last end
    one_at_a_time = [[7, 0.0, 1.0, 1.0], [7, 1.0, 2.0, 1.0]]
    assert lab._batch(one_at_a_time, 0.0)["cores"] == pytest.approx(1.0)
    io = [[7, 0.0, 0.2], [7, 0.0, 0.2]]
    assert "cores" not in lab._batch(io, 0.0) and lab._batch(io, 0.0)["overlap"] == 2


def test_measure_each_runs_one_queue_after_another(lab):
    with celerylab.run_worker(lab.app, concurrency=4, queues=["t-each-a", "t-each-b"]):
        got = lab.measure_each(lab.io, (0.1,), 4, ["t-each-a", "t-each-b"], timeout=10)
    assert set(got) == {"t-each-a", "t-each-b"}
    for batch in got.values():
        assert batch["processes"] == 1 and batch["overlap"] >= 2 and batch["seconds"] >= 0.1


def test_pool_figure_is_rounded_plotly_json_with_a_text_line(lab):
    timings = {"prefork": {"CPU-bound": {"seconds": 0.2345}, "IO-bound": {"seconds": 0.4}},
               "threads": {"CPU-bound": {"seconds": 0.41}, "IO-bound": {"seconds": 0.161}}}
    bundle = lab.pool_figure(timings, title="t")._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.plotly.v1+json", "text/plain"}
    fig = bundle["application/vnd.plotly.v1+json"]
    assert [(t["name"], list(t["x"]), list(t["y"])) for t in fig["data"]] == [
        ("CPU-bound", ["prefork", "threads"], [0.23, 0.41]), ("IO-bound", ["prefork", "threads"], [0.4, 0.16])]
    assert fig["layout"]["barmode"] == "group"
    assert bundle["text/plain"] == ("(bar chart, seconds per batch) prefork: CPU-bound 0.23 s, IO-bound 0.40 s; "
                                    "threads: CPU-bound 0.41 s, IO-bound 0.16 s")
    assert lab.pool_figure(timings, title="t")._repr_mimebundle_() == bundle  # same data, same output


@pytest.mark.slow
def test_a_busy_worker_reserves_prefetched_messages_unless_multiplier_1_with_acks_late(lab):
    """Lesson 08a's prefetch experiment (its cell does the same): one slot, a long task, six short ones."""
    def reserved_while_busy(task, **worker_options):
        labels = ["long"] + [f"short-{i}" for i in range(6)]
        lab.reset(*labels)
        worker = celerylab.start_worker(lab.app, concurrency=1, queues=["prefetch"], **worker_options)
        try:
            results = [task.apply_async((0.6, "long"), queue="prefetch")]
            lab.running_pid("long")
            results += [task.apply_async((0.01, label), queue="prefetch") for label in labels[1:]]
            time.sleep(0.3)
            held = 6 - lab.queue_length("prefetch")
            for r in results:
                r.get(timeout=10)
        finally:
            worker.stop()
        return held

    assert reserved_while_busy(lab.slow) == 4  # multiplier 4, one slot, the running task acked
    assert reserved_while_busy(lab.slow_late, prefetch_multiplier=1) == 0
    assert lab.queue_length("prefetch") == 0 and lab.finished("long") == 1


def test_where_is_and_queue_length_see_every_band_and_unacked(lab):
    queue = f"t-where-{time.monotonic_ns()}"
    plain = lab.add.apply_async((1, 1), queue=queue)
    banded = lab.add.apply_async((1, 2), queue=queue, priority=5)
    assert lab.where_is(plain.id) == "queued" and lab.where_is(banded.id) == "queued"
    assert lab.queue_length(queue) == 2
    assert lab.db().llen(queue) == 1  # LLEN alone misses the band list
    # what a worker does when it takes a message: pop it, park it in the unacked hash
    raw = lab.db().rpop(queue)
    lab.db().hset("unacked", "tag-1", json.dumps([json.loads(raw), "", queue]))
    assert lab.where_is(plain.id) == "unacked"
    lab.db().hdel("unacked", "tag-1")
    assert lab.where_is(plain.id) == "gone"
    assert lab.where_is("no-such-task") == "gone"
    lab.db().delete(queue, f"{queue}\x06\x166")


def test_charge_with_a_key_charges_once(lab):
    lab.reset("t-order")
    assert lab.charge.run("t-order", 5, key="t-order") == "charged"
    assert lab.charge.run("t-order", 5, key="t-order") == "skipped (already done)"
    assert lab.charge.run("t-order", 5) == "charged"  # no key, no protection
    assert lab.charges("t-order") == 2 and lab.runs("t-order") == 3


def test_ignore_result_stores_nothing_and_is_timed(lab):
    lab.forget_counts()
    with celerylab.run_worker(lab.app, concurrency=1, queues=["celery"]):
        sent = [(lab.add.delay(i, i), lab.add_quiet.delay(i, i)) for i in range(10)]
        assert lab.wait_for(lambda: lab.executed("l08.add") + lab.executed("l08.add_quiet") >= 20, timeout=20)
    assert sum(lab.db().exists(f"celery-task-meta-{a.id}") for a, _ in sent) == 10
    assert sum(lab.db().exists(f"celery-task-meta-{q.id}") for _, q in sent) == 0
    assert lab.median_duration("l08.add") > 0 and lab.median_duration("l08.add_quiet") > 0


# -- behaviour on real workers -----------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_loses_the_default_task_and_keeps_the_late_acked_one(lab):
    lab.reset("t-early", "t-late")
    early = celerylab.spawn_worker(M, queues=["t-early"])
    late = celerylab.spawn_worker(M, queues=["t-late"], task_acks_late=True)
    back = None
    try:
        early.wait_ready(), late.wait_ready()
        e = lab.slow.apply_async((1.0, "t-early"), queue="t-early")
        l = lab.slow.apply_async((1.0, "t-late"), queue="t-late")
        lab.wait_until_running("t-early", "t-late")
        lab.kill_workers(early, late)
        assert lab.where_is(e.id) == "gone"     # acked before it ran: lost
        assert lab.where_is(l.id) == "unacked"  # still the broker's
        back = celerylab.spawn_worker(M, queues=["t-late", "t-early"], task_acks_late=True,
                                      broker_transport_options={"visibility_timeout": 2,
                                                                "unacked_restore_interval": 0.25}).wait_ready()
        assert l.get(timeout=20) == "t-late" and lab.runs("t-late") == 2
        assert e.state == "PENDING" and lab.runs("t-early") == 1 and lab.where_is(e.id) == "gone"
    finally:
        lab.kill_workers(*[w for w in (early, late, back) if w is not None])
        assert lab.reaped()


@pytest.mark.slow
def test_a_killed_pool_process_requeues_only_with_reject_on_worker_lost(lab):
    lab.reset("t-acked", "t-requeued")
    late = celerylab.spawn_worker(M, queues=["t-late-child"], task_acks_late=True)
    try:
        late.wait_ready()
        a = lab.slow.apply_async((0.5, "t-acked"), queue="t-late-child")               # the worker's acks_late
        r = lab.slow_requeue.apply_async((0.5, "t-requeued"), queue="t-late-child")    # reject_on_worker_lost too
        pids = lab.wait_until_running("t-acked", "t-requeued")
        assert pids[0] != pids[1]  # one pool process each
        for p in pids:
            lab.kill_process(p)
        assert type(a.get(timeout=20, propagate=False)).__name__ == "WorkerLostError"
        assert lab.wait_for(lambda: lab.where_is(a.id) == "gone", timeout=5) and lab.runs("t-acked") == 1
        assert r.get(timeout=20) == "t-requeued" and lab.runs("t-requeued") == 2
    finally:
        lab.kill_workers(late)
        assert lab.reaped()


@pytest.mark.slow
def test_time_limits_under_prefork_and_threads(lab):
    prefork = celerylab.spawn_worker(M, queues=["t-prefork"])
    threads = celerylab.spawn_worker(M, pool="threads", concurrency=4, queues=["t-threads"])
    try:
        prefork.wait_ready(), threads.wait_ready()
        soft = lab.polite.apply_async(("t-soft", 1.0), queue="t-prefork")
        hard = lab.stubborn.apply_async(("t-hard", 1.0), queue="t-prefork")
        soft_t = lab.polite.apply_async(("t-soft-threads", 1.0), queue="t-threads")
        hard_t = lab.stubborn.apply_async(("t-hard-threads", 1.0), queue="t-threads")
        assert soft.get(timeout=10) == "stopped cleanly at the soft limit"
        assert type(hard.get(timeout=10, propagate=False)).__name__ == "TimeLimitExceeded"
        assert soft_t.get(timeout=10) == "finished" and hard_t.get(timeout=10) == "finished"  # ignored
    finally:
        lab.kill_workers(prefork, threads)
        assert lab.reaped()


@pytest.mark.slow
def test_pools_on_cpu_bound_work(lab):
    pools = {"prefork": celerylab.spawn_worker(M, concurrency=2, queues=["t-prefork-cpu"]),
             "threads": celerylab.spawn_worker(M, pool="threads", concurrency=4, queues=["t-threads-cpu"]),
             "gevent": celerylab.spawn_worker(M, pool="gevent", concurrency=4, queues=["t-gevent-cpu"])}
    try:
        for w in pools.values():
            w.wait_ready()
        n = lab.calibrate(0.05)
        got = lab.measure_each(lab.cpu, (n,), 4, [w.queues[0] for w in pools.values()])
        prefork, threads, gevent = (got[w.queues[0]] for w in pools.values())
        assert prefork["processes"] == 2 and prefork["overlap"] == 2
        assert threads["processes"] == 1 and threads["cores"] <= 1.05  # the GIL: one core at most
        assert gevent["processes"] == 1 and gevent["overlap"] == 1      # greenlets never yield here
        assert gevent["cores"] <= 1.05
        io = lab.measure_together(lab.io, (0.2,), 4, ["t-prefork-cpu", "t-gevent-cpu"])
        assert io["t-gevent-cpu"]["overlap"] == 4 and io["t-prefork-cpu"]["overlap"] <= 2
    finally:
        lab.kill_workers(*pools.values())
        assert lab.reaped()


# -- the lab's checks reject wrong answers -------------------------------------------------------
def test_lab_soft_limit_check_rejects_wrong_tasks(lab):
    from celerylab.exercises.l08_production import make_thumbnail, q2
    from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted

    app = celerylab.create_app("t-lab08")

    @app.task(soft_time_limit=1)
    def no_catch(images):
        return [make_thumbnail(i) for i in images]

    @app.task
    def no_limit(images):
        return [make_thumbnail(i) for i in images]

    @app.task(soft_time_limit=1, time_limit=1)
    def hard_too_low(images):
        return []

    with pytest.raises(ExerciseIncorrect, match="failed with SoftTimeLimitExceeded"):
        q2.check(namespace={"thumbnails": no_catch})
    with pytest.raises(ExerciseIncorrect, match="no soft time limit"):
        q2.check(namespace={"thumbnails": no_limit})
    with pytest.raises(ExerciseIncorrect, match="not above its soft limit"):
        q2.check(namespace={"thumbnails": hard_too_low})
    with pytest.raises(ExerciseNotAttempted):
        q2.check(namespace={})


def test_lab_pool_check_rejects_bad_values_without_starting_a_worker(lab):
    from celerylab.exercises.l08_production import q3
    from celerylab.grading import ExerciseIncorrect

    with pytest.raises(ExerciseIncorrect, match="choose one of"):
        q3.check(namespace={"pool": "turbo", "concurrency": 2})
    with pytest.raises(ExerciseIncorrect, match="whole number"):
        q3.check(namespace={"pool": "prefork", "concurrency": 0})


@pytest.mark.slow
def test_lab_pool_check_measures_threads_as_one_core(lab):
    from celerylab.exercises.l08_production import q3
    from celerylab.grading import ExerciseIncorrect

    with pytest.raises(ExerciseIncorrect, match="threads pool ran the 4 CPU-bound tasks in one process"):
        q3.check(namespace={"pool": "threads", "concurrency": 4})


# -- lesson 08's corrections, checked against the installed Celery and redis-server ---------------
def test_retry_on_worker_lost_is_a_celery_setting_off_by_default(lab):
    """Lesson 08 teaches task_retry_on_worker_lost (Celery 5.7): off by default, a task option too."""
    assert lab.app.conf.task_retry_on_worker_lost is False
    assert lab.poison_retry.retry_on_worker_lost is True and lab.poison_retry.max_retries == 2
    assert lab.poison.reject_on_worker_lost is True and not lab.poison.retry_on_worker_lost


def test_a_stock_redis_server_snapshots_but_has_no_aof_as_recorded(lab, redis_server_bin):
    """The lesson's recorded CONFIG GET (shown when no redis-server is installed) is what a stock
    redis-server says: RDB snapshots on, AOF off."""
    import redis

    with lab.stock_redis_server() as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        got = {**client.config_get("save"), **client.config_get("appendonly")}
        version = client.info("server")["redis_version"]
        client.close()
    assert got == lab.RECORDED_STOCK_REDIS["config"], f"redis-server {version}: {got}"
    assert got["save"] != "" and got["appendonly"] == "no"


@pytest.mark.slow
def test_retry_on_worker_lost_ends_the_poison_loop_after_max_retries(lab):
    lab.reset("t-poison", "t-bounded")
    worker = celerylab.spawn_worker(M, queues=["t-poison"], task_acks_late=True)
    try:
        worker.wait_ready()
        p = lab.poison.apply_async(("t-poison",), queue="t-poison")
        b = lab.poison_retry.apply_async(("t-bounded",), queue="t-poison")
        assert type(b.get(timeout=30, propagate=False)).__name__ == "WorkerLostError"
        assert b.state == "FAILURE" and lab.runs("t-bounded") == 3  # 1 + max_retries
        assert lab.wait_for(lambda: lab.where_is(b.id) == "gone", timeout=5)
        assert lab.wait_for(lambda: lab.runs("t-poison") >= 4, timeout=30)  # reject_on_worker_lost: no bound
        lab.app.control.revoke(p.id)
        assert lab.wait_for(lambda: "Discarding revoked task" in worker.logfile.read_text(), timeout=30)
        assert lab.runs("t-bounded") == 3
    finally:
        lab.kill_workers(worker)
        assert lab.reaped()


def test_section_1c_tasks_differ_only_in_acks_on_failure_or_timeout(lab):
    """Lesson 08 section 1c compares these pairs: each pair differs in one option only."""
    assert (lab.fail_late.acks_late, lab.fail_late.acks_on_failure) == (True, True)
    assert (lab.fail_late_reject.acks_late, lab.fail_late_reject.acks_on_failure) == (True, False)
    assert (lab.hang_late.acks_late, lab.hang_late.acks_on_timeout, lab.hang_late.time_limit) == (True, True, 0.3)
    assert (lab.hang_late_requeue.acks_late, lab.hang_late_requeue.acks_on_timeout,
            lab.hang_late_requeue.time_limit) == (True, False, 0.3)
