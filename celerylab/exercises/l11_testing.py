"""Exercises for labs/11_testing.ipynb: the learner writes tests; the check tests the tests.

In the lab::

    from celerylab.exercises.l11_testing import *   # q1..q4 and ____
    from celerylab.lessons import l11_testing as given  # the tasks' bodies and rates_api
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

Each exercise names a task (its body is in :mod:`celerylab.lessons.l11_testing`) and asks for a
test function ``test_...(<task name>)``. The check builds the task twice on an app of its own,
once from the right body and once from each subtly broken twin (same task name), and calls the
learner's test with each, as pytest would call it with a fixture. It passes when the test passes
on the right task and fails on every broken one. Where the exercise asks for it (q1, q3), the
check also requires that the test ran the task on the real worker the check started, and q4
starts no worker at all: the test must start its own.
"""
from __future__ import annotations

import gc
import inspect
import threading
import uuid
from dataclasses import dataclass

import celerylab
from celerylab.grading.exercise import Exercise, bind
from celerylab.grading.outcomes import ExerciseIncorrect, ExerciseNotAttempted, ____, describe_exc  # noqa: F401
from celerylab.i18n import N_, _
from celerylab.lessons import l11_testing as given

#: seconds a learner's test may run, per task it is given
TEST_TIMEOUT = 10.0

# -- the one wording per situation (English templates, shown with _(TEMPLATE, field=...)) ---------
NOT_A_FUNCTION = N_("`{name}` is {what}: it should be a test function, `def {name}({params}):`")
BAD_PARAMETER = N_("`{name}` asks for `{param}`, which the check cannot give: it gives {offered} "
                   "(as pytest gives fixtures)")
FAILED_ON_RIGHT = N_("`{name}` failed on the correct {task}: {exc}; a test must pass when the code is right")
#: the same, with the exercise's advice for that failure (a :meth:`TestsATask.failure_hint`)
FAILED_ON_RIGHT_ADVICE = N_("`{name}` failed on the correct {task}: {exc} ({advice}); a test must pass when "
                            "the code is right")
PASSED_ON_BROKEN = N_("`{name}` passed on a broken {task} ({about}): your test does not catch that")
#: the test timed out: on the correct task / on a broken one; with the exercise's ``slow_hint`` or without
TOO_SLOW = {
    ("correct", False): N_("`{name}` did not finish within {timeout:g} s on the correct {task}: give every "
                           ".get() a timeout"),
    ("broken", False): N_("`{name}` did not finish within {timeout:g} s on the broken {task}: give every "
                          ".get() a timeout"),
    ("correct", True): N_("`{name}` did not finish within {timeout:g} s on the correct {task}: give every "
                          ".get() a timeout; {advice}"),
    ("broken", True): N_("`{name}` did not finish within {timeout:g} s on the broken {task}: give every "
                         ".get() a timeout; {advice}"),
}
NOT_ON_A_WORKER = N_("`{name}` passed, but never ran {task} on a worker (it ran {how}): send it with "
                     ".delay() and wait with .get(timeout=...), as production does")
#: how the learner's test ran the task (:func:`_how`), shown in NOT_ON_A_WORKER
HOW = {"directly": N_("directly"), "eagerly": N_("eagerly"), "on a worker": N_("on a worker"),
       "not at all": N_("not at all")}


def _how(request) -> str:
    if request.called_directly:
        return "directly"
    if request.is_eager:
        return "eagerly"
    return "on a worker"


@dataclass(frozen=True)
class Twin:
    """One implementation of the task under test: the right one (``about=""``) or a broken one
    (``about``: how it is broken, marked with N_ and shown translated)."""

    fn: object
    about: str = ""


