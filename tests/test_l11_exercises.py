"""Lab 11's checks test the learner's tests: pass on the right task, fail on each broken twin.

For every exercise: the solution passes; a test that cannot fail (``assert True``) and a test that
always fails are refused; an answer missing only one stated requirement is refused, naming it.
"""
from __future__ import annotations

import gc
from unittest import mock

import pytest
from celery.contrib.testing.worker import start_worker

from celerylab.exercises import l11_testing as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted
from celerylab.lessons import l11_testing as given


@pytest.fixture
def embedded(embedded):
    """The conftest's fresh broker; results left by this test are collected before it stops."""
    yield embedded
    gc.collect()


def check(q, name, fn):
    q.check({name: fn})


def test_q1_requires_a_worker_run_and_catches_the_set(embedded, capsys):
    def test_unique_tags(unique_tags):
        assert unique_tags.delay([" B", "a", "b"]).get(timeout=5) == ["a", "b"]

    def not_yet(unique_tags):
        raise NotImplementedError()

    def assert_true(unique_tags):
        assert True

    def always_fails(unique_tags):
        assert unique_tags.delay(["a"]).get(timeout=5) == ["nope"]

    def eager(unique_tags):  # misses "on a worker": apply() does not serialize the result by default
        assert sorted(unique_tags.apply(([" B", "a", "b"],)).get()) == ["a", "b"]

    def by_docstring(unique_tags):  # tells the twins apart by something other than behaviour
        assert unique_tags.__doc__ and unique_tags.run.__doc__

    def direct_exact(unique_tags):  # catches the set, but never on a worker
        assert unique_tags([" B", "a", "b"]) == ["a", "b"]

    check(ex.q1, "test_unique_tags", test_unique_tags)
    assert capsys.readouterr().out.startswith("Correct: q1:")
    with pytest.raises(ExerciseNotAttempted):
        check(ex.q1, "test_unique_tags", ex.____)
    with pytest.raises(ExerciseNotAttempted, match="still raises NotImplementedError"):
        check(ex.q1, "test_unique_tags", not_yet)
    with pytest.raises(ExerciseIncorrect, match="passed on a broken unique_tags \\(it returns the tags as a set\\)"):
        check(ex.q1, "test_unique_tags", assert_true)
    with pytest.raises(ExerciseIncorrect, match="failed on the correct unique_tags: AssertionError"):
        check(ex.q1, "test_unique_tags", always_fails)
    with pytest.raises(ExerciseIncorrect, match="passed on a broken unique_tags"):
        check(ex.q1, "test_unique_tags", eager)
    with pytest.raises(ExerciseIncorrect, match="never ran unique_tags on a worker \\(it ran directly\\)"):
        check(ex.q1, "test_unique_tags", direct_exact)
    with pytest.raises(ExerciseIncorrect, match="passed on a broken unique_tags"):
        check(ex.q1, "test_unique_tags", by_docstring)


def test_q2_needs_the_count_and_the_error_without_waiting(embedded, capsys):
    def solution(fetch_rate):
        with mock.patch.object(given, "rates_api", side_effect=ConnectionError("down")) as api:
            result = fetch_rate.apply(("EUR",))
        assert api.call_count == 4
        with pytest.raises(ConnectionError):
            result.get()

    def count_only(fetch_rate):  # misses only the final error
        with mock.patch.object(given, "rates_api", side_effect=ConnectionError("down")) as api:
            fetch_rate.apply(("EUR",))
        assert api.call_count == 4

    def error_only(fetch_rate):  # misses only the number of retries
        with mock.patch.object(given, "rates_api", side_effect=ConnectionError("down")):
            result = fetch_rate.apply(("EUR",))
        with pytest.raises(ConnectionError):
            result.get()

    def on_a_worker(fetch_rate):  # no worker here, and on one each retry waits 30 s
        with mock.patch.object(given, "rates_api", side_effect=ConnectionError("down")):
            with pytest.raises(ConnectionError):
                fetch_rate.delay("EUR").get(timeout=3)

    def assert_true(fetch_rate):
        assert True

    check(ex.q2, "test_fetch_rate_retries", solution)
    assert capsys.readouterr().out.startswith("Correct: q2:")
    with pytest.raises(ExerciseIncorrect, match="passed on a broken fetch_rate \\(it ends with MaxRetriesExceeded"):
        check(ex.q2, "test_fetch_rate_retries", count_only)
    with pytest.raises(ExerciseIncorrect, match="passed on a broken fetch_rate \\(it retries 5 times, not 3\\)"):
        check(ex.q2, "test_fetch_rate_retries", error_only)
    with pytest.raises(ExerciseIncorrect, match="failed on the correct fetch_rate: TimeoutError.*run the task eagerly"):
        check(ex.q2, "test_fetch_rate_retries", on_a_worker)
    with pytest.raises(ExerciseIncorrect, match="passed on a broken"):
        check(ex.q2, "test_fetch_rate_retries", assert_true)


def test_q3_needs_the_failure_and_its_type_on_a_worker(embedded, capsys):
    def solution(parse_order):
        result = parse_order.delay({"sku": "A-1"})
        with pytest.raises(ValueError, match="qty"):
            result.get(timeout=5)

    def any_error(parse_order):  # misses only "with ValueError"
        with pytest.raises(Exception):
            parse_order.delay({"sku": "A-1"}).get(timeout=5)

    def directly(parse_order):  # misses only "on a worker"
        with pytest.raises(ValueError):
            parse_order({"sku": "A-1"})

    def always_fails(parse_order):
        parse_order.delay({"sku": "A-1"}).get(timeout=5)

    check(ex.q3, "test_parse_order_missing_qty", solution)
    assert capsys.readouterr().out.startswith("Correct: q3:")
    with pytest.raises(ExerciseIncorrect, match="passed on a broken parse_order \\(a missing field raises KeyError"):
        check(ex.q3, "test_parse_order_missing_qty", any_error)
    with pytest.raises(ExerciseIncorrect, match="never ran parse_order on a worker \\(it ran directly\\)"):
        check(ex.q3, "test_parse_order_missing_qty", directly)
    with pytest.raises(ExerciseIncorrect, match="failed on the correct parse_order: ValueError: missing field: qty"):
        check(ex.q3, "test_parse_order_missing_qty", always_fails)


def test_q4_the_test_starts_its_own_worker(embedded, capsys):
    def solution(app, normalize_email):
        with start_worker(app, perform_ping_check=False):
            assert normalize_email.delay("  Ann@Example.ORG ").get(timeout=5) == "ann@example.org"

    def no_worker(app, normalize_email):  # misses only "start a worker"
        assert normalize_email.delay("  Ann@Example.ORG ").get(timeout=2) == "ann@example.org"

    def no_spaces(app, normalize_email):  # misses only the spaces
        with start_worker(app, perform_ping_check=False):
            assert normalize_email.delay("Ann@Example.ORG").get(timeout=5) == "ann@example.org"

    def wrong_parameter(worker, normalize_email):
        pass

    check(ex.q4, "test_normalize_email", solution)
    assert capsys.readouterr().out.startswith("Correct: q4:")
    with pytest.raises(ExerciseIncorrect, match="failed on the correct normalize_email: TimeoutError.*start_worker"):
        check(ex.q4, "test_normalize_email", no_worker)
    with pytest.raises(ExerciseIncorrect, match="passed on a broken normalize_email \\(it keeps the spaces\\)"):
        check(ex.q4, "test_normalize_email", no_spaces)
    with pytest.raises(ExerciseIncorrect, match="asks for `worker`, which the check cannot give"):
        check(ex.q4, "test_normalize_email", wrong_parameter)
