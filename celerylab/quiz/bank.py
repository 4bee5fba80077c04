"""The question bank: one source for the quiz widgets (notebook 09) and docs/cheatsheet.md.

Every question names the lesson notebook and the section that proves its answer. Three kinds:

* ``choice``: pick one of ``choices``; ``answer`` is the index of the right one;
* ``myth``: a claim from the seed article, myth (``answer=False``) or fact (``answer=True``);
* ``code``: the learner writes a few lines; :func:`celerylab.quiz.check.run_code` runs them and
  ``checker(namespace)`` raises ``AssertionError`` with what is wrong.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from ..i18n import N_, _, translate

#: lesson number -> notebook file in notebooks/
LESSONS = {
    "00": "00_start_here.ipynb",
    "01": "01_architecture.ipynb",
    "02": "02_serialization.ipynb",
    "03": "03_scheduling.ipynb",
    "04": "04_priority_routing.ipynb",
    "05": "05_retries.ipynb",
    "06": "06_dead_letter.ipynb",
    "07": "07_monitoring.ipynb",
    "08": "08_production.ipynb",
    "08a": "08a_workers.ipynb",
    "08b": "08b_durability.ipynb",
}

#: lesson number -> title. The titles, the section headings and the questions' texts are data, not
#: ``_()`` calls: ``catalogs.kit_entries()`` extracts them from the loaded questions, and they are shown
#: with ``translate(text, lang)`` (see :meth:`Question.where_in`, the quiz widgets and the cheat sheet).
TITLES = {
    "00": "Start here", "01": "Architecture and task flow", "02": "Serialization and registration",
    "03": "Scheduling", "04": "Priority and routing", "05": "Retries and backoff",
    "06": "Dead-letter queues", "07": "Monitoring and alerting", "08": "Production",
    "08a": "Workers", "08b": "Durability",
}


@dataclass(frozen=True)
class Question:
    id: str
    lesson: str
    section: str | None          #: heading text in the lesson notebook (None: the whole lesson)
    kind: str                    #: "choice" | "myth" | "code"
    prompt: str
    explanation: str
    answer: object = None        #: index (choice) or bool (myth: True = fact)
    choices: tuple = ()
    round: str = "lessons"       #: "faq" | "lessons" | "myths"
    claim: str = ""              #: myth: the seed article's words
    stub: str = ""               #: code: what the answer box starts with
    solution: str = ""           #: code: an answer that passes
    checker: Callable | None = field(default=None, compare=False)
    cheat: str = ""              #: one line for the cheat sheet (default: from the explanation)
    #: where the answer is proved: "" = the cell tagged `evidence:<id>` in the lesson notebook, or
    #: "notebooks/NN_x.ipynb::evidence:<tag>", or "tests/test_claims.py::test_x" (see quiz/evidence.py)
    evidence: str = ""

    @property
    def notebook(self) -> str:
        return LESSONS[self.lesson]

    @property
    def anchor(self) -> str:
        """The heading's anchor as JupyterLab makes it (spaces become dashes)."""
        return self.anchor_in()

    def anchor_in(self, lang: str | None = None) -> str:
        """The anchor of the section's heading in ``lang``'s edition of the lesson (its translated heading;
        the English one while the catalog does not translate it)."""
        return translate(self.section, lang).replace(" ", "-") if self.section else ""

    def link(self, base: str = "../notebooks/", lang: str | None = None) -> str:
        anchor = self.anchor_in(lang)
        return f"{base}{self.notebook}" + (f"#{anchor}" if anchor else "")

    @property
    def where(self) -> str:
        """``<lesson> · <title>, section “<heading>”`` in the learner's language."""
        return self.where_in()

    def where_in(self, lang: str | None = None) -> str:
        title = f"{self.lesson} · {translate(TITLES[self.lesson], lang)}"
        if not self.section:
            return title
        return translate(N_("{title}, section “{section}”"), lang).format(title=title,
                                                                        section=translate(self.section, lang))

    def text(self, field: str, lang: str | None = None):
        """A shown field (``prompt``, ``claim``, ``explanation``, ``cheat``, ``choices``) in ``lang``."""
        value = getattr(self, field)
        if field == "choices":
            return tuple(translate(c, lang) for c in value)
        return translate(value, lang) if value else value

    @property
    def right_answer(self) -> str:
        if self.kind == "choice":
            return self.choices[self.answer]
        if self.kind == "myth":
            return "Fact" if self.answer else "Myth"
        return self.solution.strip()

    def right_answer_in(self, lang: str | None = None) -> str:
        """:attr:`right_answer` as shown: a choice or Myth/Fact translated, code as it is."""
        return self.right_answer if self.kind == "code" else translate(self.right_answer, lang)

    def strings(self) -> list[str]:
        """Every text of the question a learner reads, for the catalog (code, ids and links are not)."""
        found = [self.prompt, *self.choices, self.claim, self.explanation, self.cheat]
        return list(dict.fromkeys(s for s in found if s))

    @property
    def proof(self):
        """The resolved :class:`~celerylab.quiz.evidence.Evidence` (a tagged cell or a test)."""
        from .evidence import resolve

        return resolve(self)


def choice(id, lesson, section, prompt, choices, answer, explanation, round="lessons", cheat="", evidence=""):
    # Move the right answer to a position fixed by the id, so it is not always the same letter.
    choices = list(choices)
    right = choices.pop(answer)
    answer = zlib.crc32(id.encode()) % (len(choices) + 1)
    choices.insert(answer, right)
    return Question(id, lesson, section, "choice", prompt, explanation, answer, tuple(choices), round, cheat=cheat,
                    evidence=evidence)


def myth(id, lesson, section, claim, fact, explanation, cheat="", evidence=""):
    return Question(id, lesson, section, "myth", f"Myth or fact? “{claim}”", explanation, fact,
                    ("Myth", "Fact"), "myths", claim=claim, cheat=cheat, evidence=evidence)


def code(id, lesson, section, prompt, stub, solution, checker, explanation, cheat="", evidence=""):
    return Question(id, lesson, section, "code", prompt, explanation, None, (), "lessons", stub=stub,
                    solution=solution, checker=checker, cheat=cheat, evidence=evidence)


# ---------------------------------------------------------------------------------------
# Checkers for code questions: they get the namespace the learner's code filled in.
# ---------------------------------------------------------------------------------------
def _need(ns, name):
    if name not in ns:
        raise AssertionError(_("define `{name}`", name=name))
    return ns[name]


