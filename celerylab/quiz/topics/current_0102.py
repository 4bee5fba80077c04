"""Lessons 01 and 02, Celery 5.7 features: ``AsyncResult.exists()`` and typed arguments (``pydantic=True``)."""
from __future__ import annotations

from celerylab.quiz.bank import choice

QUESTIONS = [
    choice("l01-exists", "01", "`PENDING` also means \"unknown\"",
           "A task was sent to a queue and waits there (no worker has taken it). What does "
           "`result.exists()` (Celery 5.7) return?",
           ["True: the task was sent", "False: nothing writes a record at send time, so it looks like an id "
            "never sent", "It raises: the task is not finished", "PENDING"], 1,
           "exists() asks the result backend for a record. The worker writes one when the task starts (with "
           "track_started), retries or ends, the task's own update_state() writes one, and a worker that receives "
           "a revoke for a PENDING id writes REVOKED (even for a queued task or a made-up id); otherwise a queued "
           "task, a made-up id and an expired result all give False.",
           cheat="`AsyncResult(id).exists()` (5.7): True once a state was stored (STARTED with track_started, "
                 "update_state, RETRY, final, or REVOKED when a worker receives a revoke); a queued task gives "
                 "False like a made-up id.",
           evidence="notebooks/01_architecture.ipynb::evidence:l01-exists"),
    choice("l01-exists-extended", "01", "`PENDING` also means \"unknown\"",
           "Does `result_extended=True` make `exists()` True for a task that was sent but not started?",
           ["Yes: it stores the task at send time", "No: it only adds fields (name, args, worker) to the record "
            "the worker writes", "Only on Redis", "Only with track_started"], 1,
           "result_extended changes what the worker's record holds, not when it is written.",
           cheat="`result_extended=True` adds name, args, kwargs, worker, retries, queue to the result the worker "
                 "stores; nothing is stored at send time.",
           evidence="tests/test_claims_current_0102.py::test_a_revoke_update_state_and_extended_fields_on_a_real_worker"),
    choice("l02-pydantic", "02", "Typed task arguments: `pydantic=True`",
           "`@app.task(pydantic=True) def place_order(order: Order) -> Receipt` is called with "
           "`place_order.delay(Order(...))`. What travels, and what does `.get()` return?",
           ["A pickled Order; an Order", "A JSON object (the model dumped to a dict); the task receives an Order "
            "and the caller gets the Receipt as a dict", "An EncodeError: models are not JSON",
            "A JSON string; a Receipt"], 1,
           "apply_async dumps the model (model_dump(mode='json')); the worker validates the dict back into an "
           "Order; a returned model matching the return annotation is dumped to a dict for the result backend.",
           cheat="`@app.task(pydantic=True)`: caller's model -> JSON dict; worker validates it into the model; "
                 "returned model -> dict. Options: pydantic_strict, pydantic_context, pydantic_dump_kwargs.",
           evidence="notebooks/02_serialization.ipynb::evidence:l02-pydantic"),
    choice("l02-pydantic-bad", "02", "Typed task arguments: `pydantic=True`",
           "A `pydantic=True` task gets a dict that fails its model's validation. Where does the error show?",
           ["In delay(): nothing is sent", "On the worker, before the function runs: the task is a FAILURE and "
            "the caller's get() raises a plain Exception naming ValidationError (details in result.traceback)",
            "Nowhere: the task gets the raw dict", "The message is rejected by the broker"], 1,
           "The caller does not validate a dict; the worker's wrapper raises ValidationError, which a JSON result "
           "backend cannot rebuild (no arguments), so the caller sees Exception.",
           cheat="pydantic=True with a bad dict: sent fine, fails on the worker (ValidationError) -> caller gets a "
                 "plain `Exception`; read `result.traceback`. Build the model in the caller to fail early.",
           evidence="notebooks/02_serialization.ipynb::evidence:l02-pydantic-bad"),
]
