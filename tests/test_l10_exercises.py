"""Lab 10's checks on real workers: the solutions pass, each missing requirement fails with its own message."""
from __future__ import annotations

import gc
import time
import uuid

import pytest
from celery import chain, chord, group
from celery.result import AsyncResult

import celerylab
from celerylab.exercises import l10_workflows as ex
from celerylab.grading import ExerciseIncorrect, ExerciseNotAttempted


@pytest.fixture
def app(embedded):
    app = celerylab.create_app("test_lab10")
    yield app
    gc.collect()  # results left by the test unsubscribe now, while the broker still runs
    app.close()


@pytest.fixture
def shop(app):
    """The lab's setup cell: the tasks the learner's functions send (names unique to this test)."""
    tag = uuid.uuid4().hex[:6]

    @app.task(name=f"t10.{tag}.reserve_stock", shared=False)
    def reserve_stock(order_id):
        return {"order_id": order_id, "reservation": f"R-{order_id}-{tag}"}

    @app.task(name=f"t10.{tag}.charge_order", shared=False)
    def charge_order(reservation):
        return f"charged order {reservation['order_id']} ({reservation['reservation']})"

    @app.task(name=f"t10.{tag}.email_customer", shared=False)
    def email_customer(order_id):
        return f"e-mailed the customer of order {order_id}"

    @app.task(name=f"t10.{tag}.stock_level", shared=False)
    def stock_level(sku):
        n = int(sku.split("-")[1])
        time.sleep(0.05 * (5 - n))  # the first SKU finishes last
        return n * 10

    @app.task(name=f"t10.{tag}.sum_levels", shared=False)
    def sum_levels(levels):
        return sum(levels)

    @app.task(name=f"t10.{tag}.check_stock", shared=False)
    def check_stock(sku):
        if sku.endswith("-BAD"):
            raise ValueError(f"unknown SKU {sku}")
        return 1

    return dict(reserve_stock=reserve_stock, charge_order=charge_order, email_customer=email_customer,
                stock_level=stock_level, sum_levels=sum_levels, check_stock=check_stock, alerts=[])


def test_q1_chain_with_an_immutable_last_step(shop, capsys):
    r, c, e = shop["reserve_stock"], shop["charge_order"], shop["email_customer"]
    with pytest.raises(ExerciseNotAttempted):
        ex.q1.check({**shop, "order_pipeline": ex.____})

    ex.q1.check({**shop, "order_pipeline": lambda oid: (r.s(oid) | c.s() | e.si(oid)).delay()})
    assert capsys.readouterr().out.startswith("Correct: q1:")
    # right but different: chain(), apply_async, .s(...).set(immutable=True)
    ex.q1.check({**shop, "order_pipeline":
                 lambda oid: chain(r.s(oid), c.s(), e.s(oid).set(immutable=True)).apply_async()})

    with pytest.raises(ExerciseIncorrect, match="email_customer failed with TypeError.*immutable"):
        ex.q1.check({**shop, "order_pipeline": lambda oid: (r.s(oid) | c.s() | e.s(oid)).delay()})
    with pytest.raises(ExerciseIncorrect, match="email_customer got .*order id only"):
        ex.q1.check({**shop, "order_pipeline": lambda oid: (r.s(oid) | c.s() | e.s()).delay()})

    def three_sends(oid):
        r.delay(oid)
        c.delay({"order_id": oid, "reservation": "?"})
        return e.delay(oid)

    with pytest.raises(ExerciseIncorrect, match="sent 3 task messages itself"):
        ex.q1.check({**shop, "order_pipeline": three_sends})
    with pytest.raises(ExerciseIncorrect, match="sent .*charge_order first"):
        ex.q1.check({**shop, "order_pipeline": lambda oid: (c.si({"order_id": oid, "reservation": "R"})
                                                             | r.si(oid) | e.si(oid)).delay()})
    with pytest.raises(ExerciseIncorrect, match="charge_order got .*reserve_stock's result"):
        ex.q1.check({**shop, "order_pipeline": lambda oid: (r.s(oid) | c.si({"order_id": oid, "reservation": "R"})
                                                             | e.si(oid)).delay()})
    with pytest.raises(ExerciseIncorrect, match="AsyncResult of another step"):
        ex.q1.check({**shop, "order_pipeline": lambda oid: (r.s(oid) | c.s() | e.si(oid)).delay().parent.parent})
    with pytest.raises(ExerciseIncorrect, match="did not return within"):  # waits for the result in the function
        ex.q1.check({**shop, "order_pipeline": lambda oid: e.delay(c.delay(r.delay(oid).get()).get())})


