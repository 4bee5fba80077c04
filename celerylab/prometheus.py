"""A real Prometheus and Alertmanager on 127.0.0.1, for lesson 07 and the tests.

The rules are ``monitoring/prometheus/celery-alerts.rules.yml`` (production windows: minutes).
A lesson cannot wait five minutes, so :func:`scale_rules` writes a copy of that one file with
every duration multiplied by a factor (``scale=1/100``: ``5m`` -> ``3s``) and, by name, the
thresholds a lesson cannot reach (1000 messages -> 20). Nothing else changes::

    text = scale_rules(scale=1/100, replace={"QueueBacklog": {"1000": "20"}})
    am = AlertmanagerServer(webhook.url, scale=1/100).start()
    prom = PrometheusServer([exporter.url], text, interval=0.5, alertmanager=am).start()
    prom.firing()                     # ['HighFailureRate', ...] from GET /api/v1/alerts
    prom.query("max(celery_queue_length)")

Both are :class:`~celerylab.servers.RealServer` s: their own process group, a temporary data
folder, a free port on 127.0.0.1 (Alertmanager's cluster port off), registered with
:mod:`celerylab.processes` so they stop with the kernel, and watched by ``supervise.py`` so a
killed kernel takes them along. :func:`missing` says which program is not installed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

from .alerts import _minutes, parse_duration
from .errors import CeleryLabError
from .ports import LOOPBACK
from .servers import RealServer, ServerMissingError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MONITORING = os.path.join(ROOT, "monitoring")
RULES_FILE = os.path.join(MONITORING, "prometheus", "celery-alerts.rules.yml")
RULES_TESTS = os.path.join(MONITORING, "prometheus", "tests", "celery-alerts.test.yml")
ALERTMANAGER_FILE = os.path.join(MONITORING, "alertmanager", "alertmanager.yml")
DASHBOARD_FILE = os.path.join(MONITORING, "grafana", "celery-dashboard.json")

PROGRAMS = {"prometheus": ("prometheus",), "promtool": ("promtool",),
            "alertmanager": ("prometheus-alertmanager", "alertmanager")}
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager, or `make test` as root"


class PrometheusError(CeleryLabError):
    pass


def program(name: str) -> str | None:
    """Path of ``prometheus``, ``promtool`` or ``alertmanager`` (Debian: prometheus-alertmanager)."""
    for candidate in PROGRAMS[name]:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def missing(*names: str) -> list[str]:
    """Which of the programs are not installed (default: prometheus, promtool, alertmanager)."""
    return [n for n in (names or tuple(PROGRAMS)) if program(n) is None]


# ---------------------------------------------------------------------------------------
# One rules file, scaled for a lesson
# ---------------------------------------------------------------------------------------
_RANGE = re.compile(r"\[(\w+)\]")


def _scale(duration: str, scale: float) -> str:
    return _minutes(parse_duration(duration) * scale)


def scale_rules(source: str = RULES_FILE, scale: float = 1.0, replace: dict | None = None) -> str:
    """The rules file ``source`` (path or YAML text) with every range ``[5m]`` and ``for:``
    multiplied by ``scale``, and ``replace={"Alert": {"old": "new"}}`` applied to that alert's
    expr and annotations (each ``old`` must occur in its expr). Returns the YAML text."""
    text = source
    if "\n" not in source and os.path.exists(source):
        with open(source, encoding="utf-8") as f:
            text = f.read()
    doc = yaml.safe_load(text)
    replace = {k: dict(v) for k, v in (replace or {}).items()}
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            expr = _RANGE.sub(lambda m: f"[{_scale(m[1], scale)}]", " ".join(str(rule["expr"]).split()))
            for old, new in replace.pop(name, {}).items():
                if old not in expr:
                    raise PrometheusError(f"{name}: {old!r} is not in its expr {expr!r}")
                expr = expr.replace(old, new)
                numbers = re.findall(r"[0-9.]+", old), re.findall(r"[0-9.]+", new)
                if all(len(n) == 1 for n in numbers):   # "more than 1000 messages", "longer than 10 s"
                    for key, value in (rule.get("annotations") or {}).items():
                        rule["annotations"][key] = re.sub(rf"(?<![\d.]){re.escape(numbers[0][0])} ",
                                                          f"{numbers[1][0]} ", value)
            rule["expr"] = expr
            if rule.get("for"):
                rule["for"] = _scale(rule["for"], scale)
            if scale != 1 and rule.get("annotations"):
                for key, value in rule["annotations"].items():
                    rule["annotations"][key] = re.sub(
                        r"\b(\d+) minutes\b", lambda m: _minutes(int(m[1]) * 60 * scale), value)
    if replace:
        raise PrometheusError(f"no alert named {', '.join(replace)} in the rules file")
    header = f"# generated from {os.path.relpath(RULES_FILE, ROOT)}: durations x {scale:g}\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=1000)


def alertmanager_config(webhook_url: str, scale: float = 1.0, source: str = ALERTMANAGER_FILE) -> str:
    """``monitoring/alertmanager/alertmanager.yml`` with the receiver's URL set to ``webhook_url``
    and the route's group_wait / group_interval / repeat_interval multiplied by ``scale``."""
    with open(source, encoding="utf-8") as f:
        doc = yaml.safe_load(f)

    def fix(route):
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = _scale(route[key], scale)
        for child in route.get("routes", []):
            fix(child)

    fix(doc["route"])
    for receiver in doc.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    return yaml.safe_dump(doc, sort_keys=False)


