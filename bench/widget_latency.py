"""Event-to-widget latency of the live task-flow views at a steady task rate.

Starts the embedded broker, a real worker, and ``celerylab.watch`` with all three views (flow,
timeline, queue depth: real ipywidgets / plotly FigureWidgets, serialised on every redraw),
then sends trivial tasks at ``--rate`` per second for ``--seconds``. For every task event it
measures the time from the event's creation (its timestamp, set by the worker or client that
sent it) to the end of the first redraw that included it, and reports p50/p95/max, the
redraw rate, and PASS/FAIL against the target (p95 <= 200 ms, redraws <= 10/s, the rate
sustained).

    python bench/widget_latency.py [--rate 200] [--seconds 10] [--worker process|kernel]

``--worker process`` (default) runs the worker as a ``celery worker`` subprocess (threads x4),
like a lesson that spawns one; ``kernel`` runs it inside this process (one GIL for broker,
worker, watcher and widgets: the hardest case). Outside a Jupyter kernel the widgets'
messages go nowhere, but their state is computed and serialised as in a kernel.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_P95 = 0.200
MAX_REDRAWS_PER_S = 10


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="tasks sent per second (default 200)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to send (default 10)")
    ap.add_argument("--worker", choices=("process", "kernel"), default="process")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()

    import celerylab
    from celerylab.lessons import l00_start
    from celerylab.widgets import LiveWatch

    app = l00_start.app
    add = l00_start.add
    total = int(args.rate * args.seconds)
    print(f"widget latency bench: {total} tasks at {args.rate:.0f}/s, worker: {args.worker} "
          f"(threads x{args.concurrency}); target p95 <= {TARGET_P95 * 1000:.0f} ms; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)

    t_setup = time.monotonic()
    watcher = LiveWatch(app, show=False, final=False).start()
    print(f"  watcher and views ready in {time.monotonic() - t_setup:.1f} s", flush=True)
    if args.worker == "process":
        # quiet log (no line per task); its worker-online event tells us it is ready
        process = celerylab.spawn_worker("celerylab.lessons.l00_start", pool="threads",
                                         concurrency=args.concurrency, loglevel="WARNING")
        worker_cm = contextlib.closing(SimpleNamespace(close=process.terminate))
    else:
        worker_cm = celerylab.run_worker(app, concurrency=args.concurrency, loglevel="WARNING")
    sent = 0
    with worker_cm:
        watcher.wait_for(lambda s: s.workers, timeout=30)
        print("  worker online", flush=True)
        start = time.monotonic()
        next_report = start + 1.0
        interval = 1.0 / args.rate
        with app.producer_or_acquire() as producer:
            while sent < total:
                due = start + sent * interval
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                add.apply_async((sent, 1), ignore_result=True, producer=producer)
                sent += 1
                now = time.monotonic()
                if now >= next_report:
                    s = watcher.summary()
                    print(f"  {now - start:5.1f} s: sent {sent:5d}, succeeded {s.states['succeeded']:5d}, "
                          f"in flight {s.in_flight:4d}, redraws {len(watcher.redraws)}", flush=True)
                    next_report += 1.0
        send_time = time.monotonic() - start
        print(f"  sent {sent} tasks in {send_time:.2f} s ({sent / send_time:.0f}/s); waiting for the rest",
              flush=True)
        try:
            watcher.wait_for(lambda s: s.states["succeeded"] >= total, timeout=60)
        except TimeoutError as exc:
            print(f"  {exc}", flush=True)
        done_time = time.monotonic() - start
        time.sleep(0.3)  # let the last redraw happen
    summary = watcher.summary()
    lat = watcher.latencies()
    redraws = watcher.redraws
    watcher.stop(settle=0)

    from_emit = [a for a, _ in lat]
    from_recv = [b for _, b in lat]
    durations = [e - s for s, e in redraws]
    # the busiest one-second window of redraw starts
    starts = [s for s, _ in redraws]
    busiest = 0
    j = 0
    for i, s in enumerate(starts):
        while starts[j] < s - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    rate = summary.states["succeeded"] / done_time if done_time else 0

    print(f"tasks: {summary.states['succeeded']}/{total} succeeded in {done_time:.2f} s ({rate:.0f}/s); "
          f"task events measured: {len(lat)}")
    print(f"event -> widget latency (from the event's creation): p50 {pct(from_emit, .5) * 1000:.0f} ms, "
          f"p95 {pct(from_emit, .95) * 1000:.0f} ms, max {max(from_emit, default=0) * 1000:.0f} ms")
    print(f"receipt -> widget latency (from arrival in this process): p50 {pct(from_recv, .5) * 1000:.0f} ms, "
          f"p95 {pct(from_recv, .95) * 1000:.0f} ms")
    print(f"redraws: {len(redraws)} ({busiest} in the busiest second), each p50 "
          f"{statistics.median(durations) * 1000 if durations else 0:.0f} ms, max "
          f"{max(durations, default=0) * 1000:.0f} ms")
    ok_latency = pct(from_emit, .95) <= TARGET_P95
    ok_redraws = busiest <= MAX_REDRAWS_PER_S
    ok_rate = summary.states["succeeded"] >= total and sent / send_time >= 0.95 * args.rate and \
        done_time <= args.seconds * 1.1 + 1
    verdict = "PASS" if ok_latency and ok_redraws and ok_rate else "FAIL"
    print(f"{verdict}: p95 {'<=' if ok_latency else '>'} {TARGET_P95 * 1000:.0f} ms, "
          f"redraws/s {'<=' if ok_redraws else '>'} {MAX_REDRAWS_PER_S}, "
          f"rate {'sustained' if ok_rate else 'NOT sustained (is the machine busy? see uptime)'}")
    celerylab.cleanup()
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    os.environ.setdefault("CELERYLAB_LOG_DIR", str(ROOT / "bench" / "results"))
    sys.exit(main())
