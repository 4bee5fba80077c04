"""Alert rules evaluated against live Prometheus metrics, the way Prometheus does it, in miniature.

Prometheus scrapes ``/metrics`` every few seconds into a time-series database and evaluates
alert rules on it: a rule whose condition holds becomes *pending*, and *firing* once it has
held for its ``for:`` duration; it *resolves* at the first evaluation where it no longer holds.
This module does the same in the kernel, on a thread, with windows in seconds instead of
minutes so a lesson can watch alerts fire and resolve::

    rules = seed_rules(scale=1/60)              # the seed article's four rules, 5 min -> 5 s
    ev = Evaluator(exporter.url, rules).start() # scrape + evaluate every 0.25 s
    ...make things go wrong...
    ev.wait_for("HighFailureRate", "firing")
    ev.transitions("HighFailureRate")           # ['inactive', 'firing', 'inactive']
    ev.stop()

A :class:`Rule` is a name, a function of the metric history (:class:`History`) that returns a
number (or None: no data, never fires), a threshold (``above``) and a ``for_`` duration. Its
``promql`` string is the expression a Prometheus rule would have. :func:`rules_from_prometheus`
reads a real rules file (``monitoring/prometheus/celery-alerts.rules.yml``, or its scaled copy
from :func:`celerylab.prometheus.scale_rules`), so the kit and Prometheus evaluate one file.

Where this model differs from Prometheus: ``increase()`` here is the plain difference between
the newest scrape and the one ``window`` seconds before (Prometheus extrapolates to the window's
edges), and a series that appears inside the window counts from 0 (Prometheus cannot count a
series' first sample). tests/test_prometheus_live.py checks that both fire the same alerts.
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from . import processes
from .errors import CeleryLabError
from .metrics import Snapshot, scrape

STATES = ("inactive", "pending", "firing")


class AlertRuleError(CeleryLabError):
    pass


# ---------------------------------------------------------------------------------------
# Metric history: a tiny time-series database of scrapes
# ---------------------------------------------------------------------------------------
class History:
    """Scrapes over time, with the two PromQL functions alert rules need.

    * ``increase(metric, window)``: how much counter ``metric`` grew over the last ``window``
      seconds, summed over the series that match ``labels``. A series that did not exist at
      the start of the window counts from 0 (the exporter creates every series at its first
      event, so that is when it was 0).
    * ``latest(metric)``: a gauge's current value, summed over the matching series.
    """

    def __init__(self, retention: float = 120.0):
        self.retention = retention
        self.snapshots: deque[Snapshot] = deque()
        self.lock = threading.Lock()

    def add(self, snap: Snapshot) -> None:
        with self.lock:
            self.snapshots.append(snap)
            while self.snapshots and snap.time - self.snapshots[0].time > self.retention:
                self.snapshots.popleft()

    @property
    def now(self) -> float:
        return self.snapshots[-1].time if self.snapshots else time.time()

    def last(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None

    def at(self, t: float) -> Snapshot | None:
        """The newest scrape taken at or before ``t`` (None: history starts later)."""
        with self.lock:
            found = None
            for snap in self.snapshots:
                if snap.time <= t:
                    found = snap
                else:
                    break
            return found

    def latest(self, metric: str, /, default: float | None = None, **labels) -> float | None:
        snap = self.last()
        if snap is None:
            return default
        found = snap.series(metric, **labels)
        return float(sum(found.values())) if found else default

    def series(self, metric: str, /, **labels) -> dict:
        snap = self.last()
        return snap.series(metric, **labels) if snap else {}

    def increase(self, metric: str, window: float, /, **labels) -> float:
        snap = self.last()
        if snap is None:
            return 0.0
        base = self.at(snap.time - window)
        if base is None:
            base = self.snapshots[0] if self.snapshots else snap
        total = 0.0
        for key, value in snap.samples.items():
            if key[0] != metric or not set(labels.items()) <= set(key[1]):
                continue
            before = base.samples.get(key, 0.0) if base is not snap else value
            total += value - before if value >= before else value   # a reset counts from 0
        return total


# ---------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------
@dataclass
class Rule:
    """Fires when ``expr(history) > above`` has held for ``for_`` seconds."""

    name: str
    expr: Callable[[History], float | None]
    above: float = 0.0
    for_: float = 0.0
    summary: str = ""
    promql: str = ""

    def evaluate(self, history: History) -> tuple[bool, float | None]:
        value = self.expr(history)
        if value is None:
            return False, None
        return float(value) > self.above, float(value)

    def __repr__(self) -> str:
        return f"<rule {self.name}: > {self.above:g} for {self.for_:g} s>"


_UNITS = (("h", 3600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def _minutes(seconds: float) -> str:
    """A Prometheus duration: ``300`` -> ``5m``, ``3`` -> ``3s``, ``0.6`` -> ``600ms``."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_duration(text: str) -> float:
    """A Prometheus duration in seconds: ``5m`` -> 300.0, ``1h30m`` -> 5400.0, ``600ms`` -> 0.6."""
    m = _DURATION.match(str(text).strip())
    if not m or not any(m.groups()):
        raise AlertRuleError(f"not a Prometheus duration: {text!r} (write e.g. 5m, 30s, 500ms)")
    h, mi, s, ms = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def failure_rate(window: float = 300.0, above: float = 0.10, min_tasks: int = 1, for_: float = 0.0,
                 alert: str = "HighFailureRate", labels: dict | None = None) -> Rule:
    """Share of finished tasks that failed in the last ``window`` s (no data below ``min_tasks``);
    ``labels`` narrows it, e.g. ``{"name": "l07.charge"}`` for one task."""
    labels = dict(labels or {})

    def expr(h: History):
        failed = h.increase("celery_task_failed_total", window, **labels)
        done = failed + h.increase("celery_task_succeeded_total", window, **labels)
        return None if done < min_tasks else failed / done

    w, sel = _minutes(window), _selector(labels)
    failed = f"sum(increase(celery_task_failed_total{sel}[{w}]))"
    done = f"({failed} + sum(increase(celery_task_succeeded_total{sel}[{w}])))"
    return Rule(alert, expr, above, for_, f"more than {above:.0%} of tasks failed over {w}",
                f"{failed} / {done} > {above:g} and {done} >= {min_tasks:g}")


