"""celerylab.widgets: live views fed by real events, and the static, deterministic final state."""
from __future__ import annotations

import json
import re
import time
from types import SimpleNamespace

import nbformat
import pytest

import celerylab
from celerylab import widgets
from celerylab.events import Watcher
from celerylab.widgets import (LIVE_TEXT, PLOTLY_MIME, WIDGET_MIME, FlowView, QueueDepthView, TimelineView,
                               final_bundle)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_widgets")

    @app.task(name="wd.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="wd.fail", shared=False)
    def fail():
        raise RuntimeError("broken on purpose")

    @app.task(name="wd.flaky", shared=False, bind=True, max_retries=2, default_retry_delay=0.05)
    def flaky(self):
        if self.request.retries < 1:
            raise self.retry(exc=OSError("flaky"))
        return "ok"

    @app.task(name="wd.nap", shared=False)
    def nap(seconds):
        time.sleep(seconds)

    app.t = SimpleNamespace(add=add, fail=fail, flaky=flaky, nap=nap)
    yield app
    celerylab.stop_watching()
    app.close()


def run_workload(app, watcher, hostname="det@test"):
    """20 successes over two queues and three bands, 2 failures, 1 retried task."""
    t = app.t
    with celerylab.run_worker(app, queues=["celery", "bulk"], hostname=hostname):
        results = [t.add.apply_async((i, i), priority=[None, 4, 8][i % 3]) for i in range(15)]
        results += [t.add.apply_async((i, 0), queue="bulk") for i in range(4)]
        results.append(t.flaky.delay())
        failures = [t.fail.delay() for _ in range(2)]
        for r in results:
            r.get(timeout=15)
        for r in failures:
            with pytest.raises(RuntimeError):
                r.get(timeout=15)
        return watcher.wait_for(lambda s: s.tasks == 22 and s.in_flight == 0, timeout=15)


def test_flow_view_redraws_itself_with_live_counts(app):
    with Watcher(app) as w:
        flow = FlowView(w)
        assert "0 tasks" in flow.widget.value
        run_workload(app, w)
        deadline = time.monotonic() + 2
        while "succeeded: 20" not in flow.widget.value and time.monotonic() < deadline:
            time.sleep(0.05)        # redrawn by the throttled thread, nobody calls refresh()
    page = flow.widget.value
    assert "succeeded: 20" in page and "failed: 2" in page and "sent: 22" in page
    assert "<b>celery</b>" in page and "<b>bulk</b>" in page
    assert "band 0 (highest): sent 8" in page and "band 3: sent 5" in page and "band 6: sent 5" in page
    assert "det@test" in page and "retried: 1" in page
    assert "waiting now: <b>0</b>" in page    # live depth from the Redis sampler
    assert flow._repr_mimebundle_() == {"text/plain": LIVE_TEXT, WIDGET_MIME: {
        "version_major": 2, "version_minor": 0, "model_id": flow.widget.model_id}}


def test_timeline_marks_retries_failures_and_revokes(app):
    t = app.t
    with Watcher(app, sample_queues=False) as w:
        tl = TimelineView(w)
        with celerylab.run_worker(app, concurrency=2, hostname="gantt@test"):
            a, b = t.nap.delay(0.4), t.nap.delay(0.4)     # two overlapping runs: two slots
            a.get(timeout=10), b.get(timeout=10)
            t.flaky.delay().get(timeout=10)
            with pytest.raises(RuntimeError):
                t.fail.delay().get(timeout=10)
            later = t.add.apply_async((1, 2), countdown=1)
            # results travel through the backend, events separately: wait for the events themselves
            w.wait_for(lambda s: s.workers["gantt@test"].events["received"] >= 6
                       and s.workers["gantt@test"].events.get("succeeded", 0) >= 3
                       and s.workers["gantt@test"].events.get("retried", 0) >= 1
                       and s.workers["gantt@test"].events.get("failed", 0) >= 1, timeout=10)
            later.revoke()
            w.wait_for(lambda s: s.states["revoked"] == 1, timeout=10)
    bars, points, lanes = tl.data()
    assert lanes == ["gantt #1", "gantt #2"]
    assert len(bars["succeeded"][0]) == 3 and len(bars["retried"][0]) == 1 and len(bars["failed"][0]) == 1
    assert set(bars["succeeded"][2][:2]) == {"gantt #1", "gantt #2"}       # the two naps ran side by side
    assert all(d >= 0.35 for d in bars["succeeded"][0][:2])
    assert [len(points[k][0]) for k in ("retried", "failed", "revoked")] == [1, 1, 1]
    # the FigureWidget holds the same data (redrawn by the watcher, or now)
    tl.refresh()
    by_name = {tr.name: tr for tr in tl.widget.data}
    assert len(by_name["succeeded"].x) == 3 and len(by_name["revoke"].x) == 1
    assert list(tl.widget.layout.yaxis.categoryarray) == lanes
    # its final state: the bars counted per task and outcome, no lanes or times
    assert tl.final_counts() == {"wd.add": {"revoked": 1}, "wd.fail": {"failed": 1},
                                 "wd.flaky": {"succeeded": 1, "retried": 1}, "wd.nap": {"succeeded": 2}}
    bundle = tl.final_bundle()
    assert bundle["text/plain"] == ("Final state of the timeline of 'test_widgets': wd.add: revoked 1; "
                                    "wd.fail: failed 1; wd.flaky: succeeded 1, retried 1; wd.nap: succeeded 2")
    traces = {tr["name"]: tr for tr in bundle[PLOTLY_MIME]["data"]}
    assert set(traces) == {"succeeded", "retried", "failed", "revoked"} and traces["succeeded"]["x"] == [0, 0, 1, 2]
    assert traces["succeeded"]["y"] == ["wd.add", "wd.fail", "wd.flaky", "wd.nap"]
    assert "gantt" not in json.dumps(bundle)


def test_queue_depth_counts_every_priority_band_and_unacked(app):
    t = app.t
    with Watcher(app, queues=["depth"], sample_interval=0.1) as w:
        view = QueueDepthView(w)
        for priority, n in ((None, 3), (2, 1), (5, 2), (9, 4)):
            for _ in range(n):
                t.add.apply_async((1, 1), queue="depth", priority=priority)
        expected = {("depth", 0): 4, ("depth", 3): 2, ("depth", 6): 0, ("depth", 9): 4}
        deadline = time.monotonic() + 5
        while (w.sampler.latest() or {}).get(("depth", 9)) != 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        latest = w.sampler.latest()
        assert {k: v for k, v in latest.items() if k != "unacked" and k[0] == "depth"} == expected
        view.refresh()
        series = view.series()
        assert series["depth"][1][-1] == 10
        assert series["depth · band 9"][1][-1] == 4 and "depth · band 6" not in series
        # a worker that is busy holds prefetched messages: unacked, out of the lists
        with celerylab.run_worker(app, queues=["depth"], concurrency=1, hostname="depth@test"):
            t.nap.apply_async((1.0,), queue="depth", priority=0)
            w.wait_for(lambda s: s.workers.get("depth@test") and s.workers["depth@test"].events["started"] >= 1)
            time.sleep(0.4)
            assert w.sampler.latest()["unacked"] >= 1
            w.wait_for(lambda s: s.states["succeeded"] == 11, timeout=15)
            time.sleep(0.3)
            assert sum(v for k, v in w.sampler.latest().items() if k != "unacked") == 0
        names = [tr.name for tr in view.widget.data]
        assert "depth" in names and "unacked (prefetched or running)" in names


def test_final_state_is_deterministic(app):
    bundles = []
    for _ in range(2):
        with Watcher(app, sample_queues=False) as w:
            run_workload(app, w)
        bundles.append(final_bundle(w.summary(), "test_widgets"))
    first, second = bundles
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert set(first) == {"text/plain", "text/html", PLOTLY_MIME}
    assert first["text/plain"] == (
        "Final state of 'test_widgets': 22 tasks (succeeded: 20, failed: 2) | in flight: 0 | retries: 1 | "
        "queues: bulk=4, celery=18 | workers: det ran 23")
    text = json.dumps(first)
    assert not UUID.search(text)
    assert not re.search(r"\b1[6-9]\d{8}\b", text)           # no epoch timestamps
    assert "@" not in text                                     # no machine names
    sankey = first[PLOTLY_MIME]["data"][0]
    assert sankey["type"] == "sankey"
    labels = sankey["node"]["label"]
    assert "succeeded: 20" in labels and "failed: 2" in labels and "det: 22" in labels
    assert "client: 22" in labels and "bulk: 4" in labels
    assert "succeeded: 20" in first["text/html"]


def test_timeline_and_queue_depth_final_states_are_counts_and_the_same_every_run(app):
    bundles = []
    for _ in range(2):
        with Watcher(app) as w:
            run_workload(app, w)
            deadline = time.monotonic() + 5     # the sampler's next sample after the queues emptied
            while sum(v for k, v in (w.sampler.latest() or {}).items() if k != "unacked") and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            bundles.append((TimelineView(w).final_bundle(), QueueDepthView(w).final_bundle()))
    (timeline, depth), again = bundles
    assert json.dumps(bundles[0], sort_keys=True) == json.dumps(again, sort_keys=True)
    assert timeline["text/plain"] == ("Final state of the timeline of 'test_widgets': "
                                      "wd.add: succeeded 19; wd.fail: failed 2; wd.flaky: succeeded 1, retried 1")
    assert depth["text/plain"] == ("Final state of the queue depth of 'test_widgets': "
                                   "bulk 0, celery 0, unacked (prefetched or running) 0")
    assert not UUID.search(json.dumps(bundles)) and "det@test" not in json.dumps(bundles)
    with Watcher(app, sample_queues=False) as w:
        pass
    assert QueueDepthView(w).final_bundle()["text/plain"].endswith("not sampled (Redis brokers only)")


def test_static_figure_ignores_the_default_renderer(app):
    import plotly.io as pio

    before = pio.renderers.default
    pio.renderers.default = "notebook_connected"
    try:
        bundle = final_bundle(Watcher(app).summary())
    finally:
        pio.renderers.default = before
    assert PLOTLY_MIME in bundle and set(bundle) == {"text/plain", "text/html", PLOTLY_MIME}


def test_watch_block_shows_live_views_then_the_final_state(app, monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(widgets, "_display", shown.append)
    with celerylab.watch(app) as w:
        assert shown[0]["text/plain"] == LIVE_TEXT and shown[0][WIDGET_MIME]["model_id"] == w.view.model_id
        assert [c for c in w.view.children] == [w.flow.widget, w.timeline_view.widget, w.queue_depth.widget]
        with celerylab.run_worker(app, hostname="blk@test"):
            app.t.add.delay(1, 2).get(timeout=10)
    assert not w.running and len(shown) == 2
    final = shown[1]
    assert final["text/plain"].startswith("Final state of 'test_widgets': 1 tasks (succeeded: 1)")
    assert "succeeded: 1" in w.flow.widget.value
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""      # no log line leaks into a cell's output
    w.show_final(panels=("flow", "timeline", "queue depth"))      # every panel's final state
    assert [b["text/plain"].split(":")[0] for b in shown[2:]] == [
        "Final state of 'test_widgets'", "Final state of the timeline of 'test_widgets'",
        "Final state of the queue depth of 'test_widgets'"]
    assert all(PLOTLY_MIME in b for b in shown[2:])
    with pytest.raises(ValueError):
        w.show_final(panels=("gantt",))


def test_show_functions_share_one_watcher(app, monkeypatch):
    shown = []
    monkeypatch.setattr(widgets, "_display", shown.append)
    celerylab.show_flow(app)
    celerylab.show_timeline(app)
    celerylab.show_queue_depth(app)
    w = celerylab.events.active_watcher(app)
    assert w is not None and w.running
    ids = [b[WIDGET_MIME]["model_id"] for b in shown]
    assert ids == [w.flow.widget.model_id, w.timeline_view.widget.model_id, w.queue_depth.widget.model_id]
    celerylab.stop_watching(app)
    assert not w.running


def test_strip_widget_state(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("1"))
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"x": "y" * 1000}}}
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert celerylab.strip_widget_state(path) is True
    assert "widgets" not in nbformat.read(path, as_version=4).metadata
    assert celerylab.strip_widget_state(path) is False


