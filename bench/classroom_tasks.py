"""The lab-shaped tasks every simulated learner of bench/classroom.py runs (its worker imports this).

The same for every learner: same app name, task names and queues. Which learner's corner of the
broker they use comes only from ``CELERYLAB_LEARNER`` (and the learner's own broker user), as in
a class. Each task returns the learner name it ran for, so a task that crossed over is seen.
"""
from __future__ import annotations

import os
import time

from kombu import Exchange, Queue

import celerylab

ME = os.environ.get("CELERYLAB_LEARNER", "")
DEAD = "dead"          # the dead-letter queue: no worker consumes it

app = celerylab.create_app(
    "classroom",
    task_queues=[Queue("celery", Exchange("celery"), routing_key="celery", queue_arguments={"x-max-priority": 10}),
                 Queue("flood", Exchange("flood"), routing_key="flood")],
    task_default_queue="celery",
    task_acks_late=True,
    worker_prefetch_multiplier=4,
)


@app.task(name="lab.add")
def add(learner, i):
    return [ME, learner, i]


@app.task(name="lab.flaky", bind=True, max_retries=3, default_retry_delay=0.2)
def flaky(self, learner, i, fail_times=2):
    """Fails ``fail_times`` times, then succeeds: a retry with a countdown."""
    if self.request.retries < fail_times:
        raise self.retry(countdown=0.2)
    return [ME, learner, i, self.request.retries]


class DeadLettering(app.Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # the application-level dead-letter queue of lesson 06: the failed call, to a queue no worker reads
        self.app.send_task("lab.add", args=list(args), queue=DEAD, task_id=f"dead-{task_id}")


@app.task(name="lab.doomed", bind=True, max_retries=1, base=DeadLettering)
def doomed(self, learner, i):
    """Fails for good after one retry; its failure handler dead-letters it."""
    if self.request.retries < 1:
        raise self.retry(countdown=0.1)
    raise ValueError(f"{learner} #{i} always fails")


@app.task(name="lab.slow")
def slow(learner, i, seconds=0.05):
    time.sleep(seconds)
    return [ME, learner, i]


@app.task(name="lab.noop", ignore_result=True)   # the flood: 10,000 results would swamp rpc://
def noop(learner, i):
    return None
