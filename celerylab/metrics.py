"""A Prometheus exporter for Celery, fed by Celery's events, with celery-exporter's metric names.

::

    exporter = celerylab.start_exporter(app)      # serves http://127.0.0.1:PORT/metrics
    ...run tasks...
    exporter.value("celery_task_succeeded_total", name="l07.ok")   # -> 12.0
    scrape(exporter.url).value("celery_queue_length", queue_name="celery")
    exporter.stop()                                # or celerylab.cleanup()

The names and labels are those of danihodovic/celery-exporter (the maintained exporter; the
seed article's zerok/celery-exporter is archived), so its Grafana dashboards and alert rules
work unchanged:

* counters ``celery_task_{sent,received,started,succeeded,failed,retried,revoked,rejected}_total``
  with labels ``name``, ``hostname``, ``queue_name`` (``failed`` also has ``exception``);
* gauges ``celery_worker_up{hostname}``, ``celery_worker_tasks_active{hostname}``,
  ``celery_queue_length{queue_name}``; histogram ``celery_task_runtime`` (succeeded tasks).

As in celery-exporter, ``hostname`` is the part of a worker's name after ``@``
(``orders@worker-a`` -> ``worker-a``), and a task event also adds 0 to the other counters of
the same labels so every series exists before its first increment (``increase()`` and rate
alerts then see the very first failure); the kit's exporter also creates the runtime
histogram's series (all 0) when a worker receives a task, before its first run ends.
Prometheus' ``increase()`` cannot count a series' first sample: a series that appears with
the value 1 shows no increase.

Two deliberate differences:

* ``celery_queue_length`` counts **every priority band** on Redis (kombu keeps one list per
  band: ``queue``, ``queue\\x06\\x163``, ``...6``, ``...9``). celery-exporter's Redis path reads
  only ``LLEN queue`` and under-counts as soon as anyone sends with a priority.
* The events come from the kit's :class:`celerylab.events.Watcher` (the same receiver the live
  widgets draw from, started here if none runs), read from its timeline whenever metrics are
  scraped: a second event receiver in the kernel would only double the broker traffic.
  ``celery_worker_tasks_active`` is counted from task events (started, not yet finished), which
  is current at once; celery-exporter takes it from the next worker heartbeat (every 2 s).
"""
from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, make_server

from celery import Celery
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

from . import processes
from .errors import CeleryLabError, PortInUseError
from .events import DEFAULT_PRIORITY_STEPS, DEFAULT_SEP, Watcher, active_watcher, band_key
from .i18n import N_, _
from .ports import LOOPBACK, port_in_use

#: Task event -> counter name (celery-exporter's names, without the ``_total`` prometheus adds).
COUNTERS = {
    "task-sent": ("celery_task_sent", "Sent when a task message is published."),
    "task-received": ("celery_task_received", "Sent when the worker receives a task."),
    "task-started": ("celery_task_started", "Sent just before the worker executes the task."),
    "task-succeeded": ("celery_task_succeeded", "Sent if the task executed successfully."),
    "task-failed": ("celery_task_failed", "Sent if the execution of the task failed."),
    "task-retried": ("celery_task_retried", "Sent if the task failed, but will be retried in the future."),
    "task-revoked": ("celery_task_revoked", "Sent if the task has been revoked."),
    "task-rejected": ("celery_task_rejected", "The task was rejected by the worker."),
}
METRIC_NAMES = tuple(f"{name}_total" for name, _ in COUNTERS.values()) + (
    "celery_worker_up", "celery_worker_tasks_active", "celery_queue_length", "celery_task_runtime")

_EXC_CLASS = re.compile(r"^(\w+)\(")


class ExporterError(CeleryLabError):
    pass


def worker_host(nodename: str | None) -> str:
    """celery-exporter's ``hostname`` label: ``orders@worker-a`` -> ``worker-a``."""
    if not nodename:
        return "unknown"
    return nodename.split("@", 1)[1] if "@" in nodename else nodename


def exception_class(text: str | None) -> str:
    """``"ValueError('boom')"`` -> ``"ValueError"`` (the ``exception`` label of failures)."""
    m = _EXC_CLASS.match(text or "")
    return m.group(1) if m else "UnknownException"


