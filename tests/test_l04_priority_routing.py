"""Lesson 04's tasks and demos, run in a fresh interpreter (the lesson's apps bind to the broker
running when the module is imported, so each test gets its own process and broker)."""
from __future__ import annotations

import kernel_script

HEADER = """
from celerylab import queues
from celerylab.lessons import l04_priority_routing as l04
"""


def run_script(body: str, tmp_path, timeout: float = 90) -> dict:
    return kernel_script.run_script(body, tmp_path, HEADER, timeout)


def test_routes_send_each_task_to_its_queue_and_worker(tmp_path):
    out = run_script("""
        l04.app.conf.task_routes = {"l04.resize_image": {"queue": "images"}}
        a = celerylab.start_worker(l04.app, queues=["celery"], hostname="mail@t")
        b = celerylab.start_worker(l04.app, queues=["images"], hostname="images@t")
        for r in [l04.resize_image.delay("p.jpg"), l04.send_email.delay("x@y")]:
            r.get(timeout=5)
        names = l04.worker_names(a, b)
        out = {r.task: [r.queue, names[r.thread]] for r in l04.runs.items}
        l04.stop_all(a, b)
    """, tmp_path)
    assert out == {"l04.resize_image": ["images", "images"], "l04.send_email": ["celery", "mail"]}


def test_full_range_bands_need_only_priority_steps(tmp_path):
    out = run_script("""
        for p in [9, None, 5, 3, 0, 1, 2, 8, 6, 4, 7]:
            l04.full_job.apply_async((f"p{p}",), priority=p)
        out["bands"] = queues.band_lengths(l04.full_app, "full")
        with celerylab.run_worker(l04.full_app, queues=["full"], concurrency=1, prefetch_multiplier=1):
            l04.runs.wait_for(11)
        out["full"] = l04.runs.labels()
        out["options"] = l04.full_app.conf.broker_transport_options
        out["on_rabbitmq"] = l04.on_rabbitmq(l04.app)
    """, tmp_path)
    assert out["bands"] == {"0": 2, **{str(b): 1 for b in range(1, 10)}}
    assert out["full"] == ["pNone"] + [f"p{p}" for p in range(10)]
    assert "queue_order_strategy" not in out["options"]   # ten levels come from priority_steps alone
    assert out["on_rabbitmq"] is False


def test_priority_10_is_clamped_to_the_last_band_on_redis(tmp_path):
    out = run_script("""
        l04.job.apply_async(("p10",), priority=10, queue="clamp")
        l04.job.apply_async(("p0",), priority=0, queue="clamp")
        out["bands"] = queues.band_lengths(l04.app, "clamp")
        with celerylab.run_worker(l04.app, queues=["clamp"], concurrency=1, prefetch_multiplier=1):
            l04.runs.wait_for(2)
        out["order"] = l04.runs.labels()
    """, tmp_path)
    assert out["bands"] == {"0": 1, "3": 0, "6": 0, "9": 1}
    assert out["order"] == ["p0", "p10"]   # sent first, run last: 10 means "least urgent" on Redis


def test_seed_priority_configuration_routes_to_the_default_queue():
    from celery import Celery
    from kombu import Queue

    seed = Celery("seed", broker="memory://", set_as_current=False)
    seed.conf.task_queues = (Queue("high", routing_key="high.#", queue_arguments={"x-max-priority": 10}),
                             Queue("low", routing_key="low.#", queue_arguments={"x-max-priority": 5}))
    route = seed.amqp.router.route({"priority": 10}, "high_priority_task")
    assert route["queue"].name == "celery" and not route["queue"].queue_arguments
    high = seed.amqp.queues["high"]
    assert (high.exchange.name, high.exchange.type, high.routing_key) == ("celery", "direct", "high.#")


def test_head_of_line_blocking_by_prefetch_and_its_fix(tmp_path):
    out = run_script("""
        for name, task, prefetch in [("default", l04.work, 4), ("prefetch1", l04.work, 1),
                                     ("late", l04.work_late, 1)]:
            e = l04.head_of_line(task, prefetch_multiplier=prefetch, queue=f"hol-{name}")
            out[name] = [e.held_by_a, e.stuck, e.shorts_on_a, e.shorts_on_b]
    """, tmp_path)
    assert out == {"default": [5, 4, 4, 2], "prefetch1": [2, 1, 1, 5], "late": [1, 0, 0, 6]}
