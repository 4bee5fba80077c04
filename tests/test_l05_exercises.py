"""Lab 05's checks on real workers: the solutions pass, typical mistakes fail with a message naming them."""
from __future__ import annotations

import pytest

import celerylab
from celerylab.exercises import l05_retries as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted
from celerylab.store import redis_client


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_lab05")
    yield app
    app.close()


def test_q1_solution_passes_and_mistakes_are_named(app, capsys):
    @app.task(bind=True, name="t05.good", shared=False)
    def good(self, sku):
        try:
            return ex.inventory_api(sku)
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0.2, max_retries=2)

    @app.task(bind=True, name="t05.no_exc", shared=False)
    def no_exc(self, sku):
        try:
            return ex.inventory_api(sku)
        except ConnectionError:
            raise self.retry(countdown=0.2, max_retries=2)

    @app.task(bind=True, name="t05.three", shared=False)
    def three(self, sku):
        try:
            return ex.inventory_api(sku)
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0.2)  # max_retries defaults to 3

    @app.task(bind=True, name="t05.everything", shared=False)
    def everything(self, sku):
        try:
            return ex.inventory_api(sku)
        except Exception as exc:
            raise self.retry(exc=exc, countdown=0.2, max_retries=2)

    with pytest.raises(ExerciseNotAttempted):
        ex.q1.check({"sync_inventory": ex.____})
    ex.q1.check({"sync_inventory": good})
    assert capsys.readouterr().out.startswith("Correct: q1:")
    with pytest.raises(ExerciseIncorrect, match="MaxRetriesExceededError"):
        ex.q1.check({"sync_inventory": no_exc})
    with pytest.raises(ExerciseIncorrect, match="retried 3 times"):
        ex.q1.check({"sync_inventory": three})
    with pytest.raises(ExerciseIncorrect, match="not a SKU"):
        ex.q1.check({"sync_inventory": everything})


@pytest.mark.slow
def test_q2_measures_the_backoff(app, capsys):
    @app.task(name="t05.backoff", autoretry_for=(ConnectionError,), retry_backoff=True, retry_jitter=False,
              max_retries=2, shared=False)
    def backoff(symbol):
        return ex.quotes_api(symbol)

    @app.task(name="t05.fixed", autoretry_for=(ConnectionError,), retry_kwargs={"countdown": 1},
              retry_jitter=False, max_retries=2, shared=False)
    def fixed(symbol):
        return ex.quotes_api(symbol)

    @app.task(bind=True, name="t05.manual", shared=False)
    def manual(self, symbol):
        try:
            return ex.quotes_api(symbol)
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=2 ** self.request.retries, max_retries=2)

    @app.task(name="t05.default_delay", autoretry_for=(ConnectionError,), retry_jitter=False, max_retries=2,
              shared=False)
    def default_delay(symbol):
        return ex.quotes_api(symbol)

    ex.q2.check({"fetch_quotes": backoff})
    assert capsys.readouterr().out.startswith("Correct: q2:")
    with pytest.raises(ExerciseIncorrect, match="1 s, then 2 s"):
        ex.q2.check({"fetch_quotes": fixed})
    with pytest.raises(ExerciseIncorrect, match="no autoretry_for"):
        ex.q2.check({"fetch_quotes": manual})
    with pytest.raises(ExerciseIncorrect, match="planned 180 s later"):
        ex.q2.check({"fetch_quotes": default_delay})

    @app.task(name="t05.three", autoretry_for=(ConnectionError,), retry_backoff=True, retry_jitter=False,
              max_retries=3, shared=False)
    def three(symbol):  # backoff, but three retries: the third is planned 4 s later
        return ex.quotes_api(symbol)

    with pytest.raises(ExerciseIncorrect, match="DOWN.*planned 4 s later"):
        ex.q2.check({"fetch_quotes": three})


