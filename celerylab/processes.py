"""Everything the kit starts is registered here and stopped at exit.

Three layers make sure no worker, server or port outlives the kernel:

1. ``atexit`` runs :func:`cleanup` when the kernel (or script) exits normally, including
   "Restart kernel";
2. subprocesses run in their own process group (``start_new_session``), so stopping them
   takes their children (prefork pool processes) too;
3. subprocesses also watch their parent (:func:`start_parent_watchdog`): if the kernel is
   killed with SIGKILL and atexit never runs, they kill their own group within a second.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

_lock = threading.RLock()
_stoppers: list[tuple[str, Callable[[], None]]] = []

PARENT_PID_ENV = "CELERYLAB_PARENT_PID"


def register(name: str, stop: Callable[[], None]) -> Callable[[], None]:
    """Remember how to stop something; returns a function that forgets it again."""
    entry = (name, stop)
    with _lock:
        _stoppers.append(entry)

    def forget() -> None:
        with _lock:
            if entry in _stoppers:
                _stoppers.remove(entry)

    return forget


def running() -> list[str]:
    """Names of everything currently registered (newest last)."""
    with _lock:
        return [name for name, _ in _stoppers]


def cleanup() -> list[str]:
    """Stop everything the kit started in this process, newest first. Returns what was stopped."""
    stopped = []
    while True:
        with _lock:
            if not _stoppers:
                break
            name, stop = _stoppers.pop()
        try:
            stop()
        except Exception as exc:  # cleanup must go on whatever one item does
            log.warning("celerylab cleanup: stopping %s failed: %s", name, exc)
        stopped.append(name)
    return stopped


atexit.register(cleanup)


def kill_group(pid: int, sig: int = signal.SIGKILL, wait: float = 0.0) -> bool:
    """Send sig to the process group led by pid; with ``wait``, wait until the group is gone.

    Returns True when the group is gone. Silent when it already was.
    """
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return True
    deadline = time.monotonic() + wait
    while group_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def group_alive(pgid: int) -> bool:
    """True while a process of group pgid is still running (zombies waiting to be reaped don't count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = "/proc"
    if not os.path.isdir(proc):
        return True
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess the kit starts: tells it whom to watch."""
    out = dict(os.environ if env is None else env)
    out[PARENT_PID_ENV] = str(os.getpid())
    return out


def start_parent_watchdog(interval: float = 0.5) -> None:
    """In a subprocess the kit started: kill our own process group when the parent is gone.

    Does nothing unless CELERYLAB_PARENT_PID is set (i.e. we were started by the kit).
    """
    ppid = os.environ.get(PARENT_PID_ENV)
    if not ppid:
        return
    parent = int(ppid)

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(parent, 0)
                alive = os.getppid() == parent or _pid_alive(parent)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
            if not alive:
                if os.getpgrp() == os.getpid():  # we lead our group: take our children with us
                    os.killpg(os.getpgrp(), signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="celerylab-parent-watchdog", daemon=True).start()


def _pid_alive(pid: int) -> bool:
    # A zombie parent still answers kill(0); check /proc where we have it.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True
