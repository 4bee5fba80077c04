"""The task of lesson 08b's batch (``celerylab.durability``), importable by a worker process.

Each run adds its number to a Redis set (the *ledger*, on a Redis that is not restarted) and
counts itself, so the notebook sees which tasks ran to the end and how many ran twice.
"""
from __future__ import annotations

import time

import redis

import celerylab

app = celerylab.create_app("l08b_durability")


@app.task(name="durability.step", acks_late=True)
def step(i: int, ledger_url: str, seconds: float = 0.02) -> None:
    time.sleep(seconds)
    with redis.Redis.from_url(ledger_url) as client:
        client.incr("runs")
        client.sadd("done", i)
