"""Graded exercises: each check kind on a real in-process worker, with right and wrong answers.

The learner's "notebook" here is a dict of names (``check(namespace=...)``); the notebooks
themselves are tested in test_labs.py.
"""
from __future__ import annotations

import json
import re
import threading
import time

import pytest

import celerylab
from celerylab.exercises import l00_first_tasks as lab00
from celerylab.grading import (Attempts, DeadLetters, ExerciseError, ExerciseIncorrect, ExerciseNotAttempted,
                               PriorityOrder, RetriesOn, RoutesToQueue, TaskReturns, ____, call_with_deadline)


@pytest.fixture(scope="module")
def app():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CELERYLAB_BROKER_URL", raising=False)
        app = celerylab.create_app("grading-tests")
        yield app
        celerylab.cleanup()


def outcome_of(exercise, ns, timeout=None):
    """The one line a learner would see, and how the check ended."""
    if timeout is not None:
        exercise.timeout = timeout
    try:
        exercise.check(ns)
    except ExerciseError as exc:
        assert isinstance(exc, AssertionError)
        return exc.outcome, str(exc)
    return "correct", None


def no_grader_threads_left():
    names = [t.name for t in threading.enumerate()]
    return not any(n.startswith(("celerylab-grader", "celerylab-check-call")) for n in names), names


# -- lab 00: the solutions pass, with fixed output ---------------------------------------
@pytest.fixture(scope="module")
def solved(app):
    flaky_download = lab00.flaky_download

    @app.task(name="t.add")
    def add(x, y):
        print("a learner's debug print", x, y)  # must not change the check's output
        return x + y

    @app.task(name="t.make_report")
    def make_report(n):
        return f"report {n}"

    def send_report(n):
        return make_report.apply_async(args=[n], queue="reports")

    @app.task(name="t.fetch", bind=True)
    def fetch(self, url):
        try:
            return flaky_download(url)
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0.5, max_retries=1)

    return {"add": add, "make_report": make_report, "send_report": send_report, "fetch": fetch}


def test_solutions_pass_with_one_fixed_line_each(solved, capsys):
    for q in (lab00.q1, lab00.q2, lab00.q3):
        q.check(solved)
    assert capsys.readouterr().out.splitlines() == [
        "Correct: q1: add runs on a worker and returns the sum.",
        "Correct: q2: send_report sends make_report to the 'reports' queue, and a worker there runs it.",
        "Correct: q3: fetch retries once, half a second after a ConnectionError, and fails at once on other errors.",
    ]


def test_check_reads_the_callers_globals(solved, capsys):
    globals_before = dict(globals())
    globals().update(solved)
    try:
        lab00.q1.check()
    finally:
        globals().clear()
        globals().update(globals_before)
    assert capsys.readouterr().out == "Correct: q1: add runs on a worker and returns the sum.\n"


def test_hints_and_solution_are_fixed_text(capsys):
    lab00.q1.hint()
    lab00.q1.hint(2)
    lab00.q1.hint(5)
    lab00.q1.solution()
    out = capsys.readouterr().out
    assert out.startswith("Hint 1 of 2 for q1 (more: q1.hint(2)):\nA task is a function")
    assert "Hint 2 of 2 for q1:\n" in out
    assert "q1 has hints 1 to 2: try q1.hint(2).\n" in out
    assert "Solution for q1:\n@app.task\ndef add(x, y):\n    return x + y\n" in out


def test_an_exercise_error_renders_as_one_line_in_a_notebook():
    exc = ExerciseIncorrect("add(2, 3) returned 6 (an int)", label="q1")
    assert isinstance(exc, AssertionError)
    assert exc._render_traceback_() == ["\x1b[0;31mExerciseIncorrect\x1b[0m: q1: add(2, 3) returned 6 (an int)"]


