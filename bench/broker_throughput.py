"""Embedded broker versus a real redis-server: Celery throughput, side by side in one run.

Both brokers run on 127.0.0.1 as processes of their own for the whole run. Each round sends
N trivial tasks through each broker in turn, with a fresh real ``celery worker`` subprocess
(threads pool x4), waits for every result, and reports tasks/s and the broker process's CPU
time per 1000 tasks. The brokers take turns (E R, R E, E R...), so both see the same drift
in whatever else the machine is doing. The last line gives the medians and the ratio
embedded / redis-server; the kit's target is >= 0.8 with results stored.

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Broker:
    def __init__(self, name: str, start):
        self.name = name
        self.port = free_port()
        self.process = start(self.port)
        self.rates: list[float] = []
        self.cpu: list[float] = []

    def round(self, n: int, rounds: int, tasks: int, ignore_result: bool) -> None:
        before = cpu_seconds(self.process.pid)
        rate = run_one(f"redis://127.0.0.1:{self.port}/0", tasks, ignore_result)
        cpu = (cpu_seconds(self.process.pid) - before) * 1000 / tasks
        self.rates.append(rate)
        self.cpu.append(cpu)
        print(f"  {self.name:13} round {n + 1}/{rounds}: {rate:6.0f} tasks/s, broker CPU {cpu:.2f} s/1000 tasks",
              flush=True)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ignore-result", action="store_true", help="send with ignore_result=True")
    parser.add_argument("--target", type=float, default=0.8)
    args = parser.parse_args()
    mode = "results ignored" if args.ignore_result else "results stored"
    print(f"{args.tasks} trivial tasks x {args.rounds} rounds, threads pool x4, {mode}, {os.cpu_count()} cores")
    brokers: list[Broker] = []
    try:
        brokers.append(Broker("embedded", start_embedded))
        if shutil.which("redis-server"):
            brokers.append(Broker("redis-server", start_redis))
        for broker in brokers:
            wait_port(broker.port)
        for n in range(args.rounds):
            for broker in (brokers if n % 2 == 0 else brokers[::-1]):
                broker.round(n, args.rounds, args.tasks, args.ignore_result)
    finally:
        for broker in brokers:
            broker.stop()
    embedded = statistics.median(brokers[0].rates)
    if len(brokers) == 1:
        print(f"embedded broker: {embedded:.0f} tasks/s (median)")
        print("redis-server is not installed here, so there is no ratio (apt-get install redis-server)")
        return 0
    real = statistics.median(brokers[1].rates)
    ratio = embedded / real
    print(f"embedded {embedded:.0f} tasks/s, redis-server {real:.0f} tasks/s (medians): "
          f"ratio {ratio:.2f} (target >= {args.target}); broker CPU per 1000 tasks: "
          f"embedded {statistics.median(brokers[0].cpu):.2f} s, redis-server {statistics.median(brokers[1].cpu):.2f} s")
    return 0 if ratio >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
