"""Lessons 03 and 04: current Celery settings (5.5+/5.6+) for ETA backlogs, prefetching and quorum queues."""
from __future__ import annotations

from celerylab.quiz.bank import choice, myth

S03_LIMIT = "7. A backlog of ETA tasks: `worker_eta_task_limit`"
S03_DELAYED = "8. RabbitMQ: the countdown waits in the broker (native delayed delivery)"
S04_DISABLE = "The direct fix on Redis: `worker_disable_prefetch`"
S04_QUORUM = "6. RabbitMQ quorum queues: no priority, no global QoS"

QUESTIONS = [
    choice("q0304-eta-task-limit", "03", S03_LIMIT,
           "You send 20 tasks with `countdown=10` to a worker with one slot. With Celery's defaults, how many "
           "does the worker hold in memory, and what does `worker_eta_task_limit=5` change?",
           ["None: countdown tasks wait in the broker until they are due",
            "All 20 (it raises its prefetch limit for each); with the limit it holds 5, the other 15 stay in "
            "the queue, and it takes no other task until one is due",
            "4 (one slot × prefetch multiplier 4); the limit has no effect on Redis",
            "All 20; with the limit the worker rejects the other 15"], 1,
           "A worker holds every ETA task it receives, unacknowledged, and raises its prefetch count by one "
           "for each. worker_eta_task_limit caps that count (kombu's QoS max_prefetch): the rest stay in the "
           "broker for other workers, but a worker full of ETA tasks stops taking new work.",
           cheat="`worker_eta_task_limit=N`: a worker holds at most N ETA/countdown tasks (default: no limit); "
                 "when full it takes no other task either."),
    choice("q0304-native-delayed", "03", S03_DELAYED,
           "Celery on RabbitMQ with `task_default_queue_type=\"quorum\"` and a topic exchange: where does a "
           "task sent with `countdown=2` wait?",
           ["In the worker's memory, unacknowledged, as on Redis",
            "In RabbitMQ's `celery_delayed_*` queues (a TTL per level), then in the task's queue when due",
            "In the result backend", "In beat's schedule"], 1,
           "Native delayed delivery (Celery 5.5+): apply_async publishes to celery_delayed_27 with the "
           "countdown in binary in the routing key; the message waits in the level queues (2^N s each) and "
           "is dead-lettered to the task's queue when due. With a direct exchange Celery only warns, and the "
           "worker holds the task as before.",
           cheat="Quorum queues + a topic/fanout exchange: countdown/ETA tasks wait in RabbitMQ's "
                 "`celery_delayed_*` queues (native delayed delivery), not in the worker."),
    choice("q0304-disable-prefetch", "04", S04_DISABLE,
           "A worker with one slot runs a long task while short tasks queue up. What does "
           "`worker_disable_prefetch=True` do?",
           ["Nothing on Redis: it is a RabbitMQ setting",
            "On Redis the worker takes a new message only while it holds fewer tasks than it has slots, so "
            "idle workers get the short tasks; other transports ignore it with a warning",
            "It makes every task acks_late", "It sets the prefetch multiplier to 0 (unlimited)"], 1,
           "celery/worker/consumer/tasks.py replaces the Redis channel's can_consume: no new message while "
           "len(reserved_requests) >= pool size. Measured: the busy worker took 1 message (defaults: 5, "
           "prefetch multiplier 1: 2). On RabbitMQ use prefetch 1 with acks_late.",
           cheat="`worker_disable_prefetch=True` (Redis only): a busy worker reserves nothing beyond its free "
                 "slots; fixes head-of-line blocking without acks_late.",
           evidence="notebooks/04_priority_routing.ipynb::evidence:q0304-disable-prefetch"),
    myth("q0304-quorum-priority", "04", S04_QUORUM,
         "On RabbitMQ 3.10 a quorum queue declared with x-max-priority runs higher priorities first, like a "
         "classic one.", False,
         "RabbitMQ 3.10 refuses x-max-priority on a quorum queue (PRECONDITION_FAILED, invalid arg), and a "
         "quorum queue delivers in arrival order whatever the message priority. Give urgent work its own "
         "queue and workers.",
         cheat="Quorum queues (RabbitMQ 3.10) have no priorities: x-max-priority is refused; use a separate "
               "queue for urgent work."),
    choice("q0304-quorum-qos", "04", S04_QUORUM,
           "Your app's queues are quorum queues (`x-queue-type: quorum`). What does a Celery worker do about "
           "its prefetch limit?",
           ["Nothing changes", "It uses per-consumer QoS instead of global QoS, because RabbitMQ refuses "
            "consumers with global QoS on quorum queues; the limit no longer grows for ETA tasks",
            "It disables prefetching", "It switches to acks_late"], 1,
           "worker_detect_quorum_queues (default True) makes Tasks.qos_global return False when a queue has "
           "x-queue-type quorum. With global QoS RabbitMQ answers NOT_IMPLEMENTED and the worker cannot "
           "consume.",
           cheat="`task_default_queue_type=\"quorum\"`: Celery switches to per-consumer QoS "
                 "(`worker_detect_quorum_queues`, default True); prefetch is then static."),
]
