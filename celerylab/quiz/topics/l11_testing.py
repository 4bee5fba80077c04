"""Quiz questions for lesson 11 · Testing Celery code (eager mode, start_worker, pytest fixtures).

Each question's evidence is a cell of notebooks/11_testing.ipynb tagged ``evidence:<tag>``, or a test
in tests/test_l11_testing.py against the installed Celery.
"""
from __future__ import annotations

from celerylab.quiz.bank import choice, myth

LESSON = ("11", "11_testing.ipynb", "Testing Celery code")

NB = "notebooks/11_testing.ipynb::evidence:"
S11 = {
    "ways": "1. Three ways to run a task in a test",
    "args": "2. Arguments: eager `delay()` serializes them in Celery 5.7, `apply()` does not",
    "retry": "3. Retries without waiting: mock the external call, not Celery",
    "propagates": "Failure paths and `task_eager_propagates`",
    "worker": "4. A real worker in a test: `start_worker` and Celery's pytest fixtures",
}

QUESTIONS = [
    choice("l11-eager-result", "11", S11["ways"],
           "A task returns a Python set. Its test with task_always_eager=True passes. On a real worker with the "
           "JSON result serializer, what happens?",
           ["The same: the caller gets the set", "The task fails with EncodeError: the worker must store the "
            "result as JSON, which has no sets; eager mode, by default (task_store_eager_result=False), never "
            "serializes the return value",
            "The caller gets a list", "The worker converts the set with pickle"], 1,
           "Eager mode keeps the return value in the EagerResult; a worker encodes it for the result backend, "
           "and the JSON encoder refuses a set, so the task ends in FAILURE. Only with task_store_eager_result=True "
           "does an eager run store (and so encode) its result, and then it fails eagerly too.",
           cheat="By default (`task_store_eager_result=False`) eager mode does not serialize a task's return value: "
                 "a set passes eagerly and fails on a worker (EncodeError).",
           evidence=NB + "l11-worker-result"),
    choice("l11-eager-invisible", "11", S11["ways"],
           "Which events does a task run with task_always_eager send (events on, as in the kit)?",
           ["The same as on a worker", "None: no message is published and no worker runs it, so monitoring "
            "(the live view, Flower) never sees it", "Only task-sent", "Only task-succeeded or task-failed"], 1,
           "An eager run happens inside the caller's delay(): nothing crosses the broker. The real run of the same "
           "call showed task-sent, task-received, task-started and task-failed.",
           cheat="An eager run sends no message and no event: monitoring never sees it."),
    myth("l11-eager-args", "11", S11["args"],
         "task_always_eager skips serialization, so an argument JSON cannot carry passes an eager test.",
         False,
         "Measured on Celery 5.7: under task_always_eager, delay()/apply_async() dump and load the arguments with "
         "the task's serializer before running (a set raises EncodeError, a tuple arrives as a list). Only "
         "task.apply() skips that step; and neither serializes the return value unless task_store_eager_result=True "
         "(default False) makes the eager run store it in the result backend.",
         cheat="Celery 5.7: eager `delay()` round-trips arguments through the serializer; `apply()` does not; "
               "neither serializes the result unless `task_store_eager_result=True`."),
    choice("l11-eager-retry", "11", S11["retry"],
           "A task does `raise self.retry(exc=exc, countdown=30, max_retries=3)`. Run with `.apply()` while the "
           "mocked service always raises ConnectionError: what happens?",
           ["It waits 30 s between attempts", "All 4 attempts run at once in the caller's thread, the countdown "
            "ignored, and the result is FAILURE with the ConnectionError",
            "apply() raises Retry after the first attempt", "It publishes the retries to the broker"], 1,
           "In eager mode self.retry() does not publish: apply() runs the retry's signature again at once, "
           "so a retry test with the dependency mocked takes milliseconds.",
           cheat="Eager retries run at once (countdown ignored): mock the dependency and `.apply()` to test "
                 "retries without waiting."),
    choice("l11-eager-propagates", "11", S11["propagates"],
           "With task_always_eager and task_eager_propagates=True, a task that calls self.retry() is sent "
           "with delay(). What does the caller see?",
           ["The retries run, then the final error", "delay() raises celery.exceptions.Retry after one attempt: "
            "the retries never run", "A FAILURE result", "Nothing: propagation applies only on workers"], 1,
           "Propagation re-raises whatever the task raised, and self.retry() raises Retry to ask for a retry; "
           "so the first request escapes. Without propagation the eager retries run and delay() returns the "
           "result.",
           cheat="`task_eager_propagates=True` makes eager failures raise at the call, and stops eager retries "
                 "(the `Retry` escapes)."),
    choice("l11-store-eager-result", "11", S11["ways"],
           "With task_always_eager=True and task_store_eager_result=True (set before the task is defined), a task "
           "returning a set is sent with delay() on a JSON app. What happens?",
           ["SUCCESS, as with every eager run", "FAILURE with EncodeError: the eager run stores its result in the "
            "result backend, so it encodes it as JSON, as a worker does", "The set is stored with pickle",
            "The setting is ignored in eager mode"], 1,
           "task_store_eager_result (default False) makes the eager tracer publish the result to the backend; "
           "the JSON encoder refuses the set, so the EagerResult and the backend both hold FAILURE/EncodeError. "
           "A task reads the setting when it is defined.",
           cheat="`task_store_eager_result=True` makes eager runs store (and so serialize) their result: "
                 "a set then fails eagerly too.",
           evidence=NB + "l11-store-eager-result"),
    choice("l11-start-worker-ping", "11", S11["worker"],
           "`with start_worker(app):` (all defaults) on an ordinary Celery app fails at once. Why?",
           ["The broker is not running", "Its default ping check asserts 'celery.ping' in app.tasks, a task only "
            "Celery's TestApp imports: a bare AssertionError; pass perform_ping_check=False",
            "start_worker needs the prefork pool", "The app must be set as current"], 1,
           "start_worker defaults to pool='solo', concurrency=1, perform_ping_check=True; _start_worker_thread "
           "asserts the ping task is registered before it starts the worker.",
           cheat="`start_worker(app)` on an ordinary app needs `perform_ping_check=False` (else a bare "
                 "AssertionError: no `celery.ping` task).",
           evidence="tests/test_l11_testing.py::"
                    "test_start_worker_with_the_ping_check_on_an_ordinary_app_fails_with_a_bare_assertion"),
    choice("l11-pytest-plugin", "11", S11["worker"],
           "With Celery 5.7 installed (no other Celery package), how do tests get the fixtures celery_app and "
           "celery_worker?",
           ["Automatically: installing Celery registers them", "Enable the plugin: `pytest -p "
            "celery.contrib.pytest` or `pytest_plugins = (\"celery.contrib.pytest\",)` in conftest.py",
            "Import celery.contrib.testing.worker in the test", "They do not exist in Celery 5"], 1,
           "Celery's distribution declares no pytest11 entry point, so pytest does not load its plugin by itself.",
           cheat="Celery's pytest fixtures (`celery_config`, `celery_app`, `celery_worker`) need "
                 "`-p celery.contrib.pytest` (no entry point in Celery 5.7).",
           evidence=NB + "l11-plugin-entry-point"),
    choice("l11-pytest-fixtures", "11", S11["worker"],
           "A test defines a task on `celery_app` inside the test, after the `celery_worker` fixture started. "
           "What must it call before sending the task?",
           ["Nothing", "`celery_worker.reload()`, so the running worker picks up the new task",
            "`celery_app.finalize()`", "`celery_app.conf.task_always_eager = True`"], 1,
           "The worker was started before the task was registered; reload() refreshes what it knows. "
           "celery_config (a session fixture) sets the test app's broker and backend (memory:// by default).",
           cheat="`celery_worker` starts `start_worker(celery_app)` per test; a task added later needs "
                 "`celery_worker.reload()`.",
           evidence="tests/test_l11_testing.py::test_a_task_registered_after_start_worker_needs_reload"),
]