FIXTURE = __import__("pathlib").Path(__file__).parent / "fixtures" / "flow_widget.ipynb"


def test_fixture_notebook_matches_its_stored_outputs_under_nbval():
    """The stored final state (plotly JSON, HTML, text) and the live view's text/plain are
    reproduced exactly by a fresh kernel: what nbval checks in the lessons."""
    import subprocess
    import sys

    nb = nbformat.read(FIXTURE, as_version=4)
    assert "widgets" not in nb.metadata                          # stripped: no MBs of widget state
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any(PLOTLY_MIME in o.get("data", {}) for o in outputs)
    assert any(o.get("data", {}).get("text/plain") == LIVE_TEXT for o in outputs)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval", "--nbval-current-env", "-p", "no:randomly",
                           "-p", "no:cacheprovider", str(FIXTURE)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout


def test_timeline_final_counts_do_not_depend_on_the_order_concurrent_runs_report_in():
    """Events of a retried task's runs can arrive out of order (lesson 05 under nbval: a run counted
    as retried in one run of the notebook, succeeded in the next): the bars then pair events with runs
    differently (here: a run left 'running'), the counts of the events that end runs do not."""
    from celerylab.events import FlowState

    def feed(order):
        state = FlowState()
        for etype, retries, ts in order:
            event = {"type": etype, "uuid": "u1", "hostname": "w@h", "timestamp": ts, "retries": retries,
                     "local_received": ts}
            if etype in ("task-received", "task-sent"):
                event["name"] = "t.charge"
            state.apply(event)
        return TimelineView.final_counts(SimpleNamespace(watcher=SimpleNamespace(state=state)))

    in_order = [("task-received", 0, 1.0), ("task-started", 0, 1.1), ("task-retried", 0, 1.2),
                ("task-received", 1, 1.3), ("task-started", 1, 1.4), ("task-succeeded", 1, 1.5)]
    late = [in_order[i] for i in (0, 1, 3, 5, 2, 4)]     # the retried and the 2nd started events come last
    assert feed(in_order) == feed(late) == {"t.charge": {"succeeded": 1, "retried": 1}}