class TestsATask(Exercise):
    """The learner's ``test_fn(<task>)`` must pass on ``right`` and fail on every ``broken`` twin."""

    test_name = "test_x"
    task_name = "x"
    bound = False            #: the task's body takes ``self`` (bind=True)
    right: Twin
    broken: tuple = ()
    worker = True            #: the check runs an in-kernel worker for the task's queue
    needs_worker_run = False  #: the test must run the task on that worker
    slow_hint = ""           #: advice after a timeout (marked with N_, shown translated)
    app_conf: dict = {}      #: extra settings of the check's app

    def make_task(self, app, twin: Twin, runs: list):
        fn, bound = twin.fn, self.bound

        def body(self, *args, **kwargs):
            runs.append(_how(self.request))
            return fn(self, *args, **kwargs) if bound else fn(*args, **kwargs)

        body.__name__ = body.__qualname__ = self.task_name
        body.__doc__ = self.right.fn.__doc__  # the same for every twin: nothing tells them apart but behaviour
        # every twin has a name of its own (a random tail, so the name does not tell which is which)
        name = f"lab11.{self.task_name}.{uuid.uuid4().hex[:8]}"
        return app.task(bind=True, name=name, shared=False)(body)

    def _check(self, ns):
        test = self.value_named(ns, self.test_name)
        if not callable(test):
            from celerylab.grading.outcomes import describe

            raise ExerciseIncorrect(_(NOT_A_FUNCTION, name=self.test_name, what=describe(test),
                                      params=", ".join(self.offered())))
        params = list(inspect.signature(test).parameters)
        for param in params:
            if param not in self.offered():
                offered = self.offered()
                if len(offered) == 2:
                    offered_text = _("`{first}` and `{second}`", first=offered[0], second=offered[1])
                else:
                    offered_text = " and ".join(f"`{p}`" for p in offered)
                raise ExerciseIncorrect(_(BAD_PARAMETER, name=self.test_name, param=param, offered=offered_text))
        run = uuid.uuid4().hex[:8]
        # an app and a queue of the check's own: no other worker takes its messages
        queue = f"lab11-{self.label}-{run}"
        app = celerylab.create_app(f"lab11_{self.label}", task_default_queue=queue, **self.app_conf)
        twins = (self.right, *self.broken)
        runs: list[list] = [[] for _ in twins]
        tasks = [self.make_task(app, twin, found) for twin, found in zip(twins, runs)]
        try:
            if self.worker:
                with celerylab.run_worker(app, pool="threads", concurrency=2, queues=[queue],
                                          hostname=f"lab11-{self.label}-{run}@%h"):
                    self.judge_all(test, params, app, twins, tasks)
            else:
                self.judge_all(test, params, app, twins, tasks)
        finally:
            # plumbing: drop the results the tests left now, while their broker still runs
            # (a result's __del__ unsubscribes from the backend, wherever the collector runs it)
            gc.collect()
            app.close()
        right_runs = runs[0]
        # judged last: a test that catches nothing is told that first
        if self.needs_worker_run and "on a worker" not in right_runs:
            ways = sorted(set(right_runs))
            if len(ways) == 2:
                how = _("{first} and {second}", first=_(HOW[ways[0]]), second=_(HOW[ways[1]]))
            else:
                how = _(HOW[ways[0]]) if ways else _(HOW["not at all"])
            raise ExerciseIncorrect(_(NOT_ON_A_WORKER, name=self.test_name, task=self.task_name, how=how))

    def judge_all(self, test, params, app, twins, tasks) -> None:
        for twin, task in zip(twins, tasks):
            offered = {"app": app, self.task_name: task}
            self.before_test()
            self.judge(twin, self.run_test(test, {p: offered[p] for p in params}))

    def offered(self) -> list[str]:
        return [self.task_name, "app"]

    def before_test(self) -> None:
        pass

    def run_test(self, test, kwargs):
        """``("passed", None)``, ``("failed", exc)`` or ``("timeout", None)``."""
        box: dict = {}

        def target():
            try:
                test(**kwargs)
                box["outcome"] = ("passed", None)
            except BaseException as exc:  # noqa: BLE001 - a failing test, whatever it raised
                box["outcome"] = ("failed", exc)

        thread = threading.Thread(target=target, name=f"lab11-{self.test_name}", daemon=True)
        thread.start()
        thread.join(TEST_TIMEOUT)
        return box.get("outcome", ("timeout", None))

    def judge(self, twin: Twin, outcome) -> None:
        status, exc = outcome
        which = "broken" if twin.about else "correct"
        if status == "failed" and isinstance(exc, NotImplementedError):
            raise ExerciseNotAttempted(_("`{name}` still raises NotImplementedError: write your code there",
                                         name=self.test_name))
        if status == "timeout":
            template = TOO_SLOW[which, bool(self.slow_hint)]
            raise ExerciseIncorrect(_(template, name=self.test_name, timeout=TEST_TIMEOUT, task=self.task_name,
                                      advice=_(self.slow_hint) if self.slow_hint else ""))
        if not twin.about:
            if status == "failed":
                advice = self.failure_hint(exc)
                if advice:
                    raise ExerciseIncorrect(_(FAILED_ON_RIGHT_ADVICE, name=self.test_name, task=self.task_name,
                                              exc=describe_exc(exc), advice=_(advice)))
                raise ExerciseIncorrect(_(FAILED_ON_RIGHT, name=self.test_name, task=self.task_name,
                                          exc=describe_exc(exc)))
        elif status == "passed":
            raise ExerciseIncorrect(_(PASSED_ON_BROKEN, name=self.test_name, task=self.task_name,
                                      about=_(twin.about)))

    def failure_hint(self, exc) -> str:
        """Advice for the test's failure ``exc`` on the correct task ("" for none; marked with N_,
        shown translated in parentheses after the error)."""
        return ""


