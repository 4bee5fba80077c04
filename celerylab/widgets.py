"""Live task-flow widgets, fed by real Celery events (see :mod:`celerylab.events`).

One call each in a notebook::

    celerylab.show_flow(app)          # client -> queues (and priority bands) -> workers -> results
    celerylab.show_timeline(app)      # Gantt chart per worker slot, retries/failures/revokes marked
    celerylab.show_queue_depth(app)   # queue depth over time (Redis: every band list + unacked)

    with celerylab.watch(app) as w:   # all three, live; on exit the final state as a static figure
        ...

The live views are ipywidgets (an HTML widget and plotly ``FigureWidget``\\ s). They redraw at
most 10 times a second whatever the event rate. When a ``watch`` block ends, the final state
is also displayed as an ordinary output (plotly JSON for JupyterLab, HTML for nbconvert and
GitHub's viewer, one line of text), made of counts only, so it is identical on every run and
nbval can compare it (nbval compares plotly JSON as it is: no sanitizing). ``stop(show_final=True,
panels=("flow", "timeline"))`` adds the timeline's final state (each task's runs by outcome;
``TimelineView.show_final()`` alone after ``show_timeline``), ``"queue depth"`` the last sample. Widget views themselves are not stored in a useful way: strip their
state from saved notebooks with :func:`strip_widget_state`.
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Iterable

from celery import Celery

from .events import FINAL_STATES, STATES, Summary, Watcher, active_watcher, short_host
from .i18n import N_, _

#: One colour per task state, used by every view (readable on light and dark themes).
COLORS = {
    "sent": "#8c8c8c",
    "received": "#4e79a7",
    "started": "#f28e2b",
    "running": "#f28e2b",
    "retried": "#b07aa1",
    "succeeded": "#59a14f",
    "failed": "#e15759",
    "revoked": "#555555",
    "rejected": "#9c755f",
}
#: The queue-depth line of messages delivered to a worker and not acknowledged yet.
UNACKED = N_("unacked (prefetched or running)")
LIVE_TEXT = N_("celerylab live view (widgets: shown while the kernel runs)")
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _widget_bundle(widget, text: str | None = None) -> dict:
    """A display bundle for a widget whose text/plain is fixed (nbval compares text/plain)."""
    return {"text/plain": _(LIVE_TEXT) if text is None else text,
            WIDGET_MIME: {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}}


# ---------------------------------------------------------------------------------------
# Flow: client -> queues -> workers -> result backend
# ---------------------------------------------------------------------------------------
_BOX = ("border:1px solid #bbb;border-radius:6px;padding:6px 8px;margin:4px 0;background:#fafafa;"
        "color:#222;min-width:150px")
_COL = "display:flex;flex-direction:column;justify-content:flex-start;flex:1 1 0;min-width:160px"
_ARROW = "align-self:center;font-size:22px;color:#888;padding:0 6px"


#: A priority band's row in a queue's box: (highest band?, depths sampled?) -> template
BAND_ROWS = {
    (True, True): N_("band {band} (highest): sent {sent}, waiting {waiting}"),
    (False, True): N_("band {band}: sent {sent}, waiting {waiting}"),
    (True, False): N_("band {band} (highest): sent {sent}"),
    (False, False): N_("band {band}: sent {sent}"),
}


def _pill(label: str, n: int, color: str) -> str:
    return (f'<span class="celerylab-pill" style="display:inline-block;margin:1px 2px;padding:0 6px;'
            f'border-radius:9px;background:{color};color:#fff;font-size:12px;white-space:nowrap">'
            f"{html.escape(label)}: {n}</span>")


def _pills(counts: dict, order: Iterable[str]) -> str:
    return "".join(_pill(s, counts[s], COLORS.get(s, "#777")) for s in order if counts.get(s))


def flow_html(summary: Summary, depths: dict | None = None, live: bool = True, title: str = "",
              events: int | None = None) -> str:
    """The flow diagram as HTML. ``depths`` (live only): {(queue, band): n, "unacked": n}.
    ``events``: how many events the summary includes (a ``data-events`` attribute, which the
    latency benchmark reads at the receiving end).

    With ``live=False`` it holds counts only (no depths, heartbeats or times): deterministic.
    """
    s = summary
    sent = sum(sum(b.values()) for b in s.bands.values())
    head = html.escape(title or _("Task flow"))
    marker = f' data-events="{events}"' if events is not None else ""
    out = [f'<div class="celerylab-flow"{marker} style="font-family:sans-serif;font-size:13px;color:#222;'
           f'background:#fff;padding:6px;border:1px solid #ddd;border-radius:8px">',
           '<div style="font-weight:bold;margin-bottom:4px">'
           + _("{title}: {tasks} tasks, in flight: {in_flight}", title=head, tasks=s.tasks, in_flight=s.in_flight)
           + "</div>",
           '<div style="display:flex;flex-direction:row;align-items:stretch">']

    # client
    client, sent_events = _("Client"), _("task-sent events")
    out.append(f'<div style="{_COL}"><div style="font-weight:bold">{client}</div>'
               f'<div style="{_BOX}">{_pill("sent", sent, COLORS["sent"])}'
               f'<div style="font-size:11px;color:#555">{sent_events}</div></div></div>')
    out.append(f'<div style="{_ARROW}">&#10132;</div>')

    # queues and their priority bands
    queues = set(s.queues) | set(s.bands)
    if depths:  # a queue with messages waiting shows even before any task-sent event was seen
        queues |= {k[0] for k, v in depths.items() if k != "unacked" and v}
    queues = sorted(queues)
    out.append(f'<div style="{_COL}"><div style="font-weight:bold">' + _("Broker queues") + "</div>")
    if not queues:
        out.append(f'<div style="{_BOX};color:#777">' + _("no tasks yet") + "</div>")
    for q in queues:
        bands = s.bands.get(q, {})
        waiting = None
        band_rows = []
        queue_depths = {k[1]: v for k, v in (depths or {}).items() if k != "unacked" and k[0] == q}
        band_list = sorted(set(bands) | {b for b, v in queue_depths.items() if v})
        if depths:
            waiting = sum(queue_depths.values())
        for b in band_list if s.banded else ():
            if depths:
                row = _(BAND_ROWS[b == 0, True], band=b, sent=bands.get(b, 0), waiting=queue_depths.get(b, 0))
            else:
                row = _(BAND_ROWS[b == 0, False], band=b, sent=bands.get(b, 0))
            band_rows.append(f"<div>{html.escape(row)}</div>")
        wait_txt = ("<div>" + _("waiting now: <b>{waiting}</b>", waiting=waiting) + "</div>"
                    if waiting is not None else "")
        out.append(f'<div style="{_BOX}"><div><b>{html.escape(q)}</b></div>{wait_txt}'
                   f'<div style="font-size:11px;color:#555">{"".join(band_rows)}</div>'
                   f'<div>{_pills(s.queues.get(q, {}), STATES)}</div></div>')
    if depths and "unacked" in depths:
        out.append('<div style="font-size:11px;color:#555">'
                   + _("unacked (prefetched or running): {unacked}", unacked=depths["unacked"]) + "</div>")
    out.append("</div>")
    out.append(f'<div style="{_ARROW}">&#10132;</div>')

    # workers
    out.append(f'<div style="{_COL}"><div style="font-weight:bold">' + _("Workers") + "</div>")
    if not s.workers:
        out.append(f'<div style="{_BOX};color:#777">' + _("no worker seen yet") + "</div>")
    for host in sorted(s.workers):
        w = s.workers[host]
        status = ""
        if live:
            dot = {True: ("#59a14f", _("online")), False: ("#e15759", _("offline")), None: ("#aaa", "?")}[w.online]
            status = (f' <span style="color:{dot[0]}">&#9679;</span> <span style="font-size:11px">'
                      + _("{status}, running {running}", status=dot[1], running=w.active) + "</span>")
        label = host if live else w.name
        out.append(f'<div style="{_BOX}"><div><b>{html.escape(label)}</b>{status}</div>'
                   f'<div>{_pills(w.events, STATES[1:])}</div></div>')
    out.append("</div>")
    out.append(f'<div style="{_ARROW}">&#10132;</div>')

    # result backend: final states
    finals = {k: s.states[k] for k in FINAL_STATES}
    busy = {k: s.states[k] for k in ("sent", "received", "started", "retried")}
    backend = _("Result backend")
    results = _pills(finals, FINAL_STATES) or _("no results yet")
    not_finished = _("not finished: {states}", states=_pills(busy, busy) or _("none"))
    out.append(f'<div style="{_COL}"><div style="font-weight:bold">{backend}</div>'
               f'<div style="{_BOX}">{results}'
               f'<div style="font-size:11px;color:#555;margin-top:3px">{not_finished}</div></div></div>')
    out.append("</div>")
    if s.errors and live:
        out.append('<div style="color:#b00;font-size:12px">'
                   + _("event receiver: {error}", error=html.escape(s.errors[-1])) + "</div>")
    out.append("</div>")
    return "".join(out)


class FlowView:
    """The flow diagram as a live ``ipywidgets.HTML``."""

    def __init__(self, watcher: Watcher):
        import ipywidgets as widgets

        self.watcher = watcher
        self.widget = widgets.HTML(value=self.render())
        self._last = self.widget.value
        self.unsubscribe = watcher.subscribe(self.refresh)

    def render(self) -> str:
        sampler = self.watcher.sampler
        depths = sampler.latest() if sampler is not None else None
        seen = len(self.watcher.state.timeline) + self.watcher.state.dropped   # before the snapshot
        return flow_html(self.watcher.summary(), depths, live=True,
                         title=_("Task flow of {app}", app=repr(self.watcher.app.main)), events=seen)

    def refresh(self) -> None:
        value = self.render()
        if value != self._last:
            self._last = value
            self.widget.value = value

    def _repr_mimebundle_(self, **kwargs):
        return _widget_bundle(self.widget)


# ---------------------------------------------------------------------------------------
# Timeline: a Gantt chart per worker slot
# ---------------------------------------------------------------------------------------
_OUTCOMES = ("running", "succeeded", "retried", "failed", "revoked", "rejected")
_MARKS = {"retried": ("diamond", N_("retry")), "failed": ("x", N_("failure")),
          "revoked": ("square-x", N_("revoke")), "rejected": ("circle-x", N_("reject"))}


def _lane(hostname: str, slot: int) -> str:
    return f"{short_host(hostname)} #{slot + 1}"


class TimelineView:
    """Gantt chart: one row per worker slot (thread or process), one bar per task run."""

    def __init__(self, watcher: Watcher, max_bars: int = 600):
        import plotly.graph_objects as go

        self.watcher = watcher
        self.max_bars = max_bars
        fig = go.FigureWidget()
        for outcome in _OUTCOMES:
            fig.add_bar(orientation="h", name=outcome, marker_color=COLORS[outcome], marker_line_width=0,
                        x=[], base=[], y=[], hovertemplate="%{hovertext}<extra></extra>", hovertext=[])
        for kind, (symbol, name) in _MARKS.items():
            fig.add_scatter(mode="markers", name=_(name), x=[], y=[], marker=dict(symbol=symbol, size=10,
                            color=COLORS[kind], line=dict(width=1, color="#222")),
                            hovertemplate="%{hovertext}<extra></extra>", hovertext=[])
        fig.update_layout(title=_("Task timeline per worker slot"), barmode="overlay", height=220,
                          margin=dict(l=90, r=20, t=60, b=40), legend=dict(orientation="h", y=1.12),
                          xaxis=dict(title=_("seconds since watching started")),
                          yaxis=dict(type="category", autorange="reversed"))
        self.widget = fig
        self._last = None
        self.unsubscribe = watcher.subscribe(self.refresh)

    def data(self):
        """Per outcome: (durations, starts, lanes, texts); per mark kind: (times, lanes, texts); lanes."""
        runs, marks = self.watcher.state.gantt(self.max_bars)
        t0 = self.watcher.t0 or 0.0
        now = time.time() - t0
        ends = [(r.end - t0) if r.end is not None else now for r in runs]
        span = max([now] + ends) - min([r.start - t0 for r in runs] or [0.0])
        min_width = max(span, 1.0) / 400  # a 5 ms task stays visible on a 60 s axis
        bars = {o: ([], [], [], []) for o in _OUTCOMES}
        lanes = set()
        for r, end in zip(runs, ends):
            start = r.start - t0
            lane = _lane(r.hostname, r.slot)
            lanes.add((short_host(r.hostname), r.slot))
            dx, base, y, text = bars.get(r.outcome, bars["running"])
            dx.append(round(max(end - start, min_width), 4))
            base.append(round(start, 4))
            y.append(lane)
            run = dict(outcome=r.outcome, seconds=end - start)
            text.append(f"{r.name} {r.uuid[:8]}<br>"
                        + (_("{outcome}, {seconds:.3f} s, retry {retries}", retries=r.retries, **run) if r.retries
                           else _("{outcome}, {seconds:.3f} s", **run))
                        + (f"<br>{html.escape(r.exception)}" if r.exception else ""))
        points = {k: ([], [], []) for k in _MARKS}
        for m in marks:
            if m.kind not in points:
                continue
            xs, ys, texts = points[m.kind]
            xs.append(round(m.time - t0, 4))
            ys.append(_lane(m.hostname, m.slot))
            lanes.add((short_host(m.hostname), m.slot))
            texts.append(f"{m.name} {m.uuid[:8]}: {m.kind}")
        order = [_lane(h, s) for h, s in sorted(lanes)]
        return bars, points, order

    def refresh(self) -> None:
        bars, points, order = self.data()
        key = (json.dumps(bars), json.dumps(points))
        if key == self._last:
            return
        self._last = key
        fig = self.widget
        with fig.batch_update():
            for trace, outcome in zip(fig.data[: len(_OUTCOMES)], _OUTCOMES):
                dx, base, y, text = bars[outcome]
                trace.x, trace.base, trace.y, trace.hovertext = dx, base, y, text
            for trace, kind in zip(fig.data[len(_OUTCOMES):], _MARKS):
                xs, ys, texts = points[kind]
                trace.x, trace.y, trace.hovertext = xs, ys, texts
            fig.layout.yaxis.categoryarray = order
            fig.layout.yaxis.categoryorder = "array"
            fig.layout.height = min(160 + 26 * max(len(order), 1), 640)

    def final_counts(self) -> dict[str, dict[str, int]]:
        """``{task name: {outcome: runs}}``: the chart's bars counted, each run by the event that
        ended it (task-succeeded, -retried, -failed, -revoked, -rejected; "running": started, not
        ended). Counted from the events, not from the bars: which bar an event closes depends on
        the order events of concurrent runs arrive in, their number does not. No times, ids or slots."""
        state = self.watcher.state
        ends = {f"task-{o}": o for o in _OUTCOMES if o != "running"}
        out: dict[str, dict[str, int]] = {}
        with state.lock:
            names = {uid: t.name for uid, t in state.tasks.items()}
            pairs = [(names.get(r.uuid) or r.name or "unknown", ends[r.type]) for r in state.timeline if r.type in ends]
            pairs += [(t.name or "unknown", "running") for t in state.tasks.values() if t.state == "started"]
        for name, outcome in pairs:
            per = out.setdefault(name, {})
            per[outcome] = per.get(outcome, 0) + 1
        return {name: {o: out[name][o] for o in _OUTCOMES if o in out[name]} for name in sorted(out)}

    def final_figure(self, title: str = ""):
        """The final state of the timeline as a plain ``go.Figure``: per task name, its runs by outcome
        (a retried run is one bar that ended in a retry; a task revoked before it ran, a mark). The
        bars' times are drawn live only."""
        import plotly.graph_objects as go

        counts = self.final_counts()
        names = list(counts)
        fig = go.Figure()
        for outcome in _OUTCOMES:
            xs = [counts[n].get(outcome, 0) for n in names]
            if any(xs):
                fig.add_bar(orientation="h", name=outcome, x=xs, y=names, marker_color=COLORS[outcome],
                            text=[str(x) if x else "" for x in xs], textposition="inside",
                            hovertemplate=_("%{{y}}: %{{x}} {outcome}<extra></extra>", outcome=outcome))
        if not names:
            fig.add_annotation(text=_("no task ran"), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
            fig.update_xaxes(visible=False)
            fig.update_yaxes(visible=False)
        fig.update_layout(title=_("{title} by outcome (the timeline's bars and marks counted; "
                                  "their times are live only)", title=title or _("Task runs")),
                          barmode="stack", height=140 + 30 * max(len(names), 1),
                          margin=dict(l=160, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.25),
                          xaxis=dict(title=_("runs"), rangemode="tozero"),
                          yaxis=dict(type="category", autorange="reversed"))
        return fig

    def final_bundle(self) -> dict:
        """Display bundle: plotly JSON, an HTML table, one text line. Deterministic for given counts."""
        name = self.watcher.app.main
        counts = self.final_counts()
        rows = "".join(f"<tr><td>{html.escape(task)}</td><td>{html.escape(_counts_text(per))}</td></tr>"
                       for task, per in counts.items())
        bundle = _plotly_bundle(self.final_figure(_("Timeline of {app}", app=repr(name))))
        caption = _("Timeline of {app}: runs by outcome", app=html.escape(repr(name)))
        bundle["text/html"] = f'<table class="celerylab-timeline-final"><caption>{caption}</caption>{rows}</table>'
        runs = "; ".join(f"{task}: {_counts_text(per)}" for task, per in counts.items()) or _("no task ran")
        bundle["text/plain"] = _("Final state of the timeline of {app}: {runs}", app=repr(name), runs=runs)
        return bundle

    def show_final(self) -> None:
        """Display :meth:`final_bundle` in the current cell."""
        _display(self.final_bundle())

    def _repr_mimebundle_(self, **kwargs):
        return _widget_bundle(self.widget)


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _plotly_bundle(fig) -> dict:
    import plotly.io as pio

    return dict(pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict()))  # pinned renderer


