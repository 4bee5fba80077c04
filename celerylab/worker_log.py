"""Read what a worker wrote to its log file, without timestamps, pids or host names.

Worker logs never go into cell output (nbval could not reproduce them); a lesson that wants to
show one line of a log reads the file::

    from celerylab import worker_log
    mark = worker_log.mark(worker.logfile)          # where the log ends now
    ...send the task...
    worker_log.wait_for(worker.logfile, "unregistered", since=mark)
    # ["Received unregistered task of type 'l02.shout'."]

Lines are returned without the ``[2024-06-25 00:41:24,123: ERROR/MainProcess]`` prefix.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

#: ``[2024-06-25 00:41:24,123: ERROR/MainProcess] `` (celery's format) and the kit's format,
#: ``[...: LEVEL/Thread] logger.name: ``.
_PREFIX = re.compile(r"^\[\d{4}-\d\d-\d\d[ T][\d:,.]+: (?P<level>[A-Z]+)/[^\]]*\] (?:[\w.]+: )?")


def mark(path: os.PathLike | str) -> int:
    """The log's current size: pass it as ``since`` to read only what comes after."""
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0


def lines(path: os.PathLike | str, since: int = 0) -> list[str]:
    """The log's lines (after byte offset ``since``), prefixes removed."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return [_PREFIX.sub("", line) for line in text.splitlines()]


def grep(path: os.PathLike | str, pattern: str, since: int = 0) -> list[str]:
    """Lines matching the regular expression ``pattern`` (prefixes removed)."""
    rx = re.compile(pattern)
    return [line for line in lines(path, since) if rx.search(line)]


def wait_for(path: os.PathLike | str, pattern: str, since: int = 0, timeout: float = 10.0,
             count: int = 1) -> list[str]:
    """Wait until ``count`` lines match ``pattern``; return them. TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        found = grep(path, pattern, since)
        if len(found) >= count:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no line matching {pattern!r} in {path} after {timeout:g} s")
        time.sleep(0.02)
