"""The Prometheus exporter: celery-exporter's names, counts that match the tasks run, every band."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

import celerylab
from celerylab.errors import PortInUseError
from celerylab.events import Record, Watcher
from celerylab.metrics import Exporter, parse, reserve_port, scrape, start_exporter, worker_host
from celerylab.ports import port_in_use

HOST = "orders@metrics-test"


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_metrics")

    @app.task(name="tmetrics.ok", shared=False)
    def ok(x=0):
        return x

    @app.task(name="tmetrics.fail", shared=False)
    def fail():
        raise ConnectionError("gateway timed out")

    @app.task(name="tmetrics.sleep", shared=False)
    def sleep(seconds):
        time.sleep(seconds)
        return seconds

    yield app
    app.close()


def exporter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("celerylab-exporter")]


def test_counters_match_the_tasks_run(app):
    exporter = start_exporter(app)
    with celerylab.run_worker(app, hostname=HOST):
        for i in range(5):
            app.tasks["tmetrics.ok"].delay(i)
        for _ in range(2):
            app.tasks["tmetrics.fail"].delay()
        exporter.wait_until("celery_task_succeeded_total", 5)
        exporter.wait_until("celery_task_failed_total", 2)
        snap = scrape(exporter.url)                      # over HTTP, as Prometheus reads it
    ok, fail = {"name": "tmetrics.ok"}, {"name": "tmetrics.fail"}
    assert snap.value("celery_task_sent_total", **ok) == 5
    assert snap.value("celery_task_sent_total", **fail) == 2
    for event in ("received", "started"):
        assert snap.value(f"celery_task_{event}_total") == 7
    assert snap.value("celery_task_succeeded_total", **ok) == 5
    assert snap.value("celery_task_succeeded_total", **fail) == 0      # series exists at 0
    assert snap.value("celery_task_failed_total", exception="ConnectionError", **fail) == 2
    assert snap.value("celery_task_retried_total") == 0
    assert snap.value("celery_task_runtime_count", **ok) == 5
    assert snap.by("celery_task_received_total", "hostname") == {"metrics-test": 7.0}
    assert snap.by("celery_task_received_total", "queue_name") == {"celery": 7.0}
    assert snap.value("celery_worker_up", hostname="metrics-test") == 1
    exporter.stop()


def test_metric_names_and_labels_are_celery_exporters(app):
    exporter = Exporter(app)
    try:
        families = {f.name: f for f in exporter.registry.collect()}
        for event in ("sent", "received", "started", "succeeded", "failed", "retried", "revoked", "rejected"):
            fam = families[f"celery_task_{event}"]
            assert fam.type == "counter"
        assert families["celery_worker_up"].type == "gauge"
        assert families["celery_worker_tasks_active"].type == "gauge"
        assert families["celery_queue_length"].type == "gauge"
        assert families["celery_task_runtime"].type == "histogram"
        assert exporter.counters["task-failed"]._labelnames == ("name", "hostname", "exception", "queue_name")
        assert exporter.counters["task-sent"]._labelnames == ("name", "hostname", "queue_name")
        assert exporter.task_runtime._labelnames == ("name", "hostname", "queue_name")
        assert exporter.queue_length._labelnames == ("queue_name",)
        assert worker_host("orders@worker-a") == "worker-a"
        # lesson 07 says which of celery-exporter's families the kit does not serve
        for missing in ("celery_active_consumer_count", "celery_active_worker_count", "celery_active_process_count"):
            assert missing not in families
        assert {name for name in families} == {f"celery_task_{e}" for e in (
            "sent", "received", "started", "succeeded", "failed", "retried", "revoked", "rejected")} | {
            "celery_worker_up", "celery_worker_tasks_active", "celery_queue_length", "celery_task_runtime"}
    finally:
        exporter.stop()


def test_queue_length_counts_every_priority_band(app):
    exporter = start_exporter(app, queues=["exports"])
    for i in range(40):
        app.tasks["tmetrics.ok"].apply_async((i,), queue="exports", priority=i % 10)
    import redis

    client = redis.Redis.from_url(app.conf.broker_url)
    assert client.llen("exports") == 12                          # band 0 only: priorities 0-2
    assert exporter.queues.bands(["exports"]) == {"exports": {0: 12, 3: 12, 6: 12, 9: 4}}
    assert scrape(exporter.url).value("celery_queue_length", queue_name="exports") == 40
    assert scrape(exporter.url).value("celery_queue_length", queue_name="celery") == 0
    client.close()
    exporter.stop()


def test_worker_up_follows_online_offline_and_heartbeat_timeout(app):
    exporter = Exporter(app, worker_timeout=300)
    try:
        with celerylab.run_worker(app, hostname=HOST):
            exporter.wait_until("celery_worker_up", 1, hostname="metrics-test")
            app.tasks["tmetrics.sleep"].delay(0.5)
            exporter.wait_until("celery_worker_tasks_active", 1, hostname="metrics-test")
        # warm shutdown: the worker says goodbye (worker-offline)
        deadline = time.monotonic() + 10
        while exporter.value("celery_worker_up", hostname="metrics-test") != 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert exporter.value("celery_worker_tasks_active", hostname="metrics-test") == 0
        # a killed worker says nothing: only its missing heartbeats tell
        exporter.worker_timeout = 5
        exporter._fold(Record(time=time.time() - 10, received=time.time() - 10, type="worker-heartbeat",
                              hostname="ghost@far-away"))
        assert exporter.snapshot().value("celery_worker_up", hostname="far-away") == 0
        exporter._fold(Record(time=time.time(), received=time.time(), type="worker-heartbeat",
                              hostname="ghost@far-away"))
        assert exporter.snapshot().value("celery_worker_up", hostname="far-away") == 1
    finally:
        exporter.stop()


def test_exporter_follows_a_replaced_watcher(app):
    exporter = start_exporter(app)
    with celerylab.run_worker(app, hostname=HOST):
        app.tasks["tmetrics.ok"].delay()
        exporter.wait_until("celery_task_succeeded_total", 1)
        replacement = Watcher(app, sample_queues=False).start()     # e.g. celerylab.watch(app) re-run
        try:
            app.tasks["tmetrics.ok"].delay()
            exporter.wait_until("celery_task_succeeded_total", 2)
        finally:
            replacement.stop(settle=0)
    exporter.stop()


def test_port_in_use_and_given_port(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(PortInUseError) as err:
            start_exporter(app, port=taken)
        assert str(taken) in str(err.value) and "\n" not in str(err.value)
    assert not exporter_threads()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    exporter = start_exporter(app, port=free)
    assert exporter.url == f"http://127.0.0.1:{free}/metrics"
    with urllib.request.urlopen(exporter.url, timeout=5) as resp:
        assert b"celery_queue_length" in resp.read()
    exporter.stop()


def test_reserved_port_is_held_until_the_exporter_serves_on_it(app):
    port = reserve_port()
    assert port_in_use(port)   # listening: nothing else can take it
    got = {}

    def fetch():   # a scrape before the exporter exists waits in the backlog (Prometheus' case)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            got["body"] = resp.read()

    client = threading.Thread(target=fetch)
    client.start()
    time.sleep(0.2)
    assert "body" not in got
    exporter = start_exporter(app, port=port)
    client.join(10)
    assert exporter.url == f"http://127.0.0.1:{port}/metrics"
    assert b"celery_queue_length" in got["body"]
    exporter.stop()
    assert not port_in_use(port)


def test_nothing_outlives_cleanup(app):
    exporter = start_exporter(app)
    port = exporter.port
    assert port_in_use(port) and exporter_threads()
    stopped = celerylab.cleanup()
    assert any(name.startswith("metrics exporter") for name in stopped)
    assert not port_in_use(port)
    assert not exporter_threads()
    assert not [t for t in threading.enumerate() if t.name.startswith("celerylab-events")]


def test_parse_reads_flowers_format():
    text = ('# HELP flower_events_total Number of events\n# TYPE flower_events_total counter\n'
            'flower_events_total{task="a",type="task-sent",worker="w@h"} 3.0\n'
            'flower_events_total{task="b",type="task-sent",worker="w@h"} 2.0\n')
    snap = parse(text)
    assert snap.value("flower_events_total", type="task-sent") == 5
    assert snap.by("flower_events_total", "task") == {"a": 3.0, "b": 2.0}
    assert snap.value("flower_events_total", task="zzz", default=-1) == -1


def test_live_plot_scrapes_and_draws_until_stopped(app):
    from celerylab.metrics import live_plot

    exporter = start_exporter(app)
    plot = live_plot(exporter.url, interval=0.05)
    try:
        with celerylab.run_worker(app, hostname=HOST):
            for i in range(4):
                app.tasks["tmetrics.ok"].delay(i)
            exporter.wait_until("celery_task_succeeded_total", 4)
            deadline = time.monotonic() + 5
            while not plot.points or plot.points[-1][1]["succeeded"] < 4:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        names = [trace.name for trace in plot.widget.data]
        assert names == ["sent", "succeeded", "failed", "queue length (celery)"]
        assert max(plot.widget.data[1].y) == 4
        assert plot._repr_mimebundle_()["text/plain"].startswith("celerylab live metrics plot")
    finally:
        plot.stop()
        exporter.stop()
    n = len(plot.points)
    time.sleep(0.2)
    assert len(plot.points) == n and not [t for t in threading.enumerate() if t.name == "celerylab-live-plot"]


def test_live_plot_stop_shows_the_final_values_as_a_plain_figure(app, capsys):
    from celerylab.metrics import live_plot
    from celerylab.widgets import PLOTLY_MIME

    exporter = start_exporter(app)
    plot = live_plot(exporter.url, interval=5.0)       # one scrape at start, the next after the tasks
    try:
        with celerylab.run_worker(app, hostname=HOST):
            for i in range(3):
                app.tasks["tmetrics.ok"].delay(i)
            exporter.wait_until("celery_task_succeeded_total", 3)
            assert plot.final_values()["succeeded"] == 0        # the loop has not scraped since
            plot.stop(show_final=True)                          # scrapes once more, then displays
    finally:
        plot.stop()
        exporter.stop()
    # not in IPython: the text line is printed (in a notebook: the whole bundle is displayed)
    assert capsys.readouterr().out.strip() == plot.final_line()
    assert plot.final_values() == {"sent": 3, "succeeded": 3, "failed": 0, "queue length (celery)": 0}
    bundle = plot.final_bundle()
    assert bundle["text/plain"] == ("Final values of the live metrics plot 'Live metrics': "
                                    "sent 3, succeeded 3, failed 0, queue length (celery) 0")
    figure = bundle[PLOTLY_MIME]
    assert [t["type"] for t in figure["data"]] == ["bar"]
    assert figure["data"][0]["y"] == list(plot.series) and figure["data"][0]["x"] == [3, 3, 0, 0]
    assert "<td>succeeded</td><td style='text-align:right'>3</td>" in bundle["text/html"]
    assert json.dumps(bundle, sort_keys=True) == json.dumps(plot.final_bundle(), sort_keys=True)   # no times in it
    n = len(plot.points)
    plot.stop(show_final=True)                                  # already stopped: nothing more
    assert len(plot.points) == n and capsys.readouterr().out == ""
