"""In a class, the lesson modules' and lab checks' own Redis keys stay in each learner's corner.

Lessons 05, 06 and 08 keep state of their own in Redis next to Celery's (a ledger and claim keys,
a dead-letter list, notes per task run). Two learners, alice and bob, run that code on one real
redis-server with the users ``python -m celerylab class create`` gives them (ACL: keys
``<name>:*`` only, no KEYS/SCAN/FLUSHDB). Every command must be allowed (a denied one raises
NoPermissionError, or fails the task that sent it), every key must carry the learner's prefix,
and one learner's reset must leave the other's keys alone.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
import redis
from celery.signals import task_failure

import celerylab
import celerylab.lessons
from celerylab import broker as kit_broker
from celerylab import classroom
from celerylab.errors import CeleryLabError
from celerylab.ports import free_port, port_in_use

pytestmark = [pytest.mark.slow, pytest.mark.redis_server,
              pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")]

LEARNERS = ("alice", "bob")


@pytest.fixture(scope="module")
def klass(redis_server_bin, tmp_path_factory):
    """One redis-server, a class of alice and bob: ``(their URLs, the instructor's client)``."""
    # started here, not with celerylab.servers (celerylab.cleanup(), which switching learners
    # calls, stops the servers the kit started)
    port = free_port()
    proc = subprocess.Popen([redis_server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("class-redis"))],
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_in_use(port):
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        urls = classroom.create_class(url, list(LEARNERS))
        admin = redis.Redis.from_url(url, decode_responses=True)
        yield urls, admin
        admin.close()
    finally:
        proc.terminate()
        proc.wait(10)


def denials(admin) -> list[dict]:
    """The ACL log's denials, but kombu's: a control reply's key it does not prefix (docs/classroom.md)."""
    return [e for e in admin.acl_log(count=1000)
            if not str(e["object"]).split("\x06")[0].endswith(".reply.celery.pidbox")]


@pytest.fixture(autouse=True)
def nothing_denied(klass):
    """Every test: no command of either learner denied (also those swallowed in a background thread)."""
    _, admin = klass
    admin.acl_log_reset()
    yield
    assert not denials(admin), denials(admin)[:5]


@pytest.fixture
def become(klass, monkeypatch):
    """``become("alice")``: this process is alice's kernel (her URL, her CELERYLAB_LEARNER)."""
    urls, _ = klass

    def switch(name: str) -> None:
        celerylab.cleanup()
        kit_broker._current = None
        monkeypatch.delenv("CELERYLAB_RESULT_BACKEND", raising=False)
        monkeypatch.setenv("CELERYLAB_BROKER_URL", urls[name])
        monkeypatch.setenv("CELERYLAB_LEARNER", name)

    yield switch
    celerylab.cleanup()
    kit_broker._current = None


def lesson_module(monkeypatch, short: str):
    """A fresh copy of ``celerylab.lessons.<short>`` for the current learner (its app is made at
    import), standing in for the module under its own name until the test ends; the copy the
    rest of the test session uses is left as it was."""
    name = f"celerylab.lessons.{short}"
    spec = importlib.util.find_spec(name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(celerylab.lessons, short, module, raising=False)
    return module


def keys_of(admin, name: str, part: str = "") -> set[str]:
    """The instructor's view: ``name``'s keys (prefix removed) containing ``part``."""
    return {k[len(name) + 1:] for k in admin.scan_iter(match=f"{name}:*", count=1000) if part in k}


def assert_only_prefixed_keys(admin) -> None:
    stray = [k for k in admin.scan_iter(count=1000) if not k.startswith(tuple(f"{n}:" for n in LEARNERS))]
    assert not stray, f"keys outside every learner's prefix: {stray}"


def test_the_learner_client_prefixes_every_key_and_refuses_keyspace_scans(klass, become, monkeypatch):
    urls, admin = klass
    become("alice")
    r = kit_broker.redis_client(urls["alice"], decode_responses=True)
    r.delete("t:list", "t:set", "t:hash", "t:claim", "t:moved")
    assert r.set("t:claim", 1, nx=True, ex=60) and not r.set("t:claim", 2, nx=True, ex=60)
    r.rpush("t:list", "a", "b")
    pipe = r.pipeline()
    pipe.sadd("t:set", "x")
    pipe.hincrby("t:hash", "n", 1)
    pipe.lrange("t:list", 0, -1)
    assert pipe.execute() == [1, 1, ["a", "b"]]
    assert r.brpop(["t:list"], timeout=1) == ("t:list", "b")         # the key comes back unprefixed
    assert r.lmove("t:list", "t:moved") == "a" and r.lrange("t:moved", 0, -1) == ["a"]
    assert keys_of(admin, "alice", "t:") == {"t:set", "t:hash", "t:claim", "t:moved"}
    assert admin.exists(kit_broker.learner_key("t:claim")) and kit_broker.learner_key("t:claim") == "alice:t:claim"
    for scan in (lambda: r.keys("*"), lambda: list(r.scan_iter()), lambda: r.flushdb()):
        with pytest.raises(CeleryLabError, match="every learner's keys"):
            scan()
    assert_only_prefixed_keys(admin)
    r.delete("t:set", "t:hash", "t:claim", "t:moved")
    r.close()
    # without a learner: a plain client, keys as given
    monkeypatch.delenv("CELERYLAB_LEARNER")
    assert kit_broker.learner_key("t:claim") == "t:claim"
    assert type(kit_broker.redis_client(urls["alice"])) is redis.Redis


def test_inspect_broker_reads_and_deletes_the_learners_own_keys(klass, become):
    """Lessons 01, 02 and 04 read queues and results with celerylab.inspect_broker and delete
    their demo queues with ``ib.redis_client()``: in a class each name is the learner's own, the
    prefix added once (band_lists and result_key name keys as the learner's client does)."""
    from celerylab import inspect_broker as ib

    _, admin = klass
    sent = {}
    for name in LEARNERS:
        become(name)
        app = celerylab.create_app(f"ib-{name}")
        try:
            assert ib.band_lists("ib_peek")[:2] == ["ib_peek", "ib_peek\x06\x163"]
            r = ib.redis_client()
            r.delete(*ib.band_lists("ib_peek"))
            sent[name] = [app.send_task("ib.nothing", args=(name, p), queue="ib_peek", priority=p).id for p in (5, 0)]
            assert ib.queue_length("ib_peek") == 2 and ib.key_type("ib_peek") == "list"
            assert [(m.id, m.args) for m in ib.peek("ib_peek")] == [(sent[name][1], [name, 0]),
                                                                   (sent[name][0], [name, 5])]  # band 0 first
            app.backend.store_result(sent[name][0], f"{name}'s", "SUCCESS")
            assert ib.stored_result(sent[name][0])["result"] == f"{name}'s"
            assert ib.key_type(ib.result_key(sent[name][0])) == "string" and ib.result_ttl(sent[name][0]) > 0
            r.close()
        finally:
            app.close()
    for name in LEARNERS:
        assert {k for k in keys_of(admin, name, "ib_peek") if k.startswith("ib_peek")} == {"ib_peek", "ib_peek\x06\x163"}
        assert admin.exists(f"{name}:celery-task-meta-{sent[name][0]}")
    assert_only_prefixed_keys(admin)
    become("alice")  # the lessons' tidy-up: ib.redis_client().delete(queue) removes alice's list only
    assert ib.redis_client().delete(*ib.band_lists("ib_peek")) == 2
    assert ib.stored_result(sent["bob"][0]) is None  # bob's result is not alice's to read
    assert admin.llen("alice:ib_peek") == 0 and admin.llen("bob:ib_peek") == 1
    become("bob")
    assert ib.redis_client().delete(*ib.band_lists("ib_peek")) == 2


def run_lesson_05(monkeypatch, name: str) -> list[str]:
    l05 = lesson_module(monkeypatch, "l05_retries")
    with celerylab.run_worker(l05.app, concurrency=4, hostname=f"{name}@class"):
        l05.reset_ledger()
        naive = l05.charge_naive.delay(order_id=1, amount=9.99)
        assert naive.get(timeout=20) == "receipt sent"
        once = [l05.charge_once.apply_async((3, 5.00)) for _ in range(2)]
        by_id = l05.charge_by_task_id.apply_async((2, 1.00))
        assert [r.get(timeout=20) for r in [*once, by_id]] == ["receipt sent"] * 3
    return sorted(l05.ledger())


def test_lesson_05_ledger_and_claims_per_learner(klass, become, monkeypatch):
    _, admin = klass
    want = ["order 1: 9.99 EUR", "order 1: 9.99 EUR", "order 2: 1.00 EUR", "order 3: 5.00 EUR"]
    become("alice")
    assert run_lesson_05(monkeypatch, "alice") == want
    alice_claims = keys_of(admin, "alice", "l05:done:")
    assert "l05:done:charge:order-3" in alice_claims and len(alice_claims) == 2
    become("bob")   # bob runs the same cells: his reset_ledger() must not touch alice's ledger or claims
    assert run_lesson_05(monkeypatch, "bob") == want
    assert sorted(admin.lrange("alice:l05:ledger", 0, -1)) == want
    assert keys_of(admin, "alice", "l05:done:") == alice_claims
    become("alice")  # alice re-runs: her claim on order 3 was dropped by her reset, so it charges again
    assert run_lesson_05(monkeypatch, "alice") == want
    assert sorted(admin.lrange("bob:l05:ledger", 0, -1)) == want
    assert_only_prefixed_keys(admin)


def test_lesson_06_dead_letters_per_learner(klass, become, monkeypatch):
    _, admin = klass
    for name, orders in (("alice", 2), ("bob", 1)):
        become(name)
        l06 = lesson_module(monkeypatch, "l06_dead_letter")
        try:
            l06.reset()
            l06.dlq.purge()
            with celerylab.run_worker(l06.app, concurrency=2, hostname=f"{name}@class"):
                sent = [l06.process_order.delay({"id": i, "sku": "apple", "qty": "three"}) for i in range(orders)]
                for res in sent:
                    res.get(timeout=20, propagate=False)
                assert l06.wait_for_length(l06.dlq, orders, timeout=10) == orders
            # two slots: the two failures may land in either order
            assert sorted(e.task_id for e in l06.dlq.entries()) == sorted(r.id for r in sent)
        finally:
            l06.dlq.uninstall()
    assert admin.llen("alice:l06:dead_letters") == 2 and admin.llen("bob:l06:dead_letters") == 1
    assert_only_prefixed_keys(admin)


def test_lesson_08_notes_queues_and_reset_per_learner(klass, become, monkeypatch):
    _, admin = klass
    waiting = {}
    for name in LEARNERS:
        become(name)
        lab = lesson_module(monkeypatch, "l08_production")
        lab._clients.clear()
        lab.reset()
        assert lab.charge.run("order-7", 100, key="order-7") == "charged"
        assert lab.charge.run("order-7", 100, key="order-7") == "skipped (already done)"
        assert lab.runs("order-7") == 2 and lab.charges("order-7") == 1
        waiting[name] = lab.slow.apply_async((0.1, f"{name}-queued"), queue="learner-keys")  # no worker: it waits
        assert lab.where_is(waiting[name].id) == "queued" and lab.queue_length("learner-keys") == 1
        assert lab.where_is(waiting["alice"].id) == ("queued" if name == "alice" else "gone")  # not bob's to see
    # bob's full reset (no labels) forgets his notes only
    lab.reset()
    assert keys_of(admin, "bob", "l08:") == set()
    assert keys_of(admin, "alice", "l08:") == {"l08:notes:order-7", "l08:charges:order-7", "l08:idem:order-7",
                                               "l08:labels"}
    become("alice")
    lab = lesson_module(monkeypatch, "l08_production")
    assert lab.runs("order-7") == 2 and lab.charges("order-7") == 1
    lab.reset()
    assert keys_of(admin, "alice", "l08:") == set()
    assert admin.llen("alice:learner-keys") == 1 and admin.llen("bob:learner-keys") == 1
    admin.delete("alice:learner-keys", "bob:learner-keys")
    assert_only_prefixed_keys(admin)


def record_dead_letter(sender=None, task_id=None, exception=None, args=None, kwargs=None, **extra):
    """Lab 06 q1's solution: the failure hook a learner writes."""
    from celerylab.store import redis_client

    entry = {"task_id": task_id, "task": sender.name, "args": list(args or []), "kwargs": dict(kwargs or {}),
             "exception": type(exception).__name__, "queue": (sender.request.delivery_info or {}).get("routing_key")}
    redis_client().rpush("dead_letters", json.dumps(entry))


def test_lab_checks_05_06_08_as_two_learners(klass, become, monkeypatch, capsys):
    """The lab checks that keep keys in Redis pass for each learner with the class's users, and
    what a check leaves for the learner to read (lab 06's dead letters) stays in their corner."""
    from celerylab.exercises import l05_retries as ex05
    from celerylab.exercises import l06_dead_letter as ex06
    from celerylab.exercises import l08_production as ex08
    from celerylab.store import redis_client

    _, admin = klass
    uid = "test-learner-keys-dlq"
    for name in LEARNERS:
        become(name)
        app = celerylab.create_app(f"learner_keys_{name}")

        @app.task(bind=True, max_retries=3, name="learner_keys.pay", shared=False)
        def pay(self, order_id, amount):
            if redis_client().set(f"charged:{order_id}", 1, nx=True, ex=60):
                ex05.charge_card(order_id, amount)
            try:
                ex05.send_receipt(order_id)
            except TimeoutError as exc:
                raise self.retry(exc=exc, countdown=0.1)
            return "paid"

        @app.task(name="learner_keys.import_row", shared=False)
        def import_row(row):
            return ex06.parse_row(row)

        def replay_dead_letters():
            results = []
            while (raw := redis_client().lpop("dead_letters")) is not None:
                entry = json.loads(raw)
                results.append(app.send_task(entry["task"], args=entry["args"], kwargs=entry["kwargs"],
                                             queue=entry["queue"]))
            return results

        task_failure.connect(record_dead_letter, weak=False, dispatch_uid=uid)
        try:
            ex05.q3.check({"pay": pay})
            ex06.q1.check({"import_row": import_row, "record_dead_letter": record_dead_letter})
            ex06.q3.check({"app": app, "replay_dead_letters": replay_dead_letters})
            ex06.q1.check({"import_row": import_row, "record_dead_letter": record_dead_letter})  # leaves 2 entries
        finally:
            task_failure.disconnect(dispatch_uid=uid)
            app.close()
        assert len(ex05.charges()) == 3
        out = capsys.readouterr().out
        assert out.count("Correct: ") == 4, out
    assert admin.llen("alice:dead_letters") == 2 and admin.llen("bob:dead_letters") == 2
    assert admin.llen("alice:lab05:charges") == 3 and admin.llen("bob:lab05:charges") == 3
    assert len(keys_of(admin, "alice", "charged:")) == 3 and len(keys_of(admin, "bob", "charged:")) == 3
    # lab 08 q1 (workers killed mid-task; notes, where_is): alice's run, with bob's notes present
    lab = lesson_module(monkeypatch, "l08_production")
    lab._clients.clear()
    lab.note("bob-was-here", "start")
    become("alice")
    lab = lesson_module(monkeypatch, "l08_production")
    ex08.q1.check(namespace={"settings": {"task_acks_late": True, "task_reject_on_worker_lost": True}})
    assert capsys.readouterr().out.startswith("Correct: q1:")
    assert admin.lrange("bob:l08:notes:bob-was-here", 0, -1)
    assert keys_of(admin, "alice", "l08:notes:lab08-")  # the check's notes are alice's
    assert_only_prefixed_keys(admin)


NOTEBOOKS = ("notebooks/05_retries.ipynb", "notebooks/06_dead_letter.ipynb", "notebooks/08_production.ipynb")
#: Lessons 01, 02 and 04 tidy up (or signal a worker process) through inspect_broker's client; lab 01's answer
#: reads a queue with the learner's client.
NOTEBOOKS_INSPECT = ("notebooks/01_architecture.ipynb", "notebooks/02_serialization.ipynb",
                     "notebooks/04_priority_routing.ipynb", "solutions/01_architecture.ipynb")
#: Lesson 07 counts a queue's band 0 with LLEN, and lab 07's answer finds a queue's band lists, both with
#: the learner's client (no KEYS); with Flower, the exporter and the live plot on the learner's prefix.
NOTEBOOKS_MONITORING = ("notebooks/07_monitoring.ipynb", "solutions/07_monitoring.ipynb")


@pytest.mark.skipif(not os.environ.get("CELERYLAB_LOAD_TEST"),
                    reason="runs in `make test-brokers` (CELERYLAB_LOAD_TEST=1): two nbval runs at once, about 2 minutes")
def test_lessons_05_06_08_under_nbval_as_two_learners_at_once(klass, tmp_path):
    """The notebooks themselves, top to bottom with their stored outputs, by alice and bob at the
    same time with the class's users: both pass, and nothing lands outside their prefixes."""
    nbval_as_two_learners(klass, tmp_path, NOTEBOOKS)


@pytest.mark.skipif(not os.environ.get("CELERYLAB_LOAD_TEST"),
                    reason="runs in `make test-brokers` (CELERYLAB_LOAD_TEST=1): two nbval runs at once, about 3 minutes")
def test_lessons_01_02_04_and_lab_01_under_nbval_as_two_learners_at_once(klass, tmp_path):
    """Lessons 01, 02, 04 and lab 01's answer, by alice and bob at the same time with the class's users."""
    nbval_as_two_learners(klass, tmp_path, NOTEBOOKS_INSPECT)


@pytest.mark.skipif(not os.environ.get("CELERYLAB_LOAD_TEST"),
                    reason="runs in `make test-brokers` (CELERYLAB_LOAD_TEST=1): two nbval runs at once, about 1 minute")
def test_lesson_07_and_lab_07_under_nbval_as_two_learners_at_once(klass, tmp_path):
    """Lesson 07 and lab 07's answer, by alice and bob at the same time with the class's users."""
    nbval_as_two_learners(klass, tmp_path, NOTEBOOKS_MONITORING)


def nbval_as_two_learners(klass, tmp_path, notebooks) -> None:
    from pathlib import Path

    urls, admin = klass
    root = Path(__file__).resolve().parent.parent
    sanitize = tmp_path / "sanitize.cfg"
    sanitize.write_text((root / "tests/sanitize.cfg").read_text() + "\n" + (root / "tests/sanitize_brokers.cfg").read_text())
    runs = {}
    for name in LEARNERS:
        env = {**os.environ, "CELERYLAB_BROKER_URL": urls[name], "CELERYLAB_LEARNER": name,
               "CELERYLAB_LOG_DIR": str(tmp_path / f"logs-{name}")}  # each learner's own home: worker logs apart
        env.pop("CELERYLAB_RESULT_BACKEND", None)
        log = open(tmp_path / f"{name}.log", "w")
        runs[name] = (subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                                        "--nbval-current-env", "--nbval-sanitize-with", str(sanitize), *notebooks],
                                       cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log)
    try:
        for name, (proc, log) in runs.items():
            proc.wait(900)
            log.close()
            assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-4000:]
    finally:
        for proc, log in runs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait(10)
    assert_only_prefixed_keys(admin)  # and the ACL log: nothing_denied
