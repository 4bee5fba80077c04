"""Exercises for labs/07_monitoring.ipynb: an alert rule, a queue's real length, a JSON log line.

In the lab::

    from celerylab.exercises.l07_monitoring import *   # q1, q2, q3, ____, Rule, History, simulate
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

* q1 replays metric histories into the learner's alert rule, the way ``promtool test rules``
  tests Prometheus rules: the rule must fire on the failure pattern, and only on it.
* q2 puts messages with every priority on a real Redis list set and compares the learner's
  count with what is really there (and checks nothing was taken off).
* q3 runs a task on a real worker that logs through the learner's formatter and parses the line.
"""
from __future__ import annotations

import io
import json
import logging

from celerylab.alerts import Evaluator, History, Rule
from celerylab.grading import BehaviourCheck, Exercise, bind
from celerylab.grading.kinds import fmt_call
from celerylab.grading.outcomes import ExerciseIncorrect, ExerciseNotAttempted, ____, describe, describe_exc  # noqa: F401
from celerylab.grading.probe import call_with_deadline
from celerylab.i18n import N_, _
from celerylab.metrics import Snapshot

CHARGE = "l07.charge"
EMAIL = "l07.send_email"
_SERIES = {"hostname": "worker-a", "queue_name": "celery"}


# ---------------------------------------------------------------------------------------
# q1: metric histories
# ---------------------------------------------------------------------------------------
def history(events, until: float, step: float = 0.5) -> list[Snapshot]:
    """Scrapes every ``step`` s from 0 to ``until`` of the counters celery-exporter would show
    after ``events``: ``[(seconds, task name, "succeeded" | "failed"), ...]``. Like the exporter,
    a task's series appear (at 0) with its first event."""
    events = sorted(events)
    snaps, counts, seen = [], {}, set()
    i, t = 0, 0.0
    while t <= until + 1e-9:
        while i < len(events) and events[i][0] <= t + 1e-9:
            _, name, outcome = events[i]
            seen.add(name)
            counts[(name, outcome)] = counts.get((name, outcome), 0) + 1
            i += 1
        samples = {}
        for name in sorted(seen):
            labels = tuple(sorted({**_SERIES, "name": name}.items()))
            samples[("celery_task_succeeded_total", labels)] = float(counts.get((name, "succeeded"), 0))
            failed = tuple(sorted({**_SERIES, "name": name, "exception": "ConnectionError"}.items()))
            samples[("celery_task_failed_total", failed)] = float(counts.get((name, "failed"), 0))
        snaps.append(Snapshot(time=1_000_000.0 + t, samples=samples))
        t = round(t + step, 6)
    return snaps


def simulate(rule: Rule, events, until: float = 8.0, step: float = 0.5, times: bool = False) -> list:
    """The states ``rule`` goes through when evaluated on :func:`history`, starting inactive
    (with ``times=True``: ``(seconds, state)`` pairs)."""
    ev = Evaluator(lambda: None, [rule], interval=step)
    for snap in history(events, until, step):
        ev.step(snap)
    if times:
        return [(0.0, "inactive")] + [(round(t.time - 1_000_000.0, 3), t.new) for t in ev.log]
    return ev.transitions(rule.name)