# ---------------------------------------------------------------------------------------
# Queue depth over time
# ---------------------------------------------------------------------------------------
class QueueDepthView:
    """Queue depth over time: each queue (sum of its band lists), each band used, and unacked."""

    def __init__(self, watcher: Watcher, window: int = 600):
        import plotly.graph_objects as go

        self.watcher = watcher
        self.window = window
        fig = go.FigureWidget()
        title = (_("Queue depth (LLEN of the queue + its priority-band lists)") if watcher.sampler is not None
                 else _("Queue depth (LLEN of the queue + its priority-band lists) (not sampled: Redis brokers only)"))
        fig.update_layout(title=title,
                          height=300, margin=dict(l=60, r=20, t=60, b=40), legend=dict(orientation="h", y=1.12),
                          xaxis=dict(title=_("seconds since watching started"), rangemode="tozero"),
                          yaxis=dict(title=_("messages"), rangemode="tozero"))
        self.widget = fig
        self._traces: dict = {}
        self._count = -1
        self.unsubscribe = watcher.subscribe(self.refresh)

    def series(self) -> dict:
        """{line name: (times, values)} for the sampled window."""
        return {name: (xs, ys) for name, (xs, ys, _dash) in self._series().items()}

    def _series(self) -> dict:
        """{line name: (times, values, dash)}: a queue's line solid, a band's dashed, unacked dotted."""
        sampler = self.watcher.sampler
        if sampler is None:
            return {}
        samples = list(sampler.samples[-self.window:])
        used = set()
        for _t, depths in samples:
            used.update(k for k, v in depths.items() if v and k != "unacked")
        queues = sorted({q for q, _b in used} | {self.watcher.app.conf.task_default_queue or "celery"})
        xs = [round(t, 3) for t, _d in samples]
        out = {}
        for q in queues:
            out[q] = (xs, [sum(v for k, v in d.items() if k != "unacked" and k[0] == q) for _t, d in samples], "solid")
            bands = sorted(b for qq, b in used if qq == q)
            if bands and bands != [0]:
                for b in bands:
                    out[_("{queue} · band {band}", queue=q, band=b)] = (xs, [d.get((q, b), 0) for _t, d in samples],
                                                                         "dash")
        out[_(UNACKED)] = (xs, [d.get("unacked", 0) for _t, d in samples], "dot")
        return out

    def refresh(self) -> None:
        sampler = self.watcher.sampler
        count = len(sampler.samples) if sampler is not None else 0
        if count == self._count:
            return
        self._count = count
        series = self._series()
        fig = self.widget
        with fig.batch_update():
            for name, (xs, ys, dash) in series.items():
                trace = self._traces.get(name)
                if trace is None:
                    fig.add_scatter(mode="lines", name=name, line=dict(dash=dash, shape="hv"), x=xs, y=ys)
                    trace = self._traces[name] = fig.data[-1]
                else:
                    trace.x, trace.y = xs, ys

    def final_depths(self) -> dict[str, int] | None:
        """``{line name: messages}`` at the last sample (None: not sampled, not a Redis broker).
        Stable when the lesson waited for its queues to settle; the curves' times are not."""
        sampler = self.watcher.sampler
        if sampler is None:
            return None
        latest = sampler.latest() or {}
        # every queue sampled (not only those seen non-empty, which depends on when samples ran)
        queues = sorted({k[0] for k in latest if k != "unacked"} | {self.watcher.app.conf.task_default_queue or "celery"})
        out = {q: sum(v for k, v in latest.items() if k != "unacked" and k[0] == q) for q in queues}
        out[UNACKED] = latest.get("unacked", 0)
        return out

    def final_figure(self, title: str = ""):
        """The last sample of the queue-depth chart as a plain ``go.Figure`` (one bar per line)."""
        import plotly.graph_objects as go

        depths = self.final_depths()
        fig = go.Figure()
        if depths is None:
            fig.add_annotation(text=_("not sampled: queue depth is read on Redis brokers only"), showarrow=False,
                               x=0.5, y=0.5, xref="paper", yref="paper")
            fig.update_xaxes(visible=False)
            fig.update_yaxes(visible=False)
        else:
            names = list(depths)
            fig.add_bar(orientation="h", x=[depths[n] for n in names], y=[_line(n) for n in names],
                        marker_color="#4e79a7", text=[str(depths[n]) for n in names], textposition="auto",
                        hovertemplate=_("%{y}: %{x} messages<extra></extra>"))
        fig.update_layout(title=_("{title} when the view stopped (the curves over time are live only)",
                                  title=title or _("Queue depth")),
                          height=140 + 30 * max(len(depths or {}), 1), margin=dict(l=200, r=20, t=60, b=40),
                          xaxis=dict(title=_("messages"), rangemode="tozero"),
                          yaxis=dict(type="category", autorange="reversed"))
        return fig

    def final_bundle(self) -> dict:
        """Display bundle: plotly JSON, an HTML table, one text line."""
        name = self.watcher.app.main
        depths = self.final_depths()
        bundle = _plotly_bundle(self.final_figure(_("Queue depth of {app}", app=repr(name))))
        rows = "".join(f"<tr><td>{html.escape(_line(k))}</td><td>{v}</td></tr>" for k, v in (depths or {}).items())
        caption = _("Queue depth of {app} when the view stopped", app=html.escape(repr(name)))
        bundle["text/html"] = f'<table class="celerylab-queue-depth-final"><caption>{caption}</caption>{rows}</table>'
        lines = (_("not sampled (Redis brokers only)") if depths is None
                 else ", ".join(f"{_line(k)} {v}" for k, v in depths.items()))
        bundle["text/plain"] = _("Final state of the queue depth of {app}: {lines}", app=repr(name), lines=lines)
        return bundle

    def show_final(self) -> None:
        """Display :meth:`final_bundle` in the current cell."""
        _display(self.final_bundle())

    def _repr_mimebundle_(self, **kwargs):
        return _widget_bundle(self.widget)