class UniqueTagsOnAWorker(TestsATask):
    test_name = "test_unique_tags"
    task_name = "unique_tags"
    right = Twin(given.unique_tags)
    broken = (Twin(given.unique_tags_broken, N_("it returns the tags as a set")),)
    needs_worker_run = True
    correct = N_("test_unique_tags runs unique_tags on a worker and catches a result JSON cannot carry.")
    hints = (
        N_("Send the task with `unique_tags.delay([...])` and read the value the caller really gets with "
           "`.get(timeout=5)`: on a worker the result travels as JSON."),
        N_("`assert unique_tags.delay([\" B\", \"a\", \"b\"]).get(timeout=5) == [\"a\", \"b\"]`"),
    )
    solution_text = """
        def test_unique_tags(unique_tags):
            result = unique_tags.delay([" B", "a", "b"])
            assert result.get(timeout=5) == ["a", "b"]
    """


class FetchRateRetries(TestsATask):
    test_name = "test_fetch_rate_retries"
    task_name = "fetch_rate"
    bound = True
    worker = False
    right = Twin(given.fetch_rate)
    broken = (Twin(given.fetch_rate_no_exc, N_("it ends with MaxRetriesExceededError, not the ConnectionError")),
              Twin(given.fetch_rate_five, N_("it retries 5 times, not 3")))
    slow_hint = N_("no worker runs in this check, and on one each retry waits 30 s: run the task eagerly with "
                   "fetch_rate.apply(...) and mock rates_api")
    correct = N_("test_fetch_rate_retries checks the number of calls and the final error, "
                 "without waiting for the countdown.")
    hints = (
        N_("Replace the service, not Celery: `with mock.patch.object(given, \"rates_api\", "
           "side_effect=ConnectionError(\"down\")) as api:`. Then `fetch_rate.apply((\"EUR\",))` runs the task "
           "and its retries in this thread, at once (eager retries ignore the countdown)."),
        N_("Check both things the task promises: `api.call_count == 4` (1 run + 3 retries) and "
           "`with pytest.raises(ConnectionError): result.get()`."),
    )
    solution_text = """
        def test_fetch_rate_retries(fetch_rate):
            with mock.patch.object(given, "rates_api", side_effect=ConnectionError("down")) as api:
                result = fetch_rate.apply(("EUR",))
            assert api.call_count == 4
            with pytest.raises(ConnectionError):
                result.get()
    """

    def failure_hint(self, exc) -> str:
        from celery.exceptions import TimeoutError as CeleryTimeout

        if isinstance(exc, CeleryTimeout):
            return N_("no worker runs in this check: run the task eagerly with fetch_rate.apply(...)")
        return ""