def test_q2_chord_fans_out_and_in(shop, capsys):
    s, total = shop["stock_level"], shop["sum_levels"]
    ex.q2.check({**shop, "total_stock": lambda skus: chord(s.s(k) for k in skus)(total.s())})
    assert capsys.readouterr().out.startswith("Correct: q2:")
    ex.q2.check({**shop, "total_stock": lambda skus: (group(s.s(k) for k in skus) | total.s()).delay()})

    with pytest.raises(ExerciseIncorrect, match="sent sum_levels itself"):  # the checks ran here, in the function
        ex.q2.check({**shop, "total_stock": lambda skus: total.delay([s(k) for k in skus])})
    with pytest.raises(ExerciseIncorrect, match="sent 0 stock_level messages for 4 SKUs"):  # one starmap message
        ex.q2.check({**shop, "total_stock": lambda skus: s.starmap([(k,) for k in skus]).delay()})
    with pytest.raises(ExerciseIncorrect, match="sent 1 stock_level messages for 4 SKUs"):
        ex.q2.check({**shop, "total_stock": lambda skus: chain(s.si(k) for k in skus).delay()})

    def body_sent_by_hand(skus):
        group(s.s(k) for k in skus).apply_async()
        return total.delay([10, 20, 30, 40])

    with pytest.raises(ExerciseIncorrect, match="sent sum_levels itself"):
        ex.q2.check({**shop, "total_stock": body_sent_by_hand})
    with pytest.raises(ExerciseIncorrect, match="in the order of the SKUs"):
        ex.q2.check({**shop, "total_stock": lambda skus: chord(s.s(k) for k in reversed(skus))(total.s())})
    with pytest.raises(ExerciseIncorrect, match="not an AsyncResult"):
        ex.q2.check({**shop, "total_stock": lambda skus: chord(s.s(k) for k in skus)(total.s()).parent})
    with pytest.raises(ExerciseIncorrect, match="stock_level ran for .*once for each SKU"):
        ex.q2.check({**shop, "total_stock": lambda skus: chord(s.s(k) for k in [skus[0]] * 4)(total.s())})


def test_q3_error_callback_records_the_failure(app, shop, capsys):
    alerts, check = shop["alerts"], shop["check_stock"]

    @app.task(name="t10.record_failure", shared=False)
    def record_failure(request, exc, traceback):
        alerts.append({"task_id": request.id, "error": repr(exc)})

    @app.task(name="t10.record_old_style", shared=False)
    def record_old_style(task_id):  # right but different: an errback sent as a task, with the id only
        alerts.append({"task_id": task_id, "error": str(AsyncResult(task_id, app=app).result)})

    @app.task(name="t10.record_id_only", shared=False)
    def record_id_only(request, exc, traceback):
        alerts.append(request.id)

    @app.task(name="t10.record_no_error", shared=False)
    def record_no_error(request, exc, traceback):
        alerts.append({"task_id": request.id})

    @app.task(name="t10.record_wrong_id", shared=False)
    def record_wrong_id(request, exc, traceback):
        alerts.append({"task_id": "some-id", "error": repr(exc)})

    def ns(errback, sender=None):
        return {**shop, "record_failure": errback, "send_with_alert":
                sender or (lambda sku: check.apply_async((sku,), link_error=errback.s()))}

    ex.q3.check(ns(record_failure))
    assert capsys.readouterr().out.startswith("Correct: q3:")
    ex.q3.check(ns(record_old_style))
    with pytest.raises(ExerciseIncorrect, match="nothing was appended to `alerts`.*link_error"):
        ex.q3.check(ns(record_failure, lambda sku: check.apply_async((sku,), link=record_failure.s())))
    with pytest.raises(ExerciseIncorrect, match="nothing was appended"):
        ex.q3.check(ns(record_failure, lambda sku: check.delay(sku)))
    with pytest.raises(ExerciseIncorrect, match="one dict per failure"):
        ex.q3.check(ns(record_id_only))
    with pytest.raises(ExerciseIncorrect, match="'error' is None"):
        ex.q3.check(ns(record_no_error))
    with pytest.raises(ExerciseIncorrect, match="'task_id' is 'some-id'"):
        ex.q3.check(ns(record_wrong_id))

    def every_call(sku):  # records without waiting for a failure
        result = check.apply_async((sku,), link_error=record_failure.s())
        alerts.append({"task_id": result.id, "error": "unknown SKU?"})
        return result

    with pytest.raises(ExerciseIncorrect, match="record only failures"):
        ex.q3.check(ns(record_failure, every_call))


def test_q4_rate_limit_measured_on_one_worker(app, capsys):
    def task(name, **options):
        def sync_contacts(batch):
            return ex.crm_sync(batch)
        return app.task(name=f"t10.{name}", shared=False, **options)(sync_contacts)

    ex.q4.check({"sync_contacts": task("two_per_s", rate_limit="2/s")})
    assert capsys.readouterr().out.startswith("Correct: q4:")
    ex.q4.check({"sync_contacts": task("per_minute", rate_limit="120/m")})  # the same rate

    @app.task(name="t10.sleeps", shared=False)
    def sleeps(batch):
        time.sleep(0.5)
        return ex.crm_sync(batch)

    with pytest.raises(ExerciseIncorrect, match="has no rate_limit"):
        ex.q4.check({"sync_contacts": sleeps})
    with pytest.raises(ExerciseIncorrect, match=r"started sync_contacts 0\.\d+ s after the previous one; at 2 per"):
        ex.q4.check({"sync_contacts": task("ten_per_s", rate_limit="10/s")})
    with pytest.raises(ExerciseIncorrect, match="is the limit lower"):
        ex.q4.check({"sync_contacts": task("one_per_s", rate_limit="1/s")})

    @app.task(name="t10.wrong_value", shared=False, rate_limit="2/s")
    def wrong_value(batch):
        return batch

    with pytest.raises(ExerciseIncorrect, match=r"should return crm_sync\(batch\)"):
        ex.q4.check({"sync_contacts": wrong_value})
