"""Tasks and helpers for notebooks/07_monitoring.ipynb (and its lab and tests).

The tasks model an online shop's back office: ``charge`` (logs JSON lines with its task id),
``ok`` and ``fail`` (fast work that succeeds or fails), ``slow`` (runs as long as you ask).
"""
from __future__ import annotations

import logging
import threading
import time

import celerylab
from celerylab import jsonlog
from celerylab.inspect_broker import create_redis_app

# Section 5 counts a Redis queue's priority band lists, and Flower measures queue lengths on
# RabbitMQ only through the management plugin's HTTP API (--broker_api): on a RabbitMQ class
# broker the lesson runs on the kernel's private Redis (its worker processes share it).
app = create_redis_app("l07_monitoring")

#: Hostnames of the lesson's workers. The ``hostname`` label of celery-exporter's metrics is
#: the part after ``@``: ``worker-a`` and ``worker-b``.
WORKER_A = "orders@worker-a"
WORKER_B = "reports@worker-b"
#: A queue no worker of the lesson consumes: messages pile up there (backlog demos).
BACKLOG_QUEUE = "exports"

log = jsonlog.task_logger("l07.orders")


@app.task(name="l07.ok", shared=False)
def ok(x=0, seconds=0.0):
    if seconds:
        time.sleep(seconds)
    return x


@app.task(name="l07.fail", shared=False)
def fail(message="payment gateway timed out"):
    raise ConnectionError(message)


@app.task(name="l07.slow", shared=False)
def slow(seconds=0.6):
    time.sleep(seconds)
    return seconds


@app.task(name="l07.charge", shared=False)
def charge(order_id, amount):
    log.info("charging order", extra={"order_id": order_id, "amount": amount})
    if amount <= 0:
        raise ValueError(f"amount must be positive, got {amount}")
    return {"order_id": order_id, "charged": amount}


@app.task(name="l07.seed_logging_example", shared=False)
def seed_logging_example():
    """The seed article's logging example, as written: ``self`` without ``bind=True``."""
    try:
        raise RuntimeError("upstream API failed")
    except Exception:
        logging.getLogger("l07.orders").error(
            "Task failed", extra={"task_id": self.request.id}, exc_info=True)  # noqa: F821 - the seed's bug
        raise


@app.task(name="l07.bound_logging_example", bind=True, shared=False)
def bound_logging_example(self):
    """The same example fixed: ``bind=True`` makes ``self`` the task, ``self.request.id`` its id."""
    log.error("Task failed", extra={"request_id": self.request.id})
    return self.request.id


def prepare() -> None:
    """Empty the lesson's queues (every priority band list on Redis), so a re-run starts clean,
    and import plotly's widget module in the background (1-2 s) while the lesson starts workers."""
    from celerylab.metrics import QueueLengths

    threading.Thread(target=_import_plotly_widgets, name="celerylab-warm-plotly", daemon=True).start()
    app.control.purge()
    q = QueueLengths(app)
    try:
        if q.redis:
            keys = [k for queue in ("celery", "reports", BACKLOG_QUEUE) for k in _band_keys(q, queue)]
            q._client.delete(*keys)
    finally:
        q.close()


def _import_plotly_widgets() -> None:
    try:
        import plotly.basewidget  # noqa: F401
    except Exception:  # the live plot reports it when it is used
        pass


def _band_keys(q, queue: str) -> list[str]:
    from celerylab.events import band_key

    return [band_key(queue, b, q.sep, q.prefix) for b in q.steps]


