"""``create_app``: a Celery app wired to the kit's broker with teaching-friendly, safe settings."""
from __future__ import annotations

import json
import os

from celery import Celery

from .broker import learner_prefix, start_broker

#: JSON of extra Celery settings, set by :func:`celerylab.spawn_worker` so a worker subprocess
#: runs with the same settings the notebook asked for (e.g. ``{"task_acks_late": true}``).
APP_CONF_ENV = "CELERYLAB_APP_CONF"

#: Redis transport options for demos. kombu's defaults are made for production:
#:
#: * ``visibility_timeout`` (default 3600 s): how long a message taken by a worker may stay
#:   unacknowledged before Redis hands it out again. 30 s lets a lesson show redelivery after a
#:   killed worker; lessons that demonstrate the timeout itself lower it further.
#: * ``unacked_restore_interval`` x ``unacked_restore_throttle`` (default 10 s x 10): how
#:   often a running worker actually sweeps for such messages, ~100 s by default. 1 x 1 makes
#:   the sweep run every second, so redelivery takes seconds, not minutes.
DEMO_TRANSPORT_OPTIONS = {
    "visibility_timeout": 30,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}


def default_conf(broker) -> dict:
    """The settings every kit app starts from (callers override any of them)."""
    conf = dict(
        broker_url=broker.url,
        result_backend=broker.result_backend,
        # Secure by default: JSON only. Lesson 02 turns pickle on to show why it is dangerous.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Events feed the live widgets, Flower and the Prometheus exporter.
        worker_send_task_events=True,
        task_send_sent_event=True,
        # task_track_started stays at Celery's default (False): lesson 01 shows what it changes.
        enable_utc=True,
        timezone="UTC",
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    conf.update(redis_conf(broker.url))
    return conf


def redis_conf(broker_url: str, **transport_options) -> dict:
    """On a Redis broker URL: the demo transport options (refined by ``transport_options``) and
    the learner's key prefix for broker and results; nothing for other brokers."""
    if not str(broker_url).startswith(("redis://", "rediss://")):
        return {}
    options = {**DEMO_TRANSPORT_OPTIONS, **transport_options}
    conf = {"broker_transport_options": options}
    prefix = learner_prefix()
    if prefix:  # a classroom broker: this learner's keys, queues and events only
        options["global_keyprefix"] = prefix
        conf["result_backend_transport_options"] = {"global_keyprefix": prefix}
    return conf


def create_app(name: str = "celerylab", **conf) -> Celery:
    """A Celery app on the kit's broker (started if needed), JSON only, events on.

    Any Celery setting can be passed as a keyword, e.g. ``create_app("demo", task_acks_late=True)``.
    Settings from ``CELERYLAB_APP_CONF`` (set for worker subprocesses) apply before ``conf``.
    """
    broker = start_broker()
    settings = default_conf(broker)
    env_conf = os.environ.get(APP_CONF_ENV)
    if env_conf:
        settings.update(json.loads(env_conf))
    settings.update(conf)
    # On Redis (the kit's broker, or a broker_url given here), options given by the caller or a
    # spawned worker's CELERYLAB_APP_CONF refine the demo defaults rather than replace them all.
    given = settings.get("broker_transport_options") or {}
    settings.update(redis_conf(settings["broker_url"], **given))
    app = Celery(name, set_as_current=True)
    app.conf.update(settings)
    return app
