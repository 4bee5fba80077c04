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
    correct = "lab02-sets is registered and accepted: a worker receives sets as sets, and plain JSON values unchanged."
    hints = (
        "`encode(obj)` returns a str: `json.dumps(obj, default=...)`, where `default` turns a set into something "
        "JSON can carry, e.g. `{\"__set__\": sorted(s)}`. `decode(data)` undoes it: `json.loads(data, "
        "object_hook=...)`, where the hook turns such a dict back into a set.",
        "Then `register(\"lab02-sets\", encode, decode, content_type=\"application/x-lab02-sets\", "
        "content_encoding=\"utf-8\")`, and let the workers decode it: `app.conf.accept_content = "
        "[\"json\", \"lab02-sets\"]` (a worker reads it when it starts).",
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
            raise ExerciseNotAttempted(f"no serializer named {SETS_NAME!r} is registered with kombu yet: "
                                       f"call kombu.serialization.register(...)")
        if registry.name_to_type.get(SETS_NAME) != SETS_CONTENT_TYPE:
            raise ExerciseIncorrect(f"{SETS_NAME!r} is registered with the content type "
                                    f"{registry.name_to_type.get(SETS_NAME)!r}; use {SETS_CONTENT_TYPE!r}")
        if not _accepts(task.app, SETS_NAME, SETS_CONTENT_TYPE):
            raise ExerciseIncorrect(f"app's workers accept {list(task.app.conf.accept_content)}: a worker would "
                                    f"refuse {SETS_NAME} messages (ContentDisallowed). Add it to accept_content")
        codec = registry._encoders[SETS_NAME]
        try:
            body = codec.encoder({"a", "b"})
            json.loads(body)
        except Exception as exc:  # noqa: BLE001 - any encoder failure, reported
            raise ExerciseIncorrect(f"your encode() of a set did not return a JSON string "
                                    f"({describe_exc(exc)}): write sets as JSON that decode() recognises") from None
        with self.trial() as trial:
            sent = []
            for args, expected in self.cases:
                call = f"{short(task.name)}.apply_async({args!r}, serializer={SETS_NAME!r})"
                got = trial.call(task.apply_async, args, serializer=SETS_NAME)
                if got.error is not None:
                    raise ExerciseIncorrect(f"{call} raised {describe_exc(got.error)}: your encode() fails on "
                                            f"{describe(args[0])}")
                sent.append((args, expected, self.sent(trial, call, got.value)))
            outcomes = trial.run(task.app, [pub.task_id for _, _, pub in sent])
            for args, expected, pub in sent:
                call = fmt_call(self.task, args)
                outcome = outcomes[pub.task_id]
                if outcome.state == "NOT STARTED":
                    raise ExerciseIncorrect(f"the worker never ran {call}: it could not decode the message "
                                            f"(does decode() accept the bytes it is given?)")
                got = self.succeeded(call, outcome)
                if got != expected:
                    if expected["type"] == "set":
                        raise ExerciseIncorrect(f"{call} with {SETS_NAME}: the worker received a "
                                                f"{got.get('type') if isinstance(got, dict) else '?'}, not a set: "
                                                f"decode() should turn your encoding of a set back into a set")
                    raise ExerciseIncorrect(f"{call} with {SETS_NAME} returned {describe(got)}; a plain JSON "
                                            f"value should arrive unchanged")


class ReachTheWorkerProcess(BehaviourCheck):
    """``send_shout(text)`` gets the worker *process* to run its task ``l02.shout``."""

    function = "send_shout"
    args = ("hello",)
    expected = "HELLO!"
    timeout = 10.0
    correct = "send_shout reaches the worker process: it runs l02.shout, a task it knows by name."
    hints = (
        f"The worker process imported celerylab.lessons.l02_serialization, not your notebook: it knows the task "
        f"by the name 'l02.shout' and listens only to the queue {PROCESS_QUEUE!r}. Your notebook's `shout` is "
        f"registered under another name.",
        f"Send by name, no import needed: `app.send_task(\"l02.shout\", args=[text], queue={PROCESS_QUEUE!r})`.",
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
                    raise ExerciseIncorrect(f"{call} sent {short(pub[0].name)!r} to the queue "
                                            f"{pub[0].data.get('queue')!r}; the worker process listens only to "
                                            f"{PROCESS_QUEUE!r}")
                try:
                    got = AsyncResult(value.id, app=value.app).get(timeout=self.timeout, propagate=False)
                except Exception:  # noqa: BLE001 - a timeout, reported below
                    raise ExerciseIncorrect(f"nothing ran {call}'s task within {self.timeout:g} s: "
                                            f"is it sent to the queue {PROCESS_QUEUE!r}?") from None
        finally:
            process.terminate()
        if type(got).__name__ == "NotRegistered":
            raise ExerciseIncorrect(f"the worker process does not know the task {str(got)}: it knows the "
                                    f"lesson's tasks by their names, e.g. 'l02.shout'")
        if isinstance(got, BaseException):
            raise ExerciseIncorrect(f"{call}'s task failed on the worker process with {describe_exc(got)}")
        if got != self.expected:
            raise ExerciseIncorrect(f"{call}'s task returned {describe(got)}, not what l02.shout returns")


class RequestFacts(BindHint, BehaviourCheck):
    """``audit(note)`` (bound) reports its own id, queue and retries from ``self.request``."""

    task = "audit"
    calls = (("first", "celery", 0), ("second", "audit", 2))  #: note, queue, retries before this run
    correct = "audit reads its id, queue and retries from self.request, on a real worker."
    hints = (
        "Declare the task with `@app.task(bind=True)`: its first parameter, `self`, is the task, and "
        "`self.request` describes this execution.",
        "`self.request.id`, `self.request.retries`, and the queue is `self.request.delivery_info[\"routing_key\"]`.",
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
                    raise ExerciseIncorrect(f"{call} raised NameError: name 'self' is not defined (the seed "
                                            f"article's bug): {BIND_HINT}")
                got = self.succeeded(call, outcome)
                if not isinstance(got, dict):
                    raise ExerciseIncorrect(f"{call} returned {describe(got)}; return a dict")
                for key in ("note", "id", "queue", "retries"):
                    if key not in got:
                        raise ExerciseIncorrect(f"{call} returned a dict without the key {key!r}")
                if got["id"] != pub.task_id:
                    raise ExerciseIncorrect(f"{call} reported the id {got['id']!r}, not its own task id")
                if got["queue"] != queue:
                    raise ExerciseIncorrect(f"{call} was taken from the queue {queue!r} but reported "
                                            f"{describe(got['queue'])}")
                if got["retries"] != retries:
                    raise ExerciseIncorrect(f"{call} reported {got['retries']!r} retries; it was sent as "
                                            f"a run with {retries} retries before it")
                if got["note"] != note:
                    raise ExerciseIncorrect(f"{call} reported the note {describe(got['note'])}")


#: The settings of the learner's app that NoPickle judges (copied to a Redis app on RabbitMQ).
_SERIALIZATION_SETTINGS = ("task_serializer", "accept_content", "result_serializer", "result_accept_content")


class NoPickle(BehaviourCheck):
    """``secure_app`` sends msgpack by default, its workers accept msgpack and json, and refuse pickle."""

    app_name = "secure_app"
    timeout = 8.0
    correct = "secure_app sends msgpack, its worker runs msgpack and json messages, and refuses pickle: the payload never ran."
    hints = (
        "`celerylab.create_app(name, **settings)` takes any Celery setting. Two of them matter here: the "
        "serializer used when sending tasks, and the list of content types a worker will decode.",
        "`task_serializer=\"msgpack\"` and `accept_content=[\"msgpack\", \"json\"]` (results can stay json).",
    )
    solution_text = """
        secure_app = celerylab.create_app("lab02_secure", task_serializer="msgpack",
                                          accept_content=["msgpack", "json"])
    """

    def _check(self, ns):
        app = self.value_named(ns, self.app_name)
        if not isinstance(app, Celery):
            raise ExerciseIncorrect(f"`{self.app_name}` is {describe(app)}, not a Celery app: use celerylab.create_app")

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
                raise ExerciseIncorrect(f"sending with {self.app_name} failed: {describe_exc(exc)}") from None
            waiting = {m.id: m for m in inspect_broker.peek(SECURE_QUEUE, client)}
            content_type = waiting[default.id].content_type if default.id in waiting else "?"
            if content_type != "application/x-msgpack":
                raise ExerciseIncorrect(f"tasks sent with {self.app_name} are {content_type}, not msgpack: "
                                        f"make msgpack the serializer for tasks")
            outcomes = trial.run(app, [default.id, as_json.id], queues=[SECURE_QUEUE])
            trial.recorder.wait(lambda _: client.llen(inspect_broker.band_lists(SECURE_QUEUE)[0]) == 0, 1.0)
            ran_attack = bool(trial.recorder.of(attack.id, "started"))
        if _EVIDENCE or ran_attack:
            _EVIDENCE.clear()
            raise ExerciseIncorrect(f"a pickle message ran code on {self.app_name}'s worker: its workers must "
                                    f"not accept pickle")
        for result, what in ((default, "a msgpack message"), (as_json, "a json message")):
            outcome = outcomes[result.id]
            if outcome.state == "NOT STARTED":
                raise ExerciseIncorrect(f"{self.app_name}'s worker did not run {what}: it refused to decode it. "
                                        f"Which content types does it accept?")
            self.succeeded(f"echo ({what})", outcome)


__all__ = ["____", "PROCESS_QUEUE"] + bind(globals(), SetsSerializer, ReachTheWorkerProcess, RequestFacts, NoPickle)
