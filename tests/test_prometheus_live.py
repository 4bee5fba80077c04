"""A real Prometheus and Alertmanager against the kit's exporter (skipped without the programs).

One scenario, shared by the tests below: Prometheus scrapes the kit's exporter every 0.5 s and
evaluates the rules file scaled by 1/100 (5m -> 3s), the kit's evaluator evaluates the same
file (``rules_from_prometheus``), Alertmanager routes to the kit's webhook receiver. Then tasks
fail, one runs slowly, messages pile up in a queue nobody consumes, a worker stops; later a
worker drains the queue and the failures age out of the window.
"""
from __future__ import annotations

import json
import time

import pytest

import celerylab
from celerylab import prometheus as prom_mod
from celerylab.alerts import Evaluator, rules_from_prometheus
from celerylab.metrics import start_exporter
from celerylab.webhook import WebhookReceiver, alertnames, describe

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(prom_mod.missing("prometheus", "alertmanager")),
                                 reason=f"needs {' and '.join(prom_mod.missing('prometheus', 'alertmanager'))} "
                                        f"({prom_mod.INSTALL_HINT})")]

ALERTS = ["HighFailureRate", "QueueBacklog", "SlowTasks", "WorkerOffline"]
SCALE = 1 / 100
AM_SCALE = 1 / 30            # as in lesson 07: group_wait 30s -> 1s, group_interval 5m -> 10s
REPLACE = {"QueueBacklog": {"1000": "20"}, "SlowTasks": {'le="10"': 'le="0.5"'}}
#: Prometheus scrapes and evaluates every 0.5 s, the kit every 0.25 s; Prometheus' increase()
#: extrapolates to the window's edges, the kit's does not: a firing may differ by a few intervals.
AGREE_WITHIN = 2.0


@pytest.fixture(scope="module")
def scenario():
    import os

    saved = os.environ.pop("CELERYLAB_BROKER_URL", None)   # as the `embedded` fixture: a fresh embedded broker
    previous = celerylab.current_broker()
    if previous is not None:
        previous.stop()
    broker = celerylab.start_broker()
    app = celerylab.create_app("test_prom_live")

    @app.task(name="tprom.ok", shared=False)
    def ok():
        return 1

    @app.task(name="tprom.fail", shared=False)
    def fail():
        raise ConnectionError("gateway timed out")

    @app.task(name="tprom.slow", shared=False)
    def slow(seconds):
        time.sleep(seconds)

    out = {"app": app}
    try:
        text = prom_mod.scale_rules(scale=SCALE, replace=REPLACE)
        hook = WebhookReceiver().start()
        am = prom_mod.AlertmanagerServer(hook.url, scale=AM_SCALE).start()
        exporter = start_exporter(app, queues=["backlog"], worker_timeout=300)
        prom = prom_mod.PrometheusServer([exporter.url], text, interval=0.5, alertmanager=am).start()
        kit = Evaluator(exporter.url, rules_from_prometheus(text), interval=0.25).start()
        out.update(hook=hook, am=am, exporter=exporter, prom=prom, kit=kit)
        worker = celerylab.start_worker(app, hostname="orders@worker-a", concurrency=4)
        other = celerylab.start_worker(app, hostname="reports@worker-b", queues=["reports"], concurrency=1)
        third = celerylab.start_worker(app, hostname="exports@worker-c", queues=["exports"], concurrency=1)
        exporter.wait_until("celery_worker_up", 3)
        # Every series the scenario uses exists before it counts (Prometheus' increase() does
        # not see a series' first sample): one run of each task, scraped by Prometheus.
        for r in [ok.delay(), fail.delay(), slow.delay(0.01)]:
            r.get(propagate=False, timeout=10)
        exporter.wait_until("celery_task_runtime_count", 2)
        prom.wait(lambda: prom.query("sum(celery_task_runtime_count) >= 2") and prom.targets_up(),
                  "the warm-up tasks were not scraped")
        time.sleep(1.0)   # two more scrapes: the series have a sample before the burst
        assert prom.firing() == [] and kit.firing() == []
        out["silence"] = am.silence(alertname="SlowTasks", seconds=600, comment="known slow report")

        # Break four things.
        for _ in range(25):
            ok.apply_async(queue="backlog")
        for _ in range(8):
            fail.delay()
        for _ in range(2):
            ok.delay()
        slow.delay(0.7)
        other.stop()                                  # worker-offline: celery_worker_up{hostname="worker-b"} 0
        third.stop()                                  # and worker-c: one WorkerOffline notification, two alerts
        fired_prom, prom_alerts, am_alerts = {}, {}, {}
        fired_kit = lambda: sorted(n for n in ALERTS if "firing" in kit.transitions(n))  # noqa: E731
        deadline = time.monotonic() + 20
        while len(fired_prom) < len(ALERTS) or len(fired_kit()) < len(ALERTS):
            assert time.monotonic() < deadline, f"prometheus: {sorted(fired_prom)}, kit: {fired_kit()}"
            now = time.time()
            for alert in prom.alerts():
                if alert["state"] == "firing":
                    fired_prom.setdefault(alert["labels"]["alertname"], now)
                    prom_alerts.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
            for alert in am.alerts():             # what Alertmanager holds, silenced ones included
                am_alerts.setdefault(alert["labels"]["alertname"], alert)
            time.sleep(0.1)
        out["fired_prom"] = fired_prom
        out["fired_kit"] = {name: kit.alerts[name].fired_at for name in fired_kit()}
        out["prom_alerts"] = prom_alerts
        out["panels"] = {(panel["title"], t["expr"]): prom.query(t["expr"])
                         for panel in json.load(open(prom_mod.DASHBOARD_FILE))["panels"] for t in panel["targets"]}
        # the two that last until fixed. WorkerOffline: the notification that carries both workers
        # (on a loaded machine Prometheus may see worker-c stop one evaluation after worker-b; then
        # the group's first message has one alert and the next, group_interval later, both)
        out["notified"] = {
            "QueueBacklog": hook.wait(lambda d: d["groupLabels"] == {"alertname": "QueueBacklog"}, timeout=15),
            "WorkerOffline": hook.wait(lambda d: d["groupLabels"] == {"alertname": "WorkerOffline"}
                                       and len(d["alerts"]) == 2, timeout=25),
        }
        out["am_alerts"] = am_alerts

        # Fix: a worker drains the backlog and worker-b is back; the failures age out.
        other = celerylab.start_worker(app, hostname="reports@worker-b", queues=["reports", "backlog"], concurrency=2)
        third = celerylab.start_worker(app, hostname="exports@worker-c", queues=["exports"], concurrency=1)
        prom.wait(lambda: not prom.firing() and not prom.alerts(), "alerts did not resolve", timeout=20)
        kit.wait_for("QueueBacklog", "inactive")
        out["resolved_kit"] = {name: kit.transitions(name) for name in ALERTS}
        out["resolved_note"] = hook.wait(lambda d: d["status"] == "resolved"
                                         and d["groupLabels"] == {"alertname": "WorkerOffline"}, timeout=15)
        out["all_notes"] = list(hook.notifications)
        yield out
    finally:
        celerylab.cleanup()
        broker.stop()
        if saved is not None:
            os.environ["CELERYLAB_BROKER_URL"] = saved


