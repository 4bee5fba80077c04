"""Structured logs: one JSON object per line, carrying the id and name of the running task.

A log search system (ELK, Loki, CloudWatch...) indexes JSON fields, so "every line about
task 1f3c..." becomes a query instead of a grep. The task id comes from Celery itself
(``celery.app.log``'s ``TaskFormatter`` does the same for text logs), not from the task's
code, so no task can forget it::

    log = celerylab.jsonlog.task_logger("l07.orders")      # JSON lines to <log dir>/l07.orders.jsonl
    @app.task
    def charge(order):
        log.info("charging", extra={"order": order})       # {"time": ..., "task_id": "...", "order": 7}

Lines go to a file, never into a notebook cell (log lines there are different on every run).
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime",
                                                                            "task_id", "task_name"}


def current_task_ids() -> tuple[str | None, str | None]:
    """(task id, task name) of the task running on this thread, or (None, None)."""
    from celery._state import get_current_task

    task = get_current_task()
    if task is None or task.request is None or task.request.id is None:
        return None, None
    return task.request.id, task.name


class TaskContextFilter(logging.Filter):
    """Adds ``task_id`` and ``task_name`` to every record (None outside a task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None) is None:
            record.task_id, record.task_name = current_task_ids()
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "task_id", "task_name", ...extra, "exc_type", "exc"}``."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "task_id": getattr(record, "task_id", None),
            "task_name": getattr(record, "task_name", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=repr, ensure_ascii=False)


def json_handler(path: str | Path) -> logging.Handler:
    """A file handler writing JSON lines with the task context."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TaskContextFilter())
    return handler


def task_logger(name: str, path: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """A logger whose lines are JSON in ``path`` (default ``<log dir>/<name>.jsonl``).

    Calling it again with the same name returns the same logger with one handler (re-running a
    cell does not double every line). ``logger.jsonl_path`` is where the lines go.
    """
    from .logs import log_dir

    path = Path(path) if path else log_dir() / f"{name}.jsonl"
    logger = logging.getLogger(name)
    for h in list(logger.handlers):
        if getattr(h, "_celerylab_json", False):
            logger.removeHandler(h)
            h.close()
    handler = json_handler(path)
    handler._celerylab_json = True
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False          # keep the lines out of the notebook's stderr
    logger.jsonl_path = path
    return logger


def last_line(path: str | Path) -> dict | None:
    """The newest JSON line of ``path``, parsed (None when the file is empty or missing)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.strip():
            return json.loads(line)
    return None
