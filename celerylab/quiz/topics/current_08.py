"""Lessons 08 and 08a: Celery 5.5-5.7 settings (soft shutdown; acking a failed or timed-out
late-acked task). Evidence: the tagged cells of notebooks/08_production.ipynb (section 1c) and
notebooks/08a_workers.ipynb (section 5), and tests/test_claims_current_08.py."""
from __future__ import annotations

from celerylab.quiz.bank import choice, myth

ACKS = "1c. A late-acked task that fails or times out: `task_acks_on_failure`, `task_acks_on_timeout`"
SOFT = "Soft shutdown (Celery 5.5+)"

QUESTIONS = [
    choice("c08-soft-shutdown", "08a", SOFT,
           "A worker has worker_soft_shutdown_timeout=60 and gets SIGQUIT while it runs a 10 s task and a "
           "2-hour one (both with the default early ack). What happens?",
           ["Both are cancelled at once", "It waits 60 s: the 10 s task finishes; then the 2-hour one is "
            "cancelled (marked RETRY) and, acked when it started, is lost", "It waits for both to finish",
            "Both go back to the queue"], 1,
           "A soft shutdown is a cold shutdown (SIGQUIT, Ctrl-C twice) that first sleeps the timeout. SIGTERM is "
           "still the warm shutdown, which waits for every task.",
           cheat="`worker_soft_shutdown_timeout` (5.5+, default 0): SIGQUIT first waits that long (the whole "
                 "time), then cancels what is left"),
    choice("c08-soft-idle", "08a", SOFT,
           "worker_soft_shutdown_timeout=30 is set. The worker is idle when it gets SIGQUIT. How long does it "
           "wait before shutting down?",
           ["30 s, always", "Not at all, unless worker_enable_soft_shutdown_on_idle=True: then 30 s",
            "Until the queue is empty", "Until the visibility timeout"], 1,
           "The soft shutdown waits only while a task is running; worker_enable_soft_shutdown_on_idle makes an "
           "idle worker wait the timeout too.",
           cheat="`worker_enable_soft_shutdown_on_idle=True`: the soft-shutdown wait happens even with no task "
                 "running"),
    myth("c08-myth-restore", "08a", SOFT,
         "On Redis, an acks_late task cancelled by a cold (or soft) shutdown waits in the unacked hash until "
         "the visibility timeout.", False,
         "A worker that shuts down closes its connection, and kombu's Redis transport puts the messages that "
         "connection held unacked back in their queue at once. Only a killed worker (kill -9) leaves them to "
         "the visibility-timeout sweep.",
         cheat="Cold/soft shutdown on Redis: acks_late tasks it cut are back in the queue at once; early-acked "
               "ones are lost",
         evidence="notebooks/08a_workers.ipynb::evidence:c08-soft-shutdown"),
    choice("c08-acks-on-failure", "08", ACKS,
           "A task has acks_late=True and acks_on_failure=False, and raises. What happens to its message?",
           ["It is acked, as always", "It is rejected without requeue: RabbitMQ dead-letters it (if the "
            "queue has a dead-letter exchange); Redis drops it", "It is requeued and runs again",
            "It stays unacked until the visibility timeout"], 1,
           "The default (None, falling back to the deprecated task_acks_on_failure_or_timeout=True) acks it. "
           "Without acks_late the setting does nothing: the message was acked when the task started.",
           cheat="`task_acks_on_failure=False` (with acks_late): a failed task's message is rejected, no "
                 "requeue (the DLQ on RabbitMQ)"),
    choice("c08-acks-on-timeout", "08", ACKS,
           "A task has acks_late=True, time_limit=30 and acks_on_timeout=False. It hangs on every run. What "
           "happens?",
           ["It fails once, message acked", "Its message is rejected with requeue: it runs again, times out "
            "again... a loop, like a poison message", "It goes to the dead-letter queue",
            "It is retried max_retries times"], 1,
           "acks_on_timeout=False requeues a task killed by its hard time limit; nothing counts the loop. The "
           "default acks it. Both replace task_acks_on_failure_or_timeout, deprecated in Celery 5.7.",
           cheat="`task_acks_on_timeout=False` (with acks_late): a timed-out task is requeued, for ever if "
                 "it always times out"),
]
