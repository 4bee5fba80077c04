"""Watch a task's state change, as a client polling its ``AsyncResult`` would.

    from celerylab.states import trace_states
    trace_states(slow.delay(0.5))      # ['PENDING', 'SUCCESS']

Celery stores only the *latest* state of a task; this polls it every ``poll`` seconds and keeps
each change. A state that lasts less than ``poll`` can be missed (the lessons keep their
intermediate states longer than that).
"""
from __future__ import annotations

import time

from celery import states

#: States after which nothing changes any more (SUCCESS, FAILURE, REVOKED).
FINAL = frozenset(states.READY_STATES)


def trace_states(result, timeout: float = 10.0, poll: float = 0.01, until=FINAL) -> list[str]:
    """Poll ``result.state`` until it is in ``until`` (or ``timeout``); return the states seen.

    Raises TimeoutError with the states seen so far if ``until`` is not reached in time.
    """
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        state = result.state
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in until:
            return seen
        if time.monotonic() >= deadline:
            raise TimeoutError(f"task {result.id} still {state} after {timeout:g} s (states seen: {seen})")
        time.sleep(poll)


def arrow(seen: list[str]) -> str:
    """``PENDING -> STARTED -> SUCCESS``."""
    return " -> ".join(seen)


def trace(task, *args, options: dict | None = None, timeout: float = 10.0, poll: float = 0.01, **kwargs) -> list[str]:
    """Send ``task(*args, **kwargs)`` and return every state it went through, from the start.

    The task id is chosen *before* sending, so the first state recorded is the one the id has
    before any worker has heard of it (``PENDING``): nothing can be missed at the beginning,
    however fast the worker is. ``options`` go to ``apply_async`` (``countdown``, ``queue``...).
    """
    from celery.utils import uuid

    task_id = uuid()
    result = task.AsyncResult(task_id)
    before = result.state
    task.apply_async(args, kwargs, task_id=task_id, **(options or {}))
    seen = trace_states(result, timeout=timeout, poll=poll)
    return seen if seen[0] == before else [before] + seen