# -- q1: a task's value, type, failure, hang ----------------------------------------------
def test_q1_wrong_answers_get_their_message(app):
    @app.task(name="t.add_sub")
    def add_sub(x, y):
        return x - y

    @app.task(name="t.add_str")
    def add_str(x, y):
        return f"{x}{y}"

    @app.task(name="t.add_raises")
    def add_raises(x, y):
        return x + None

    @app.task(name="t.add_nie")
    def add_nie(x, y):
        raise NotImplementedError()

    @app.task(name="t.add_set")
    def add_set(x, y):
        return {x, y}

    def plain(x, y):
        return x + y

    q1 = lab00.AddTask("q1")
    cases = [
        ({"add": add_sub}, ("incorrect", "q1: add(2, 3) returned -1 (an int), which is not the sum of its arguments")),
        ({"add": add_str}, ("incorrect", "q1: add(2, 3) returned '23' (a str); an int or a float was expected")),
        ({"add": add_raises}, ("incorrect", "q1: add(2, 3) raised TypeError: unsupported operand type(s) for +: "
                                            "'int' and 'NoneType' on the worker")),
        ({"add": add_set}, ("incorrect", "q1: add(2, 3) returned a value the worker cannot send back as JSON "
                                         "(TypeError: Object of type set is not JSON serializable)")),
        ({"add": plain}, ("incorrect", "q1: `add` is a plain function, not a Celery task: decorate it with @app.task")),
        ({"add": add_nie}, ("not attempted", "q1: `add` still raises NotImplementedError: write your code there")),
        ({"add": ____}, ("not attempted", "q1: `add` is still ____: replace the blank with your answer")),
        ({}, ("not attempted", "q1: `add` is not defined yet: write it in the cell above and run that cell")),
    ]
    for ns, expected in cases:
        assert outcome_of(q1, ns) == expected


def test_q1_an_endless_loop_is_stopped_and_the_process_carries_on(app):
    @app.task(name="t.add_loop")
    def add_loop(x, y):
        while True:
            pass

    started = time.monotonic()
    assert outcome_of(lab00.AddTask("q1"), {"add": add_loop}, timeout=1.5) == (
        "incorrect", "q1: add(2, 3) was still running on the worker after 1.5 s: look for an endless loop or a long sleep")
    assert time.monotonic() - started < 6
    ok, names = no_grader_threads_left()
    assert ok, names


def test_a_task_blocked_in_c_is_left_behind_with_a_clear_message(app):
    @app.task(name="t.add_sleep")
    def add_sleep(x, y):
        time.sleep(2)
        return x + y

    q1 = lab00.AddTask("q1")
    q1.stop_timeout = 0.3
    status, message = outcome_of(q1, {"add": add_sleep}, timeout=0.5)
    assert status == "incorrect"
    assert message.endswith("was still running on the worker after 0.5 s: look for an endless loop or a long sleep "
                            "(it is still running in this kernel: restart the kernel to stop it)")
    assert "grader" not in " ".join(celerylab.where()["running"])  # out of cleanup(): exit won't wait for it
    deadline = time.monotonic() + 10  # the sleep ends, then that worker stops by itself
    while not no_grader_threads_left()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert no_grader_threads_left()[0]


def test_a_task_that_runs_eagerly_is_not_on_a_worker(app):
    eager = celerylab.create_app("grading-tests-eager", task_always_eager=True)
    app.set_current()

    @eager.task(name="t.add_eager")
    def add(x, y):
        return x + y

    assert outcome_of(lab00.AddTask("q1"), {"add": add}) == (
        "incorrect", "q1: add.delay(2, 3) ran the task here in the notebook (eagerly), not on a worker: "
                     "is task_always_eager on?")


