"""The Prometheus rules file, its promtool unit tests, its scaled copy, the kit's reading of it,
the Alertmanager config. The promtool/amtool tests skip, saying why, when the programs are missing."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from celerylab import prometheus as prom
from celerylab.alerts import AlertRuleError, _minutes, parse_duration, rules_from_prometheus, seed_rules

PROMTOOL = prom.program("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason=f"promtool is not installed ({prom.INSTALL_HINT})")
AMTOOL = shutil.which("amtool")
LESSON = dict(scale=1 / 100, replace={"QueueBacklog": {"1000": "20"}, "SlowTasks": {'le="10"': 'le="0.5"'}})


def promtool(*args, cwd=None):
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def alerts_of(text: str) -> dict:
    doc = yaml.safe_load(text)
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


@needs_promtool
def test_promtool_checks_the_rules_file():
    out = promtool("check", "rules", prom.RULES_FILE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 4 rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests_pass_for_every_rule():
    out = promtool("test", "rules", prom.RULES_TESTS)
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {t["alertname"] for case in yaml.safe_load(open(prom.RULES_TESTS))["tests"]
              for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == set(alerts_of(open(prom.RULES_FILE).read()))   # each rule fires in some test


@needs_promtool
@pytest.mark.parametrize("alert, old, new", [("HighFailureRate", "> 0.1 and", "> 0.3 and"),
                                              ("QueueBacklog", "1000", "2000"),
                                              ("WorkerOffline", "== 0", "== 2"),
                                              ("SlowTasks", 'le="10"', 'le="+Inf"')])
def test_the_unit_tests_catch_a_changed_rule(tmp_path, alert, old, new):
    """A threshold changed in the rules file makes `promtool test rules` fail."""
    (tmp_path / "tests").mkdir()
    shutil.copy(prom.RULES_TESTS, tmp_path / "tests" / os.path.basename(prom.RULES_TESTS))
    (tmp_path / os.path.basename(prom.RULES_FILE)).write_text(prom.scale_rules(replace={alert: {old: new}}))
    out = promtool("test", "rules", str(tmp_path / "tests" / os.path.basename(prom.RULES_TESTS)))
    assert out.returncode != 0 and alert in out.stdout + out.stderr


@needs_promtool
def test_the_lesson_copy_is_the_same_rules_scaled(tmp_path):
    text = prom.scale_rules(**LESSON)
    path = tmp_path / "lesson.rules.yml"
    path.write_text(text)
    out = promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    prod, lesson = alerts_of(open(prom.RULES_FILE).read()), alerts_of(text)
    assert list(prod) == list(lesson)
    for name, rule in prod.items():
        expr = " ".join(rule["expr"].split()).replace("[5m]", "[3s]")
        for old, new in LESSON["replace"].get(name, {}).items():
            expr = expr.replace(old, new)
        assert lesson[name]["expr"] == expr
        assert lesson[name]["labels"] == rule["labels"]
        assert lesson[name].get("for") == ("3s" if rule.get("for") == "5m" else rule.get("for"))
    assert lesson["QueueBacklog"]["annotations"]["summary"] == "A Celery queue has held more than 20 messages for 3s"


def test_the_kit_reads_the_rules_file_as_its_seed_rules():
    kit = rules_from_prometheus(prom.RULES_FILE)
    exprs = {name: " ".join(r["expr"].split()) for name, r in alerts_of(open(prom.RULES_FILE).read()).items()}
    assert {r.name: r.promql for r in kit} == exprs
    assert [(r.name, r.promql, r.above, r.for_) for r in kit] == \
           [(r.name, r.promql, r.above, r.for_) for r in seed_rules()]
    lesson = {r.name: r for r in rules_from_prometheus(prom.scale_rules(**LESSON))}
    assert lesson["QueueBacklog"].above == 20 and lesson["QueueBacklog"].for_ == 3
    assert "[3s]" in lesson["HighFailureRate"].promql and 'le="0.5"' in lesson["SlowTasks"].promql


def test_the_kit_refuses_an_expression_it_cannot_evaluate():
    text = prom.scale_rules(replace={"QueueBacklog": {"max(celery_queue_length)": "avg(celery_queue_length)"}})
    with pytest.raises(AlertRuleError, match="QueueBacklog"):
        rules_from_prometheus(text)
    with pytest.raises(prom.PrometheusError, match="NoSuchAlert"):
        prom.scale_rules(replace={"NoSuchAlert": {"1": "2"}})
    with pytest.raises(prom.PrometheusError, match="not in its expr"):
        prom.scale_rules(replace={"QueueBacklog": {"999": "2"}})


def test_durations():
    assert [parse_duration(d) for d in ("5m", "3s", "600ms", "1h30m", "4h")] == [300, 3, 0.6, 5400, 14400]
    assert [_minutes(s) for s in (300, 3, 0.6, 5400, 144)] == ["5m", "3s", "600ms", "90m", "144s"]
    with pytest.raises(AlertRuleError):
        parse_duration("5 minutes")


@pytest.mark.skipif(AMTOOL is None, reason=f"amtool is not installed ({prom.INSTALL_HINT})")
def test_alertmanager_config_and_its_lesson_copy_are_valid(tmp_path):
    for scale in (1, 1 / 100):
        path = tmp_path / f"am-{scale:g}.yml"
        path.write_text(prom.alertmanager_config("http://127.0.0.1:9/alerts", scale=scale))
        out = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    route = yaml.safe_load(prom.alertmanager_config("http://127.0.0.1:9/alerts", scale=1 / 100))["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("300ms", "3s", "144s")


@needs_promtool
def test_prometheus_increase_misses_a_series_first_sample_and_the_kit_does_not(tmp_path):
    """Where the kit's model differs: a counter series that appears with the value 1 (the exporter
    created it at its first event) shows no increase in Prometheus; the kit's History counts it."""
    from celerylab.alerts import History
    from celerylab.metrics import Snapshot

    (tmp_path / "empty.rules.yml").write_text("groups: []\n")
    (tmp_path / "first.test.yml").write_text(yaml.safe_dump({
        "rule_files": ["empty.rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m",
                   "input_series": [{"series": 'celery_task_failed_total{exception="ValueError"}', "values": "_ _ 1 1 1"},
                                    {"series": 'celery_task_failed_total{exception="KeyError"}', "values": "0 0 1 1 1"}],
                   "promql_expr_test": [{"expr": "increase(celery_task_failed_total[5m])", "eval_time": "4m",
                                         "exp_samples": [{"labels": '{exception="ValueError"}', "value": 0},
                                                         {"labels": '{exception="KeyError"}', "value": 1}]}]}]}))
    out = promtool("test", "rules", "first.test.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    key = ("celery_task_failed_total", (("exception", "ValueError"),))
    history = History()
    history.add(Snapshot(0.0, {}))
    history.add(Snapshot(120.0, {key: 1.0}))
    assert history.increase("celery_task_failed_total", 300) == 1.0


def test_the_grafana_dashboard_has_the_five_panels_on_the_exporter_metrics():
    """Static: titles, a Prometheus data source input, PromQL over the exporter's metric names
    (tests/test_prometheus_live.py runs every query against a real Prometheus)."""
    import json
    import re

    from celerylab.metrics import METRIC_NAMES

    dash = json.load(open(prom.DASHBOARD_FILE))
    assert [i["pluginId"] for i in dash["__inputs"]] == ["prometheus"]
    assert [p["title"] for p in dash["panels"]] == ["Throughput (tasks/s)", "Failure rate", "Task runtime percentiles",
                                                    "Queue depth per queue", "Workers up"]
    for panel in dash["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        for target in panel["targets"]:
            used = set(re.findall(r"\bcelery_[a-z_]+", target["expr"]))
            assert used and all(m in METRIC_NAMES or m.rsplit("_", 1)[0] in METRIC_NAMES for m in used), used