def _check_eta(ns):
    eta = _need(ns, "eta")
    if not isinstance(eta, datetime):
        raise AssertionError(_("`eta` is {type}, not a datetime", type=type(eta).__name__))
    if eta.tzinfo is None or eta.utcoffset() is None:
        raise AssertionError(_("`eta` is naive (no time zone): Celery reads a naive eta as UTC, so a local "
                               "datetime.now() is off by your UTC offset, and utcnow() is deprecated; "
                               "use datetime.now(timezone.utc)"))
    delta = (eta - datetime.now(timezone.utc)).total_seconds()
    if not 8 <= delta <= 11:
        raise AssertionError(_("`eta` is {delta:.0f} s from now, not 10", delta=delta))


def _check_routes(ns):
    from celery import Celery

    routes = _need(ns, "task_routes")
    app = Celery("quiz-routes", set_as_current=False)
    app.conf.task_routes = routes
    try:
        got = {name: app.amqp.router.route({}, name)["queue"].name
               for name in ("reports.monthly", "reports.daily", "shop.checkout")}
    finally:
        app.close()
    if got["reports.monthly"] != "reports" or got["reports.daily"] != "reports":
        raise AssertionError(_("reports.monthly goes to {queue}: it should go to 'reports'",
                               queue=repr(got["reports.monthly"])))
    if got["shop.checkout"] != "celery":
        raise AssertionError(_("shop.checkout goes to {queue}: only reports.* should move",
                               queue=repr(got["shop.checkout"])))


def _check_backoff(ns):
    backoff = _need(ns, "backoff")
    got = [backoff(r) for r in range(9)]
    want = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    if got != want:
        raise AssertionError(_("backoff(0..8) = {got}; expected doubling from 1 s, capped at 60", got=got))


def _check_beat(ns):
    from celery.schedules import crontab

    schedule = _need(ns, "beat_schedule")
    entries = list(schedule.values()) if isinstance(schedule, dict) else []
    if len(entries) != 1 or not isinstance(entries[0], dict):
        raise AssertionError(_("beat_schedule should hold one entry: {entry}",
                               entry="{'name': {'task': ..., 'schedule': ...}}"))
    entry = entries[0]
    if entry.get("task") != "reports.daily":
        raise AssertionError(_("the entry runs {task}, not 'reports.daily'", task=repr(entry.get("task"))))
    sched = entry.get("schedule")
    if not isinstance(sched, crontab):
        raise AssertionError(_("use celery.schedules.crontab for a time of day (a number is an interval)"))
    if sched.hour != {2} or sched.minute != {0} or len(sched.day_of_week) != 7:
        raise AssertionError(_("the crontab should fire at 02:00 every day: crontab(hour=2, minute=0)"))


def _check_backlog(ns):
    import fakeredis

    backlog = _need(ns, "backlog")
    r = fakeredis.FakeRedis()
    sep = "\x06\x16"
    r.lpush("emails", *[b"m"] * 3)
    r.lpush(f"emails{sep}3", *[b"m"] * 2)
    r.lpush(f"emails{sep}9", b"m")
    r.lpush("other", b"m")
    got = backlog(r, "emails")
    if got != 6:
        raise AssertionError(_("backlog(r, 'emails') = {got} for 3 + 2 + 1 messages in its bands; expected 6",
                               got=repr(got)))


def _check_settings_no_loss(ns):
    conf = _need(ns, "conf")
    if not isinstance(conf, dict):
        raise AssertionError(_("`conf` should be a dict of Celery settings"))
    if conf.get("task_acks_late") is not True:
        raise AssertionError(_("a killed worker still loses the task: the ack comes before the task runs"))
    if conf.get("task_reject_on_worker_lost") is not True and conf.get("task_retry_on_worker_lost") is not True:
        raise AssertionError(_("a killed pool process still loses the task: its message is acked anyway"))


def _check_charge_once(ns):
    charge_once = _need(ns, "charge_once")

    class Store:
        def __init__(self):
            self.keys = {}

        def set(self, key, value, nx=False):
            if nx and key in self.keys:
                return None
            self.keys[key] = value
            return True

    store, charged = Store(), []
    for order in ("o-1", "o-1", "o-2", "o-1"):
        charge_once(store, order, lambda o=order: charged.append(o))
    if sorted(charged) != ["o-1", "o-2"]:
        raise AssertionError(_("charges made for o-1, o-1, o-2, o-1: {charged}; each order should be charged once",
                               charged=charged))


def _check_visibility(ns):
    opts = _need(ns, "broker_transport_options")
    vt = opts.get("visibility_timeout") if isinstance(opts, dict) else None
    if not isinstance(vt, (int, float)):
        raise AssertionError(_("set 'visibility_timeout' (seconds) in the dict"))
    if vt <= 2 * 3600:
        raise AssertionError(_("visibility_timeout={vt}: a 2-hour countdown would be delivered again before it is due",
                               vt=vt))


def _check_soft_limit(ns):
    from celery import Celery
    from celery.exceptions import SoftTimeLimitExceeded

    make = _need(ns, "make_task")
    app = Celery("quiz-soft", set_as_current=False)
    try:
        task = make(app)
        if task.soft_time_limit != 10 or (task.time_limit is not None and task.time_limit <= 10):
            raise AssertionError(_("soft_time_limit={soft}, time_limit={hard}: expected a 10 s soft limit below "
                                   "any hard one", soft=task.soft_time_limit, hard=task.time_limit))

        def interrupted(seconds):
            raise SoftTimeLimitExceeded()

        # what a prefork worker does when the soft limit hits during the sleep: raise inside it.
        # The task's globals are this namespace, so its `time.sleep` (or `sleep`) is swapped here.
        from types import SimpleNamespace

        if "time" in ns:
            ns["time"] = SimpleNamespace(sleep=interrupted)
        if "sleep" in ns:
            ns["sleep"] = interrupted
        got = task.run()
        if got != "partial":
            raise AssertionError(_("when the soft limit hits, the task returned {got}, not 'partial'", got=repr(got)))
    finally:
        app.close()


# ---------------------------------------------------------------------------------------
# The questions
# ---------------------------------------------------------------------------------------
#: the one idempotency rule every lesson, question and cheat line teaches
IDEMPOTENCY_RULE = ("Deduplicate by a key derived from the business operation (e.g. order id + action). "
                    "The task id stays the same across retries and redeliveries of one message, so it "
                    "catches those, but a second apply_async of the same operation (a client retry, a "
                    "double click, two beats) gets a new id and slips through.")