def test_q3_counts_charges(app, capsys):
    @app.task(bind=True, max_retries=3, name="t05.pay_once", shared=False)
    def pay_once(self, order_id, amount):
        if redis_client().set(f"t05:charged:{order_id}", 1, nx=True, ex=60):
            ex.charge_card(order_id, amount)
        try:
            ex.send_receipt(order_id)
        except TimeoutError as exc:
            raise self.retry(exc=exc, countdown=0.1)
        return "paid"

    @app.task(bind=True, max_retries=3, name="t05.pay_naive", shared=False)
    def pay_naive(self, order_id, amount):
        ex.charge_card(order_id, amount)
        try:
            ex.send_receipt(order_id)
        except TimeoutError as exc:
            raise self.retry(exc=exc, countdown=0.1)
        return "paid"

    @app.task(bind=True, max_retries=3, name="t05.pay_constant", shared=False)
    def pay_constant(self, order_id, amount):
        if redis_client().set("t05:charged-once-ever", 1, nx=True, ex=60):
            ex.charge_card(order_id, amount)
        try:
            ex.send_receipt(order_id)
        except TimeoutError as exc:
            raise self.retry(exc=exc, countdown=0.1)
        return "paid"

    @app.task(bind=True, max_retries=3, name="t05.pay_by_task_id", shared=False)
    def pay_by_task_id(self, order_id, amount):  # catches retries and redeliveries, not a second send
        if redis_client().set(f"t05:charged:{self.request.id}", 1, nx=True, ex=60):
            ex.charge_card(order_id, amount)
        try:
            ex.send_receipt(order_id)
        except TimeoutError as exc:
            raise self.retry(exc=exc, countdown=0.1)
        return "paid"

    charged = set()  # memory in this process only: a worker elsewhere does not see it

    @app.task(bind=True, max_retries=3, name="t05.pay_in_memory", shared=False)
    def pay_in_memory(self, order_id, amount):
        if order_id not in charged:
            charged.add(order_id)
            ex.charge_card(order_id, amount)
        try:
            ex.send_receipt(order_id)
        except TimeoutError as exc:
            raise self.retry(exc=exc, countdown=0.1)
        return "paid"

    ex.q3.check({"pay": pay_once})
    assert capsys.readouterr().out.startswith("Correct: q3:")
    assert len(ex.charges()) == 3  # charges are counted across processes (in Redis)
    # passes with a worker in this process; fails with the duplicate on a worker process
    with pytest.raises(ExerciseIncorrect, match="second time to a worker process.*charged the card 2 times"):
        ex.q3.check({"pay": pay_in_memory})
    with pytest.raises(ExerciseIncorrect, match="new task id, charged the card 2 times.*key the memory on the order"):
        ex.q3.check({"pay": pay_by_task_id})
    with pytest.raises(ExerciseIncorrect, match="charged the card 2 times"):
        ex.q3.check({"pay": pay_naive})
    redis_client().delete("t05:charged-once-ever")
    with pytest.raises(ExerciseIncorrect, match="never charged"):
        ex.q3.check({"pay": pay_constant})


def test_missing_bind_is_hinted_in_every_exercise_that_uses_self(app):
    auto = {"autoretry_for": (ConnectionError,), "max_retries": 2}

    def unbound(name):
        def body(self, x):  # bind=True forgotten: Celery would pass x as self
            raise self.retry(countdown=0.2)
        return app.task(name=f"t05.{name}_unbound", shared=False, **(auto if name == "fetch_quotes" else {}))(body)

    def uses_self_only(name):
        def body(x):
            return self.request.id  # noqa: F821 - the seed article's bug, on purpose
        return app.task(name=f"t05.{name}_self", shared=False, **(auto if name == "fetch_quotes" else {}))(body)

    for q, name in ((ex.q1, "sync_inventory"), (ex.q2, "fetch_quotes"), (ex.q3, "pay")):
        with pytest.raises(ExerciseIncorrect, match="takes `self` first, but it is not declared with bind=True"):
            q.check({name: unbound(name)})
        with pytest.raises(ExerciseIncorrect, match="uses `self`, which only exists in a task declared with bind=True"):
            q.check({name: uses_self_only(name)})


def test_q2_jitter_must_be_off(app):
    @app.task(name="t05.jitter", autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=2, shared=False)
    def jitter(symbol):  # backoff, but random waits: a lucky run could look right
        return ex.quotes_api(symbol)

    with pytest.raises(ExerciseIncorrect, match="retry_jitter on"):
        ex.q2.check({"fetch_quotes": jitter})


def test_the_generated_task_modules_folder_goes_with_the_kernel():
    """Lab 05 q3 writes the learner's task to a module for its worker process; nothing stays in /tmp."""
    import os
    import subprocess
    import sys

    code = ("from celerylab.exercises import _process as p; d, n = p.write_module('x = 1\\n', 't'); "
            "import os; assert os.path.exists(os.path.join(d, n + '.py')); print(d)")
    folder = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert folder and not os.path.exists(folder)
