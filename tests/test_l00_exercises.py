"""Lab 00's checks: the solutions pass, and an answer that misses one stated requirement fails."""
from __future__ import annotations

import pytest

import celerylab
from celerylab.exercises import l00_first_tasks as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted


@pytest.fixture(scope="module")
def app():
    import os

    saved = os.environ.pop("CELERYLAB_BROKER_URL", None)
    celerylab.start_broker()
    app = celerylab.create_app("test_lab00")
    yield app
    app.close()
    celerylab.cleanup()
    if saved is not None:
        os.environ["CELERYLAB_BROKER_URL"] = saved


def fails(q, match, **ns):
    with pytest.raises(ExerciseIncorrect, match=match):
        q.check(namespace=ns)


def test_q1_add(app, capsys):
    @app.task(name="t00.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="t00.add_int", shared=False)
    def add_int(x, y):  # integers only: the float case catches it
        return int(x + y)

    def plain(x, y):
        return x + y

    ex.q1.check(namespace={"add": add})
    assert capsys.readouterr().out.startswith("Correct: q1:")
    fails(ex.q1, r"add\(0.5, 0.25\) returned 0", add=add_int)
    fails(ex.q1, "not a Celery task", add=plain)
    with pytest.raises(ExerciseNotAttempted):
        ex.q1.check(namespace={"add": ex.____})


def test_q2_send_report(app, capsys):
    @app.task(name="t00.make_report", shared=False)
    def make_report(n):
        return f"report {n}"

    @app.task(name="t00.other", shared=False)
    def other(n):
        return n

    ns = {"make_report": make_report}
    ex.q2.check(namespace={**ns, "send_report": lambda n: make_report.apply_async(args=[n], queue="reports")})
    assert capsys.readouterr().out.startswith("Correct: q2:")
    # each requirement missed on its own: the queue, the task, its argument, the return value
    fails(ex.q2, "to the queue 'celery', not to 'reports'", **ns, send_report=lambda n: make_report.delay(n))
    fails(ex.q2, "sent the task 'other'", **ns, send_report=lambda n: other.apply_async(args=[n], queue="reports"))
    fails(ex.q2, r"sent make_report\(1\); it should send make_report\(7\)", **ns,
          send_report=lambda n: make_report.apply_async(args=[1], queue="reports"))
    fails(ex.q2, "returned None", **ns,
          send_report=lambda n: make_report.apply_async(args=[n], queue="reports") and None)


def _fetch_variants(app):
    def make(name, countdown=0.5, max_retries=1, pass_exc=True, catch=ConnectionError):
        @app.task(bind=True, name=f"t00.{name}", shared=False)
        def fetch(self, url):
            try:
                return ex.flaky_download(url)
            except catch as exc:
                raise self.retry(exc=exc if pass_exc else None, countdown=countdown, max_retries=max_retries)
        return fetch

    return make


def test_q3_retry_once(app, capsys):
    make = _fetch_variants(app)
    ex.q3.check(namespace={"fetch": make("good")})
    assert capsys.readouterr().out.startswith("Correct: q3:")
    # retries once, not twice
    fails(ex.q3, r"retried 2 times \(a server that stays down\)", fetch=make("twice", max_retries=2))
    # half a second later, not at once and not seconds later
    fails(ex.q3, "retried 0.0 s after it failed", fetch=make("at_once", countdown=0))
    # fails with the ConnectionError itself
    fails(ex.q3, "MaxRetriesExceededError", fetch=make("no_exc", pass_exc=False))
    # other errors fail at once
    fails(ex.q3, r"'example.com'\) was retried 1 time after ValueError", fetch=make("all", catch=Exception))

    @app.task(name="t00.unbound", shared=False)
    def unbound(self, url):  # bind=True forgotten
        try:
            return ex.flaky_download(url)
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0.5, max_retries=1)

    fails(ex.q3, "bind=True", fetch=unbound)
    # last: its retry, planned 3 s ahead, is still due when the check gives up
    fails(ex.q3, "planned 3 s later", fetch=make("late", countdown=3))
