"""Exercises for labs/02_serialization.ipynb: a serializer, task names, self.request, no pickle.

In the lab::

    from celerylab.exercises.l02_serialization import *   # q1..q4, ____, PROCESS_QUEUE
    q1.check(); q1.hint(); q1.hint(2); q1.solution()

The checks send real messages and judge what a real worker did with them: which type a task
received, whether a worker *process* (that never saw the notebook) found the task, what
``self.request`` said, and whether code hidden in a pickle ran.
"""
from __future__ import annotations

import json

from celery import Celery
from celery.result import AsyncResult, EagerResult
from kombu.serialization import registry

from celerylab import inspect_broker
from celerylab.grading import BehaviourCheck, bind
from celerylab.grading.kinds import fmt_call, short
from celerylab.grading.outcomes import BIND_HINT, ExerciseIncorrect, ExerciseNotAttempted, ____, describe, describe_exc  # noqa: F401
from celerylab.i18n import N_, _

from ._bind import BindHint
from celerylab.lessons.l02_serialization import PROCESS_QUEUE

SETS_NAME = "lab02-sets"
SETS_CONTENT_TYPE = "application/x-lab02-sets"
#: The queue q4's checker sends its probes to.
SECURE_QUEUE = "lab02_secure"

# -- q4's harmless pickle payload -----------------------------------------------------------
_EVIDENCE: list[str] = []


def _leave_a_mark(note):
    _EVIDENCE.append(note)
    return note


class _Payload:
    def __reduce__(self):
        return (_leave_a_mark, ("the pickle's code ran",))


def _echo(value):
    return {"type": type(value).__name__}


def _accepts(app, name: str, content_type: str) -> bool:
    accepted = set(app.conf.accept_content or ())
    return name in accepted or content_type in accepted


class SetsSerializer(BindHint, BehaviourCheck):
    """A serializer ``lab02-sets`` registered with kombu and accepted by ``app``'s workers: sets arrive as sets."""

    task = "tag_report"
    correct = N_("lab02-sets is registered and accepted: a worker receives sets as sets, and plain JSON values "
                 "unchanged.")
    hints = (
        N_("`encode(obj)` returns a str: `json.dumps(obj, default=...)`, where `default` turns a set into something "
           "JSON can carry, e.g. `{\"__set__\": sorted(s)}`. `decode(data)` undoes it: `json.loads(data, "
           "object_hook=...)`, where the hook turns such a dict back into a set."),
        N_("Then `register(\"lab02-sets\", encode, decode, content_type=\"application/x-lab02-sets\", "
           "content_encoding=\"utf-8\")`, and let the workers decode it: `app.conf.accept_content = "
           "[\"json\", \"lab02-sets\"]` (a worker reads it when it starts)."),
    )
    solution_text = """
        def encode(obj):
            def default(o):
                if isinstance(o, (set, frozenset)):
                    return {"__set__": sorted(o)}
                raise TypeError(f"cannot serialize {type(o).__name__}")
            return json.dumps(obj, default=default)

        def decode(data):
            def hook(d):
                return set(d["__set__"]) if d.keys() == {"__set__"} else d
            return json.loads(data, object_hook=hook)

        register("lab02-sets", encode, decode, content_type="application/x-lab02-sets", content_encoding="utf-8")
        app.conf.accept_content = ["json", "lab02-sets"]
    """
    cases = [
        (({"redis", "celery", "kombu"},), {"type": "set", "sorted": ["celery", "kombu", "redis"]}),
        ((["plain", "list", "plain"],), {"type": "list", "sorted": ["list", "plain", "plain"]}),
        (({"x": 1},), {"type": "dict", "sorted": ["x"]}),
    ]

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        if SETS_NAME not in registry._encoders:
            raise ExerciseNotAttempted(_("no serializer named {name} is registered with kombu yet: "
                                         "call kombu.serialization.register(...)", name=repr(SETS_NAME)))
        if registry.name_to_type.get(SETS_NAME) != SETS_CONTENT_TYPE:
            raise ExerciseIncorrect(_("{name} is registered with the content type {got}; use {want}",
                                      name=repr(SETS_NAME), got=repr(registry.name_to_type.get(SETS_NAME)),
                                      want=repr(SETS_CONTENT_TYPE)))
        if not _accepts(task.app, SETS_NAME, SETS_CONTENT_TYPE):
            raise ExerciseIncorrect(_("app's workers accept {accepted}: a worker would "
                                      "refuse {name} messages (ContentDisallowed). Add it to accept_content",
                                      accepted=str(list(task.app.conf.accept_content)), name=SETS_NAME))
        codec = registry._encoders[SETS_NAME]
        try:
            body = codec.encoder({"a", "b"})
            json.loads(body)
        except Exception as exc:  # noqa: BLE001 - any encoder failure, reported
            raise ExerciseIncorrect(_("your encode() of a set did not return a JSON string "
                                      "({error}): write sets as JSON that decode() recognises",
                                      error=describe_exc(exc))) from None
        with self.trial() as trial:
            sent = []
            for args, expected in self.cases:
                call = f"{short(task.name)}.apply_async({args!r}, serializer={SETS_NAME!r})"
                got = trial.call(task.apply_async, args, serializer=SETS_NAME)
                if got.error is not None:
                    raise ExerciseIncorrect(_("{call} raised {error}: your encode() fails on {value}",
                                              call=call, error=describe_exc(got.error), value=describe(args[0])))
                sent.append((args, expected, self.sent(trial, call, got.value)))
            outcomes = trial.run(task.app, [pub.task_id for _, _, pub in sent])
            for args, expected, pub in sent:
                call = fmt_call(self.task, args)
                outcome = outcomes[pub.task_id]
                if outcome.state == "NOT STARTED":
                    raise ExerciseIncorrect(_("the worker never ran {call}: it could not decode the message "
                                              "(does decode() accept the bytes it is given?)", call=call))
                got = self.succeeded(call, outcome)
                if got != expected:
                    if expected["type"] == "set":
                        raise ExerciseIncorrect(_("{call} with {name}: the worker received a {got}, not a set: "
                                                  "decode() should turn your encoding of a set back into a set",
                                                  call=call, name=SETS_NAME,
                                                  got=got.get("type") if isinstance(got, dict) else "?"))
                    raise ExerciseIncorrect(_("{call} with {name} returned {got}; a plain JSON "
                                              "value should arrive unchanged", call=call, name=SETS_NAME,
                                              got=describe(got)))