# ---------------------------------------------------------------------------------------
# Queue length on the broker
# ---------------------------------------------------------------------------------------
def redis_queue_lengths(client, queues, steps=DEFAULT_PRIORITY_STEPS, sep: str = DEFAULT_SEP,
                        prefix: str = "") -> dict[str, dict[int, int]]:
    """``{queue: {band: LLEN}}`` for every priority band list of every queue (one round trip)."""
    queues = list(queues)
    steps = sorted(steps)
    pipe = client.pipeline(transaction=False)
    for q in queues:
        for band in steps:
            pipe.llen(band_key(q, band, sep, prefix))
    values = iter(pipe.execute())
    return {q: {band: int(next(values)) for band in steps} for q in queues}


class QueueLengths:
    """Messages waiting in each queue, counted the way the broker stores them."""

    def __init__(self, app: Celery):
        self.app = app
        url = str(app.conf.broker_url)
        self.redis = url.startswith(("redis://", "rediss://"))
        opts = dict(app.conf.broker_transport_options or {})
        self.steps = tuple(sorted(opts.get("priority_steps", DEFAULT_PRIORITY_STEPS)))
        self.sep = opts.get("sep", DEFAULT_SEP)
        self.prefix = opts.get("global_keyprefix", "")
        self._client = None
        if self.redis:
            import redis

            self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def bands(self, queues) -> dict[str, dict[int, int]]:
        """Redis only: ``{queue: {band: messages}}``."""
        if not self.redis:
            raise ExporterError(_("priority bands are a Redis-transport detail; this broker is not Redis"))
        return redis_queue_lengths(self._client, queues, self.steps, self.sep, self.prefix)

    def lengths(self, queues) -> dict[str, int]:
        queues = list(queues)
        if self.redis:
            return {q: sum(b.values()) for q, b in self.bands(queues).items()}
        out = {}
        from kombu.exceptions import ChannelError

        with self.app.connection_for_read() as conn:
            channel = conn.default_channel
            for q in queues:
                try:
                    out[q] = int(channel.queue_declare(queue=q, passive=True).message_count)
                except ChannelError:  # not declared yet: nothing waits in it
                    out[q] = 0
                    channel = conn.channel()
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client.connection_pool.disconnect()


# ---------------------------------------------------------------------------------------
# A parsed scrape
# ---------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    """Samples of one scrape: ``{(sample name, ((label, value), ...)): value}`` at ``time``."""

    time: float
    samples: dict = field(default_factory=dict)

    def series(self, metric: str, /, **labels) -> dict[tuple, float]:
        """Every series of sample ``metric`` whose labels include ``labels``."""
        want = set(labels.items())
        return {lab: v for (n, lab), v in self.samples.items() if n == metric and want <= set(lab)}

    def value(self, metric: str, /, default: float = 0.0, **labels) -> float:
        """Sum of ``metric`` over the matching series (``default`` when there is none)."""
        found = self.series(metric, **labels)
        return float(sum(found.values())) if found else default

    def by(self, metric: str, label: str, /, **labels) -> dict[str, float]:
        """``metric`` summed per value of ``label``: ``by("celery_queue_length", "queue_name")``."""
        out: dict[str, float] = {}
        for lab, v in self.series(metric, **labels).items():
            key = dict(lab).get(label, "")
            out[key] = out.get(key, 0.0) + v
        return dict(sorted(out.items()))

    def names(self) -> list[str]:
        return sorted({n for n, _ in self.samples})


def parse(text: str, at: float | None = None) -> Snapshot:
    """Parse Prometheus text format (an exporter's or Flower's ``/metrics``)."""
    from prometheus_client.parser import text_string_to_metric_families

    snap = Snapshot(time=time.time() if at is None else at)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            snap.samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return snap


