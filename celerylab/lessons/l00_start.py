"""Tasks for notebooks/00_start_here.ipynb (and the kit's own tests)."""
from __future__ import annotations

import time

import celerylab

app = celerylab.create_app("l00_start")


@app.task(name="l00.add")
def add(x, y):
    return x + y


@app.task(name="l00.sleep_then_return")
def sleep_then_return(seconds, value=None):
    time.sleep(seconds)
    return value


@app.task(name="l00.fail")
def fail(message="boom"):
    raise ValueError(message)