S08B = {
    "concept": "1. Concept: where a queued task lives",
    "redis": "2. Live demo: Redis killed, with and without the append-only file",
    "worker": "3. Live demo: a worker mid-batch, and Redis restarts under it",
    "rabbit": "4. Live demo: RabbitMQ restarted, killed, and killed with publisher confirms",
    "gotchas": "6. Gotchas",
}

S08 = {
    "acks": "1. When is a message acknowledged?",
    "child": "1a. Kill only the pool process",
    "group": "1b. Kill the whole worker",
    "reject": "1a. Kill only the pool process",
    "poison": "Gotcha: the poison message",
    "vt": "2. The visibility timeout runs long tasks twice",
    "durable": "3. Broker durability",
    "lost": "4. How does Celery make sure a task is not lost?",
}

#: lesson 08a (split from 08): the question ids keep their l08- prefix
S08A = {
    "pools": "1. Concurrency pools, measured",
    "limits": "2. Time limits",
    "threads_limits": "Gotcha: the threads pool ignores time limits",
    "prefetch": "3. Prefetching",
    "recycle": "4. Recycling pool processes: `worker_max_tasks_per_child`",
    "shutdown": "5. Warm and cold shutdown",
    "ignore": "6. `ignore_result` for throughput",
    "blocked": "7. What to do when a worker is blocked",
}