class ReachTheWorkerProcess(BehaviourCheck):
    """``send_shout(text)`` gets the worker *process* to run its task ``l02.shout``."""

    function = "send_shout"
    args = ("hello",)
    expected = "HELLO!"
    timeout = 10.0
    correct = N_("send_shout reaches the worker process: it runs l02.shout, a task it knows by name.")
    # the queue's name is written out: a hint is a literal for the catalog (see the assert below the class)
    hints = (
        N_("The worker process imported celerylab.lessons.l02_serialization, not your notebook: it knows the task "
           "by the name 'l02.shout' and listens only to the queue 'l02_process'. Your notebook's `shout` is "
           "registered under another name."),
        N_("Send by name, no import needed: `app.send_task(\"l02.shout\", args=[text], queue='l02_process')`."),
    )
    solution_text = f"""
        def send_shout(text):
            return app.send_task("l02.shout", args=[text], queue={PROCESS_QUEUE!r})
    """

    def _check(self, ns):
        import celerylab

        fn = self.callable_named(ns, self.function)
        call = fmt_call(self.function, self.args)
        from celery import current_app

        # the grader's worker process consumes where the lab's app sends (the lesson's own app may
        # live on a private Redis when the class broker is RabbitMQ)
        lab_app = ns.get("app") if isinstance(ns.get("app"), Celery) else current_app._get_current_object()
        process = celerylab.spawn_worker("celerylab.lessons.l02_serialization", pool="solo", concurrency=1,
                                         queues=[PROCESS_QUEUE], hostname="lab02-grader@%h",
                                         broker_url=lab_app.conf.broker_url,
                                         result_backend=lab_app.conf.result_backend).wait_ready()
        try:
            with self.trial() as trial:
                value = self.run_learner(trial, call, fn, *self.args, name=self.function)
                if isinstance(value, EagerResult) or not isinstance(value, AsyncResult):
                    self.sent(trial, call, value)  # raises the right message
                pub = trial.recorder.of(value.id, "published")
                if pub and pub[0].data.get("queue") != PROCESS_QUEUE:
                    raise ExerciseIncorrect(_("{call} sent {task} to the queue {queue}; the worker process listens "
                                              "only to {want}", call=call, task=repr(short(pub[0].name)),
                                              queue=repr(pub[0].data.get("queue")), want=repr(PROCESS_QUEUE)))
                try:
                    got = AsyncResult(value.id, app=value.app).get(timeout=self.timeout, propagate=False)
                except Exception:  # noqa: BLE001 - a timeout, reported below
                    raise ExerciseIncorrect(_("nothing ran {call}'s task within {timeout:g} s: "
                                              "is it sent to the queue {queue}?", call=call, timeout=self.timeout,
                                              queue=repr(PROCESS_QUEUE))) from None
        finally:
            process.terminate()
        if type(got).__name__ == "NotRegistered":
            raise ExerciseIncorrect(_("the worker process does not know the task {error}: it knows the "
                                      "lesson's tasks by their names, e.g. 'l02.shout'", error=str(got)))
        if isinstance(got, BaseException):
            raise ExerciseIncorrect(_("{call}'s task failed on the worker process with {error}",
                                      call=call, error=describe_exc(got)))
        if got != self.expected:
            raise ExerciseIncorrect(_("{call}'s task returned {got}, not what l02.shout returns",
                                      call=call, got=describe(got)))


