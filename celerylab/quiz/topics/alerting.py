"""Lesson 07, section 6: alert rules in a real Prometheus, promtool tests, Alertmanager.
Evidence: tests/test_prometheus_rules.py, tests/test_prometheus_live.py and the tagged cell of
notebooks/07_monitoring.ipynb (section 6)."""
from __future__ import annotations

from celerylab.quiz.bank import choice, myth

ALERTS = "6. Alert rules, firing and resolving"

QUESTIONS = [
    choice("alert-promtool", "07", ALERTS,
           "How do you check, before deploying, that an alert rule fires on the data you expect and "
           "not on a one-minute spike?",
           ["Deploy it and wait for the next incident",
            "`promtool test rules`: a test file gives input series and the alerts expected at given times",
            "`promtool check config` on prometheus.yml", "Grafana's alert preview"], 1,
           "promtool test rules evaluates the rules file on synthetic series (values like '0+2x10' per "
           "interval) and compares the firing alerts, their labels and annotations; a changed threshold "
           "fails the test. `promtool check rules` only validates the syntax.",
           cheat="`promtool test rules tests.yml`: input_series + alert_rule_test (eval_time, exp_alerts); "
                 "`promtool check rules` is syntax only",
           evidence="tests/test_prometheus_rules.py::test_the_unit_tests_catch_a_changed_rule"),
    choice("alert-silence", "07", ALERTS,
           "You silence alertname=SlowTasks in Alertmanager. The slow task runs again. What happens?",
           ["Prometheus stops evaluating the rule",
            "Prometheus still fires it and sends it; Alertmanager marks it suppressed and notifies nobody",
            "The alert is deleted", "Alertmanager delays it until the silence ends, then sends it"], 1,
           "Silences live in Alertmanager: the rule still fires in Prometheus (its /api/v1/alerts lists it), "
           "Alertmanager keeps the alert as suppressed and leaves it out of the notifications. Grouping "
           "(group_by) is also Alertmanager's: one notification per group, after group_wait.",
           cheat="Silence = Alertmanager drops notifications (state suppressed); the alert still fires in "
                 "Prometheus. group_by + group_wait: one message per group",
           evidence="tests/test_prometheus_live.py::test_alertmanager_groups_silences_and_notifies_the_webhook"),
    myth("alert-first-sample", "07", ALERTS,
         "increase(celery_task_failed_total[5m]) counts every failure, including the very first one of a "
         "new task name.", False,
         "Prometheus' increase() needs two samples of a series: a series that appears with the value 1 "
         "shows no increase, so the first failure of a new label set is missed. Exporters create a task's "
         "series at 0 at its first event to avoid it, but a failure's exception label is new at the first "
         "failure of each exception class.",
         cheat="increase()/rate() cannot count a series' first sample: export every series at 0 first",
         evidence="tests/test_prometheus_rules.py::test_prometheus_increase_misses_a_series_first_sample_and_the_kit_does_not"),
]
