"""Tasks and helpers for notebooks/05_retries.ipynb: manual and automatic retries, backoff,
jitter and idempotency.

Every task decides whether to fail from ``self.request.retries`` (how many retries came
before this run), so it behaves the same on every run and in any worker process. Delays are
tenths of a second, except where Celery itself does not allow less (``retry_backoff``
counts in whole seconds).
"""
from __future__ import annotations

import inspect
import random
import textwrap
import time

from celery.utils.time import get_exponential_backoff_interval

import celerylab
from celerylab.store import redis_client

app = celerylab.create_app("l05_retries")


# ---------------------------------------------------------------------------------------
# 1. Manual retries: bind=True and self.retry()
# ---------------------------------------------------------------------------------------
@app.task(name="l05.flaky_api", bind=True, max_retries=3)
def flaky_api(self, fail_times=2):
    """Calls an API that is down for the first ``fail_times`` attempts."""
    try:
        if self.request.retries < fail_times:
            raise ConnectionError("the API did not answer")
        return f"answered on attempt {self.request.retries + 1}"
    except ConnectionError as exc:
        raise self.retry(exc=exc, countdown=0.2)


@app.task(name="l05.always_down", bind=True, max_retries=3)
def always_down(self, pass_exc=True):
    """An API that never answers: every attempt asks for a retry, until max_retries is used up."""
    try:
        raise ConnectionError("the API did not answer")
    except ConnectionError as exc:
        if pass_exc:
            raise self.retry(exc=exc, countdown=0.1)
        raise self.retry(countdown=0.1)


@app.task(name="l05.no_countdown", bind=True)
def no_countdown(self):
    """Asks for a retry without saying when: Celery uses default_retry_delay."""
    try:
        raise ConnectionError("the API did not answer")
    except ConnectionError as exc:
        raise self.retry(exc=exc)


# ---------------------------------------------------------------------------------------
# 2. Automatic retries: autoretry_for, retry_backoff, retry_backoff_max, retry_jitter
# ---------------------------------------------------------------------------------------
@app.task(name="l05.fetch_rates", bind=True, autoretry_for=(ConnectionError,), max_retries=3,
          retry_backoff=True, retry_backoff_max=600, retry_jitter=False)
def fetch_rates(self, currency, fail_times=3):
    """Fails with ConnectionError on its first ``fail_times`` attempts; Celery retries it."""
    if self.request.retries < fail_times:
        raise ConnectionError(f"rates for {currency}: connection reset")
    return f"{currency} rates (attempt {self.request.retries + 1})"


@app.task(name="l05.fetch_rates_fast", bind=True, autoretry_for=(ConnectionError,), max_retries=1,
          retry_backoff=0.1, retry_jitter=False)
def fetch_rates_fast(self, currency):
    """The same with ``retry_backoff=0.1``: asks for a 0.1 s first wait."""
    if self.request.retries < 1:
        raise ConnectionError(f"rates for {currency}: connection reset")
    return f"{currency} rates (attempt {self.request.retries + 1})"


# ---------------------------------------------------------------------------------------
# 3. The seed article's manual backoff, scaled down, with and without jitter
# ---------------------------------------------------------------------------------------
@app.task(name="l05.seed_backoff", bind=True, max_retries=3)
def seed_backoff(self, client, scale=1.0):
    """The seed's ``countdown=2 ** self.request.retries`` (times ``scale``), for one client."""
    try:
        raise ConnectionError(f"client {client}: the shared API is down")
    except ConnectionError as exc:
        raise self.retry(exc=exc, countdown=scale * 2 ** self.request.retries)


def jitter_for(client, retries: int, scale: float) -> float:
    """A full-jitter countdown, random in [0, scale * 2**retries], seeded by (client, retry)
    so a rerun waits exactly the same."""
    return random.Random(f"{client}-{retries}").uniform(0, scale * 2 ** retries)


@app.task(name="l05.jitter_backoff", bind=True, max_retries=3)
def jitter_backoff(self, client, scale=1.0):
    """The same with full jitter: each client waits a different random share of the backoff."""
    try:
        raise ConnectionError(f"client {client}: the shared API is down")
    except ConnectionError as exc:
        raise self.retry(exc=exc, countdown=jitter_for(client, self.request.retries, scale))


# ---------------------------------------------------------------------------------------
# 4. Idempotency: a task that runs twice must charge once
# ---------------------------------------------------------------------------------------
LEDGER = "l05:ledger"          # the card charges made (a Redis list)
# In a class (CELERYLAB_LEARNER=alice) redis_client() puts the learner's prefix in front of every
# key: this list is alice:l05:ledger, the claim keys below alice:l05:done:..., each learner's own.
CLAIMED = "l05:done:charge:order-{}"   # charge_once's claim key for an order (SET NX)


def ledger() -> list[str]:
    return [x.decode() for x in redis_client().lrange(LEDGER, 0, -1)]


def reset_ledger() -> None:
    """Empty the ledger and drop charge_once's claims on the orders in it, so a re-run charges again.

    By name, not KEYS/SCAN (a class broker denies those: they go over every learner's keys).
    charge_by_task_id's claims are left to expire: their keys hold task ids, new on every run.
    """
    r = redis_client()
    orders = {line.split(":")[0].removeprefix("order ") for line in ledger()}
    r.delete(LEDGER, *(CLAIMED.format(order) for order in sorted(orders)))


def _charge_card(order_id, amount) -> None:
    redis_client().rpush(LEDGER, f"order {order_id}: {amount:.2f} EUR")


@app.task(name="l05.charge_naive", bind=True, max_retries=2)
def charge_naive(self, order_id, amount):
    """Charges the card, then the receipt service times out once: the retry charges again."""
    _charge_card(order_id, amount)
    if self.request.retries == 0:
        raise self.retry(exc=TimeoutError("receipt service timed out"), countdown=0.1)
    return "receipt sent"


