"""celerylab.beat: Celery's embedded beat in a thread, in memory, stopped cleanly (lesson 03)."""
from __future__ import annotations

import os
import threading
import time
from datetime import date

import pytest
from celery.schedules import crontab

import celerylab
from celerylab.beat import clock_at, run_beat, start_beat, stop_beats

RUNS: list = []


@pytest.fixture
def app(embedded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a schedule file, if one were written, would land here
    app = celerylab.create_app("test_beat")

    @app.task(name="test_beat.tick", shared=False)
    def tick(label="tick"):
        RUNS.append((label, time.monotonic()))

    RUNS.clear()
    yield app
    app.close()


def beat_threads():
    return [t for t in threading.enumerate() if t.name.startswith("celerylab-beat")]


def wait_for(n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(RUNS) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(RUNS) >= n


def test_an_interval_entry_is_sent_on_time_and_run_by_a_worker(app, tmp_path):
    app.conf.beat_schedule = {"tick": {"task": "test_beat.tick", "schedule": 0.3}}
    with celerylab.run_worker(app, queues=["celery"]):
        beat = start_beat(app)
        assert wait_for(3)
        beat.stop()
        time.sleep(0.2)
    times = [t for _, t in RUNS]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(0.15 < g < 0.5 for g in gaps), gaps
    assert beat.sent_count("test_beat.tick") == len(RUNS) >= 3
    assert not beat.alive and beat_threads() == []
    assert not [f for f in os.listdir(tmp_path) if "schedule" in f]  # in memory: no celerybeat-schedule file


def test_stop_is_quick_and_nothing_is_sent_after_it(app):
    app.conf.beat_schedule = {"tick": {"task": "test_beat.tick", "schedule": 0.2}}
    beat = start_beat(app)
    time.sleep(0.5)
    start = time.monotonic()
    beat.stop()
    assert time.monotonic() - start < 0.6
    sent = beat.sent_count()
    time.sleep(0.4)
    assert beat.sent_count() == sent >= 1


def test_two_beats_send_every_due_entry_twice(app):
    clock = clock_at("01:59:59.6")
    app.conf.beat_schedule = {
        "daily": {"task": "test_beat.tick", "schedule": crontab(hour=2, minute=0, nowfun=clock), "args": ("daily",)},
    }
    a, b = start_beat(app, name="a"), start_beat(app, name="b")
    deadline = time.monotonic() + 5
    while a.sent_count() + b.sent_count() < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    stop_beats(a, b)
    assert (a.sent_count(), b.sent_count()) == (1, 1)
    assert a.next_run_in("daily") > 23 * 3600  # the next one is tomorrow


def test_a_crontab_entry_does_not_fire_before_its_time(app):
    clock = clock_at("02:00:05")  # just after 02:00: the next daily run is tomorrow
    app.conf.beat_schedule = {
        "daily": {"task": "test_beat.tick", "schedule": crontab(hour=2, minute=0, nowfun=clock)},
    }
    with run_beat(app) as beat:
        time.sleep(0.6)
    assert beat.sent_count() == 0 and not beat.alive


def test_cleanup_stops_a_running_beat(app):
    app.conf.beat_schedule = {"tick": {"task": "test_beat.tick", "schedule": 5}}
    beat = start_beat(app, name="forgotten")
    assert any("forgotten" in name for name in celerylab.where()["running"])
    celerylab.cleanup()
    assert not beat.alive and beat_threads() == []


def test_clock_at_reads_the_given_time_and_then_runs():
    clock = clock_at("01:59:59.5")
    first = clock()
    assert first.tzinfo is not None
    assert (first.hour, first.minute, first.second) == (1, 59, 59)
    time.sleep(0.6)
    later = clock()
    assert (later.hour, later.minute) == (2, 0)
    sunday = clock_at("03:29:59", on=date(2024, 6, 23))()
    assert (sunday.date(), sunday.strftime("%A"), sunday.hour, sunday.minute) == (date(2024, 6, 23), "Sunday", 3, 29)
    with pytest.raises(ValueError, match="HH:MM"):
        clock_at("2 am")
    with pytest.raises(ValueError, match="time of day"):
        clock_at("25:00")