QUESTIONS: list[Question] = [
    # ----- the seed article's FAQ -------------------------------------------------------
    choice("faq-not-lost", "08", S08["lost"],
           "How do you make sure a task is not lost when the worker running it is killed?",
           ["Nothing: Celery acknowledges after execution by default",
            "task_acks_late=True (plus task_reject_on_worker_lost=True for a dying pool process), "
            "and idempotent tasks",
            "task_publish_retry=True",
            "A dead-letter queue"], 1,
           "By default the worker acks a message when the pool accepts it, just before the task runs, so "
           "kill -9 mid-task loses it. Late acks keep it until the task is done; it comes back (on Redis after "
           "the visibility timeout), so the task may run twice and must be idempotent. Publish retries "
           "protect sending; a DLQ keeps failures.",
           round="faq"),
    choice("faq-failure", "05", "3. Automatic retries and exponential backoff",
           "A task calls a flaky API. What is the production answer to “the task failed”?",
           ["Retry at once, forever", "Retry with exponential backoff and jitter, cap the retries, then "
            "record the failure (dead letter, Sentry, alert)", "Catch every exception and return None",
            "Raise the worker's concurrency"], 1,
           "Retries with backoff and jitter ride out short outages without hammering the dependency; "
           "max_retries stops them, and what still fails goes somewhere a human sees it (lessons 06, 07).",
           round="faq"),
    choice("faq-backlog", "07", "5. Gotcha: `LLEN` under-counts your backlog",
           "You monitor the backlog of the Redis queue `emails` with `LLEN emails`. What does it miss?",
           ["Nothing", "Messages in the priority-band lists (emails\\x06\\x163 ...) and messages workers "
            "have prefetched (the unacked hash)", "Only tasks with an ETA", "Results"], 1,
           "kombu keeps one list per priority band and moves prefetched messages into `unacked`. Count "
           "every band (the kit's exporter in lesson 07 sums them), and watch unacked too.",
           round="faq"),
    choice("faq-blocked", "08a", S08A["blocked"],
           "A worker stops taking tasks: every pool slot is stuck in a call to a slow partner API. Which "
           "fix actually helps?",
           ["Switch to the gevent pool for CPU-bound tasks", "Timeouts on the calls, a soft/hard time "
            "limit on the task, and the IO-bound tasks on their own queue and workers",
            "Raise worker_prefetch_multiplier", "Turn on task_track_started"], 1,
           "A network call without a timeout can hang for ever; time limits free the slot (prefork enforces "
           "both limits, gevent only the hard one, threads neither); separate queues keep the slow work from "
           "starving the rest. gevent helps IO-bound work, never CPU-bound work.",
           round="faq"),
    code("faq-backlog-code", "07", "5. Gotcha: `LLEN` under-counts your backlog",
         "Write `backlog(r, queue)`: the number of messages waiting in a Redis queue, all priority bands "
         "included. `r` is a redis client; kombu names band lists `queue + '\\x06\\x16' + str(band)` for "
         "bands 1 to 9.",
         "def backlog(r, queue):\n    ...",
         "def backlog(r, queue):\n    sep = '\\x06\\x16'\n"
         "    return r.llen(queue) + sum(r.llen(f'{queue}{sep}{b}') for b in range(1, 10))",
         _check_backlog,
         "Band 0 is the plain list; bands 1-9 get their own keys. LLEN of the plain list alone misses "
         "every message sent with a priority.",
         cheat="Queue length on Redis = LLEN queue + LLEN of each band list `queue\\x06\\x16N` (+ unacked)."),

    # ----- 00 -------------------------------------------------------------------------
    choice("l00-delay", "00", "3. Your first task",
           "What does `add.delay(2, 3)` return?",
           ["5", "An AsyncResult, at once: the task runs later on a worker", "None",
            "A Future that runs add in a thread of your process"], 1,
           "delay() serializes the call into a message, puts it on the broker and returns an AsyncResult "
           "(a claim ticket). .get() waits for the worker's result."),
    choice("l00-failure", "00", "4. When a task fails",
           "A task raises ValueError on the worker. What does `result.get()` do?",
           ["Returns None", "Re-raises the ValueError (propagate=False returns it instead)",
            "Waits for ever", "Restarts the worker"], 1,
           "The exception is stored as the result (state FAILURE) and re-raised by get()."),
    choice("l00-direct-call", "00", "3. Your first task",
           "You call a task like a plain function: `add(2, 3)`. What happens?",
           ["It is sent to the broker", "It runs right here, in the calling process: no queue, no worker",
            "It raises NotRegistered", "It runs on the next free worker"], 1,
           "Calling a task object runs its function locally. Only delay()/apply_async() send a message."),

    # ----- 01 -------------------------------------------------------------------------
    choice("l01-components", "01", "1. Four components",
           "Which part of Celery stores a task's return value?",
           ["The broker", "The result backend (optional)", "The worker's memory", "Beat"], 1,
           "Client -> broker -> worker -> result backend. Without a backend, results go nowhere."),
    choice("l01-pending", "01", "`PENDING` also means \"unknown\"",
           "`AsyncResult('no-such-id').state` returns...",
           ["An error", "PENDING: any id the backend has never seen is PENDING", "UNKNOWN", "FAILURE"], 1,
           "PENDING means “I know nothing about it”, for a queued task and a made-up id alike."),
    choice("l01-started", "01", "3. Every state a task reports",
           "Why do your tasks never show STARTED?",
           ["They are too fast", "STARTED is only reported with task_track_started=True",
            "Redis does not support it", "Only beat sets it"], 1,
           "Celery does not store STARTED unless task_track_started is on (the seed says so too); by default "
           "a task goes from PENDING straight to SUCCESS or FAILURE."),
    choice("l01-get-in-task", "01", "A task must not wait for another task's result",
           "A task calls `other.delay().get()`. What happens?",
           ["It works", "Celery raises RuntimeError: waiting inside a task can deadlock the pool",
            "It returns None", "The worker restarts"], 1,
           "result.get() inside a task is refused; chain the tasks or use a callback instead."),
    choice("l01-chain", "01", "4. Gotchas",
           "`(add.s(2, 3) | add.s(10))()` runs on a worker, and so does `(add.s(2, 3) | add.si(1, 1))()`. "
           "What do they return?",
           ["15, then 2: a chain passes each result as the next task's first argument; .si() is immutable "
            "and ignores it", "5, then 5: a chain returns its first task's result",
            "An error: add.s(10) is missing an argument", "15, then 7: .si() adds the result too"], 0,
           "A signature (.s()) is a task call packed up to be sent later; in a chain the result of one step "
           "becomes the first argument of the next, unless the signature is immutable (.si())."),

    # ----- 02 -------------------------------------------------------------------------
    choice("l02-pickle", "02", "5. Why a worker must refuse pickle",
           "Why does a production worker accept only JSON (`accept_content=['json']`)?",
           ["JSON is faster", "A pickle message runs code while it is loaded: anyone who can write to the "
            "broker can run commands on the worker", "Pickle cannot carry dicts", "Redis needs JSON"], 1,
           "Unpickling calls constructors named in the message. Keep pickle off, or sign messages."),
    choice("l02-json-types", "02", "2. What JSON carries, through a real worker",
           "A task returns a tuple `(1, 2)` with the JSON serializer. What does `get()` give you?",
           ["(1, 2)", "[1, 2]: JSON has lists, not tuples", "An error", "'(1, 2)'"], 1,
           "JSON round trips change types: tuples become lists and sets fail. kombu 5.7's JSON keeps "
           "datetimes, UUIDs and Decimals (it tags them in the message), so those come back as they were."),
    choice("l02-bind", "02", "8. Gotcha: the seed's logging example",
           "The seed's logging example reads `self.request.id` in a task declared with plain `@app.task`. "
           "What is wrong?",
           ["Nothing", "There is no `self` without bind=True: the task fails with NameError",
            "request.id is always None", "Logging is not allowed in tasks"], 1,
           "bind=True passes the task instance as the first argument; only then is self.request available."),
    choice("l02-names", "02", "6. Task names and registration",
           "A worker logs “Received unregistered task of type 'shop.send_email'”. Why?",
           ["The broker lost the task", "The worker did not import the module that defines that task "
            "name (or the names differ)", "The task raised", "JSON cannot carry it"], 1,
           "Messages carry the task's name; the worker must have a task registered under that exact name."),
    choice("l02-hostname", "02", "7. `bind=True` and `self.request`",
           "A bound task returns `self.request.hostname`. What does it report?",
           ["The worker's node name (e.g. celery@host) on any `celery worker` process, threads pool included",
            "The broker's host name", "Always the machine's name", "Nothing unless the prefork pool runs it"], 0,
           "request.hostname is the node name of the worker that runs the task; the kit's in-kernel worker, "
           "started without a node name, reports the machine's name. It does not depend on the pool."),

    # ----- 03 -------------------------------------------------------------------------
    code("l03-eta", "03", "2. Gotcha: naive datetimes (the seed article's `datetime.utcnow()`)",
         "Define `eta`: a timezone-aware datetime 10 seconds from now, for `apply_async(eta=eta)`.",
         "from datetime import datetime, timedelta, timezone\neta = ...",
         "from datetime import datetime, timedelta, timezone\neta = datetime.now(timezone.utc) + timedelta(seconds=10)",
         _check_eta,
         "Celery reads a naive eta as UTC, whatever the app's timezone: datetime.utcnow() works but is "
         "deprecated, and a naive local datetime.now() is off by your UTC offset. Use "
         "datetime.now(timezone.utc), or simply countdown=10."),
    code("l03-beat", "03", "4. Periodic tasks: beat",
         "Write `beat_schedule` with one entry that runs the task `reports.daily` every day at 02:00.",
         "from celery.schedules import crontab\nbeat_schedule = {}",
         "from celery.schedules import crontab\nbeat_schedule = {'daily-report': {'task': 'reports.daily', "
         "'schedule': crontab(hour=2, minute=0)}}",
         _check_beat,
         "crontab(hour=2, minute=0) fires at 02:00 in the app's timezone; a number would be an interval in seconds."),
    choice("l03-two-beats", "03", "5. Gotcha: run exactly one beat",
           "You run beat on both of your two servers. What happens?",
           ["Nothing: they coordinate", "Every periodic task is sent twice", "The second beat refuses to start",
            "Tasks alternate between them"], 1,
           "Beat has no leader election: run exactly one (or use a scheduler with a lock)."),
    code("l03-visibility", "03", "6. Gotcha: a countdown longer than the visibility timeout runs twice (Redis)",
         "Your tasks use countdowns of up to 2 hours on Redis. Set `broker_transport_options` so they do not "
         "run twice.",
         "broker_transport_options = {}",
         "broker_transport_options = {'visibility_timeout': 3 * 3600}",
         _check_visibility,
         "A worker holds ETA tasks unacked; after visibility_timeout (1 h by default) Redis hands them out "
         "again. Keep it above your longest countdown, ETA and task."),
    choice("l03-expires", "03", "3. A deadline: `expires`",
           "A task is sent with `expires=60` but no worker is free for two minutes. What happens then?",
           ["It runs late", "The worker discards it as REVOKED (expired)", "It fails with TimeoutError",
            "Beat resends it"], 1,
           "expires is a deadline for starting: past it, the worker revokes the task instead of running it."),

    # ----- 04 -------------------------------------------------------------------------
    code("l04-routes", "04", "1. Routing: one queue per kind of work",
         "Write `task_routes` so that every task whose name starts with `reports.` goes to the queue "
         "`reports` (and nothing else moves).",
         "task_routes = {}",
         "task_routes = {'reports.*': {'queue': 'reports'}}",
         _check_routes,
         "task_routes maps names (glob patterns allowed) to options; a worker started with -Q reports "
         "takes them."),
    choice("l04-priority-redis", "04", "2. Priority on Redis: bands, and 0 comes first",
           "On the Redis transport, which priority is taken first?",
           ["9", "0", "5", "Whichever was sent first"], 1,
           "On Redis 0 is the highest priority (the opposite of RabbitMQ), and priorities are grouped into "
           "bands (priority_steps, default 0, 3, 6, 9)."),
    choice("l04-bands", "04", "3. Every priority its own band",
           "With the default priority_steps on Redis, are priorities 1 and 2 kept apart?",
           ["Yes", "No: 0, 1 and 2 share band 0, first in first out", "Only with RabbitMQ",
            "Only with acks_late"], 1,
           "A message goes to the highest step at or below its priority: with steps [0, 3, 6, 9], 0-2 share "
           "band 0, 3-5 band 3, 6-8 band 6. priority_steps=list(range(10)) gives each priority its own list."),
    choice("l04-rabbit", "04", "4. RabbitMQ: native priority, higher number first",
           "How do you get message priority on RabbitMQ?",
           ["Nothing to do", "Declare the queue with x-max-priority; then a higher number runs first",
            "Use Streams", "Set priority_steps"], 1,
           "RabbitMQ priorities need x-max-priority on the queue and go the other way round from Redis."),
    choice("l04-seed-routing", "04", "4. RabbitMQ: native priority, higher number first",
           "The seed's configuration: only `task_queues=(Queue('high', routing_key='high.#', "
           "queue_arguments={'x-max-priority': 10}), ...)`, then `task.apply_async(priority=10)`. Where does "
           "the task go?",
           ["To 'high', first in line", "To the default queue 'celery', which has no x-max-priority, so the "
            "priority does nothing", "To every queue whose key matches high.#", "Nowhere: it is refused"], 1,
           "task_queues declares queues; it does not route. With no task_routes (or queue=), a task goes to "
           "task_default_queue ('celery'), and on the default direct exchange 'high.#' is a literal key, not "
           "a pattern. Route it: task_routes={'name': {'queue': 'high'}}."),
    choice("l04-redis-priority-10", "04", "2. Priority on Redis: bands, and 0 comes first",
           "The seed sends `apply_async(priority=10)` to mean “most urgent”. On Redis with the default "
           "settings, where does that message go?",
           ["Ahead of everything else", "Into band 9, the one taken last: kombu clamps 10 to 9, and on Redis "
            "0 comes first", "It is rejected: priorities stop at 9", "Into band 0, like a message without priority"], 1,
           "The opposite of what the seed meant. On Redis send urgent work with priority=0 (or give it its "
           "own queue and workers); 10 only means “high” on RabbitMQ with x-max-priority."),

    # ----- 05 -------------------------------------------------------------------------
    choice("l05-max-retries", "05", "2. `max_retries` counts retries, not runs",
           "A task always fails and retries with the default max_retries. How many times does it run?",
           ["3", "4: the first run plus 3 retries", "1", "For ever"], 1,
           "max_retries=3 is the default; after the third retry the task fails (MaxRetriesExceededError "
           "or the exc you passed)."),
    choice("l05-default-delay", "05", "Forgot the countdown? You wait three minutes",
           "`autoretry_for=(ConnectionError,)` with no backoff and no countdown: when is the retry?",
           ["At once", "After default_retry_delay: 180 s", "After 1 s", "Never"], 1,
           "default_retry_delay is 3 minutes. Use retry_backoff=True or a countdown."),
    code("l05-backoff", "05", "5. The seed article's manual backoff: `countdown=2 ** self.request.retries`",
         "Write `backoff(retries)`: the countdown in seconds for a retry, doubling from 1 s, capped at 60 s.",
         "def backoff(retries):\n    ...",
         "def backoff(retries):\n    return min(2 ** retries, 60)",
         _check_backoff,
         "Without a cap the wait grows without bound; add jitter (random.uniform(0, countdown)) so that "
         "many failing tasks do not retry in lockstep."),
    code("l05-idempotent", "05", "6. Idempotency: a task that runs twice must charge once",
         "Write `charge_once(store, order_id, charge)`: call `charge()` only the first time for an order. "
         "`store.set(key, value, nx=True)` sets the key only if it is absent and returns None if it was there.",
         "def charge_once(store, order_id, charge):\n    ...",
         "def charge_once(store, order_id, charge):\n    if store.set(f'charged:{order_id}', 1, nx=True):\n"
         "        charge()",
         _check_charge_once,
         "Claim the key (SET NX on Redis) before the side effect. " + IDEMPOTENCY_RULE),
    choice("l05-publish-retry", "05", "`task_publish_retry` is a different thing, and already on",
           "What does task_publish_retry do, and what is its default?",
           ["Retries failed tasks; off", "Retries *sending* a message when the broker connection fails; "
            "already on (up to 3 retries, waits 0, 0.2, 0.4 s, at most 1 s)", "Retries results; on",
            "Nothing on Redis"], 1,
           "It is about publishing, not executing, and you do not need to turn it on.",
           evidence="tests/test_claims.py::test_task_publish_retry_is_on_by_default_with_its_policy"),

    # ----- 06 -------------------------------------------------------------------------
    choice("l06-redis-dlx", "06", "2. On Redis, nothing is dead-lettered",
           "You add `x-dead-letter-exchange` queue arguments and use Redis as the broker. What happens to "
           "failed tasks?",
           ["They go to the dead-letter queue", "Nothing: the Redis transport ignores them; build the DLQ "
            "yourself (on_failure or task_failure re-publishes the task)", "They are retried", "The worker refuses to start"], 1,
           "Dead-lettering is a RabbitMQ feature. On Redis an application hook copies failures to a list or queue."),
    choice("l06-rabbit-acked", "06", "3. On RabbitMQ: only *rejected* messages are dead-lettered",
           "On RabbitMQ with a dead-letter exchange, a task raises. Does its message reach the DLQ?",
           ["Yes, always", "No: a failed task is still acked. It needs acks_late plus Reject(requeue=False) "
            "or task_acks_on_failure=False", "Only with retries", "Only with priority"], 1,
           "Only a rejected (or expired) message is dead-lettered; Celery acks failures by default. "
           "task_acks_on_failure (and task_acks_on_timeout) replace task_acks_on_failure_or_timeout, which "
           "Celery 5.7 marks deprecated."),
    choice("l06-what-for", "06", "1. What a dead-letter queue is for",
           "What is a dead-letter queue for?",
           ["To retry tasks faster", "To keep the tasks that failed for good, so a human or a repair job "
            "can look at them and replay them", "To store results", "To make tasks idempotent"], 1,
           "It is the end of the retry road, not a retry mechanism."),
    choice("l06-unacked", "06", "2. On Redis, nothing is dead-lettered",
           "A Redis worker with the default prefetch runs one slow task while two more messages are "
           "prefetched (acks_late off). How many messages are in the Redis `unacked` hash?",
           ["0: everything was acked on receipt", "2: the prefetched ones, received but not yet acked; the "
            "running one was acked when the pool accepted it", "3: every message the worker holds",
            "1: only the running task"], 1,
           "Early acknowledgement happens when the pool accepts a task, just before it runs; prefetched "
           "messages wait in the unacked hash. With acks_late the running one stays there too (3)."),

    # ----- 07 -------------------------------------------------------------------------
    choice("l07-flower-auth", "07", "3. Flower: a dashboard and a REST API over the events",
           "Flower 2.x answers 401 on /api/workers. Why?",
           ["Flower is down", "Its API needs authentication (--basic-auth) unless FLOWER_UNAUTHENTICATED_API=true",
            "Workers sent no events", "Redis is full"], 1,
           "Flower protects the API by default; /metrics and /healthcheck stay open."),
    choice("l07-events", "07", "4. Prometheus metrics, live",
           "celery-exporter shows no task metrics at all. What is missing?",
           ["A result backend", "Task events: start workers with -E (worker_send_task_events); "
            "task-sent needs task_send_sent_event", "Beat", "acks_late"], 1,
           "Monitoring tools read the event stream; workers do not send task events unless told to. Flower "
           "is the exception: it broadcasts enable_events to the workers itself every few seconds."),
    choice("l07-flower-events", "07", "3. Flower: a dashboard and a REST API over the events",
           "Workers run without -E (worker_send_task_events off). You start Flower. What does it show?",
           ["Only worker heartbeats", "Task events as well: Flower broadcasts enable_events to the workers "
            "itself, every few seconds; only task-sent needs task_send_sent_event in the app",
            "Nothing until the workers restart with -E", "Only tasks sent after Flower started, and only their results"], 1,
           "Flower's enable_events option defaults to on and re-sends the control command periodically. "
           "Exporters and your own event receivers do not: they need -E.",
           evidence="tests/test_claims.py::test_flower_turns_on_task_events_itself"),
    choice("l07-alert", "07", "6. Alert rules, firing and resolving",
           "Which alert catches a backlog that only grows?",
           ["Failure rate > 5 %", "Queue length above a threshold for several minutes (e.g. > 100 for 20 min)",
            "Worker up", "Task runtime p99"], 1,
           "A sustained length, not one spike. Pair it with worker-down and failure-rate alerts."),

    # ----- 08 -------------------------------------------------------------------------
    choice("l08-default-ack", "08", S08["group"],
           "Default settings, prefork worker. You kill -9 the worker while it runs a task. The task is...",
           ["Run again by the next worker", "Lost: the message was acknowledged when the pool accepted the "
            "task, just before it ran",
            "Retried with backoff", "Moved to a dead-letter queue"], 1,
           "task_acks_late defaults to False: the ack happens when the pool accepts the task, just before "
           "it runs (not when the worker receives or prefetches the message)."),
    choice("l08-child-kill", "08", S08["child"],
           "task_acks_late=True only. The pool process running a task is killed (out of memory). What happens?",
           ["The task is redelivered", "It fails with WorkerLostError and the message is acked anyway",
            "The worker exits", "It retries after the visibility timeout"], 1,
           "task_reject_on_worker_lost=True makes the worker requeue it when a pool process dies; Celery "
           "5.7's task_retry_on_worker_lost=True re-sends it as a retry instead."),
    choice("l08-poison", "08", S08["poison"],
           "acks_late and reject_on_worker_lost are on (retry_on_worker_lost is not). A task segfaults on one "
           "input. What happens?",
           ["It fails once", "It is requeued and kills a pool process again, for ever (a poison message)",
            "It fails for good after max_retries (3) retries", "The input is skipped"], 1,
           "reject_on_worker_lost requeues without counting. Celery 5.7's task_retry_on_worker_lost=True "
           "re-sends it as a retry instead, so max_retries ends the loop; or revoke the task."),
    choice("l08-retry-lost", "08", S08["poison"],
           "A task kills its pool process on one input. Which setting turns the endless redelivery into at "
           "most three runs?",
           ["task_retry_on_worker_lost=True with max_retries=2", "task_reject_on_worker_lost=True",
            "task_acks_late=False", "worker_max_tasks_per_child=3"], 0,
           "Celery 5.7's retry_on_worker_lost re-sends the task as a retry, so max_retries bounds it: 3 "
           "runs, then FAILURE with WorkerLostError; reject_on_worker_lost requeues without counting."),
    choice("l08-vt-dup", "08", S08["vt"],
           "With acks_late on Redis, a task runs longer than the visibility timeout. What happens?",
           ["Nothing", "Another worker gets the message too: the task runs twice", "It is killed",
            "It is marked FAILURE"], 1,
           "Redis redelivers any message unacked for longer than the timeout, crashed worker or not."),
    choice("l08-soft", "08a", S08A["limits"],
           "What does a soft time limit do that a hard one does not?",
           ["Nothing", "Raises SoftTimeLimitExceeded inside the task, which can clean up and return; the hard "
            "limit kills the pool process", "Retries the task", "Works on the threads pool"], 1,
           "Set the soft limit below the hard one. The prefork pool enforces both; gevent only the hard "
           "one; the threads pool neither."),
    choice("l08-threads-limits", "08a", S08A["threads_limits"],
           "You set time_limit=30 and run the worker with -P threads. A task hangs. What happens after 30 s?",
           ["It is killed", "Nothing: the threads pool ignores time limits", "The worker restarts",
            "SoftTimeLimitExceeded"], 1,
           "Time limits are enforced by the prefork pool (gevent: the hard one only); a thread cannot be "
           "interrupted from outside."),
    choice("l08-prefetch", "08a", S08A["prefetch"],
           "Long and short tasks share a queue; short ones wait behind long ones although another worker is "
           "idle. The fix?",
           ["Raise the prefetch multiplier", "worker_prefetch_multiplier=1 with acks_late (or separate queues)",
            "Use gevent", "task_track_started"], 1,
           "A busy worker reserves concurrency x multiplier messages; multiplier 1 plus late acks reserves "
           "nothing beyond the running task."),
    choice("l08-max-tasks", "08a", S08A["recycle"],
           "A task leaks memory. Which setting contains it?",
           ["worker_prefetch_multiplier", "worker_max_tasks_per_child (or worker_max_memory_per_child)",
            "task_acks_late", "result_expires"], 1,
           "The prefork pool replaces a process after N tasks (or above a memory size)."),
    choice("l08-shutdown", "08a", S08A["shutdown"],
           "Kubernetes sends SIGTERM to a Celery worker during a deploy. What does the worker do?",
           ["Dies at once", "Warm shutdown: stops taking tasks, finishes the running ones, exits",
            "Requeues everything", "Ignores it"], 1,
           "Give the pod a grace period longer than your longest task. SIGQUIT (or a second Ctrl+C) is a cold "
           "shutdown; a second SIGTERM is ignored, and the kubelet's SIGKILL after the grace period kills "
           "everything."),
    choice("l08-ignore-result", "08a", S08A["ignore"],
           "Nobody reads the return values of a high-volume task. What should you set?",
           ["task_track_started=True", "ignore_result=True (or task_ignore_result=True)",
            "result_expires=0", "acks_late"], 1,
           "No result is written to the backend: less work per task and no results piling up."),
    code("l08-no-loss", "08", S08["reject"],
         "Write `conf`, a dict of settings with which a task survives both a killed worker and a killed pool process.",
         "conf = {}",
         "conf = {'task_acks_late': True, 'task_reject_on_worker_lost': True}",
         _check_settings_no_loss,
         "Late acks keep the message until the task is done; reject_on_worker_lost requeues it when the "
         "pool process dies (or, Celery 5.7, retry_on_worker_lost re-sends it as a counted retry). Make the "
         "task idempotent: it may run twice."),
    code("l08-soft-code", "08a", S08A["limits"],
         "Write `make_task(app)`: it defines and returns a task with a 10 s soft time limit whose body "
         "calls `time.sleep(60)` and, when the soft limit hits, returns 'partial'.",
         "import time\nfrom celery.exceptions import SoftTimeLimitExceeded\n\ndef make_task(app):\n    ...",
         "import time\nfrom celery.exceptions import SoftTimeLimitExceeded\n\ndef make_task(app):\n"
         "    @app.task(soft_time_limit=10)\n    def job():\n        try:\n            time.sleep(60)\n"
         "        except SoftTimeLimitExceeded:\n            return 'partial'\n        return 'done'\n    return job",
         _check_soft_limit,
         "SoftTimeLimitExceeded is raised inside the task: catch it, save what is done, return."),
    choice("l08-durable", "08", S08["durable"],
           "The broker restarts while 1,000 tasks are queued. When do they survive?",
           ["Always", "Redis with persistence (AOF) or RabbitMQ durable queues with persistent messages "
            "(Celery's default); an in-memory broker loses them", "Only with acks_late",
            "Only with result_backend"], 1,
           "Late acks protect against a dying worker, not a dying broker."),

    choice("l08-stock-redis", "08", S08["durable"],
           "You start redis-server with no configuration file. Which persistence is on?",
           ["None: everything lives in memory", "RDB snapshots (save 3600 1 300 100 60 10000), no AOF: a crash "
            "loses whatever came after the last snapshot", "AOF, fsync every second", "Both RDB and AOF"], 1,
           "Snapshots are on by default, the append-only file is not. For queued tasks that must survive a "
           "crash, turn on appendonly yes (lesson 08b).",
           cheat="A stock redis-server snapshots (RDB `save 3600 1 300 100 60 10000`) with AOF off: a crash "
                 "loses what came after the last snapshot."),

    # ----- myth or fact: the seed article's claims --------------------------------------
    choice("l08b-aof", "08b", S08B["redis"],
           "Redis runs without the append-only file, and no snapshot was taken since 40 tasks were queued. "
           "Redis is killed and restarted. How many of the 40 are still queued?",
           ["All 40", "None: the queue lived only in memory", "Those older than one second",
            "All 40, because the workers send them back"], 1,
           "Turn on appendonly yes (AOF): every write is logged before Redis answers (fsync always or everysec). "
           "A stock redis-server has AOF off but RDB snapshots on (save 3600 1 300 100 60 10000): a crash "
           "loses whatever was queued after the last snapshot.",
           cheat="Redis keeps queued tasks through a crash only with AOF (`appendonly yes`); the stock "
                 "RDB snapshots lose what came after the last one."),
    choice("l08b-confirms", "08b", S08B["rabbit"],
           "Celery on RabbitMQ (durable queue, persistent messages). The broker is killed right after your app "
           "published 40 tasks. Which setting makes sure the app only counts as sent what RabbitMQ has stored?",
           ["task_publish_retry=True", "broker_transport_options={'confirm_publish': True}",
            "task_acks_late=True", "None needed: durable queues are enough"], 1,
           "Publisher confirms: RabbitMQ confirms a persistent message once it is on disk. Without them our "
           "killed broker lost all 40.",
           cheat="Against a broker crash: durable + persistent **and** publisher confirms (`confirm_publish`)."),
    choice("l08b-twice", "08b", S08B["worker"],
           "acks_late is on and the broker restarts while the worker runs a batch. What can happen after it "
           "reconnects?",
           ["Nothing unusual", "Some tasks run twice: one that finished as the connection dropped could not be "
            "acknowledged and is delivered again", "All running tasks are lost",
            "Redis moves them to a dead-letter queue"], 1,
           "At-least-once delivery: make tasks idempotent (lesson 05).",
           evidence="tests/test_durability.py::test_a_task_that_ends_while_redis_restarts_runs_twice"),
    myth("myth-publish-retry-confirms", "08b", S08B["concept"],
         "task_publish_retry=True confirms that the broker has stored each task.", False,
         "It retries a publish that failed to send, is on by default, and confirms nothing; confirms are "
         "confirm_publish."),
    myth("myth-ack-default", "08", S08["group"],
         "Workers acknowledge a task after it has run; that is the default, so a crash loses nothing.", False,
         "task_acks_late is False by default: the ack comes before execution, and kill -9 mid-task loses the task."),
    myth("myth-streams", "04", "2. Priority on Redis: bands, and 0 comes first",
         "Redis 6.2+ supports priority consumption through Streams.", False,
         "kombu has no Streams transport; the Redis transport uses lists and emulates priority with one list "
         "per band.",
         evidence="tests/test_claims.py::test_kombu_redis_transport_uses_lists_and_bands_not_streams"),
    myth("myth-higher-number", "04", "2. Priority on Redis: bands, and 0 comes first",
         "A higher number means a higher priority (on Redis too).", False,
         "True on RabbitMQ (with x-max-priority); on Redis 0 is the highest priority."),
    myth("myth-coroutines-cpu", "08a", S08A["pools"],
         "For CPU-bound tasks use processes (the default) or coroutines (eventlet/gevent).", False,
         "Coroutines switch only when waiting on IO: CPU-bound tasks run one at a time on one core. Use prefork."),
    myth("myth-zerok", "07", "4. Prometheus metrics, live",
         "Use zerok/celery-exporter to expose Celery metrics to Prometheus.", False,
         "That exporter is archived (on GitHub, since 2019). Today: danihodovic/celery-exporter, or "
         "Flower's own /metrics, which Flower 2.2 serves itself (flower_events_total and friends).",
         evidence="tests/test_claims.py::test_flower_serves_prometheus_metrics_itself"),
    myth("myth-utcnow", "03", "2. Gotcha: naive datetimes (the seed article's `datetime.utcnow()`)",
         "Schedule with `eta=datetime.utcnow() + timedelta(minutes=10)`.", False,
         "It works (Celery reads a naive eta as UTC), but utcnow() is deprecated and its naive result is "
         "one slip away from a naive local now(), which is off by your UTC offset. Use "
         "datetime.now(timezone.utc) or countdown."),
    myth("myth-warm", "08a", S08A["shutdown"],
         "On SIGTERM a worker finishes its current tasks before exiting (the default).", True,
         "Warm shutdown is the default on SIGTERM (unless REMAP_SIGTERM=SIGQUIT). SIGQUIT, or a second "
         "Ctrl+C, is a cold shutdown; a second SIGTERM is ignored."),
    myth("myth-publish-retry", "05", "`task_publish_retry` is a different thing, and already on",
         "To make sure tasks are not lost, turn on task_publish_retry.", False,
         "It is already on by default (up to 3 retries, waits growing by 0.2 s, at most 1 s), and it only "
         "covers sending.",
         evidence="tests/test_claims.py::test_task_publish_retry_is_on_by_default_with_its_policy"),
    myth("myth-ignore-result", "08a", S08A["ignore"],
         "If you don't need results, task_ignore_result=True improves performance.", True,
         "No backend write per task: less work for the worker and the backend."),
    myth("myth-llen", "07", "5. Gotcha: `LLEN` under-counts your backlog",
         "`LLEN queue_name` on Redis tells you how many tasks are waiting.", False,
         "It misses the priority-band lists and the prefetched (unacked) messages."),
    myth("myth-started", "01", "3. Every state a task reports",
         "STARTED: the task has started running (needs task_track_started=True).", True,
         "Right: without task_track_started a task goes from PENDING straight to SUCCESS/FAILURE."),
    myth("myth-dlx-redis", "06", "2. On Redis, nothing is dead-lettered",
         "Route failed tasks to a dead-letter queue with x-dead-letter-exchange queue arguments.", False,
         "RabbitMQ only, and only for rejected messages (Celery acks failures). On Redis, build the DLQ yourself."),
    myth("myth-kafka", "01", "1. Four components",
         "Kafka (experimental) is a broker like RabbitMQ and Redis.", False,
         "Kafka is kombu's confluentkafka transport, which implements only direct and topic exchanges: no "
         "fanout, priority or TTL. Remote control is a fanout broadcast, so inspect, broadcast revoke and "
         "Flower's enable_events cannot reach the workers; Celery's broker table lists no monitoring or "
         "remote control for it, so no Flower or exporter metrics.",
         cheat="Kafka (kombu's confluentkafka transport): direct and topic exchanges only, no fanout, "
               "priority or TTL, so no remote control and no monitoring (Flower, exporters).",
         evidence="tests/test_claims.py::test_kafka_transport_has_no_fanout_priority_or_ttl"),
    myth("myth-task-id-dedupe", "05", "6. Idempotency: a task that runs twice must charge once",
         "Tasks should be idempotent, e.g. deduplicate by task_id.", False,
         "Half right: idempotent yes, but by the task id only half. " + IDEMPOTENCY_RULE,
         cheat=IDEMPOTENCY_RULE,
         evidence="tests/test_claims.py::test_task_id_is_kept_by_a_retry_but_new_for_a_second_send"),
]


# More questions live in celerylab/quiz/topics/*.py, one module per lesson or subject (so that a new
# lesson adds its questions in its own file). A module defines QUESTIONS and, for a new lesson,
# LESSON = (number, notebook file, title). Modules are read in name order.
def _load_topics() -> None:
    import importlib
    import pkgutil

    from . import topics

    for info in sorted(pkgutil.iter_modules(topics.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{topics.__name__}.{info.name}")
        lesson = getattr(module, "LESSON", None)
        if lesson:
            number, notebook, title = lesson
            LESSONS[number] = notebook
            TITLES[number] = title
        QUESTIONS.extend(module.QUESTIONS)


_load_topics()


def by_id() -> dict[str, Question]:
    return {q.id: q for q in QUESTIONS}


def rounds() -> dict[str, list[Question]]:
    out: dict[str, list[Question]] = {"faq": [], "lessons": [], "myths": []}
    for q in QUESTIONS:
        out[q.round].append(q)
    return out
