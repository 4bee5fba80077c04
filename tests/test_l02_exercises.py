"""Lab 02's checks: the solutions pass, typical mistakes fail with a message naming the mistake."""
from __future__ import annotations

import json

import pytest
from kombu.serialization import register, unregister

import celerylab
from celerylab.exercises import l02_serialization as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_lab02")
    yield app
    app.close()


def _encode(obj):
    def default(o):
        if isinstance(o, (set, frozenset)):
            return {"__set__": sorted(o)}
        raise TypeError(type(o).__name__)

    return json.dumps(obj, default=default)


def _decode(data):
    return json.loads(data, object_hook=lambda d: set(d["__set__"]) if d.keys() == {"__set__"} else d)


def _decode_lists_as_sets(data):
    """A decode() that makes every list argument a set (the body is [args, kwargs, embed])."""
    args, kwargs, embed = _decode(data)
    return [[set(a) if isinstance(a, list) else a for a in args], kwargs, embed]


@pytest.fixture
def sets_unregistered():
    try:
        unregister(ex.SETS_NAME)
    except Exception:  # not registered yet
        pass
    yield
    try:
        unregister(ex.SETS_NAME)
    except Exception:
        pass


def test_q1_serializer_registered_accepted_and_decoding_sets(app, sets_unregistered, capsys):
    @app.task(name="test_lab02.tag_report", shared=False)
    def tag_report(tags):
        return {"type": type(tags).__name__, "sorted": sorted(tags)}

    ns = {"tag_report": tag_report}
    with pytest.raises(ExerciseNotAttempted, match="no serializer named 'lab02-sets'"):
        ex.q1.check(ns)
    register(ex.SETS_NAME, _encode, json.loads, content_type=ex.SETS_CONTENT_TYPE, content_encoding="utf-8")
    with pytest.raises(ExerciseIncorrect, match="Add it to accept_content"):
        ex.q1.check(ns)
    app.conf.accept_content = ["json", ex.SETS_NAME]
    with pytest.raises(ExerciseIncorrect, match="not a set"):
        ex.q1.check(ns)  # decode() leaves {"__set__": [...]} as a dict
    # decode() that turns every list into a set: the list must arrive unchanged
    register(ex.SETS_NAME, _encode, _decode_lists_as_sets, content_type=ex.SETS_CONTENT_TYPE,
             content_encoding="utf-8")
    with pytest.raises(ExerciseIncorrect, match="a plain JSON value should arrive unchanged"):
        ex.q1.check(ns)
    # encode() that is not JSON (pickle in base64): the statement asks for a JSON string
    import base64
    import pickle

    register(ex.SETS_NAME, lambda obj: base64.b64encode(pickle.dumps(obj)).decode(),
             lambda data: pickle.loads(base64.b64decode(data)),  # noqa: S301 - the mistake under test
             content_type=ex.SETS_CONTENT_TYPE, content_encoding="utf-8")
    with pytest.raises(ExerciseIncorrect, match="did not return a JSON string"):
        ex.q1.check(ns)
    register(ex.SETS_NAME, _encode, _decode, content_type=ex.SETS_CONTENT_TYPE, content_encoding="utf-8")
    ex.q1.check(ns)
    assert "Correct: q1:" in capsys.readouterr().out


def test_q2_only_the_workers_own_task_name_reaches_it(app, capsys):
    @app.task(name="test_lab02.shout", shared=False)
    def shout(text):
        return text.upper()

    with pytest.raises(ExerciseIncorrect, match="does not know the task"):
        ex.q2.check({"send_shout": lambda text: shout.apply_async((text,), queue=ex.PROCESS_QUEUE)})
    with pytest.raises(ExerciseIncorrect, match="listens only to"):
        ex.q2.check({"send_shout": lambda text: app.send_task("l02.shout", args=[text])})
    ex.q2.check({"send_shout": lambda text: app.send_task("l02.shout", args=[text], queue=ex.PROCESS_QUEUE)})
    assert "Correct: q2:" in capsys.readouterr().out


def test_q3_request_facts_and_the_seed_bug(app, capsys):
    @app.task(name="test_lab02.audit_unbound", shared=False)
    def audit_unbound(note):
        return {"note": note, "id": self.request.id}  # noqa: F821 - the seed article's bug, on purpose

    with pytest.raises(ExerciseIncorrect, match="bind=True"):
        ex.q3.check({"audit": audit_unbound})

    @app.task(name="test_lab02.audit_fixed_queue", bind=True, shared=False)
    def audit_fixed_queue(self, note):
        return {"note": note, "id": self.request.id, "queue": "celery", "retries": self.request.retries}

    with pytest.raises(ExerciseIncorrect, match="taken from the queue 'audit'"):
        ex.q3.check({"audit": audit_fixed_queue})

    @app.task(name="test_lab02.audit_no_retries", bind=True, shared=False)
    def audit_no_retries(self, note):  # retries not read from self.request
        return {"note": note, "id": self.request.id, "queue": self.request.delivery_info["routing_key"],
                "retries": 0}

    with pytest.raises(ExerciseIncorrect, match="reported 0 retries; it was sent as a run with 2 retries"):
        ex.q3.check({"audit": audit_no_retries})

    @app.task(name="test_lab02.audit_other_id", bind=True, shared=False)
    def audit_other_id(self, note):  # the task's name, not this run's id
        return {"note": note, "id": self.name,
                "queue": self.request.delivery_info["routing_key"], "retries": self.request.retries}

    with pytest.raises(ExerciseIncorrect, match="not its own task id"):
        ex.q3.check({"audit": audit_other_id})

    @app.task(name="test_lab02.audit", bind=True, shared=False)
    def audit(self, note):
        return {"note": note, "id": self.request.id, "queue": self.request.delivery_info["routing_key"],
                "retries": self.request.retries}

    ex.q3.check({"audit": audit})
    assert "Correct: q3:" in capsys.readouterr().out


def test_q4_pickle_is_refused_and_msgpack_is_the_default(embedded, capsys):
    with pytest.raises(ExerciseNotAttempted):
        ex.q4.check({"secure_app": ex.____})
    with pytest.raises(ExerciseIncorrect, match="not msgpack"):
        ex.q4.check({"secure_app": celerylab.create_app("test_lab02_json")})
    unsafe = celerylab.create_app("test_lab02_unsafe", task_serializer="msgpack",
                                  accept_content=["msgpack", "json", "pickle"])
    with pytest.raises(ExerciseIncorrect, match="ran code"):
        ex.q4.check({"secure_app": unsafe})
    msgpack_only = celerylab.create_app("test_lab02_msgpack_only", task_serializer="msgpack",
                                        accept_content=["msgpack"])
    with pytest.raises(ExerciseIncorrect, match="did not run a json message"):
        ex.q4.check({"secure_app": msgpack_only})
    secure = celerylab.create_app("test_lab02_secure", task_serializer="msgpack", accept_content=["msgpack", "json"])
    ex.q4.check({"secure_app": secure})
    assert "Correct: q4:" in capsys.readouterr().out
