"""Celery Lab Kit: real Celery in a notebook, on an embedded broker.

The whole API a lesson needs::

    import celerylab
    broker = celerylab.start_broker()          # embedded fakeredis, or $CELERYLAB_BROKER_URL
    app = celerylab.create_app("lesson")       # JSON only, events on, demo-speed redelivery
    with celerylab.run_worker(app):            # a real worker inside the kernel
        ...
    w = celerylab.spawn_worker("celerylab.lessons.l00_start")  # or a worker subprocess
    celerylab.cleanup()                        # stop everything (also runs at exit)
"""
from __future__ import annotations

from .app import create_app
from .broker import Broker, current_broker, start_broker
from .errors import (BrokerUnreachableError, CeleryLabError, LupaMissingError, PortInUseError,
                     UnknownPoolError, WorkerStartError)
from .processes import cleanup
from .spawn import spawn_worker
from .worker import run_worker, start_worker
from .environment import check_environment
from .events import FlowState, Record, Summary, Watcher  # noqa: E402,F401
from .widgets import (show_flow, show_queue_depth, show_timeline, stop_watching,  # noqa: E402,F401
                      strip_widget_state, watch)
from .flower import start_flower  # noqa: E402,F401
from .metrics import start_exporter  # noqa: E402,F401

__version__ = "0.1.0"

__all__ = [
    "Broker", "BrokerUnreachableError", "CeleryLabError", "LupaMissingError", "PortInUseError",
    "UnknownPoolError", "WorkerStartError", "cleanup", "create_app", "current_broker",
    "check_environment", "run_worker", "spawn_worker", "start_broker", "start_worker", "where",
]
__all__ += ["start_exporter", "start_flower"]

from .processes import start_parent_watchdog as _watchdog  # noqa: E402

_watchdog()  # only acts in subprocesses the kit started


def where() -> dict:
    """Where everything is: broker URL, log folder, running workers and servers."""
    from . import logs, processes

    broker = current_broker()
    return {
        "broker": broker.url if broker else None,
        "embedded": broker.embedded if broker else None,
        "logs": str(logs.log_dir()),
        "running": processes.running(),
    }
