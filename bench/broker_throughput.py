"""Embedded broker versus a real redis-server: Celery throughput, side by side in one run.

For each broker: start it on 127.0.0.1, start a real ``celery worker`` subprocess (threads
pool x4), send N trivial tasks and wait for every result, and report tasks/s. Then print
the ratio embedded / redis-server; the kit's target is >= 0.8 with results stored.

    python bench/broker_throughput.py [--tasks 1000] [--rounds 3] [--ignore-result]

redis-server comes from the system (``apt-get install redis-server``); without it the
embedded broker is measured alone and the run says so.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from celerylab.ports import free_port, port_in_use  # noqa: E402


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not port_in_use(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {port} after {timeout}s")
        time.sleep(0.05)


def start_embedded(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "celerylab", "broker", "--port", str(port)],
                            stdout=subprocess.DEVNULL, start_new_session=True)


def start_redis(port: int) -> subprocess.Popen:
    return subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)


def run_one(url: str, tasks: int, ignore_result: bool) -> float:
    """tasks/s for one batch against the broker at url (a fresh worker each time)."""
    env = dict(os.environ, CELERYLAB_BROKER_URL=url)
    env.pop("CELERYLAB_APP_CONF", None)
    logfile = ROOT / "bench" / "results" / "worker.log"
    logfile.parent.mkdir(exist_ok=True)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celerylab.lessons.l00_start", "worker",
                               "-P", "threads", "-c", "4", "-l", "INFO", "-f", str(logfile),
                               "--without-mingle", "--without-gossip", "-n", f"bench-{os.getpid()}@%h"],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ["CELERYLAB_BROKER_URL"] = url
        import celerylab
        import celerylab.broker

        celerylab.broker._current = None
        app = celerylab.create_app("bench", worker_send_task_events=False, task_send_sent_event=False,
                                   task_track_started=False)
        add = app.signature("l00.add")
        # Wait for the worker: one round trip.
        app.send_task("l00.add", (0, 0)).get(timeout=30)
        start = time.perf_counter()
        results = []
        for i in range(tasks):
            results.append(app.send_task("l00.add", (i, i), ignore_result=ignore_result))
            if (i + 1) % 250 == 0:
                print(f"    sent {i + 1}/{tasks}", end="\r", flush=True)
        if ignore_result:
            import redis

            r = redis.Redis.from_url(url)
            while r.llen("celery") or r.hlen("unacked"):
                time.sleep(0.005)
        else:
            for i, res in enumerate(results):
                res.get(timeout=120)
                if (i + 1) % 250 == 0:
                    print(f"    done {i + 1}/{tasks}     ", end="\r", flush=True)
        elapsed = time.perf_counter() - start
        del add
        app.close()
        return tasks / elapsed
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def measure(name: str, start, tasks: int, rounds: int, ignore_result: bool) -> float:
    port = free_port()
    server = start(port)
    try:
        wait_port(port)
        rates = []
        for n in range(rounds):
            rate = run_one(f"redis://127.0.0.1:{port}/0", tasks, ignore_result)
            rates.append(rate)
            print(f"  {name:13} round {n + 1}/{rounds}: {rate:6.0f} tasks/s          ", flush=True)
        return statistics.median(rates)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ignore-result", action="store_true", help="send with ignore_result=True")
    parser.add_argument("--target", type=float, default=0.8)
    args = parser.parse_args()
    mode = "results ignored" if args.ignore_result else "results stored"
    print(f"{args.tasks} trivial tasks x {args.rounds} rounds, threads pool x4, {mode}, {os.cpu_count()} cores")
    embedded = measure("embedded", start_embedded, args.tasks, args.rounds, args.ignore_result)
    if not shutil.which("redis-server"):
        print(f"embedded broker: {embedded:.0f} tasks/s (median)")
        print("redis-server is not installed here, so there is no ratio (apt-get install redis-server)")
        return 0
    real = measure("redis-server", start_redis, args.tasks, args.rounds, args.ignore_result)
    ratio = embedded / real
    print(f"embedded {embedded:.0f} tasks/s, redis-server {real:.0f} tasks/s (medians): "
          f"ratio {ratio:.2f} (target >= {args.target})")
    return 0 if ratio >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