def _selector(labels: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def backlog(above: float = 1000, for_: float = 300.0, queue: str | None = None, alert: str = "QueueBacklog") -> Rule:
    """Messages waiting in the longest queue (or in ``queue``), every priority band counted."""

    def expr(h: History):
        labels = {"queue_name": queue} if queue else {}
        series = h.series("celery_queue_length", **labels)
        return max(series.values()) if series else None

    sel = f'{{queue_name="{queue}"}}' if queue else ""
    return Rule(alert, expr, above, for_, f"a queue holds more than {above:g} messages for {_minutes(for_)}",
                f"max(celery_queue_length{sel}) > {above:g}")


def worker_offline(for_: float = 0.0, alert: str = "WorkerOffline") -> Rule:
    """Workers the exporter has seen that are now down (offline event or heartbeat timeout)."""

    def expr(h: History):
        series = h.series("celery_worker_up")
        return sum(1 for v in series.values() if v == 0) if series else None

    return Rule(alert, expr, 0, for_, "a worker stopped sending heartbeats", "celery_worker_up == 0")


def slow_tasks(threshold: float = 60.0, window: float = 300.0, for_: float = 0.0, alert: str = "SlowTasks",
               labels: dict | None = None) -> Rule:
    """Tasks that ran longer than ``threshold`` s in the last ``window`` s, from the runtime
    histogram: all observations minus those in the ``le=threshold`` bucket. ``threshold`` must
    be one of the histogram's bucket bounds."""
    labels = dict(labels or {})

    def expr(h: History):
        snap = h.last()
        if snap is None:
            return None
        bounds = {dict(lab).get("le") for lab in snap.series("celery_task_runtime_bucket")}
        le = _bucket_label(threshold, bounds)
        total = h.increase("celery_task_runtime_count", window, **labels)
        fast = h.increase("celery_task_runtime_bucket", window, le=le, **labels)
        return total - fast

    w = _minutes(window)
    sel, le_sel = _selector(labels), _selector({**labels, "le": f"{threshold:g}"})
    return Rule(alert, expr, 0, for_, f"a task ran longer than {threshold:g} s in the last {w}",
                f"sum(increase(celery_task_runtime_count{sel}[{w}])) - sum(increase(celery_task_runtime_bucket"
                f"{le_sel}[{w}])) > 0")


def _bucket_label(threshold: float, bounds: set) -> str:
    for b in bounds:
        if b not in (None, "+Inf") and float(b) == float(threshold):
            return b
    if not bounds or bounds == {None}:
        return repr(float(threshold))  # no task has finished yet: nothing to count
    known = sorted(float(b) for b in bounds if b not in (None, "+Inf"))
    raise AlertRuleError(f"slow_tasks(threshold={threshold:g}): not a bucket of celery_task_runtime; "
                         f"use one of {', '.join(f'{b:g}' for b in known)}")


def seed_rules(scale: float = 1.0, backlog_above: float = 1000) -> list[Rule]:
    """The seed article's alert strategy, with every duration multiplied by ``scale``
    (``scale=1/60`` turns minutes into seconds for a lesson):

    failure rate > 10 % over 5 min (at least 5 finished tasks); backlog > ``backlog_above`` for
    5 min; any worker offline; a task running longer than a threshold (60 s, scaled, rounded to a
    bucket bound). At ``scale=1`` these are the rules of ``monitoring/prometheus/celery-alerts.rules.yml``
    (tests/test_prometheus_rules.py checks it).
    """
    from prometheus_client import Histogram

    slow = min(Histogram.DEFAULT_BUCKETS, key=lambda b: abs(b - 60.0 * scale))
    return [failure_rate(300 * scale, 0.10, min_tasks=5), backlog(backlog_above, 300 * scale), worker_offline(0),
            slow_tasks(slow if slow != float("inf") else 10.0, 300 * scale)]


_SEL = r"(\{[^}]*\})?"
_NUM = r"([0-9.]+(?:e[+-]?\d+)?)"


def _labels_of(selector: str | None) -> dict:
    return dict(re.findall(r'(\w+)="([^"]*)"', selector or ""))


def _rule_from_expr(name: str, expr: str, for_: float) -> Rule | None:
    """The kit's rule for one of the four expression shapes its constructors write, or None."""
    m = re.fullmatch(r"max\(celery_queue_length" + _SEL + r"\) > " + _NUM, expr)
    if m:
        return backlog(float(m[2]), for_, _labels_of(m[1]).get("queue_name"), alert=name)
    if expr == "celery_worker_up == 0":
        return worker_offline(for_, alert=name)
    m = re.match(r"sum\(increase\(celery_task_failed_total" + _SEL + r"\[(\w+)\]\)\)", expr)
    tail = re.search(r" > " + _NUM + r" and .* >= " + _NUM + "$", expr)
    if m and tail:
        return failure_rate(parse_duration(m[2]), float(tail[1]), int(float(tail[2])), for_, name, _labels_of(m[1]))
    m = re.match(r"sum\(increase\(celery_task_runtime_count" + _SEL + r"\[(\w+)\]\)\)", expr)
    le = re.search(r'le="([^"]+)"', expr)
    if m and le:
        return slow_tasks(float(le[1]), parse_duration(m[2]), for_, name, _labels_of(m[1]))
    return None


def rules_from_prometheus(source) -> list[Rule]:
    """The kit's rules for a Prometheus rules file (a path or its YAML text), so that the kit's
    evaluator and Prometheus evaluate the same file. Each ``expr`` must be in one of the four
    shapes the kit's constructors write (``failure_rate``, ``backlog``, ``worker_offline``,
    ``slow_tasks``); the rule's ``for:`` is kept. Anything else raises :class:`AlertRuleError`."""
    import os

    import yaml

    text = source
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and os.path.exists(source)):
        with open(source, encoding="utf-8") as f:
            text = f.read()
    doc = yaml.safe_load(text) or {}
    rules = []
    for group in doc.get("groups", []):
        for spec in group.get("rules", []):
            if "alert" not in spec:
                continue  # recording rules: nothing to fire
            expr = " ".join(str(spec["expr"]).split())
            for_ = parse_duration(spec["for"]) if spec.get("for") else 0.0
            rule = _rule_from_expr(spec["alert"], expr, for_)
            if rule is None or rule.promql != expr:
                raise AlertRuleError(f"alert {spec['alert']}: the kit's evaluator reads only the expression shapes "
                                     f"its rule constructors write; got {expr!r}"
                                     + (f", expected {rule.promql!r}" if rule is not None else ""))
            rules.append(rule)
    return rules


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------
@dataclass
class Alert:
    rule: Rule
    state: str = "inactive"
    value: float | None = None
    since: float | None = None        # when the condition started holding (pending/firing)
    fired_at: float | None = None