# -- q2: the queue a message went to -------------------------------------------------------
def test_q2_wrong_answers_get_their_message(app, solved):
    make_report = solved["make_report"]

    def with_delay(n):
        return make_report.delay(n)

    def typo(n):
        return make_report.apply_async(args=[n], queue="report")

    def direct(n):
        return make_report(n)

    def no_return(n):
        make_report.apply_async(args=[n], queue="reports")

    def not_written(n):
        raise NotImplementedError()

    q2 = lab00.SendToReports("q2")
    cases = [
        (with_delay, ("incorrect", "q2: send_report(7) sent make_report to the queue 'celery', not to 'reports'")),
        (typo, ("incorrect", "q2: send_report(7) sent make_report to the queue 'report', not to 'reports'")),
        (direct, ("incorrect", "q2: send_report(7) returned 'report 7' (a str), not an AsyncResult: a task called "
                               "like a function runs here in the notebook; delay() or apply_async() sends it")),
        (no_return, ("incorrect", "q2: send_report(7) returned None: return the AsyncResult you get when you send "
                                  "the task")),
        (not_written, ("not attempted", "q2: `send_report` still raises NotImplementedError: write your code there")),
    ]
    for sender, expected in cases:
        assert outcome_of(q2, {"send_report": sender, "make_report": make_report}) == expected


def test_q2_a_sender_that_never_returns_is_abandoned(solved):
    def spin(n):
        while True:
            pass

    assert outcome_of(lab00.SendToReports("q2"), {"send_report": spin, "make_report": solved["make_report"]},
                      timeout=1) == (
        "incorrect", "q2: send_report(7) did not return within 1 s: look for an endless loop or a call that waits")
    ok, names = no_grader_threads_left()
    assert ok, names


# -- q3: retries counted and spaced --------------------------------------------------------
def test_q3_wrong_retry_behaviour_gets_its_message(app):
    download = lab00.flaky_download

    @app.task(name="t.fetch_no_retry", bind=True)
    def no_retry(self, url):
        return download(url)

    @app.task(name="t.fetch_default_delay", bind=True)
    def default_delay(self, url):
        try:
            return download(url)
        except ConnectionError as exc:
            raise self.retry(exc=exc, max_retries=1)

    @app.task(name="t.fetch_three", bind=True)
    def three_retries(self, url):
        try:
            return download(url)
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0.5)

    @app.task(name="t.fetch_everything", bind=True)
    def everything(self, url):
        try:
            return download(url)
        except Exception as exc:
            raise self.retry(exc=exc, countdown=0.5, max_retries=1)

    @app.task(name="t.fetch_no_exc", bind=True)
    def no_exc(self, url):
        try:
            return download(url)
        except ConnectionError:
            raise self.retry(countdown=0.5, max_retries=1)

    @app.task(name="t.fetch_at_once", bind=True)
    def at_once(self, url):
        try:
            return download(url)
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0, max_retries=1)

    flaky, down = "fetch('https://example.com/flaky')", "fetch('https://example.com/down')"
    cases = [
        (no_retry, f"q3: {flaky} raised ConnectionError and was never retried (a server that fails once)"),
        (default_delay, f"q3: {flaky} failed and its retry was planned 180 s later; retry after about 0.5 s"),
        (three_retries, f"q3: {down} was retried 3 times (a server that stays down); it should be retried 1 time"),
        (everything, "q3: fetch('example.com') was retried 1 time after ValueError (not a URL): "
                     "it should fail at once, without a retry"),
        (no_exc, f"q3: {down} ended with MaxRetriesExceededError (a server that stays down); "
                 f"after its last retry it should fail with the original ConnectionError"),
    ]
    for task, expected in cases:
        assert outcome_of(lab00.RetryOnce("q3"), {"fetch": task}) == ("incorrect", expected)
    status, message = outcome_of(lab00.RetryOnce("q3"), {"fetch": at_once})
    assert status == "incorrect"
    # whichever call the busy machine retried first (both are retried at once, planned 0.0 s later)
    assert re.fullmatch(rf"q3: ({re.escape(flaky)}|{re.escape(down)}) was retried 0\.0 s after it failed; "
                        rf"wait about 0\.5 s before the retry", message), message