def _burst(t: float, name: str, ok: int, failed: int) -> list:
    """``ok`` successes and ``failed`` failures of ``name``, mixed, spread over 0.4 s from ``t``."""
    n = ok + failed
    outcomes = ["failed" if (k * failed) // n != ((k + 1) * failed) // n else "succeeded" for k in range(n)]
    return [(round(t + 0.4 * k / n, 3), name, o) for k, o in enumerate(outcomes)]


class ChargeFailing(Exercise):
    """``charge_failing``: a :class:`Rule` for "more than 25 % of l07.charge failed in 2 s"."""

    variable = "charge_failing"
    correct = N_("charge_failing fires when more than 25 % of the charges in the last 2 s failed, "
                 "ignores other tasks and a lone failure, and resolves once the failures age out.")
    hints = (
        N_("`expr` gets a `History` `h`. `h.increase(metric, 2, name=\"l07.charge\")` is how much that "
           "counter grew in the last 2 s, for the charge task only. The failure share is "
           "failed / (failed + succeeded)."),
        N_("Return `None` (no data: the rule cannot fire) when fewer than 4 charges finished in the window, "
           "so one failure out of one task does not page anyone. Then `Rule(\"ChargeFailing\", expr, above=0.25)`."),
    )
    solution_text = """
        def charge_failure_share(h):
            failed = h.increase("celery_task_failed_total", 2, name="l07.charge")
            done = failed + h.increase("celery_task_succeeded_total", 2, name="l07.charge")
            return None if done < 4 else failed / done

        charge_failing = Rule("ChargeFailing", charge_failure_share, above=0.25)
    """
    #: (what happens (shown translated), events, should it fire, should it resolve by the end)
    scenarios = (
        (N_("10 charges, all succeed"), _burst(1.0, CHARGE, 10, 0), False, None),
        (N_("3 of 10 charges fail (30 %)"), _burst(1.0, CHARGE, 7, 3), True, True),
        (N_("2 of 10 charges fail (20 %)"), _burst(1.0, CHARGE, 8, 2), False, None),
        (N_("10 e-mails fail, while 10 charges succeed"), _burst(1.0, EMAIL, 0, 10) + _burst(1.0, CHARGE, 10, 0),
         False, None),
        (N_("a single charge, and it fails"), [(1.0, CHARGE, "failed")], False, None),
        (N_("3 of 3 charges fail (100 %, but only 3 tasks)"), _burst(1.0, CHARGE, 0, 3), False, None),
        # the edges of "more than 25 %" and "fewer than 4 charges"
        (N_("1 of 4 charges fails (exactly 25 %)"), _burst(1.0, CHARGE, 3, 1), False, None),
        (N_("2 of 4 charges fail (50 %, 4 tasks: enough data)"), _burst(1.0, CHARGE, 2, 2), True, None),
        (N_("a steady 50 % of charges fail for 6 s"), [e for k in range(13) for e in _burst(0.5 * k, CHARGE, 1, 1)],
         True, None),
    )

    def _check(self, ns):
        rule = self.value_named(ns, self.variable)
        if not isinstance(rule, Rule):
            raise ExerciseIncorrect(_("`{name}` is {what}: make it a Rule(name, expr, above=...)",
                                      name=self.variable, what=describe(rule)))
        if not callable(rule.expr):
            raise ExerciseIncorrect(_("the rule's expr is {what}: it should be a function of the history",
                                      what=describe(rule.expr)))
        for about, events, fires, resolves in self.scenarios:
            got = call_with_deadline(simulate, rule, events, times=True, timeout=self.timeout)
            if got.timed_out:
                raise ExerciseIncorrect(_("evaluating the rule did not finish within {timeout:g} s: "
                                          "look for an endless loop in its expr", timeout=self.timeout))
            if isinstance(got.error, NotImplementedError):
                raise ExerciseNotAttempted(_("the rule's expr still raises NotImplementedError: write your code there"))
            if got.error is not None:
                raise ExerciseIncorrect(_("evaluating the rule on '{about}' raised {error}",
                                          about=_(about), error=describe_exc(got.error)))
            states = [state for _, state in got.value]
            fired = "firing" in states
            if fires and not fired:
                raise ExerciseIncorrect(_("the rule never fired on '{about}' (states: {states})",
                                          about=_(about), states=" -> ".join(states)))
            if not fires and fired:
                raise ExerciseIncorrect(_("the rule fired on '{about}', which should not page anyone", about=_(about)))
            if resolves:
                last_failure = max(t for t, _, o in events if o == "failed")
                resolved = [t for t, state in got.value if state == "inactive" and t > last_failure]
                if states[-1] != "inactive" or not resolved:
                    raise ExerciseIncorrect(_("on '{about}' the rule fired and never resolved: count only what "
                                              "happened in the last 2 s (a window), not everything so far",
                                              about=_(about)))
                if resolved[-1] - last_failure > 2.5:
                    raise ExerciseIncorrect(_("on '{about}' the rule was still firing {seconds:g} s "
                                              "after the last failure: the window should be 2 s",
                                              about=_(about), seconds=resolved[-1] - last_failure))


# ---------------------------------------------------------------------------------------
# q2: queue length across priority bands
# ---------------------------------------------------------------------------------------
Q2_QUEUE = "lab07_backlog"
_BANDS = (0, 3, 6, 9)
_SEP = "\x06\x16"


def _band_lists(queue: str) -> list[str]:
    return [queue if b == 0 else f"{queue}{_SEP}{b}" for b in _BANDS]


class QueueLength(BehaviourCheck):
    """``queue_length(client, queue)`` counts every priority band list of a Redis queue."""

    function = "queue_length"
    correct = N_("queue_length counts the messages of every priority band, and leaves them all on the broker.")
    hints = (
        N_("kombu keeps one Redis list per priority band: the queue's own name for band 0 (and messages "
           "without a priority), then `queue + '\\x06\\x16' + '3'`, `... '6'` and `... '9'`. "
           "`client.llen(name)` counts one list; a list that does not exist counts 0."),
        N_("Sum `client.llen(...)` over the four names. LLEN only reads; never pop to count."),
    )
    solution_text = """
        def queue_length(client, queue):
            names = [queue] + [queue + "\\x06\\x16" + str(band) for band in (3, 6, 9)]
            return sum(client.llen(name) for name in names)
    """
    #: (what is waiting (shown translated), priorities of the messages sent)
    scenarios = (
        (N_("7 messages with priorities 0, 1, 3, 5, 6, 9, 9"), (0, 1, 3, 5, 6, 9, 9)),
        (N_("3 messages, all with priority 9"), (9, 9, 9)),
        (N_("4 messages sent without a priority"), (None, None, None, None)),
        (N_("an empty queue"), ()),
    )

    def _check(self, ns):
        fn = self.callable_named(ns, self.function)
        app = ns.get("app")
        from celery import Celery

        if not isinstance(app, Celery):
            raise ExerciseIncorrect(_("the lab's `app` is missing: run the setup cell at the top of the lab again"))
        url = str(app.conf.broker_url)
        if not url.startswith(("redis://", "rediss://")):
            raise ExerciseIncorrect(_("this check needs a Redis broker; the lab's broker is {scheme}",
                                      scheme=repr(url.split(":", 1)[0])))
        from celerylab.broker import redis_client

        client = redis_client(url, socket_timeout=5)  # in a class, the learner's prefix on every key
        try:
            for about, priorities in self.scenarios:
                client.delete(*_band_lists(Q2_QUEUE))
                for p in priorities:
                    options = {} if p is None else {"priority": p}
                    app.send_task("lab07.report", args=(1,), queue=Q2_QUEUE, **options)
                truth = sum(client.llen(k) for k in _band_lists(Q2_QUEUE))
                call = fmt_call(self.function, ("client", Q2_QUEUE)).replace("'client'", "client")
                with self.trial() as trial:
                    got = self.run_learner(trial, call, fn, client, Q2_QUEUE, name=self.function)
                after = sum(client.llen(k) for k in _band_lists(Q2_QUEUE))
                if after < truth:
                    raise ExerciseIncorrect(_("{call} took {count} message(s) off the queue: count with "
                                              "LLEN, which only reads", call=call, count=truth - after))
                if isinstance(got, bool) or not isinstance(got, int):
                    raise ExerciseIncorrect(_("{call} returned {got}: return the number of messages (an int)",
                                              call=call, got=describe(got)))
                if got != truth:
                    bare = client.llen(Q2_QUEUE)
                    if got == bare and bare != truth:
                        raise ExerciseIncorrect(_("with {about} waiting, {call} returned {got} (that is only the "
                                                  "bare queue's list, band 0)", about=_(about), call=call, got=got))
                    raise ExerciseIncorrect(_("with {about} waiting, {call} returned {got}",
                                              about=_(about), call=call, got=got))
        finally:
            client.delete(*_band_lists(Q2_QUEUE))
            client.close()


# ---------------------------------------------------------------------------------------
# q3: a JSON log line carrying the task id
# ---------------------------------------------------------------------------------------
class _Capture(logging.StreamHandler):
    """Keeps a formatter's exception instead of printing "--- Logging error ---" to stderr."""

    error: BaseException | None = None

    def handleError(self, record) -> None:  # noqa: N802 - logging's name
        import sys

        self.error = sys.exc_info()[1]


#: where the record was logged: the start of a message (shown translated)
INSIDE, OUTSIDE = N_("inside a task"), N_("outside a task")


class JsonTaskLog(BehaviourCheck):
    """``TaskJsonFormatter``: a logging formatter writing JSON with the running task's id."""

    formatter = "TaskJsonFormatter"
    correct = N_("TaskJsonFormatter writes one valid JSON object per record, with the level, the message "
                 "and the id of the task that logged it (null outside a task).")
    hints = (
        N_("Override `format(self, record)` and return `json.dumps({...})`: `record.levelname`, "
           "`record.getMessage()` (the message with its % arguments filled in). json.dumps escapes quotes "
           "and newlines for you; building the string by hand does not."),
        N_("The running task is `celery.current_task` (from `from celery import current_task`); inside a "
           "task `current_task.request.id` is its id. Outside a task `current_task` is false (a proxy "
           "to nothing: test `if current_task:`, not `is None`): write `\"task_id\": None` then (JSON null)."),
    )
    solution_text = """
        from celery import current_task

        class TaskJsonFormatter(logging.Formatter):
            def format(self, record):
                task = current_task
                return json.dumps({
                    "level": record.levelname,
                    "message": record.getMessage(),
                    "task_id": task.request.id if task else None,
                })
    """
    message = 'shipped order %s to "Zoë", 2nd floor\nleft at the door'
    arg = 7

    def _check(self, ns):
        cls = self.value_named(ns, self.formatter)
        if not isinstance(cls, type) or not issubclass(cls, logging.Formatter):
            raise ExerciseIncorrect(_("`{name}` is {what}: make it a class that extends logging.Formatter",
                                      name=self.formatter, what=describe(cls)))
        app = ns.get("app")
        from celery import Celery

        if not isinstance(app, Celery):
            raise ExerciseIncorrect(_("the lab's `app` is missing: run the setup cell at the top of the lab again"))
        try:
            formatter = cls()
        except Exception as exc:  # noqa: BLE001 - reported to the learner
            raise ExerciseIncorrect(_("{name}() raised {error}",
                                      name=self.formatter, error=describe_exc(exc))) from None
        probe = logging.LogRecord("lab07", logging.INFO, __file__, 0, "probe %s", (1,), None)
        got = call_with_deadline(formatter.format, probe, timeout=self.timeout)
        if isinstance(got.error, NotImplementedError):
            raise ExerciseNotAttempted(_("`{name}.format` still raises NotImplementedError: write your code there",
                                         name=self.formatter))
        if got.timed_out:
            raise ExerciseIncorrect(_("{name}.format did not return within {timeout:g} s",
                                      name=self.formatter, timeout=self.timeout))
        if got.error is not None:
            raise ExerciseIncorrect(_("{name}.format raised {error} on a record logged outside any task",
                                      name=self.formatter, error=describe_exc(got.error)))
        stream = io.StringIO()
        handler = _Capture(stream)
        handler.setFormatter(formatter)
        logger = logging.getLogger("celerylab.lab07.check")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        message, arg = self.message, self.arg

        def ship():
            logger.info(message, arg)
            return "shipped"

        task = app.task(name="lab07.check_ship", shared=False)(ship)
        try:
            with self.trial() as trial:
                sent = self.send(trial, task, name="ship")
                outcome = trial.run(app, [sent.task_id])[sent.task_id]
                self.succeeded("ship.delay()", outcome)
            if handler.error is not None:
                raise ExerciseIncorrect(_("inside a task, {name}.format raised {error}",
                                          name=self.formatter, error=describe_exc(handler.error)))
            inside = self._one_line(stream.getvalue(), INSIDE)
            self._judge(inside, INSIDE, message % arg, sent.task_id)
            stream.seek(0)
            stream.truncate()
            logger.warning("no task here")
            outside = self._one_line(stream.getvalue(), OUTSIDE)
            self._judge(outside, OUTSIDE, "no task here", None, level="WARNING")
        finally:
            app.tasks.pop("lab07.check_ship", None)
            logger.handlers[:] = []
            handler.close()

    def _one_line(self, text: str, where: str) -> dict:
        """``where``: :data:`INSIDE` or :data:`OUTSIDE` (English; shown translated)."""
        where = _(where)
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise ExerciseIncorrect(_("{where}, the formatter wrote nothing", where=where))
        if len(lines) > 1:
            raise ExerciseIncorrect(_("{where}, one record became {count} lines: a log collector would read "
                                      "them as separate events (let json.dumps escape the newline)",
                                      where=where, count=len(lines)))
        try:
            data = json.loads(lines[0])
        except ValueError:
            raise ExerciseIncorrect(_("{where}, the line is not valid JSON: {line}",
                                      where=where, line=repr(lines[0][:80]))) from None
        if not isinstance(data, dict):
            raise ExerciseIncorrect(_("{where}, the line is JSON but {what}, not an object",
                                      where=where, what=describe(data)))
        return data

    def _judge(self, data: dict, where: str, message: str, task_id, level: str = "INFO") -> None:
        where = _(where)
        for key in ("level", "message", "task_id"):
            if key not in data:
                raise ExerciseIncorrect(_("{where}, the JSON object has no {key} key (it has {keys})",
                                          where=where, key=repr(key), keys=sorted(data)))
        if data["message"] != message:
            raise ExerciseIncorrect(_("{where}, 'message' is {what}: use record.getMessage(), "
                                      "the message with its arguments filled in",
                                      where=where, what=describe(data["message"])))
        if data["level"] != level:
            raise ExerciseIncorrect(_("{where}, 'level' is {what}, not {level}",
                                      where=where, what=describe(data["level"]), level=repr(level)))
        if task_id is None and data["task_id"] is not None:
            raise ExerciseIncorrect(_("outside a task, 'task_id' is {what}: it should be null "
                                      "(None), since no task is running", what=describe(data["task_id"])))
        if task_id is not None and data["task_id"] != task_id:
            raise ExerciseIncorrect(_("{where}, 'task_id' is {what}, not the id of the task "
                                      "that logged the line", where=where, what=describe(data["task_id"])))


__all__ = ["____", "Rule", "History", "simulate", "history"] + bind(globals(), ChargeFailing, QueueLength,
                                                                     JsonTaskLog)