def scrape(url: str, timeout: float = 5.0) -> Snapshot:
    """GET ``url`` (a ``/metrics`` endpoint) and parse it, as Prometheus would."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode("utf-8")
    return parse(text)


# ---------------------------------------------------------------------------------------
# The exporter
# ---------------------------------------------------------------------------------------
class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # no access log lines in cell output
        pass


class Exporter:
    """celery-exporter's metrics for ``app``, from the kit's event watcher. See the module doc.

    ``queues``: queue names to measure besides the default queue, ``task_queues`` and every
    queue seen in a task-sent event. ``worker_timeout``: seconds without a heartbeat after
    which a worker counts as down (celery-exporter's default, 5 minutes; workers send one
    every 2 s).
    """

    def __init__(self, app: Celery, queues=(), worker_timeout: float = 300.0, buckets=None,
                 registry: CollectorRegistry | None = None):
        self.app = app
        self.extra_queues = list(queues)
        self.worker_timeout = worker_timeout
        self.registry = registry or CollectorRegistry(auto_describe=True)
        labels = ["name", "hostname", "queue_name"]
        self.counters = {}
        for event, (name, doc) in COUNTERS.items():
            extra = ["exception"] if event == "task-failed" else []
            self.counters[event] = Counter(name, doc, labels[:2] + extra + labels[2:], registry=self.registry)
        self.worker_up = Gauge("celery_worker_up", "Indicates if a worker has recently sent a heartbeat.",
                               ["hostname"], registry=self.registry)
        self.worker_tasks_active = Gauge("celery_worker_tasks_active",
                                         "The number of tasks the worker is currently processing",
                                         ["hostname"], registry=self.registry)
        self.task_runtime = Histogram("celery_task_runtime", "Histogram of task runtime measurements.",
                                      labels, registry=self.registry,
                                      buckets=buckets or Histogram.DEFAULT_BUCKETS)
        self.queue_length = Gauge("celery_queue_length", "The number of message in broker queue.",
                                  ["queue_name"], registry=self.registry)
        self.queues = QueueLengths(app)
        self._lock = threading.RLock()
        self._watcher: Watcher | None = None
        self._own_watcher: Watcher | None = None
        self._pos = 0                       # absolute index into the watcher's timeline
        self._seen_queues: set[str] = set()
        self._last_seen: dict[str, float] = {}   # hostname label -> last heartbeat (our clock)
        self._nodes: dict[str, set[str]] = {}    # hostname label -> worker nodenames
        self._server = None
        self._thread: threading.Thread | None = None
        self._forget = None
        self.port: int | None = None
        self.host = LOOPBACK
        self.events = 0                     # events folded in so far
        self._stopped = False
        self._attach(first=True)

    # -- events ------------------------------------------------------------------------------
    def _attach(self, first: bool = False) -> Watcher:
        w = active_watcher(self.app)
        if w is None:
            w = Watcher(self.app, sample_queues=False).start()
            self._own_watcher = w
        self._watcher = w
        with w.state.lock:
            # From now on for the first watcher; a replacement's events are all new to us.
            self._pos = w.state.dropped + len(w.state.timeline) if first else w.state.dropped
        if first:
            # Workers the watcher already knows are up (a watcher we start asks them for a
            # heartbeat at once, so this is current either way).
            for node, summary in w.summary().workers.items():
                if summary.online:
                    host = worker_host(node)
                    self._nodes.setdefault(host, set()).add(node)
                    self._last_seen[host] = time.time()
                    self.worker_up.labels(hostname=host).set(1)
        return w

    def _drain(self, w: Watcher) -> None:
        with w.state.lock:
            start = max(self._pos - w.state.dropped, 0)
            records = w.state.timeline[start:]
            self._pos = w.state.dropped + len(w.state.timeline)
        for rec in records:
            self._fold(rec)
        self.events += len(records)

    def sync(self) -> None:
        """Fold the events received since the last call into the metrics, refresh the gauges."""
        with self._lock:
            w = self._watcher
            if w is not None:
                self._drain(w)
                if not w.running and not self._stopped:   # replaced or stopped: follow the new one
                    self._attach()
            self._update_workers()
            self._update_queues()

    def _fold(self, rec) -> None:
        if rec.type in ("worker-online", "worker-heartbeat"):
            host = worker_host(rec.hostname)
            self._nodes.setdefault(host, set()).add(rec.hostname)
            self._last_seen[host] = rec.received
            self.worker_up.labels(hostname=host).set(1)
            return
        if rec.type == "worker-offline":
            host = worker_host(rec.hostname)
            self._last_seen.pop(host, None)
            self.worker_up.labels(hostname=host).set(0)
            self.worker_tasks_active.labels(hostname=host).set(0)
            return
        if rec.type not in self.counters:
            return
        queue = rec.queue or "celery"
        self._seen_queues.add(queue)
        labels = {"name": rec.name or "unknown", "hostname": worker_host(rec.hostname), "queue_name": queue}
        for event, counter in self.counters.items():
            lab = dict(labels)
            if event == "task-failed":
                lab["exception"] = exception_class(rec.exception) if rec.type == event else ""
            if event == rec.type:
                counter.labels(**lab).inc()
            elif rec.type != "task-sent":   # sent comes from any client: don't multiply its series
                counter.labels(**lab).inc(0)
        if rec.type == "task-succeeded" and rec.runtime is not None:
            self.task_runtime.labels(**labels).observe(rec.runtime)
        elif rec.type != "task-sent":
            self.task_runtime.labels(**labels)   # the series exist (all 0) before the first run ends

    def _update_workers(self) -> None:
        now = time.time()
        for host, seen in list(self._last_seen.items()):
            if now - seen > self.worker_timeout:
                self.worker_up.labels(hostname=host).set(0)
                self.worker_tasks_active.labels(hostname=host).set(0)
                del self._last_seen[host]
        if self._watcher is None:
            return
        active: dict[str, int] = {}
        for node, summary in self._watcher.summary().workers.items():
            host = worker_host(node)
            if host in self._last_seen:
                active[host] = active.get(host, 0) + summary.active
        for host, n in active.items():
            self.worker_tasks_active.labels(hostname=host).set(n)

    def queue_names(self) -> list[str]:
        conf = self.app.conf
        names = {conf.task_default_queue or "celery", *self.extra_queues, *self._seen_queues}
        if conf.task_queues:
            names.update(q.name for q in conf.task_queues)
        return sorted(names)

    def _update_queues(self) -> None:
        try:
            lengths = self.queues.lengths(self.queue_names())
        except Exception:  # broker gone: keep the last values rather than fail the scrape
            return
        for q, n in lengths.items():
            self.queue_length.labels(queue_name=q).set(n)

    # -- reading -------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Sync, then every sample of the registry (the same numbers ``/metrics`` serves)."""
        self.sync()
        snap = Snapshot(time=time.time())
        for family in self.registry.collect():
            for s in family.samples:
                snap.samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return snap

    def value(self, metric: str, /, **labels) -> float:
        return self.snapshot().value(metric, **labels)

    def wait_until(self, metric: str, at_least: float, /, timeout: float = 10.0, **labels) -> Snapshot:
        """Block until ``name`` (summed over ``labels``) reaches ``at_least``; events arrive a few
        ms after the task finishes. Returns that snapshot (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if snap.value(metric, **labels) >= at_least:
                return snap
            if time.monotonic() > deadline:
                raise TimeoutError(_("{metric} is {value:g}, not {at_least:g}, after {timeout:g} s", metric=metric,
                                     value=snap.value(metric, **labels), at_least=at_least, timeout=timeout))
            time.sleep(0.05)

    def text(self) -> str:
        """The ``/metrics`` text (Prometheus exposition format)."""
        from prometheus_client import generate_latest

        self.sync()
        return generate_latest(self.registry).decode()

    # -- serving -------------------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}/metrics" if self.port else None

    def serve(self, port: int | None = None, host: str = LOOPBACK) -> str:
        """Serve ``/metrics`` on ``host:port`` (default: a free port on 127.0.0.1); returns the URL."""
        if self._server is not None:
            return self.url
        metrics_app = make_wsgi_app(self.registry)

        def app(environ, start_response):
            self.sync()
            return metrics_app(environ, start_response)

        held = _reserved.pop((host, port), None) if port else None
        if held is not None:   # a port reserve_port() kept listening: take its socket over
            server = ThreadingWSGIServer((host, port), _QuietHandler, bind_and_activate=False)
            server.socket.close()
            server.socket = held
            server.server_address = held.getsockname()
            server.server_name, server.server_port = host, port
            server.setup_environ()
            server.set_app(app)
        else:
            if port and port_in_use(port, host):
                raise PortInUseError(_("port {port} on {host} is already in use: serve() without a port picks a free one",
                                        port=port, host=host))
            try:
                server = make_server(host, port or 0, app, ThreadingWSGIServer, handler_class=_QuietHandler)
            except OSError as exc:
                raise PortInUseError(_("cannot serve metrics on {host}:{port}: {reason}", host=host, port=port,
                                        reason=exc.strerror)) from None
        server.daemon_threads = True
        self._server = server
        self.host, self.port = host, server.server_port
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"celerylab-exporter-{self.port}", daemon=True)
        self._thread.start()
        self._forget = processes.register(f"metrics exporter {self.url}", self.stop)
        return self.url

    def stop(self) -> None:
        """Stop serving (the port is free again) and stop the watcher if this exporter started it."""
        self._stopped = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._own_watcher is not None and self._own_watcher is self._watcher and self._own_watcher.running:
            self._own_watcher.stop(settle=0)
        self._own_watcher = None
        self.queues.close()
        if self._forget:
            self._forget()
            self._forget = None
        if _current.get(str(self.app.conf.broker_url)) is self:
            del _current[str(self.app.conf.broker_url)]

    @property
    def serving(self) -> bool:
        return self._server is not None

    def __enter__(self) -> "Exporter":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.serving else "not serving"
        return f"<celery exporter for app {self.app.main!r}: {where}>"


_current: dict[str, Exporter] = {}
_reserved: dict[tuple[str, int], socket.socket] = {}


def reserve_port(host: str = LOOPBACK) -> int:
    """A free port on ``host``, kept listening (connections wait in its backlog) until an
    exporter serves on it (``start_exporter(app, port=...)``): a Prometheus can be started
    with the exporter's address before the exporter exists, and nothing else can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    _reserved[(host, port)] = sock
    return port


