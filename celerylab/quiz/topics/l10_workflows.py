"""Quiz questions for lesson 10 · Workflows (signatures, chain, group, chord, callbacks, rate_limit).

Each question's evidence is the cell of notebooks/10_workflows.ipynb tagged ``evidence:<id>``.
"""
from __future__ import annotations

from celerylab.quiz.bank import choice, myth

LESSON = ("10", "10_workflows.ipynb", "Workflows")

S10 = {
    "sig": "1. Signatures: a task call written down",
    "chain": "2. `chain`: each result feeds the next step",
    "group": "3. `group`: fan out, results in order",
    "backend": "What a chord needs from the result backend",
    "get": "5. `.get()` inside a task, and how a chord removes the wait",
    "chunks": "6. `chunks` and `starmap`: many calls, few messages",
    "link": "7. Callbacks: `link` and `link_error`",
    "failed": "8. A chord whose header task fails",
    "stuck": "9. A chord that never completes",
    "rate": "10. `rate_limit`: per worker, not per cluster",
}

QUESTIONS = [
    choice("l10-signature-dict", "10", S10["sig"],
           "What is `add.s(2, 3)`?",
           ["The AsyncResult of add(2, 3)", "A signature: a dict holding the task name, args, kwargs and "
            "options, sent nowhere yet", "The number 5", "A Python partial that runs add locally"], 1,
           "A signature is a task call kept as data (a dict subclass, so it travels as JSON inside task "
           "messages); .set() adds options such as queue or countdown, .delay() sends it.",
           cheat="`task.s(...)`: a signature, a dict (task, args, kwargs, options) sent nowhere until `.delay()`."),
    choice("l10-chord", "10", "4. `chord`: fan out, then fan in",
           "When is a chord's body sent?",
           ["At once, together with the header", "When the last header task finishes: that worker sends it "
            "with the list of the header's results", "When the client calls .get()",
            "Every second, by the client, until the header is done"], 1,
           "Each header task reports to the result backend when it ends; the one that completes the set "
           "sends the body (on Redis in the same step, on other backends celery.chord_unlock polls).",
           cheat="chord: header side by side; the last one to finish sends the body with all results, in order."),
    choice("l10-partial-prepend", "10", S10["sig"],
           "`sub(x, y)` returns `x - y`. What does `sub.s(10).delay(1)` compute?",
           ["sub(10, 1) = 9", "sub(1, 10) = -9", "It fails: a signature cannot take more arguments",
            "sub(10, 1) on the worker, sub(1, 10) in a chain"], 1,
           "Arguments given when a signature is sent (or by the previous step of a chain) go in front of the "
           "ones it holds: args = new_args + signature.args. Use keywords (sub.s(x=10)) when order matters.",
           cheat="Partial args go in front: `sub.s(10).delay(1)` is `sub(1, 10)`; use keywords when order matters."),
    choice("l10-chain", "10", S10["chain"],
           "In `add.s(2, 3) | add.s(10) | square.s()`, who sends the message for `add(5, 10)`?",
           ["The client, all three at once", "The worker that ran add(2, 3), when it finished, with 5 as the "
            "first argument", "A chord_unlock task polling the first result", "The result backend"], 1,
           "A chain sends only its first step; each worker sends the next step with the return value "
           "prepended to its arguments. No task waits, and `.si()` makes a step ignore the previous result.",
           cheat="chain: the worker sends each next step with the previous result first; `.si()` ignores it."),
    choice("l10-group-order", "10", S10["group"],
           "A group of four tasks finishes in reverse order. What does `GroupResult.get()` return?",
           ["The results in finishing order", "The results in the order of the signatures",
            "A dict of task id to result", "Only the first result"], 1,
           "GroupResult keeps its AsyncResults in the order of the signatures and joins them in that order, "
           "whatever order the tasks finished in.",
           cheat="`group(...).apply_async().get()`: results in signature order, not finishing order."),
    choice("l10-rpc-no-chord", "10", S10["backend"],
           "Which result backend refuses to run a chord (`NotImplementedError` at `apply_async`)?",
           ["redis://", "rpc://", "A database backend", "file://"], 1,
           "The rpc:// backend sends results back as messages and cannot count a chord's parts; Redis counts "
           "natively (a sorted set per chord), database and file backends fall back to celery.chord_unlock, "
           "which polls the header's results.",
           cheat="Chords need a counting backend: Redis natively, others via chord_unlock; rpc:// raises."),
    choice("l10-get-deadlock", "10", S10["get"],
           "Four tasks on a 4-slot worker each send two subtasks and `.get()` them (with the guard switched "
           "off). What happens?",
           ["All finish: subtasks run in the same slot", "Every slot waits and the subtasks never start until "
            "the waits time out: a deadlock", "Celery runs the subtasks eagerly", "The worker adds slots"], 1,
           "A waiting task holds its slot; the subtasks need a free slot. Celery refuses .get() in a task by "
           "default; use a chord, whose body is sent when the parts finish, holding no slot.",
           cheat="Never `.get()` inside a task (deadlocks the pool); a chord sends the body when the parts are done."),
    choice("l10-chunks", "10", S10["chunks"],
           "How many task messages does `add.chunks(pairs, 3)` send for 10 pairs?",
           ["10", "4 (3 + 3 + 3 + 1 calls, each a celery.starmap message)", "1", "3"], 1,
           "chunks splits the calls into groups of n and sends each as one celery.starmap message; "
           "add.starmap(pairs) is a single message running every call in one worker slot.",
           cheat="`starmap`: one message, many calls; `chunks(it, n)`: one message per n calls."),
    choice("l10-link-error", "10", S10["link"],
           "An error callback is declared as `record_failure(request, exc, traceback)` and attached with "
           "`link_error=record_failure.s()`. How is it called when the task fails?",
           ["Sent as a new task with the task id only", "Called in the worker, right away, with the failed "
            "task's request, the exception and the traceback", "Never: link_error needs bind=True",
            "On the client, when it calls .get()"], 1,
           "An errback whose task takes more than one argument is called inline by the worker with "
           "(request, exc, traceback); one that takes only the task id is sent as a task.",
           cheat="`link` runs on success with the result; `link_error(request, exc, traceback)` runs in the worker."),
    choice("l10-chord-failure", "10", S10["failed"],
           "One header task of a chord raises ValueError. What happens to the body, and what does the client's "
           "`.get()` on the chord raise?",
           ["The body runs with None in place of the failure; .get() returns", "The body never runs and stores "
            "a ChordError; .get() raises the header task's ValueError (from the result's parents)",
            "The body runs anyway; .get() raises ChordError", "The chord waits for ever"], 1,
           "Measured: the body's state becomes FAILURE with a ChordError ('Dependency ... raised ...'), its "
           "link_error callbacks get that error, and AsyncResult.get() re-raises the first failed parent's "
           "own exception.",
           cheat="Failed chord part: body not run, body result = ChordError; `.get()` raises the part's error."),
    choice("l10-chord-stuck", "10", S10["stuck"],
           "A chord's body never runs and `.get()` hangs. Which cause fits?",
           ["One header task never finished (e.g. routed to a queue no worker consumes)",
            "The body is too slow", "The header has more than 3 tasks", "task_acks_late is off"], 0,
           "The body is sent only when every header task has reported to the backend; a part that never runs "
           "leaves the chord's counter short for ever. Bound every .get() on a chord with a timeout.",
           cheat="A chord completes only when every header task reports: one stuck part, no body; bound `.get()`."),
    myth("l10-ignore-result-chord", "10", S10["stuck"],
         "A chord whose header tasks have ignore_result=True never completes, whatever the backend.", False,
         "On Celery 5.7 with Redis results the counter is fed whether or not a header result is stored, so the "
         "chord completes (measured). Backends that use celery.chord_unlock poll for results that are never "
         "stored and retry for ever.",
         cheat="ignore_result on a chord header: fine on Redis (5.7), stalls chord_unlock on other backends."),
    myth("l10-rate-limit", "10", S10["rate"],
         "rate_limit='5/s' caps a task at 5 starts per second across the whole cluster.", False,
         "Each worker has its own token bucket: one worker starts at most 5 per second, two workers together "
         "start more than 5 per second (measured). For a cluster-wide cap use one worker on a dedicated queue "
         "or a shared counter.",
         cheat="`rate_limit` is per worker: N workers allow N times the rate."),
]