@dataclass(frozen=True)
class Transition:
    time: float
    rule: str
    old: str
    new: str
    value: float | None

    def line(self) -> str:
        """A fixed-format line without times or values (stable across runs)."""
        verb = {"firing": "FIRING  ", "pending": "pending ", "inactive": "resolved" if self.old == "firing" else "cleared "}
        return f"{verb[self.new]} {self.rule}"


class Evaluator:
    """Scrape ``source`` and evaluate ``rules`` every ``interval`` s (``start()``), or once per
    ``step()``. ``source``: a ``/metrics`` URL, an object with ``snapshot()`` (an Exporter) or
    a function returning a :class:`~celerylab.metrics.Snapshot`. ``notify(transition)`` is
    called on every change, like Alertmanager's receivers (Slack, e-mail, PagerDuty...)."""

    def __init__(self, source, rules: Iterable[Rule], interval: float = 0.25, retention: float = 120.0,
                 notify: Callable[[Transition], None] | None = None):
        self.source = source
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise AlertRuleError(f"rule names must be unique: {names}")
        self.interval = interval
        self.history = History(retention)
        self.alerts = {r.name: Alert(r) for r in self.rules}
        self.log: list[Transition] = []
        self.notify = notify
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forget = None

    def _scrape(self) -> Snapshot:
        src = self.source
        if isinstance(src, str):
            return scrape(src)
        if hasattr(src, "snapshot"):
            return src.snapshot()
        return src()

    def step(self, snapshot: Snapshot | None = None) -> list[Transition]:
        """One scrape (or the given snapshot) and one evaluation of every rule."""
        with self._lock:
            snap = snapshot if snapshot is not None else self._scrape()
            self.history.add(snap)
            now = snap.time
            changes = []
            for rule in self.rules:
                alert = self.alerts[rule.name]
                holds, value = rule.evaluate(self.history)
                alert.value = value
                old = alert.state
                if holds:
                    if alert.since is None:
                        alert.since = now
                    new = "firing" if now - alert.since >= rule.for_ else "pending"
                else:
                    alert.since = None
                    new = "inactive"
                if new != old:
                    alert.state = new
                    if new == "firing":
                        alert.fired_at = now
                    t = Transition(now, rule.name, old, new, value)
                    self.log.append(t)
                    changes.append(t)
            for t in changes:
                if self.notify:
                    self.notify(t)
            return changes

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.step()
            except Exception as exc:  # exporter gone for a moment: keep evaluating
                self.errors.append(f"{type(exc).__name__}: {exc}")
                del self.errors[:-20]
            self._stop.wait(max(self.interval - (time.monotonic() - started), 0.01))

    def start(self) -> "Evaluator":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="celerylab-alerts", daemon=True)
            self._thread.start()
            self._forget = processes.register("alert evaluator", self.stop)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._forget:
            self._forget()
            self._forget = None

    def __enter__(self) -> "Evaluator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- reading ------------------------------------------------------------------------------
    def state(self, name: str) -> str:
        return self.alerts[name].state

    def firing(self) -> list[str]:
        return [n for n, a in self.alerts.items() if a.state == "firing"]

    def transitions(self, name: str) -> list[str]:
        """The states rule ``name`` went through, starting from inactive."""
        with self._lock:
            return ["inactive"] + [t.new for t in self.log if t.rule == name]

    def _check_name(self, name: str) -> None:
        if name not in self.alerts:
            raise AlertRuleError(f"no rule named {name!r}: rules are {', '.join(self.alerts)}")

    def _wait(self, name: str, done, what: str, timeout: float) -> Alert:
        self._check_name(name)
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                alert = self.alerts[name]
                value = "no data" if alert.value is None else f"value {alert.value:g}"
                raise TimeoutError(f"alert {name} {what} within {timeout:g} s (now {alert.state}, {value})")
            if self._thread is None:
                self.step()
            time.sleep(min(self.interval, 0.05))
        return self.alerts[name]

    def wait_for(self, name: str, state: str, timeout: float = 10.0) -> Alert:
        """Block until rule ``name`` is in ``state`` now (raise after ``timeout`` s)."""
        if state not in STATES:
            raise AlertRuleError(f"state must be one of {', '.join(STATES)}, not {state!r}")
        return self._wait(name, lambda: self.alerts[name].state == state, f"was not {state}", timeout)

    def wait_fired(self, name: str, timeout: float = 10.0) -> Alert:
        """Block until rule ``name`` has fired (it may have resolved again since)."""
        return self._wait(name, lambda: "firing" in self.transitions(name), "did not fire", timeout)

    def wait_resolved(self, name: str, timeout: float = 10.0) -> Alert:
        """Block until rule ``name`` has fired and then resolved."""
        def done():
            states = self.transitions(name)
            return "firing" in states and "inactive" in states[states.index("firing"):]
        return self._wait(name, done, "did not fire and resolve", timeout)

    def table(self) -> str:
        """One line per rule: name, state, condition (stable text: no values or times)."""
        width = max(len(r.name) for r in self.rules)
        return "\n".join(f"{r.name:<{width}}  {self.alerts[r.name].state:<8}  {r.summary}" for r in self.rules)

    def __repr__(self) -> str:
        running = "running" if self._thread is not None else "stopped"
        return f"<alert evaluator: {len(self.rules)} rules, {running}, firing: {self.firing() or 'none'}>"