def poll_states(result, interval: float = 0.05, timeout: float = 10.0) -> list[str]:
    """Poll ``result.state`` until the task is ready; the distinct states seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        state = result.state
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in ("SUCCESS", "FAILURE", "REVOKED") or time.monotonic() > deadline:
            return seen
        time.sleep(interval)


# ---------------------------------------------------------------------------------------
# Sentry, with no Sentry server: envelopes stay in memory
# ---------------------------------------------------------------------------------------
class _Envelopes:
    """Where the in-memory transport keeps what it would have sent to Sentry."""

    items: list = []
    lock = threading.Lock()


def memory_transport():
    """A sentry-sdk ``Transport`` class that keeps every envelope in memory (no network)."""
    from sentry_sdk.transport import Transport

    class MemoryTransport(Transport):
        def capture_envelope(self, envelope) -> None:
            with _Envelopes.lock:
                _Envelopes.items.append(envelope)

        def flush(self, timeout, callback=None) -> None:
            return None

        def kill(self) -> None:
            return None

    return MemoryTransport


def sentry_to_memory(dsn: str = "http://public@127.0.0.1/1") -> None:
    """``sentry_sdk.init`` with the Celery integration and an in-memory transport (what the
    lesson's Sentry cell does in the open; the tests call this).

    The DSN names a local project but nothing is ever sent: the transport keeps the envelopes.
    Call it before the worker starts: Sentry hooks into the tracer a worker builds for each task
    at start-up (in production: init Sentry in the worker process, at import or on
    ``celeryd_init``).
    """
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration

    sentry_sdk.init(dsn=dsn, transport=memory_transport(), integrations=[CeleryIntegration()],
                    default_integrations=False, auto_enabling_integrations=False)
    use_patched_tracer()


def use_patched_tracer() -> None:
    """Point Celery's worker consumer at Sentry's ``build_tracer``.

    ``sentry_sdk.init`` replaces ``celery.app.trace.build_tracer``; the worker consumer module
    imported that name when it was first imported. In a worker process that inits Sentry at the
    import of its Celery module that happens after the patch; in a kernel that already ran a
    worker before ``init``, it happened before, and workers started later would still build
    unpatched tracers (threads and solo pools: the consumer builds them; prefork children
    import the name afresh).
    """
    import sys

    from celery.app import trace

    consumer = sys.modules.get("celery.worker.consumer.consumer")
    if consumer is not None and consumer.build_tracer is not trace.build_tracer:
        consumer.build_tracer = trace.build_tracer


def sentry_events(task_id: str | None = None, timeout: float = 0.0) -> list[dict]:
    """Error events captured so far (dicts, as a Sentry server receives them); with ``task_id``
    only that task's, waiting up to ``timeout`` s for at least one."""
    deadline = time.monotonic() + timeout
    while True:
        with _Envelopes.lock:
            envelopes = list(_Envelopes.items)
        events = []
        for env in envelopes:
            for item in env.items:
                if item.headers.get("type") == "event" and item.payload.json:
                    event = item.payload.json
                    if task_id is None or event.get("tags", {}).get("celery_task_id") == task_id:
                        events.append(event)
        if events or time.monotonic() >= deadline:
            return events
        time.sleep(0.02)


def sentry_off() -> None:
    """Close the Sentry client (the rest of the kernel reports nothing) and forget the events."""
    import sentry_sdk

    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: a disabled client
    with _Envelopes.lock:
        _Envelopes.items.clear()


class _Monitoring:
    """What :func:`start_monitoring` started: the exporter's reserved port, and (when installed)
    the webhook receiver, Alertmanager and Prometheus, ready after :meth:`wait`."""

    def __init__(self, exporter_port: int, servers=None):
        self.exporter_port = exporter_port
        self.servers = servers
        self._errors: list[BaseException] = []
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        from celerylab import prometheus

        hook, am, prom = self.servers
        try:
            prometheus.start_together(am, prom)
        except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
            hook.stop()
            self._errors.append(exc)

    def wait(self, timeout: float = 30.0):
        """(webhook receiver, Alertmanager, Prometheus), once both servers answer ``/-/ready``."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"Prometheus/Alertmanager not ready within {timeout:g} s")
        if self._errors:
            raise self._errors[0]
        return self.servers


def start_monitoring(scrape_interval: float = 0.5, alertmanager_scale: float = 1 / 30) -> _Monitoring:
    """Reserve a port for section 4's metrics exporter and start, in a background thread, a real
    Prometheus scraping ``http://127.0.0.1:<port>/metrics`` every ``scrape_interval`` s (no rules
    yet) and the Alertmanager it sends alerts to (timings scaled by ``alertmanager_scale``),
    which posts to a :class:`celerylab.webhook.WebhookReceiver`. Prometheus scrapes a new
    target about 5 s after it starts: started early, it is scraping by section 4.
    Without the prometheus/alertmanager programs, only the port is reserved."""
    from celerylab import prometheus
    from celerylab.metrics import reserve_port
    from celerylab.webhook import WebhookReceiver

    port = reserve_port()
    if prometheus.missing():
        return _Monitoring(port)
    hook = WebhookReceiver().start()
    am = prometheus.AlertmanagerServer(hook.url, scale=alertmanager_scale)
    prom = prometheus.PrometheusServer([f"http://127.0.0.1:{port}/metrics"], rules=None,
                                       interval=scrape_interval, alertmanager=am)
    monitoring = _Monitoring(port, (hook, am, prom))
    monitoring._thread = threading.Thread(target=monitoring._run, name="l07-monitoring", daemon=True)
    monitoring._thread.start()
    return monitoring
