"""Lesson 11 and lab 11 (testing Celery code): the given tasks' bodies, right and subtly broken.

The lab's exercises are tests the learner writes for these tasks. Each task here is a plain
function (the check wraps it as a Celery task on an app of its own): the ``*_broken`` twins do
almost the same thing, and a good test passes on the one and fails on the other.

``rates_api`` stands for an external service (a network call). It is looked up in this module
at call time, so a test replaces it with ``unittest.mock.patch("celerylab.lessons.l11_testing.rates_api")``.
"""
from __future__ import annotations

MODULE = __name__


def rates_api(currency):
    """The exchange-rate service (in real life, an HTTP call). Here it is never reachable."""
    raise ConnectionError(f"rates service unreachable (asked for {currency!r}): mock it in tests")


# -- q1: the result must reach the caller (a real worker stores it as JSON) ---------------------
def unique_tags(tags):
    """The tags, stripped and lower-cased, each once, sorted: ``[" B", "a", "b"]`` -> ``["a", "b"]``."""
    return sorted({t.strip().lower() for t in tags})


def unique_tags_broken(tags):
    # the same tags, as a set: equal in the caller's process, but JSON cannot carry a set
    return {t.strip().lower() for t in tags}


# -- q2: retries, tested without waiting -------------------------------------------------------
def fetch_rate(self, currency):
    """``rates_api(currency)``; when the service is down, retried 30 s later, at most 3 times, then
    fails with the ConnectionError itself."""
    try:
        return rates_api(currency)
    except ConnectionError as exc:
        raise self.retry(exc=exc, countdown=30, max_retries=3)


def fetch_rate_no_exc(self, currency):
    # forgets exc=: after the last retry it fails with MaxRetriesExceededError
    try:
        return rates_api(currency)
    except ConnectionError:
        raise self.retry(countdown=30, max_retries=3)


def fetch_rate_five(self, currency):
    # five retries instead of three
    try:
        return rates_api(currency)
    except ConnectionError as exc:
        raise self.retry(exc=exc, countdown=30, max_retries=5)


# -- q3: a failure path on a worker ------------------------------------------------------------
def parse_order(payload):
    """``{"sku": str, "qty": int > 0}`` from a payload; a missing field or a bad qty raises ValueError."""
    for field in ("sku", "qty"):
        if field not in payload:
            raise ValueError(f"missing field: {field}")
    if not isinstance(payload["qty"], int) or payload["qty"] <= 0:
        raise ValueError(f"qty must be a positive integer, not {payload['qty']!r}")
    return {"sku": str(payload["sku"]), "qty": payload["qty"]}


def parse_order_default_qty(payload):
    # a missing qty silently becomes 1: the task succeeds
    if "sku" not in payload:
        raise ValueError("missing field: sku")
    qty = payload.get("qty", 1)
    if not isinstance(qty, int) or qty <= 0:
        raise ValueError(f"qty must be a positive integer, not {qty!r}")
    return {"sku": str(payload["sku"]), "qty": qty}


def parse_order_key_error(payload):
    # a missing field raises KeyError, not ValueError
    sku, qty = payload["sku"], payload["qty"]
    if not isinstance(qty, int) or qty <= 0:
        raise ValueError(f"qty must be a positive integer, not {qty!r}")
    return {"sku": str(sku), "qty": qty}


# -- q4: a worker the test starts itself ------------------------------------------------------
def normalize_email(email):
    """``"  Ann@Example.ORG "`` -> ``"ann@example.org"``: spaces stripped, lower-cased."""
    return email.strip().lower()


def normalize_email_broken(email):
    # lower-cases but keeps the spaces
    return email.lower()