# -- the other reusable kinds: priority order, dead letters --------------------------------
class JobsByPriority(PriorityOrder):
    sender = "send_jobs"
    expected = ["urgent", "normal", "low"]
    wrong_order = "on Redis, priority 0 runs first"


def test_priority_order_is_observed_on_one_worker_slot(app):
    @app.task(name="t.job")
    def job(name):
        return name

    def by_priority():
        return [job.apply_async(args=[n], priority=p, queue="jobs") for n, p in (("low", 9), ("normal", 5), ("urgent", 0))]

    def fifo():
        return [job.apply_async(args=[n], queue="jobs") for n in ("low", "normal", "urgent")]

    q = JobsByPriority("q4")
    assert outcome_of(q, {"send_jobs": by_priority}) == ("correct", None)
    assert outcome_of(q, {"send_jobs": fifo}) == (
        "incorrect", "q4: one worker ran them in the order ['low', 'normal', 'urgent']: on Redis, priority 0 runs first")
    assert outcome_of(q, {"send_jobs": lambda: [job(n) for n in ("urgent", "normal", "low")]}) == (
        "incorrect", "q4: send_jobs() sent no task messages")


class ChargeDeadLetters(DeadLetters):
    task = "charge"
    calls = [((10,), False), ((-5,), True), ((-7,), True)]
    list_key = "dead_letters"


def test_dead_letters_land_in_the_list_only_for_failures(app):
    import redis

    client = redis.Redis.from_url(app.conf.broker_url)

    class DeadLettering(app.Task):
        def on_failure(self, exc, task_id, args, kwargs, einfo):
            client.rpush("dead_letters", json.dumps({"task_id": task_id, "args": args, "error": repr(exc)}))

    @app.task(name="t.charge_dlq", base=DeadLettering)
    def charge(amount):
        if amount < 0:
            raise ValueError("negative amount")
        return amount

    @app.task(name="t.charge_plain")
    def plain(amount):
        if amount < 0:
            raise ValueError("negative amount")
        return amount

    q = ChargeDeadLetters("q5")
    assert outcome_of(q, {"charge": charge}) == ("correct", None)
    assert outcome_of(q, {"charge": plain}) == (
        "incorrect", "q5: nothing landed in the dead-letter list 'dead_letters' after 2 tasks failed")


def test_call_with_deadline_reports_value_error_and_timeout():
    assert call_with_deadline(lambda: 5, timeout=1).value == 5
    assert isinstance(call_with_deadline(lambda: 1 / 0, timeout=1).error, ZeroDivisionError)

    def spin():
        while True:
            pass

    got = call_with_deadline(spin, timeout=0.2)
    assert got.timed_out
    assert not any(t.name == "celerylab-check-call" for t in threading.enumerate())


def test_kinds_are_configured_by_class_attributes():
    assert issubclass(lab00.AddTask, TaskReturns)
    assert issubclass(lab00.SendToReports, RoutesToQueue)
    assert issubclass(lab00.RetryOnce, RetriesOn)
    assert all(isinstance(s, Attempts) for s in lab00.RetryOnce.scenarios)
    assert [lab00.q1.label, lab00.q2.label, lab00.q3.label] == ["q1", "q2", "q3"]
    assert ExerciseNotAttempted("x").outcome == "not attempted"