# ReachTheWorkerProcess's hints name the queue as a literal
assert PROCESS_QUEUE == "l02_process", "update ReachTheWorkerProcess.hints to the lesson's PROCESS_QUEUE"


class RequestFacts(BindHint, BehaviourCheck):
    """``audit(note)`` (bound) reports its own id, queue and retries from ``self.request``."""

    task = "audit"
    calls = (("first", "celery", 0), ("second", "audit", 2))  #: note, queue, retries before this run
    correct = N_("audit reads its id, queue and retries from self.request, on a real worker.")
    hints = (
        N_("Declare the task with `@app.task(bind=True)`: its first parameter, `self`, is the task, and "
           "`self.request` describes this execution."),
        N_("`self.request.id`, `self.request.retries`, and the queue is "
           "`self.request.delivery_info[\"routing_key\"]`."),
    )
    solution_text = """
        @app.task(bind=True)
        def audit(self, note):
            return {"note": note, "id": self.request.id, "queue": self.request.delivery_info["routing_key"],
                    "retries": self.request.retries}
    """

    def _check(self, ns):
        task = self.task_named(ns, self.task)
        with self.trial() as trial:
            sent = []
            for note, queue, retries in self.calls:
                extra = f", retries={retries}" if retries else ""
                call = f"{short(task.name)}.apply_async(({note!r},), queue={queue!r}{extra})"
                value = self.run_learner(trial, call, task.apply_async, (note,), queue=queue, retries=retries,
                                         name=self.task)
                sent.append((note, queue, retries, self.sent(trial, call, value)))
            outcomes = trial.run(task.app, [pub.task_id for *_, pub in sent], queues=[q for _, q, _ in self.calls])
            for note, queue, retries, pub in sent:
                call = fmt_call(self.task, (note,))
                outcome = outcomes[pub.task_id]
                self.finished(call, outcome)
                if outcome.state == "FAILURE" and isinstance(outcome.exc, NameError) and "self" in str(outcome.exc):
                    raise ExerciseIncorrect(_("{call} raised NameError: name 'self' is not defined (the seed "
                                              "article's bug): {bind_hint}", call=call, bind_hint=_(BIND_HINT)))
                got = self.succeeded(call, outcome)
                if not isinstance(got, dict):
                    raise ExerciseIncorrect(_("{call} returned {got}; return a dict", call=call, got=describe(got)))
                for key in ("note", "id", "queue", "retries"):
                    if key not in got:
                        raise ExerciseIncorrect(_("{call} returned a dict without the key {key}",
                                                  call=call, key=repr(key)))
                if got["id"] != pub.task_id:
                    raise ExerciseIncorrect(_("{call} reported the id {got}, not its own task id",
                                              call=call, got=repr(got["id"])))
                if got["queue"] != queue:
                    raise ExerciseIncorrect(_("{call} was taken from the queue {queue} but reported {got}",
                                              call=call, queue=repr(queue), got=describe(got["queue"])))
                if got["retries"] != retries:
                    raise ExerciseIncorrect(_("{call} reported {got} retries; it was sent as "
                                              "a run with {retries} retries before it",
                                              call=call, got=repr(got["retries"]), retries=retries))
                if got["note"] != note:
                    raise ExerciseIncorrect(_("{call} reported the note {got}", call=call, got=describe(got["note"])))