def _line(name: str) -> str:
    """A queue-depth line's name as the learner reads it (a queue's name is code: as it is)."""
    return _(UNACKED) if name == UNACKED else name


# ---------------------------------------------------------------------------------------
# The final state, as a static, deterministic output
# ---------------------------------------------------------------------------------------
def final_figure(summary: Summary, title: str = ""):
    """A plotly Sankey of where the tasks went: client -> queue/band -> worker -> state.

    Counts only (no times, ids or machine names), so the same run gives the same figure.
    """
    import plotly.graph_objects as go

    s = summary
    title = title or _("Final state")
    labels, colors, index = [], [], {}

    def node(key, label, color):
        if key not in index:
            index[key] = len(labels)
            labels.append(label)
            colors.append(color)
        return index[key]

    links: dict = {}

    def link(a, b, n, color):
        if n:
            links[(a, b)] = (links.get((a, b), (0, color))[0] + n, color)

    flows = sorted(s.flows.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
    per_band = {}
    per_worker = {}
    per_state = {}
    for (q, band, host, state), n in flows:
        per_band[(q, band)] = per_band.get((q, band), 0) + n
        if host:
            per_worker[short_host(host)] = per_worker.get(short_host(host), 0) + n
        per_state[state] = per_state.get(state, 0) + n
    multi_band = {q for q, b in per_band if b} | {q for q in s.bands if len(s.bands[q]) > 1}
    client = node("client", _("client: {tasks}", tasks=s.tasks), COLORS["sent"])
    for (q, band, host, state), n in flows:
        qlabel = _("{queue} (band {band})", queue=q, band=band) if q in multi_band else q
        qn = node(("q", q, band), f"{qlabel}: {per_band[(q, band)]}", "#4e79a7")
        sn = node(("s", state), f"{state}: {per_state[state]}", COLORS.get(state, "#777"))
        link(client, qn, n, "rgba(140,140,140,0.35)")
        if host:
            name = short_host(host)
            wn = node(("w", name), f"{name}: {per_worker[name]}", "#f28e2b")
            link(qn, wn, n, "rgba(78,121,167,0.35)")
            link(wn, sn, n, _rgba(COLORS.get(state, "#777"), 0.45))
        else:
            link(qn, sn, n, _rgba(COLORS.get(state, "#777"), 0.45))
    states = ", ".join(f"{k}: {v}" for k, v in s.states.items() if v) or _("no tasks")
    fig = go.Figure()
    if links:
        pairs = list(links.items())
        fig.add_trace(go.Sankey(
            arrangement="snap", valueformat="d",
            node=dict(label=labels, color=colors, pad=18, thickness=16, line=dict(width=0)),
            link=dict(source=[a for (a, _b), _v in pairs], target=[b for (_a, b), _v in pairs],
                      value=[v for _k, (v, _c) in pairs], color=[c for _k, (_v, c) in pairs])))
    else:
        fig.add_annotation(text=_("no task events were seen"), showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    fig.update_layout(title=_("{title}: {tasks} tasks ({states})", title=title, tasks=s.tasks, states=states),
                      height=360,
                      margin=dict(l=20, r=20, t=50, b=20), font=dict(size=12))
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def final_bundle(summary: Summary, name: str = "") -> dict:
    """The display bundle of the final state: plotly JSON (JupyterLab), HTML (nbconvert, GitHub),
    one text line (nbval and plain terminals). Deterministic for a given set of counts."""
    import plotly.io as pio

    title = _("Final state of {app}", app=repr(name)) if name else _("Final state")
    fig = final_figure(summary, title)
    bundle = dict(pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict()))  # pinned renderer
    bundle["text/html"] = flow_html(summary, live=False, title=title)
    bundle["text/plain"] = _("{title}: {summary}", title=title, summary=summary.line())
    return bundle


# ---------------------------------------------------------------------------------------
# Notebook API
# ---------------------------------------------------------------------------------------
class LiveWatch(Watcher):
    """A :class:`Watcher` with the three live views; as a context manager it displays them on
    entry and the final state on exit."""

    def __init__(self, app: Celery, show: bool = True, final: bool = True, **kwargs):
        super().__init__(app, **kwargs)
        self.show = show
        self.final = final
        self.flow: FlowView | None = None
        self.timeline_view: TimelineView | None = None
        self.queue_depth: QueueDepthView | None = None
        self.view = None

    def start(self, timeout: float = 10.0) -> "LiveWatch":
        if self.running:
            return self
        super().start(timeout)
        if self.flow is None:
            import ipywidgets as widgets

            self.flow = FlowView(self)
            self.timeline_view = TimelineView(self)
            self.queue_depth = QueueDepthView(self)
            self.view = widgets.VBox([self.flow.widget, self.timeline_view.widget, self.queue_depth.widget])
        if self.show:
            _display(_widget_bundle(self.view))
        return self

    def stop(self, settle: float = 1.0, show_final: bool = False, panels: Iterable[str] = ("flow",)) -> None:
        """Stop watching; ``show_final=True``: then display the final state of ``panels`` (see
        :meth:`show_final`)."""
        was_running = self._thread is not None
        super().stop(settle=settle)
        if show_final and was_running:
            self.show_final(panels)

    def show_final(self, panels: Iterable[str] = ("flow",)) -> None:
        """Display the final state (static figure, HTML and text line) in the current cell.

        ``panels``: ``"flow"`` (where the tasks went, a Sankey of counts), ``"timeline"`` (each
        task's runs by outcome) and ``"queue depth"`` (the last sample; Redis brokers only, and
        stable only when the cell waited for the queues to settle). Counts only: no times."""
        panels = tuple(panels)
        unknown = set(panels) - {"flow", "timeline", "queue depth"}
        if unknown:
            raise ValueError(_("unknown panel(s) {panels}: use 'flow', 'timeline', 'queue depth'",
                               panels=sorted(unknown)))
        if "flow" in panels:
            _display(final_bundle(self.summary(), self.app.main))
        if "timeline" in panels:
            _display((self.timeline_view or TimelineView(self)).final_bundle())
        if "queue depth" in panels:
            _display((self.queue_depth or QueueDepthView(self)).final_bundle())

    def __enter__(self) -> "LiveWatch":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(show_final=self.final)

    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": f"<celerylab watch of app {self.app.main!r}>"}


def _display(bundle: dict) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display

    if not InteractiveShell.initialized():   # a plain script: the text line is all it can show
        print(bundle.get("text/plain", ""))
        return
    display(bundle, raw=True)


def watch(app: Celery, show: bool = True, final: bool = True, queues: Iterable[str] = (), **kwargs) -> LiveWatch:
    """Watch ``app``'s tasks live: flow, timeline and queue depth, redrawn <= 10 times a second.

    Use it as ``with celerylab.watch(app) as w: ...`` (the final state is displayed when the
    block ends) or as ``w = celerylab.watch(app)`` and later ``w.stop(show_final=True)``.
    Calling it again (re-running the cell) replaces the previous watcher on that broker.
    ``queues``: extra queue names whose depth to sample.
    """
    return LiveWatch(app, show=show, final=final, queues=queues, **kwargs).start()


def _watcher_for(app: Celery) -> Watcher:
    w = active_watcher(app)
    if w is None:
        w = LiveWatch(app, show=False, final=False).start()
    return w


def _show(view) -> None:
    _display(_widget_bundle(view.widget))


def show_flow(app: Celery) -> None:
    """Display the live flow diagram of ``app``'s tasks (starts watching if nothing watches yet)."""
    w = _watcher_for(app)
    _show(w.flow if isinstance(w, LiveWatch) and w.flow else FlowView(w))


def show_timeline(app: Celery) -> None:
    """Display the live Gantt chart of ``app``'s tasks per worker slot."""
    w = _watcher_for(app)
    _show(w.timeline_view if isinstance(w, LiveWatch) and w.timeline_view else TimelineView(w))


def show_queue_depth(app: Celery) -> None:
    """Display ``app``'s queue depth over time (Redis: queue + band lists, and unacked)."""
    w = _watcher_for(app)
    _show(w.queue_depth if isinstance(w, LiveWatch) and w.queue_depth else QueueDepthView(w))


def stop_watching(app: Celery | None = None) -> None:
    """Stop the watcher of ``app``'s broker (or every watcher) in this kernel."""
    from . import events

    with events._registry_lock:
        watchers = list(events._active.values())
    for w in watchers:
        if app is None or w.key == str(app.conf.broker_url):
            w.stop(settle=0)


def strip_widget_state(path: str | Path) -> bool:
    """Remove ``metadata.widgets`` (saved widget state, MBs with FigureWidgets) from a notebook
    file. Returns True if the file changed."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if "widgets" not in nb.metadata:
        return False
    del nb.metadata["widgets"]
    nbformat.write(nb, path)
    return True