@pytest.mark.timeout(90)  # the failure this guards against is a worker that never stops
def test_abandoning_never_lands_outside_a_task_body(app):
    """Abandon every attempt as fast as possible while short tasks run: only bodies are hit.

    An exception landing in Celery's bookkeeping around a task (storing its result, the pool's
    queue) would lose results or leave a lock held and the worker unable to stop.
    """
    from celerylab.grading import probe

    @app.task(name="t.short_body")
    def short_body(i):
        total = 0
        for n in range(200_000 if i % 3 == 0 else 2000):  # some bodies long enough to be hit
            total += n
        return i

    probe.guard_task_body(short_body)
    probe.guard_task_body(short_body)  # idempotent: one wrapper
    assert short_body.run.__celerylab_unguarded__.__name__ == "short_body"
    hits = []
    with probe.Recorder() as rec, celerylab.run_worker(app, concurrency=2, hostname="abandon-race@t") as worker:
        results = [short_body.delay(i) for i in range(150)]
        deadline = time.monotonic() + 20
        while not all(rec.final(r.id) or r.id in hits for r in results) and time.monotonic() < deadline:
            for event in rec.running():
                if probe.abandon_task(event.task_id):
                    hits.append(event.task_id)
        stop_started = time.monotonic()
    assert time.monotonic() - stop_started < 5
    assert probe._in_body == {}
    assert not probe.abandon_task(results[0].id)  # finished: nothing to abandon
    # every attempt that was not abandoned ran to the end and stored its result
    assert [r.get(timeout=5) for r in results if r.id not in hits] == [
        i for i, r in enumerate(results) if r.id not in hits]
    assert hits, "no body was hit: the race was not exercised"
    assert worker.hostname == "abandon-race@t"
    ok, names = no_grader_threads_left()
    assert ok, names


# -- tampering: every route that turned a blank answer green is closed ----------------------
from celerylab.grading import integrity  # noqa: E402
from celerylab.grading import kinds as kinds_module  # noqa: E402
from celerylab.grading import probe as probe_module  # noqa: E402
from celerylab.grading.exercise import Exercise  # noqa: E402

LAB00 = "celerylab.exercises.l00_first_tasks"


def graded(label, ns):
    """What a graded check cell does, run from a fresh copy of integrity.py like the cell does."""
    path = integrity.__file__
    g = {"__name__": "celerylab_graded_check", "__file__": path}
    exec(compile(open(path).read(), path, "exec"), g)
    try:
        g["graded_check"](LAB00, label, ns)
    except AssertionError as exc:
        return type(exc).__name__, str(exc)
    return "correct", None


class _Fake:
    label = "q1"

    def check(self, namespace=None):
        print("Correct: q1: add runs on a worker and returns the sum.")


def _fake_check(self, namespace=None):
    print(f"Correct: {self.label}: {self.correct}")


def _route_exercise_check(mp):
    mp.setattr(lab00.q1, "check", lambda namespace=None: None, raising=False)


def _route_class_check(mp):
    mp.setattr(lab00.AddTask, "_check", lambda self, ns: None, raising=False)


def _route_kind_check(mp):
    mp.setattr(kinds_module.TaskReturns, "_check", lambda self, ns: None)


def _route_module_q(mp):
    mp.setattr(lab00, "q1", _Fake())


def _route_base_check(mp):
    mp.setattr(Exercise, "check", _fake_check)


def _route_base_check_by_another_method(mp):
    mp.setattr(Exercise, "check", Exercise.hint)


def _route_cases(mp):
    mp.setattr(lab00.AddTask, "cases", [((1, 1), 2)], raising=False)


def _route_sys_modules(mp):
    import sys
    import types

    fake = types.ModuleType(LAB00)
    fake.__file__ = lab00.__file__
    fake.q1 = _Fake()
    mp.setitem(sys.modules, LAB00, fake)


def _route_probe(mp):
    mp.setattr(probe_module.Trial, "run", lambda self, *a, **k: {})


def _route_class_swap(mp):
    mp.setattr(lab00.q1, "__class__", lab00.SendToReports)


def _route_outcomes(mp):
    from celerylab.grading import outcomes

    mp.setattr(outcomes.ExerciseNotAttempted, "__init__", lambda self, *a, **k: None)