def test_prometheus_and_the_kit_fire_the_same_alerts_at_about_the_same_time(scenario):
    assert sorted(scenario["fired_prom"]) == sorted(scenario["fired_kit"]) == ALERTS
    for name in ALERTS:
        gap = scenario["fired_prom"][name] - scenario["fired_kit"][name]
        print(f"{name}: Prometheus fired {gap:+.2f} s after the kit")
        assert abs(gap) <= AGREE_WITHIN, f"{name}: Prometheus fired {gap:+.2f} s after the kit"
    assert {labels["hostname"] for labels in scenario["prom_alerts"]["WorkerOffline"]} == {"worker-b", "worker-c"}


def test_both_resolve(scenario):
    """Prometheus: no alert left (checked in the scenario); the kit: every rule back to inactive."""
    for name, states in scenario["resolved_kit"].items():
        assert states[-1] == "inactive" and "firing" in states, (name, states)


def test_alertmanager_groups_silences_and_notifies_the_webhook(scenario):
    notified = scenario["notified"]
    for name, doc in notified.items():
        assert doc["status"] == "firing" and alertnames(doc) == [name]
    offline = describe(notified["WorkerOffline"]).splitlines()
    assert offline[0] == "[FIRING:2] alertname=WorkerOffline"          # two workers, one notification
    assert sorted(line.split("(")[1].split(")")[0] for line in offline[1:]) == ["hostname=worker-b", "hostname=worker-c"]
    assert not [d for d in scenario["all_notes"] if "SlowTasks" in alertnames(d)]   # fired, but silenced
    silenced = scenario["am_alerts"]["SlowTasks"]
    assert silenced["status"]["state"] == "suppressed"
    assert silenced["status"]["silencedBy"] == [scenario["silence"]]
    assert scenario["am_alerts"]["QueueBacklog"]["status"]["state"] == "active"
    assert scenario["resolved_note"]["alerts"] and all(a["status"] == "resolved"
                                                       for a in scenario["resolved_note"]["alerts"])


def test_every_dashboard_panel_query_returns_data(scenario):
    titles = {title for title, _ in scenario["panels"]}
    assert titles == {"Throughput (tasks/s)", "Failure rate", "Task runtime percentiles",
                      "Queue depth per queue", "Workers up"}
    for (title, expr), result in scenario["panels"].items():
        assert result, f"panel {title!r}: {expr} returned no data"
    depth = {r["metric"]["queue_name"]: float(r["value"][1]) for (t, _), res in scenario["panels"].items()
             if t == "Queue depth per queue" for r in res}
    assert depth["backlog"] >= 20
