"""``start_beat``: Celery beat inside the kernel, in memory, that starts and stops cleanly.

In production beat is its own process (``celery -A proj beat``) that keeps its schedule state in
a file. A lesson runs it as a thread next to the worker instead, with Celery's own embedded
service and the in-memory scheduler (no schedule file is written)::

    from celery.beat import EmbeddedService
    beat = EmbeddedService(app, thread=True, max_interval=1, scheduler_cls="celery.beat:Scheduler")
    beat.start()
    ...
    beat.stop(); beat.join()

:func:`start_beat` does exactly that, and also

* stops without waiting out the thread's sleep in turn for each beat (:func:`stop_beats` signals
  several beats first, then joins them);
* writes beat's log lines to a file, never into cell output;
* counts what this beat sent (``beat.sent``), so a lesson can show two beats sending twice;
* registers the beat with :func:`celerylab.cleanup`, so no beat outlives the kernel.

``app.Beat().run()`` in a thread would redirect stdout and could not be stopped.

:func:`clock_at` makes a clock for ``crontab(nowfun=...)``: the schedule then believes it is,
say, 01:59:59 right now, so a "daily at 02:00" entry fires a second later instead of at night.
"""
from __future__ import annotations

import itertools
import re
import threading
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone, tzinfo

from celery import Celery
from celery.beat import EmbeddedService
from celery.signals import before_task_publish

from . import logs, processes

IN_MEMORY_SCHEDULER = "celery.beat:Scheduler"
_numbers = itertools.count(1)


class EmbeddedBeat:
    """A running beat thread for ``app`` (its schedule: ``app.conf.beat_schedule`` as it is at start).

    ``sent`` lists ``(task name, time.time())`` for every message this beat published.
    """

    def __init__(self, app: Celery, name: str | None = None, max_interval: float = 0.25):
        self.app = app
        self.name = name or f"beat-{next(_numbers)}"
        self.sent: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self.logname = f"beat-{app.main}"
        self.logfile = logs.to_file(self.logname)
        self._service = EmbeddedService(app, thread=True, max_interval=1, scheduler_cls=IN_MEMORY_SCHEDULER)
        # EmbeddedService(thread=True) always sleeps up to 1 s between checks, which is also how
        # long a stop can take. A shorter sleep makes stopping quick; it changes nothing else.
        self._service.service.max_interval = max_interval
        self._service.name = f"celerylab-{self.name}"
        # Build the scheduler here, not lazily in the beat thread: it reads app.conf.beat_schedule
        # now, so changing the schedule right after start_beat() cannot race with the thread.
        _ = self._service.service.scheduler
        before_task_publish.connect(self._on_publish, weak=False, dispatch_uid=f"celerylab-{self.name}-{id(self)}")
        self._service.start()
        self._forget = processes.register(f"beat {self.name} of app {app.main}", self.stop)

    def _on_publish(self, sender=None, **_):
        if threading.current_thread() is self._service:
            with self._lock:
                self.sent.append((str(sender), time.time()))

    @property
    def alive(self) -> bool:
        return self._service.is_alive()

    @property
    def entries(self) -> dict:
        """The scheduler's entries by name (each has ``.schedule``, ``.last_run_at``, ``.total_run_count``)."""
        return dict(self._service.service.scheduler.schedule)

    def next_run_in(self, name: str) -> float:
        """Seconds until entry ``name`` is due again (by its schedule's own clock)."""
        entry = self.entries[name]
        return entry.schedule.remaining_estimate(entry.last_run_at).total_seconds()

    def sent_count(self, task: str | None = None) -> int:
        """How many messages this beat sent (of ``task``, or of all tasks)."""
        with self._lock:
            return sum(1 for name, _ in self.sent if task is None or name == task)

    def signal_stop(self) -> None:
        """Ask the beat to stop (returns at once; it stops after its current sleep, <= ``max_interval``)."""
        self._service.service.stop(wait=False)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the beat and wait for its thread to end."""
        self.signal_stop()
        if self._service.is_alive() and self._service is not threading.current_thread():
            self._service.join(timeout)
        before_task_publish.disconnect(self._on_publish, dispatch_uid=f"celerylab-{self.name}-{id(self)}")
        self._forget()
        logs.detach(self.logname)

    def __enter__(self) -> "EmbeddedBeat":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        return f"<beat {self.name} of app {self.app.main}: {len(self.app.conf.beat_schedule or {})} entries, {state}>"


def start_beat(app: Celery, name: str | None = None, max_interval: float = 0.25) -> EmbeddedBeat:
    """Start beat for ``app`` in a thread of this kernel (in memory); ``.stop()`` ends it.

    ``max_interval``: the longest beat sleeps between checks, so also the longest a stop takes.
    """
    return EmbeddedBeat(app, name=name, max_interval=max_interval)


def stop_beats(*beats: EmbeddedBeat) -> None:
    """Stop several beats at once (each may be asleep for a while: wait once, not n times)."""
    for beat in beats:
        beat.signal_stop()
    for beat in beats:
        beat.stop()


@contextmanager
def run_beat(app: Celery, name: str | None = None, max_interval: float = 0.25):
    """Run beat for ``app`` while the ``with`` block runs."""
    beat = start_beat(app, name=name, max_interval=max_interval)
    try:
        yield beat
    finally:
        beat.stop()


_HHMMSS = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$")


def clock_at(when: str, tz: tzinfo = timezone.utc, on: date | None = None):
    """A clock that reads ``when`` ("HH:MM" or "HH:MM:SS[.ffffff]", today in ``tz``, or on the
    date ``on``) right now and then runs at normal speed. Pass it as ``crontab(..., nowfun=clock)``.

    Create it just before starting beat: the time it shows moves on like any clock.
    """
    m = _HHMMSS.match(when.strip())
    if not m:
        raise ValueError(f"clock_at({when!r}): write the time as 'HH:MM' or 'HH:MM:SS' (e.g. '01:59:59.5')")
    hour, minute = int(m.group(1)), int(m.group(2))
    second = int(m.group(3) or 0)
    micro = int((m.group(4) or "0").ljust(6, "0"))
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"clock_at({when!r}): not a time of day")
    real = datetime.now(tz)
    target = real.replace(hour=hour, minute=minute, second=second, microsecond=micro)
    if on is not None:
        target = target.replace(year=on.year, month=on.month, day=on.day)
    offset: timedelta = target - real

    def now() -> datetime:
        return datetime.now(tz) + offset

    now.offset = offset  # type: ignore[attr-defined]
    now.__doc__ = f"a clock that read {when} when it was made"
    return now
