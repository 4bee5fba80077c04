"""Worker and broker logs go to files, never into notebook cell output.

(Log lines in a cell's output land there at random, from whichever cell is running, and make
nbval fail. ``celerylab.where()`` tells a learner where the files are.)
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

LOG_DIR_ENV = "CELERYLAB_LOG_DIR"
QUIET_LOGGERS = ("celery", "kombu", "amqp", "flower", "fakeredis", "py.warnings")


def log_dir() -> Path:
    d = Path(os.environ.get(LOG_DIR_ENV) or Path.home() / ".celerylab" / "logs")
    d.mkdir(parents=True, exist_ok=True)
    return d


def log_path(name: str) -> Path:
    return log_dir() / f"{name}.log"


_handlers: dict[str, logging.Handler] = {}


def to_file(name: str, level: int | str = logging.INFO) -> Path:
    """Send the celery/kombu loggers to ``<log_dir>/<name>.log`` (and nowhere else)."""
    path = log_path(name)
    if name not in _handlers:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/%(threadName)s] %(name)s: %(message)s"))
        _handlers[name] = handler
    handler = _handlers[name]
    for logger_name in QUIET_LOGGERS:
        logger = logging.getLogger(logger_name)
        if handler not in logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(level)
    return path


def detach(name: str) -> None:
    """Stop writing to ``<name>.log`` (the loggers stay quiet: they keep propagate=False)."""
    handler = _handlers.pop(name, None)
    if handler is None:
        return
    for logger_name in QUIET_LOGGERS:
        logging.getLogger(logger_name).removeHandler(handler)
    handler.close()


def tail(path: os.PathLike | str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