# ---------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------
def _http(url: str, data: dict | None = None, method: str | None = None, timeout: float = 5.0):
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise PrometheusError(f"{method or ('POST' if body else 'GET')} {url}: HTTP {exc.code} "
                              f"{exc.read().decode(errors='replace')[:300]}") from None
    return json.loads(raw) if raw else None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


class _Server(RealServer):
    key = ""

    def binary(self) -> str:
        found = program(self.key)
        if found is None:
            raise ServerMissingError(f"{self.key} is not installed ({INSTALL_HINT})")
        return found

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def ready(self) -> bool:
        return _ready(f"{self.url}/-/ready")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and remove its temporary folder (config, data): nothing is kept."""
        super().stop(timeout)
        if self._own_dir:
            shutil.rmtree(self.datadir, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Alertmanager
# ---------------------------------------------------------------------------------------
class AlertmanagerServer(_Server):
    """``alertmanager`` on 127.0.0.1 routing to ``webhook_url``; clustering off (no 9094)."""

    name = "alertmanager"
    key = "alertmanager"

    def __init__(self, webhook_url: str, scale: float = 1.0, port: int | None = None):
        super().__init__(port)
        self.config = os.path.join(self.datadir, "alertmanager.yml")
        with open(self.config, "w") as f:
            f.write(alertmanager_config(webhook_url, scale))

    def command(self) -> list[str]:
        return [self.binary(), f"--config.file={self.config}", f"--storage.path={self.datadir}/data",
                f"--web.listen-address={LOOPBACK}:{self.port}", "--cluster.listen-address=",
                "--log.level=warn"]

    def alerts(self) -> list[dict]:
        """``GET /api/v2/alerts``: the alerts Alertmanager holds (silenced ones say so)."""
        return _http(f"{self.url}/api/v2/alerts")

    def silence(self, seconds: float = 3600, comment: str = "", created_by: str = "celerylab", **labels) -> str:
        """Silence alerts whose labels equal ``labels`` (e.g. ``alertname="SlowTasks"``) for
        ``seconds`` (``POST /api/v2/silences``, what ``amtool silence add`` does); its id."""
        from datetime import datetime, timedelta, timezone

        now = datetime.now(timezone.utc)
        body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in labels.items()],
                "startsAt": now.isoformat(), "endsAt": (now + timedelta(seconds=seconds)).isoformat(),
                "createdBy": created_by, "comment": comment or "silenced from celerylab"}
        return _http(f"{self.url}/api/v2/silences", body)["silenceID"]


# ---------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------
class PrometheusServer(_Server):
    """``prometheus`` on 127.0.0.1 scraping ``targets`` (``/metrics`` URLs) every ``interval``
    s, evaluating ``rules`` (a rules file's YAML text or path) as often, and sending alerts to
    ``alertmanager`` (an :class:`AlertmanagerServer`, or None)."""

    name = "prometheus"
    key = "prometheus"

    def __init__(self, targets, rules: str | None = RULES_FILE, interval: float = 0.5,
                 alertmanager: AlertmanagerServer | None = None, port: int | None = None):
        super().__init__(port)
        self.interval = interval
        rules = rules or "groups: []\n"
        if "\n" not in rules and os.path.exists(rules):
            with open(rules, encoding="utf-8") as f:
                rules = f.read()
        self.rules_file = os.path.join(self.datadir, "celery-alerts.rules.yml")
        with open(self.rules_file, "w") as f:
            f.write(rules)
        every = _minutes(interval)
        scrape = []
        for i, target in enumerate([targets] if isinstance(targets, str) else targets):
            parts = urllib.parse.urlsplit(target)
            scrape.append({"job_name": "celery" if i == 0 else f"celery-{i}", "metrics_path": parts.path or "/metrics",
                           "static_configs": [{"targets": [parts.netloc]}]})
        config = {"global": {"scrape_interval": every, "evaluation_interval": every,
                             "scrape_timeout": _minutes(interval * 0.8)},
                  "rule_files": [self.rules_file], "scrape_configs": scrape}
        if alertmanager is not None:
            config["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [f"{LOOPBACK}:{alertmanager.port}"]}]}]}
        self.config = os.path.join(self.datadir, "prometheus.yml")
        with open(self.config, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)

    def command(self) -> list[str]:
        return [self.binary(), f"--config.file={self.config}", f"--storage.tsdb.path={self.datadir}/data",
                f"--web.listen-address={LOOPBACK}:{self.port}", "--log.level=warn",
                "--storage.tsdb.retention.time=1h", "--rules.alert.resend-delay=1s", "--web.enable-lifecycle"]

    def load_rules(self, rules: str) -> None:
        """Replace the rules (YAML text or path) and reload (``POST /-/reload``, on 127.0.0.1).
        Targets and Alertmanagers stay as they are: no new wait for service discovery, whose
        first update takes 5 s after Prometheus starts."""
        if "\n" not in rules and os.path.exists(rules):
            with open(rules, encoding="utf-8") as f:
                rules = f.read()
        with open(self.rules_file, "w") as f:
            f.write(rules)
        _http(f"{self.url}/-/reload", {}, method="POST")
        names = {r.get("alert") or r.get("record") for g in (yaml.safe_load(rules) or {}).get("groups", [])
                 for r in g.get("rules", [])}
        self.wait(lambda: names == {r["name"] for g in self.api("rules")["groups"] for r in g["rules"]},
                  "the new rules were not loaded", timeout=10)

    # -- the HTTP API ----------------------------------------------------------------------
    def api(self, path: str, **params) -> dict | list:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        out = _http(f"{self.url}/api/v1/{path}{query}")
        if out.get("status") != "success":
            raise PrometheusError(f"/api/v1/{path}: {out}")
        return out["data"]

    def query(self, expr: str) -> list[dict]:
        """``GET /api/v1/query``: the instant vector ``expr`` evaluates to now."""
        return self.api("query", query=expr)["result"]

    def alerts(self) -> list[dict]:
        """``GET /api/v1/alerts``: pending and firing alerts, with labels, state, activeAt."""
        return self.api("alerts")["alerts"]

    def firing(self) -> list[str]:
        return sorted({a["labels"]["alertname"] for a in self.alerts() if a["state"] == "firing"})

    def targets_up(self) -> bool:
        """True once every scrape target has been scraped successfully."""
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def wait(self, done, what: str, timeout: float = 15.0, every: float = 0.1):
        """Poll ``done()`` until it returns something true (raise after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            value = done()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus: {what} within {timeout:g} s (firing: {self.firing() or 'none'})")
            time.sleep(every)

    def watch(self, interval: float = 0.1) -> "AlertWatch":
        """Poll ``/api/v1/alerts`` on a thread and remember when each alert was first seen firing."""
        return AlertWatch(self, interval)


class AlertWatch:
    """When Prometheus first reported each alert firing (time.time()), polled every ``interval``
    s on a thread, so that an alert that fires and resolves between two of your calls counts."""

    def __init__(self, server: PrometheusServer, interval: float = 0.1):
        import threading

        from . import processes

        self.server = server
        self.interval = interval
        self.fired: dict[str, float] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="celerylab-prometheus-watch", daemon=True)
        self._thread.start()
        self._forget = processes.register("prometheus alert watch", self.stop)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                now = time.time()
                for alert in self.server.alerts():
                    if alert["state"] == "firing":
                        self.fired.setdefault(alert["labels"]["alertname"], now)
            except Exception as exc:  # server stopping: keep what we have
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def wait_fired(self, names, timeout: float = 15.0) -> dict[str, float]:
        """Block until every alert in ``names`` has fired at least once; ``{name: time}``."""
        deadline = time.monotonic() + timeout
        while not set(names) <= set(self.fired):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus fired {sorted(self.fired) or 'nothing'}, not all of "
                                   f"{sorted(names)}, within {timeout:g} s")
            time.sleep(0.05)
        return {n: self.fired[n] for n in names}

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self._forget:
            self._forget()
            self._forget = None


def start_together(*servers: RealServer) -> tuple:
    """Start the servers at the same time (each start waits until its server is ready)."""
    import threading

    errors: list[BaseException] = []

    def run(server):
        try:
            server.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for s in servers:
            s.stop()
        raise errors[0]
    return servers