ROUTES = [_route_exercise_check, _route_class_check, _route_kind_check, _route_module_q, _route_base_check,
          _route_base_check_by_another_method, _route_cases, _route_sys_modules, _route_probe, _route_class_swap,
          _route_outcomes]


@pytest.mark.parametrize("route", ROUTES, ids=[r.__name__[7:] for r in ROUTES])
def test_every_tampering_route_fails_a_blank_answer_with_one_message(route):
    blank = {"add": ____}
    assert graded("q1", blank) == ("ExerciseNotAttempted", "q1: `add` is still ____: replace the blank with your answer")
    with pytest.MonkeyPatch.context() as mp:
        route(mp)
        status, message = graded("q1", blank)
    assert status == "GraderChanged", message
    assert message.startswith("q1: a cell in this notebook changes the grader: ") and "restart the kernel" in message
    assert graded("q1", blank)[0] == "ExerciseNotAttempted"  # undone: the kit is itself again


def test_the_grader_in_this_process_is_the_kits_for_every_lab():
    import importlib

    for path in sorted((integrity.PACKAGE_DIR / "exercises").glob("l[0-9][0-9]_*.py")):
        name = f"celerylab.exercises.{path.stem}"
        importlib.import_module(name)
        assert integrity.problems(name) == [], name


def test_a_graded_check_still_passes_a_right_answer(solved, capsys):
    assert graded("q1", solved) == ("correct", None)
    assert capsys.readouterr().out == "Correct: q1: add runs on a worker and returns the sum.\n"


@pytest.mark.parametrize("source,reason", [
    ("q1.check = lambda: print('Correct')", "it assigns to `q1.check`"),
    ("Exercise.check = lambda self: None", "it assigns to `Exercise.check`"),
    ("from celerylab.grading.exercise import Exercise\nExercise.check = Exercise.hint", "it assigns to `Exercise.check`"),
    ("import celerylab.exercises.l00_first_tasks as m\nm.q1 = None", "it assigns to `m.q1`"),
    ("import celerylab\ncelerylab.grading.kinds.TaskReturns._check = print", "it assigns to `celerylab.grading"),
    ("setattr(q1, 'check', print)", "it patches the kit"),
    ("setattr(type(q2), '_check', print)", "it patches the kit"),
    ("import sys\nsys.modules['celerylab.exercises.l00_first_tasks'] = object()", "it edits sys.modules"),
    ("import sys\nsys.modules.pop('celerylab.grading')", "it edits sys.modules"),
    ("del q1.check", "it deletes `q1.check`"),
    ("q1.__class__._check = None", "it assigns to `q1.__class__._check`"),
    ("vars(q1)['check'] = print", "part of the kit"),
    ("q3.__dict__.update(check=print)", "it changes the kit"),
    ("from unittest import mock\nmock.patch.object(q1, 'check').start()", "it patches the kit"),
    ("from unittest import mock\nmock.patch('celerylab.grading.exercise.Exercise.check').start()", "it patches the kit"),
    ("from unittest import mock\nmock.patch('celerylab.exercises.l11_testing.q1').start()", "it patches the kit"),
    ("from unittest import mock\nmock.patch('celerylab.lessonsX.q1').start()", "it patches the kit"),
    ("import builtins\nbuiltins.exec = print", "it replaces a built-in the grader uses"),
    ("def exec(*args):\n    print('Correct')", "it rebinds `exec`"),
    ("open = lambda *a: None", "it rebinds `open`"),
    ("if True:\n    globals = dict", "it rebinds `globals`"),
    ("from os import open", "it rebinds `open`"),
])
def test_a_cell_that_changes_the_grader_is_named_before_it_runs(source, reason):
    found = integrity.changes_to_grader(source, {"q1", "q2", "q3", "Exercise"})
    assert found is not None and reason in found, found


