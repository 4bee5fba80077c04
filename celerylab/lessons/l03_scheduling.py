"""Lesson 03's tasks and apps as a module: countdown, ETA, expires, beat, visibility timeout.

notebooks/03_scheduling.ipynb defines the same tasks (same names) and apps in its own cells, where
the learner reads and edits them; this module keeps a copy for tests/test_l03_scheduling.py.

Every task records when it ran in :data:`runs` (a :class:`RunLog`), so a test can check how
late, how often and in which order things ran. The workers run in the same process, so the log
is shared.
"""
from __future__ import annotations

import threading
import time
from collections import Counter

import celerylab
from celerylab.inspect_broker import create_redis_app

# The lesson shows Redis transport details (the unacked hash, the visibility timeout): on a
# RabbitMQ class broker it runs on a private Redis.
app = create_redis_app("l03_scheduling")


class RunLog:
    """Thread-safe list of ``(label, time.time())``: one entry per task execution."""

    def __init__(self):
        self._items: list[tuple[str, float]] = []
        self._cond = threading.Condition()

    def add(self, label: str) -> None:
        with self._cond:
            self._items.append((label, time.time()))
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    @property
    def items(self) -> list[tuple[str, float]]:
        with self._cond:
            return list(self._items)

    def labels(self) -> list[str]:
        return [label for label, _ in self.items]

    def count(self, label: str | None = None) -> int:
        return sum(1 for lab, _ in self.items if label is None or lab == label)

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.labels()))

    def times(self, label: str) -> list[float]:
        return [t for lab, t in self.items if lab == label]

    def first(self, label: str) -> float | None:
        times = self.times(label)
        return times[0] if times else None

    def wait_for(self, label: str | None = None, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``label`` (or anything) ran ``n`` times; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for lab, _ in self._items if label is None or lab == label) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<RunLog {self.counts()}>"


runs = RunLog()


@app.task(name="l03.stamp", shared=False)
def stamp(label):
    """Record that ``label`` ran now; return the label."""
    runs.add(label)
    return label


@app.task(name="l03.daily_report", shared=False)
def daily_report():
    runs.add("daily-report")
    return "report sent"


@app.task(name="l03.every_minute", shared=False)
def every_minute():
    runs.add("every-minute")


@app.task(name="l03.heartbeat", shared=False)
def heartbeat():
    runs.add("heartbeat")


def gaps(times: list[float]) -> list[float]:
    """Seconds between consecutive times."""
    return [b - a for a, b in zip(times, times[1:])]


# -- the visibility-timeout demo --------------------------------------------------------------
# Two apps on the same broker that differ only in the Redis visibility timeout. Each consumes
# its own queue, so neither worker ever sees the other's messages; the two workers keep their
# unacknowledged messages in separate Redis hashes for the same reason (a worker's restore
# sweep would otherwise hand back the other app's messages under its own, shorter, timeout).

def _vt_app(name: str, visibility_timeout: float):
    a = create_redis_app(name, task_default_queue=name, broker_transport_options={
        "visibility_timeout": visibility_timeout,
        "unacked_key": f"{name}_unacked",
        "unacked_index_key": f"{name}_unacked_index",
        "unacked_mutex_key": f"{name}_unacked_mutex",
    })

    @a.task(name=f"{name}.send_reminder", shared=False)
    def send_reminder(who):
        runs.add(f"{name}:{who}")
        return who

    return a, send_reminder


short_vt_app, short_vt_reminder = _vt_app("vt_short", 2)     # visibility 2 s < countdown
long_vt_app, long_vt_reminder = _vt_app("vt_long", 10)      # visibility 10 s > countdown

app.set_current()  # the lesson's main app stays Celery's current app