class ParseOrderFails(TestsATask):
    test_name = "test_parse_order_missing_qty"
    task_name = "parse_order"
    right = Twin(given.parse_order)
    broken = (Twin(given.parse_order_default_qty, N_("a missing qty becomes 1 and the task succeeds")),
              Twin(given.parse_order_key_error, N_("a missing field raises KeyError, not ValueError")))
    needs_worker_run = True
    correct = N_("test_parse_order_missing_qty sees the task fail on a worker with ValueError.")
    hints = (
        N_("The failure path: send `parse_order.delay({\"sku\": \"A-1\"})` and expect `.get(timeout=5)` to raise "
           "the task's exception (the result backend sends its type back to the caller)."),
        N_("`with pytest.raises(ValueError): parse_order.delay({\"sku\": \"A-1\"}).get(timeout=5)`: "
           "`pytest.raises(Exception)` would also accept a KeyError."),
    )
    solution_text = """
        def test_parse_order_missing_qty(parse_order):
            result = parse_order.delay({"sku": "A-1"})
            with pytest.raises(ValueError, match="qty"):
                result.get(timeout=5)
            assert result.state == "FAILURE"
    """


class NormalizeEmailOwnWorker(TestsATask):
    test_name = "test_normalize_email"
    task_name = "normalize_email"
    worker = False
    # no AMQP heartbeats for the test's in-thread worker, as Celery's own test app does
    # (broker_heartbeat=0 in celery.contrib.testing.app.DEFAULT_TEST_CONFIG)
    app_conf = {"broker_heartbeat": 0}
    right = Twin(given.normalize_email)
    broken = (Twin(given.normalize_email_broken, N_("it keeps the spaces")),)
    needs_worker_run = True
    correct = N_("test_normalize_email starts its own worker with start_worker and checks the result.")
    hints = (
        N_("No worker runs for `app` in this check: start one inside the test with "
           "`with start_worker(app, perform_ping_check=False):` (from celery.contrib.testing.worker), "
           "then send the task and `.get(timeout=5)` its result."),
        N_("Use an address with spaces and capitals, e.g. `\"  Ann@Example.ORG \"`, and compare with "
           "`\"ann@example.org\"`."),
    )
    solution_text = """
        def test_normalize_email(app, normalize_email):
            with start_worker(app, perform_ping_check=False):
                result = normalize_email.delay("  Ann@Example.ORG ")
                assert result.get(timeout=5) == "ann@example.org"
    """

    def offered(self) -> list[str]:
        return ["app", self.task_name]

    def before_test(self) -> None:
        # plumbing: an in-kernel worker stopped earlier leaves its event loop in kombu's process-wide
        # slot; empty it so the worker the test starts builds its own (as in a fresh process)
        from kombu.asynchronous import set_event_loop

        set_event_loop(None)

    def failure_hint(self, exc) -> str:
        from celery.exceptions import TimeoutError as CeleryTimeout

        if isinstance(exc, CeleryTimeout):
            return N_("no worker runs for app here: start one in the test with start_worker(app, ...)")
        return ""


# `given` is not exported: the lab imports it from celerylab.lessons itself, so patching it is the
# learner's own business (the grader refuses cells that patch the grading kit)
__all__ = ["q1", "q2", "q3", "q4", "____", "TEST_TIMEOUT"]
bind(globals(), UniqueTagsOnAWorker, FetchRateRetries, ParseOrderFails, NormalizeEmailOwnWorker)