@pytest.mark.parametrize("source", [
    "@app.task(bind=True)\ndef fetch(self, url):\n    self.request.x = 1\n    return url",
    "app.conf.task_routes = {'a': {'queue': 'b'}}\napp.conf.update(task_acks_late=True)",
    "results = {}\nresults['q1'] = 5\nq1 = 3",
    "import celerylab\nworker = celerylab.run_worker(app)\nsettings = {'task_acks_late': True}",
    "%timeit add(1, 2)\nq1.hint()\nq1.solution()",
    "def send(n):\n    return make_report.apply_async(args=[n], queue='reports')",
    "this is not python (",
    "def save(path):\n    open = path.open\n    with open('w') as f:\n        f.write('x')",
    "results = [compile for compile in range(3)]",
    # lab 11: a learner's test mocks the external call of a lesson's task module (not the grader)
    "from unittest import mock\nwith mock.patch('celerylab.lessons.l11_testing.rates_api') as api:\n    pass",
])
def test_ordinary_answer_cells_are_not_flagged(source):
    assert integrity.changes_to_grader(source, {"q1", "q2", "q3", "flaky_download"}) is None


# -- one wording per situation, for every lab ------------------------------------------------
class Doubles(TaskReturns):
    task = "double"
    cases = [((2,), 4)]
    timeout = 4.0


def test_a_retry_planned_past_the_wait_says_so_and_the_wait_ends_early(app):
    @app.task(name="t.double_later", bind=True)
    def double(self, x):
        raise self.retry(countdown=100, max_retries=1)

    started = time.monotonic()
    assert outcome_of(Doubles("q1"), {"double": double}) == (
        "incorrect", "q1: double(2) failed and its retry was planned 100 s later; the check waited 4 s")
    assert time.monotonic() - started < 3.5  # no need to wait out the 4 s


def test_a_task_retried_without_end_is_still_being_retried_not_an_endless_loop(app):
    @app.task(name="t.double_forever", bind=True, max_retries=None)
    def double(self, x):
        raise self.retry(countdown=0.1)

    status, message = outcome_of(Doubles("q1"), {"double": double}, timeout=1.5)
    assert status == "incorrect"
    assert re.fullmatch(r"q1: double\(2\) was still being retried after 1\.5 s \(\d+ retries so far\): "
                        r"give it a max_retries", message), message


def test_a_task_that_returned_is_never_reported_as_raising(app):
    download = lab00.flaky_download

    @app.task(name="t.fetch_swallows", bind=True)
    def fetch(self, url):
        try:
            return download(url)
        except ConnectionError:
            return "offline"

    status, message = outcome_of(lab00.RetryOnce("q3"), {"fetch": fetch})
    assert status == "incorrect" and "NoneType" not in message
    assert message == ("q3: fetch('https://example.com/flaky') returned 'offline' (a str) without a retry "
                       "(a server that fails once); it should be retried 1 time")


def test_a_missing_bind_true_gets_the_hint_wherever_it_is_described():
    from celerylab.grading.outcomes import describe_exc

    try:
        self  # noqa: F821 - what a task without bind=True does
    except NameError as exc:
        assert describe_exc(exc) == ("NameError: name 'self' is not defined "
                                     "(use @app.task(bind=True) to get self)")
    assert describe_exc(None) == "no exception"


def test_a_worker_that_cannot_start_is_one_line_in_any_check(capsys):
    from celerylab.errors import WorkerStartError
    from celerylab.grading import Exercise

    class StartsAWorker(Exercise):
        def _check(self, ns):
            raise WorkerStartError("worker w1@host exited with status 1; log: /tmp/w1.log\n"
                                   "Traceback (most recent call last):\n  File \"celery/concurrency/__init__.py\"\n"
                                   "    import eventlet\nModuleNotFoundError: No module named 'eventlet'")

    assert outcome_of(StartsAWorker("q3"), {}) == (
        "incorrect", "q3: a worker with these settings could not start (ModuleNotFoundError: No module named "
                     "'eventlet'): that pool's package is not installed here; choose another pool")