@app.task(name="l05.charge_by_task_id", bind=True, max_retries=2)
def charge_by_task_id(self, order_id, amount):
    """Deduplicated by task id: catches its own retry, not a second message for the same order."""
    key = f"l05:done:task:{self.request.id}"
    if redis_client().set(key, 1, nx=True, ex=7 * 24 * 3600):
        _charge_card(order_id, amount)
    if self.request.retries == 0:
        raise self.retry(exc=TimeoutError("receipt service timed out"), countdown=0.1)
    return "receipt sent"


@app.task(name="l05.charge_once", bind=True, max_retries=2)
def charge_once(self, order_id, amount):
    """Deduplicated by the business operation (charge + order id): one charge per order."""
    key = f"l05:done:charge:order-{order_id}"
    if redis_client().set(key, self.request.id, nx=True, ex=7 * 24 * 3600):
        _charge_card(order_id, amount)
    if self.request.retries == 0:
        raise self.retry(exc=TimeoutError("receipt service timed out"), countdown=0.1)
    return "receipt sent"


# ---------------------------------------------------------------------------------------
# Helpers the notebook uses to look at what happened
# ---------------------------------------------------------------------------------------
def show_source(*tasks) -> None:
    """Print the source of tasks (decorator included) or plain functions, as written in this module."""
    for i, task in enumerate(tasks):
        fn = getattr(task, "_orig_run", None) or getattr(task, "run", task)
        fn = inspect.unwrap(fn)
        print(("\n" if i else "") + textwrap.dedent(inspect.getsource(fn)).rstrip())


def wait_for_state(result, state: str, timeout: float = 5.0) -> str:
    """Poll ``result.state`` until it is ``state``; returns it (raises on timeout)."""
    deadline = time.monotonic() + timeout
    while result.state != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {result.id} is {result.state}, not {state}, after {timeout} s")
        time.sleep(0.01)
    return state


# ---------------------------------------------------------------------------------------
# Figures (plotly JSON: the same data gives the same stored output)
# ---------------------------------------------------------------------------------------
class Figure:
    """A plotly figure shown as plotly JSON plus one line of text (what nbval compares)."""

    def __init__(self, fig, text: str):
        self.fig = fig
        self.text = text

    def _repr_mimebundle_(self, **kwargs):
        import plotly.io as pio

        bundle = dict(pio.renderers["plotly_mimetype"].to_mimebundle(self.fig.to_dict()))
        bundle["text/plain"] = self.text
        return bundle


def backoff_figure(measured: dict[str, list[float]], factor: float = 1.0, maximum: float = 600) -> Figure:
    """Bars: measured seconds between attempts, per series; line: Celery's formula
    ``min(maximum, factor * 2**n)`` for retry n."""
    import plotly.graph_objects as go

    longest = max((len(v) for v in measured.values()), default=0)
    xs = [f"retry {n + 1}" for n in range(longest)]
    fig = go.Figure()
    for name, gaps in measured.items():
        fig.add_bar(name=name, x=xs[: len(gaps)], y=gaps, text=[f"{g:g} s" for g in gaps], textposition="outside")
    expected = [min(maximum, factor * 2 ** n) for n in range(longest)]
    fig.add_scatter(name=f"min({maximum:g}, {factor:g} × 2ⁿ)", x=xs, y=expected, mode="lines+markers",
                    line=dict(dash="dot", color="#444"))
    fig.update_layout(title="Wait before each retry, measured from the worker's events", barmode="group",
                      height=340, yaxis=dict(title="seconds", rangemode="tozero"),
                      margin=dict(l=60, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.2))
    text = "; ".join(f"{name}: {gaps}" for name, gaps in measured.items())
    return Figure(fig, f"measured waits (s): {text}")


def jitter_samples(retries: int = 5, samples: int = 200, seed: int = 5, factor: int = 1,
                   maximum: int = 600) -> dict[int, list[int]]:
    """Countdowns Celery's own backoff function picks with full jitter, for retry 0..retries-1.

    Uses ``celery.utils.time.get_exponential_backoff_interval`` (what ``autoretry_for`` calls),
    after seeding Python's ``random`` so every run draws the same numbers.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        return {n: [get_exponential_backoff_interval(factor, n, maximum, full_jitter=True) for _ in range(samples)]
                for n in range(retries)}
    finally:
        random.setstate(state)


def jitter_figure(samples: dict[int, list[int]], factor: int = 1, maximum: int = 600) -> Figure:
    """Box plot of jittered countdowns per retry, with the un-jittered exponential on top."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for n, values in samples.items():
        fig.add_box(name=f"retry {n + 1}", y=values, boxpoints="all", jitter=0.5, pointpos=0,
                    marker=dict(size=3, color="#b07aa1"), line=dict(color="#7a4f73"), showlegend=False)
    fig.add_scatter(name="without jitter", x=[f"retry {n + 1}" for n in samples],
                    y=[min(maximum, factor * 2 ** n) for n in samples], mode="lines+markers",
                    line=dict(dash="dot", color="#444"))
    fig.update_layout(title="retry_jitter=True: the countdown is random in [0, backoff]", height=360,
                      yaxis=dict(title="countdown (s)", rangemode="tozero"), margin=dict(l=60, r=20, t=60, b=40))
    zeros = {n: sum(1 for v in values if v == 0) for n, values in samples.items()}
    size = len(next(iter(samples.values()), []))
    text = ", ".join(f"retry {n + 1}: {z}/{size} at 0 s" for n, z in zeros.items())
    return Figure(fig, f"jittered countdowns, seeded; {text}")
