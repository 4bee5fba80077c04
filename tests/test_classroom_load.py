"""A class on one real broker, all learners at once: the short version of bench/classroom.py.

4 learners, each a process with its own CELERYLAB_LEARNER, broker user and worker process, run the
lab-shaped workload at once on one redis-server, then one rabbitmq-server (a vhost each): one
floods its queue, one's kernel is killed mid-lab, the instructor resets it and removes the class.
``run_class`` returns every check that failed (bench/classroom.py's docstring lists them).

Runs in ``make test-brokers`` (about 1-2 minutes per broker on 2 busy cores), not in ``make test``:
set CELERYLAB_LOAD_TEST=1 to run it. The full class (30 learners): ``make bench-classroom``.
"""
from __future__ import annotations

import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import classroom as bench  # noqa: E402  bench/classroom.py

load_test = pytest.mark.skipif(not os.environ.get("CELERYLAB_LOAD_TEST"),
                               reason="the classroom load test runs in `make test-brokers` (CELERYLAB_LOAD_TEST=1)")

LEARNERS, TASKS, FLOOD = 4, 20, 2000


def check(result: dict) -> None:
    assert result["problems"] == [], "\n".join(result["problems"])
    assert result["passed"]
    # the three learners that were not killed each reported, with a latency for every plain task
    assert sorted(result["per_learner"]) == ["learner01", "learner03", "learner04"]
    assert all(r["n"] == TASKS for r in result["per_learner"].values())
    flood = result["flood_report"]
    assert flood["flood_sent"] == FLOOD and flood["flood_succeeded"] + flood["flood_purged"] == FLOOD
    assert flood["flood_twice"] == 0
    assert result["p95_worst_s"] <= result["p95_bound_s"]


@pytest.mark.slow
@pytest.mark.timeout(420)
@load_test
def test_a_class_on_one_redis_server(redis_server_bin, tmp_path):
    check(bench.run_class("redis", LEARNERS, TASKS, FLOOD, workdir=str(tmp_path / "run")))


@pytest.mark.slow
@pytest.mark.timeout(420)
@load_test
def test_a_class_on_one_rabbitmq_server(tmp_path):
    if not (os.path.exists(bench_rabbitmq()) or shutil.which("rabbitmq-server")):
        pytest.skip("rabbitmq-server is not installed")
    check(bench.run_class("rabbitmq", LEARNERS, TASKS, FLOOD, workdir=str(tmp_path / "run")))


def bench_rabbitmq() -> str:
    from celerylab.servers import RabbitMQServer

    return RabbitMQServer.program


def test_the_doc_shows_the_recorded_bench():
    """docs/classroom.md's table is the one bench/classroom.py renders from docs/classroom-bench.json."""
    import json

    path = os.path.join(ROOT, "docs", "classroom-bench.json")
    if not os.path.exists(path):
        pytest.fail("docs/classroom-bench.json is missing: run `make bench-classroom`")
    results = json.load(open(path))
    doc = open(os.path.join(ROOT, "docs", "classroom.md")).read()
    shown = doc[doc.index(bench.DOC_START) + len(bench.DOC_START):doc.index(bench.DOC_END)].strip()
    assert shown == bench.doc_block(results, "docs/classroom-bench.json")
    assert {r["broker"] for r in results} == {"redis", "rabbitmq"}
    assert bench.svg_plot(results).startswith("<svg")
