"""Lesson 03's tasks and demos, run in a fresh interpreter (the lesson's apps bind to the broker
that is running when the module is imported, so each test gets its own process and broker)."""
from __future__ import annotations

import pytest

import kernel_script


HEADER = """
from celerylab import queues, side_by_side
from celerylab.lessons import l03_scheduling as l03
"""


def run_script(body: str, tmp_path, timeout: float = 60) -> dict:
    return kernel_script.run_script(body, tmp_path, HEADER, timeout)


def test_countdown_is_held_unacked_then_runs_and_expired_tasks_are_revoked(tmp_path):
    out = run_script("""
        w = celerylab.start_worker(l03.app, queues=["celery"])
        sent = time.time()
        r = l03.stamp.apply_async(("later",), countdown=1)
        queues.wait_until(lambda: queues.unacked(l03.app) == 1, timeout=3)
        out["unacked"], out["queued"] = queues.unacked(l03.app), queues.queue_length(l03.app, "celery")
        r.get(timeout=5)
        out["delay"] = l03.runs.first("later") - sent
        w.stop()
        expiring = l03.stamp.apply_async(("expired",), expires=0.2)
        time.sleep(0.5)
        w = celerylab.start_worker(l03.app, queues=["celery"])
        queues.wait_until(lambda: expiring.state == "REVOKED", timeout=5)
        out["expired_state"], out["ran"] = expiring.state, l03.runs.labels()
        w.stop()
    """, tmp_path)
    assert (out["unacked"], out["queued"]) == (1, 0)
    assert 0.9 <= out["delay"] < 2.0
    assert out["expired_state"] == "REVOKED" and out["ran"] == ["later"]


@pytest.mark.slow
def test_a_countdown_longer_than_the_visibility_timeout_runs_twice(tmp_path):
    out = run_script("""
        ws = [celerylab.start_worker(l03.short_vt_app, queues=["vt_short"]),
              celerylab.start_worker(l03.long_vt_app, queues=["vt_long"])]
        l03.short_vt_reminder.apply_async(("x",), countdown=3.5)
        l03.long_vt_reminder.apply_async(("x",), countdown=3.5)
        l03.runs.wait_for("vt_long:x", 1, timeout=10)
        time.sleep(0.5)
        side_by_side.stop_all(*ws)
        out = l03.runs.counts()
    """, tmp_path)
    assert out == {"vt_short:x": 2, "vt_long:x": 1}


def test_runlog_waits_and_counts(embedded):
    from celerylab.lessons.l03_scheduling import RunLog, gaps

    log = RunLog()
    import threading
    import time

    threading.Timer(0.1, log.add, args=("a",)).start()
    assert log.wait_for("a", 1, timeout=2)
    log.add("b")
    log.add("a")
    assert log.counts() == {"a": 2, "b": 1} and log.count() == 3 and log.labels() == ["a", "b", "a"]
    assert not log.wait_for("c", 1, timeout=0.1)
    assert [round(g, 1) for g in gaps([1.0, 1.5, 2.5])] == [0.5, 1.0]
    log.clear()
    assert len(log) == 0 and log.first("a") is None