def start_exporter(app: Celery, port: int | None = None, queues=(), worker_timeout: float = 300.0,
                   buckets=None) -> Exporter:
    """An :class:`Exporter` for ``app``, serving ``/metrics`` on 127.0.0.1 (a free port unless
    ``port`` is given). Re-running the cell replaces the exporter started before on that broker."""
    key = str(app.conf.broker_url)
    previous = _current.pop(key, None)
    if previous is not None:
        previous.stop()
    exporter = Exporter(app, queues=queues, worker_timeout=worker_timeout, buckets=buckets)
    try:
        exporter.serve(port)
    except BaseException:
        exporter.stop()
        raise
    _current[key] = exporter
    return exporter


# ---------------------------------------------------------------------------------------
# A live plot of scraped metrics (what a Grafana panel shows, in the notebook)
# ---------------------------------------------------------------------------------------
LIVE_TEXT = N_("celerylab live metrics plot (a widget: shown while the kernel runs)")
#: The default plot's title, y axis and queue line (shown with ``_()``; the series keys stay English)
DEFAULT_TITLE = N_("Live metrics")
DEFAULT_YAXIS = N_("count")
QUEUE_LINE = N_("queue length (celery)")


class LivePlot:
    """Scrape ``url`` every ``interval`` s and plot the chosen series in a plotly ``FigureWidget``.

    ``series``: ``{line name: (metric, {labels})}``; each line is the metric summed over the
    matching series, like ``sum(celery_task_succeeded_total)`` in a Grafana panel. ``stop()``
    ends the scraping (so does ``celerylab.cleanup()``); ``stop(show_final=True)`` also scrapes
    once more and displays the values the plot ended at as an ordinary plotly figure (a stored
    notebook keeps no picture of the widget).
    """

    def __init__(self, url: str, series: dict, interval: float = 0.25, title: str = DEFAULT_TITLE,
                 yaxis: str = DEFAULT_YAXIS):
        import plotly.graph_objects as go

        self.url = url
        self.series = dict(series)
        self.interval = interval
        self.points: list[tuple[float, dict]] = []
        self.errors: list[str] = []
        fig = go.FigureWidget()
        fig.update_layout(title=_(title), height=320, margin=dict(l=60, r=20, t=60, b=40),
                          legend=dict(orientation="h", y=1.12),
                          xaxis=dict(title=_("seconds"), rangemode="tozero"),
                          yaxis=dict(title=_(yaxis), rangemode="tozero"))
        for name in self.series:
            fig.add_scatter(mode="lines", name=_(name), x=[], y=[], line=dict(shape="hv"))
        self.widget = fig
        self.title = title
        self.yaxis = yaxis
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="celerylab-live-plot", daemon=True)
        self._thread.start()
        self._forget = processes.register(f"live plot of {url}", self.stop)

    def sample(self) -> dict:
        snap = scrape(self.url)
        return {name: snap.value(metric, **(labels or {})) for name, (metric, labels) in self.series.items()}

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                values = self.sample()
            except Exception as exc:  # exporter stopped: stop plotting quietly
                self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                self._add(started, values)
            self._stop.wait(max(self.interval - (time.monotonic() - started), 0.01))

    def _add(self, at: float, values: dict) -> None:
        self.points.append((round(at - self._t0, 3), values))
        xs = [t for t, _ in self.points]
        with self.widget.batch_update():
            for trace, name in zip(self.widget.data, self.series):
                trace.x, trace.y = xs, [v[name] for _, v in self.points]

    def stop(self, show_final: bool = False) -> None:
        """End the scraping. ``show_final=True``: scrape once more (what the metrics say now, after
        the cell's own waits) and display the final values (:meth:`final_bundle`)."""
        was_running = not self._stop.is_set()
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        if self._forget:
            self._forget()
            self._forget = None
        if show_final and was_running:
            try:
                self._add(time.monotonic(), self.sample())
            except Exception as exc:  # exporter already stopped: show the last values scraped
                self.errors.append(f"{type(exc).__name__}: {exc}")
            from .widgets import _display

            _display(self.final_bundle())

    def final_values(self) -> dict:
        """``{line name: value}`` of the last scrape (0 for a plot that scraped nothing)."""
        last = self.points[-1][1] if self.points else {}
        return {name: last.get(name, 0.0) for name in self.series}

    def final_figure(self):
        """The values the plot ended at, one bar per line, as a plain ``go.Figure``.

        Values only: the curves' times depend on scheduling (when each scrape ran), so they are
        drawn live only; the final values of counters the cell waited for are the same every run.
        """
        import plotly.graph_objects as go

        values = self.final_values()
        names, ys = [_(n) for n in values], [values[n] for n in values]
        fig = go.Figure(go.Bar(x=ys, y=names, orientation="h", text=[f"{v:g}" for v in ys],
                               textposition="auto", marker_color="#4e79a7", hovertemplate="%{y}: %{x}<extra></extra>"))
        fig.update_layout(title=_("{title}: final values (the curves over time are drawn live only)",
                                  title=_(self.title)),
                          height=120 + 32 * max(len(names), 1), margin=dict(l=160, r=20, t=50, b=40),
                          xaxis=dict(title=_(self.yaxis), rangemode="tozero"),
                          yaxis=dict(autorange="reversed", type="category"))
        return fig

    def final_line(self) -> str:
        values = self.final_values()
        return _("Final values of the live metrics plot {title}: {values}", title=repr(_(self.title)),
                 values=", ".join(f"{_(name)} {value:g}" for name, value in values.items()))

    def final_bundle(self) -> dict:
        """The display bundle of the final values: plotly JSON (JupyterLab, the book), an HTML
        table (nbconvert, GitHub), one text line (nbval, terminals). Deterministic for given values."""
        import html

        import plotly.io as pio

        bundle = dict(pio.renderers["plotly_mimetype"].to_mimebundle(self.final_figure().to_dict()))
        rows = "".join(f"<tr><td>{html.escape(_(name))}</td><td style='text-align:right'>{value:g}</td></tr>"
                       for name, value in self.final_values().items())
        caption = _("{title}: final values", title=html.escape(_(self.title)))
        bundle["text/html"] = (f'<table class="celerylab-live-plot-final"><caption>{caption}'
                               f"</caption>{rows}</table>")
        bundle["text/plain"] = self.final_line()
        return bundle

    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": _(LIVE_TEXT),
                "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                             "model_id": self.widget.model_id}}


def live_plot(url: str, series: dict | None = None, interval: float = 0.25, **kwargs) -> LivePlot:
    """A :class:`LivePlot`; by default the task counters a dashboard's first panel shows."""
    series = series or {
        "sent": ("celery_task_sent_total", {}),
        "succeeded": ("celery_task_succeeded_total", {}),
        "failed": ("celery_task_failed_total", {}),
        QUEUE_LINE: ("celery_queue_length", {"queue_name": "celery"}),
    }
    return LivePlot(url, series, interval, **kwargs)