#: The settings of the learner's app that NoPickle judges (copied to a Redis app on RabbitMQ).
_SERIALIZATION_SETTINGS = ("task_serializer", "accept_content", "result_serializer", "result_accept_content")


class NoPickle(BehaviourCheck):
    """``secure_app`` sends msgpack by default, its workers accept msgpack and json, and refuse pickle."""

    app_name = "secure_app"
    timeout = 8.0
    correct = N_("secure_app sends msgpack, its worker runs msgpack and json messages, and refuses pickle: "
                 "the payload never ran.")
    hints = (
        N_("`celerylab.create_app(name, **settings)` takes any Celery setting. Two of them matter here: the "
           "serializer used when sending tasks, and the list of content types a worker will decode."),
        N_("`task_serializer=\"msgpack\"` and `accept_content=[\"msgpack\", \"json\"]` (results can stay json)."),
    )
    solution_text = """
        secure_app = celerylab.create_app("lab02_secure", task_serializer="msgpack",
                                          accept_content=["msgpack", "json"])
    """

    def _check(self, ns):
        app = self.value_named(ns, self.app_name)
        if not isinstance(app, Celery):
            raise ExerciseIncorrect(_("`{name}` is {got}, not a Celery app: use celerylab.create_app",
                                      name=self.app_name, got=describe(app)))

        echo = app.tasks.get("lab02_check.echo") or app.task(name="lab02_check.echo", shared=False)(_echo)

        if not str(app.conf.broker_url or "").startswith(("redis://", "rediss://")):
            # the check reads the messages on a Redis list: on another broker (RabbitMQ), the same
            # serialization settings on an app of the check's own, on a Redis
            app = inspect_broker.create_redis_app(
                f"{self.app_name}_on_redis", **{k: app.conf[k] for k in _SERIALIZATION_SETTINGS})
            echo = app.task(name="lab02_check.echo", shared=False)(_echo)
        client = inspect_broker.redis_client(app.conf.broker_url)
        client.delete(*inspect_broker.band_lists(SECURE_QUEUE))
        _EVIDENCE.clear()
        with self.trial() as trial:
            try:
                attack = echo.apply_async((_Payload(),), serializer="pickle", queue=SECURE_QUEUE)
                default = echo.apply_async((b"\x00\x01",), queue=SECURE_QUEUE)
                as_json = echo.apply_async(("text",), serializer="json", queue=SECURE_QUEUE)
            except Exception as exc:  # noqa: BLE001 - e.g. a serializer that is not installed
                raise ExerciseIncorrect(_("sending with {name} failed: {error}",
                                          name=self.app_name, error=describe_exc(exc))) from None
            waiting = {m.id: m for m in inspect_broker.peek(SECURE_QUEUE, client)}
            content_type = waiting[default.id].content_type if default.id in waiting else "?"
            if content_type != "application/x-msgpack":
                raise ExerciseIncorrect(_("tasks sent with {name} are {content_type}, not msgpack: "
                                          "make msgpack the serializer for tasks",
                                          name=self.app_name, content_type=content_type))
            outcomes = trial.run(app, [default.id, as_json.id], queues=[SECURE_QUEUE])
            trial.recorder.wait(lambda _: client.llen(inspect_broker.band_lists(SECURE_QUEUE)[0]) == 0, 1.0)
            ran_attack = bool(trial.recorder.of(attack.id, "started"))
        if _EVIDENCE or ran_attack:
            _EVIDENCE.clear()
            raise ExerciseIncorrect(_("a pickle message ran code on {name}'s worker: its workers must "
                                      "not accept pickle", name=self.app_name))
        cases = ((default, N_("a msgpack message"),
                  N_("{name}'s worker did not run a msgpack message: it refused to decode it. "
                     "Which content types does it accept?")),
                 (as_json, N_("a json message"),
                  N_("{name}'s worker did not run a json message: it refused to decode it. "
                     "Which content types does it accept?")))
        for result, what, refused in cases:
            outcome = outcomes[result.id]
            if outcome.state == "NOT STARTED":
                raise ExerciseIncorrect(_(refused, name=self.app_name))
            self.succeeded(f"echo ({_(what)})", outcome)


__all__ = ["____", "PROCESS_QUEUE"] + bind(globals(), SetsSerializer, ReachTheWorkerProcess, RequestFacts, NoPickle)
