"""``spawn_worker``: a real ``celery worker`` subprocess (prefork, threads, solo...).

Lessons use it when the worker must be a separate process: prefork and time limits,
``kill -9`` mid-task, warm versus cold shutdown, several workers on separate queues. The
worker imports its tasks from a module (``celerylab.lessons.*``): tasks defined in a
notebook's ``__main__`` do not exist in another process ("unregistered task").
"""
from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time

from . import logs, processes
from .app import APP_CONF_ENV
from .broker import BROKER_URL_ENV, RESULT_BACKEND_ENV, start_broker
from .errors import WorkerStartError
from .i18n import _
from .worker import ALL_POOLS, check_pool

_counter = itertools.count(1)

#: Settings that ``celery worker`` also takes as an option (checked against ``celery worker --help``).
#: Any other setting goes after ``--`` as ``name=value``: the worker command passes those
#: arguments to ``app.config_from_cmdline`` (celery/bin/worker.py).
SETTING_OPTIONS = {
    "worker_prefetch_multiplier": "--prefetch-multiplier",
    "worker_max_tasks_per_child": "--max-tasks-per-child",
    "worker_max_memory_per_child": "--max-memory-per-child",
    "task_time_limit": "--time-limit",
    "task_soft_time_limit": "--soft-time-limit",
}


def _config_arg(name: str, value) -> str:
    """``name=value`` as ``celery worker -- ...`` parses it (``(json)`` for anything not a plain scalar)."""
    if isinstance(value, bool):
        return f"{name}={str(value).lower()}"
    if isinstance(value, (int, float, str)):
        return f"{name}={value}"
    return f"{name}=(json){json.dumps(value, separators=(',', ':'))}"


def worker_command(module: str, pool: str, concurrency: int, queues, hostname: str, loglevel: str,
                   prefetch_multiplier: int | None = None, extra_args=(), conf=None) -> str:
    """The ``celery worker`` command line that starts the same worker outside the kit."""
    conf = dict(conf or {})
    args = ["celery", "-A", module, "worker", f"--pool={pool}", f"--concurrency={concurrency}"]
    if queues:
        args.append("--queues=" + ",".join(queues))
    args += [f"--hostname={hostname}", f"--loglevel={loglevel}", "--task-events",
             "--without-mingle", "--without-gossip"]
    if prefetch_multiplier is not None:
        conf.pop("worker_prefetch_multiplier", None)
        args.append(f"--prefetch-multiplier={prefetch_multiplier}")
    for name, option in SETTING_OPTIONS.items():
        if name in conf and conf[name] is not None:
            args.append(f"{option}={conf.pop(name)}")
    if conf.get("worker_disable_prefetch") is True:
        conf.pop("worker_disable_prefetch")
        args.append("--disable-prefetch")
    args += list(extra_args)
    if conf:
        args.append("--")
        args += [_config_arg(name, value) for name, value in conf.items()]
    return shlex.join(args)


class WorkerProcess:
    """A worker subprocess in its own process group.

    ``command`` is the equivalent ``celery -A <module> worker ...`` command line, to run outside
    the kit: pool, concurrency, queues, hostname and log level as options, and the Celery settings
    given to ``spawn_worker`` as options where ``celery worker`` has one (``--max-tasks-per-child``,
    ``--time-limit``...), the others after ``--`` as ``name=value`` (a dict setting given there
    replaces the app's whole dict, e.g. the kit's demo ``broker_transport_options``, which
    ``spawn_worker`` merges instead). The broker URL is not in it:
    the app module configures it (here from ``CELERYLAB_BROKER_URL``). ``cmd`` is the argv the kit
    actually runs (the same, plus its log file).
    """

    def __init__(self, module: str, pool: str = "prefork", concurrency: int = 2, queues=None,
                 hostname: str | None = None, loglevel: str = "INFO", prefetch_multiplier: int | None = None,
                 extra_args=(), **conf):
        check_pool(pool, ALL_POOLS)
        broker = start_broker()
        n = next(_counter)
        self.module = module
        self.pool = pool
        self.concurrency = concurrency
        self.queues = list(queues) if queues else None
        self.hostname = hostname or f"{module.rsplit('.', 1)[-1]}-{n}-{os.getpid()}@%h"
        self.logfile = logs.log_path(f"spawned-{self.hostname.split('@')[0]}")
        self.logfile.write_text("")
        env = processes.child_env()
        env[BROKER_URL_ENV] = broker.url
        env[RESULT_BACKEND_ENV] = broker.result_backend
        if conf:
            env[APP_CONF_ENV] = json.dumps(conf)
        else:
            env.pop(APP_CONF_ENV, None)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "celery", "-A", module, "worker", "-P", pool, "-c", str(concurrency),
               "-n", self.hostname, "-l", loglevel, "-f", str(self.logfile), "-E",
               "--without-mingle", "--without-gossip"]
        if self.queues:
            cmd += ["-Q", ",".join(self.queues)]
        if prefetch_multiplier is not None:
            cmd += ["--prefetch-multiplier", str(prefetch_multiplier)]
        cmd += list(extra_args)
        self.cmd = cmd
        self.broker_url = conf.get("broker_url") or _module_broker_url(module) or broker.url
        self.command = worker_command(module, pool, concurrency, self.queues, self.hostname, loglevel,
                                      prefetch_multiplier, extra_args, conf)
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.logfile.with_suffix(".stderr"), "wb"),
                                     start_new_session=True)
        self._forget = processes.register(f"worker process {self.hostname} (pid {self.proc.pid})", self.kill)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def nodename(self) -> str:
        return self.hostname.replace("%h", os.uname().nodename)

    def wait_ready(self, timeout: float = 20.0) -> "WorkerProcess":
        """Block until the worker logs that it is ready and answers a ping (or raise with the log's
        last lines). The ping matters: "ready" is logged before the worker's event loop has
        subscribed to broadcasts on Redis, and a broadcast (``inspect()``, ``add_consumer``) sent
        in between reaches nobody."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            if " ready." in text:
                self._answers_ping(deadline)
                return self
            if not self.alive:
                break
            time.sleep(0.05)
        detail = logs.tail(self.logfile.with_suffix(".stderr"), 5) or logs.tail(self.logfile, 5)
        if not self.alive:
            first = _("worker {worker} exited with status {status}; log: {log}",
                      worker=self.nodename, status=self.proc.returncode, log=self.logfile)
        else:
            first = _("worker {worker} not ready after {timeout:.0f} s; log: {log}",
                      worker=self.nodename, timeout=timeout, log=self.logfile)
        self.kill()
        raise WorkerStartError(f"{first}\n{detail}".rstrip())

    def _answers_ping(self, deadline: float) -> bool:
        """Ping this worker until it answers (True) or the deadline passes (False: it is ready anyway)."""
        from celery import Celery

        app = Celery("celerylab-ping", broker=self.broker_url, set_as_current=False)
        try:
            while self.alive and time.monotonic() < deadline:
                try:
                    if app.control.ping([self.nodename], timeout=0.5, limit=1):
                        return True
                except Exception:  # noqa: BLE001 - the broker is restarting: the caller finds out soon
                    return False
            return False
        finally:
            app.close()

    def terminate(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM): running tasks finish, then the worker exits."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL to the whole process group: the worker and its pool processes die at once."""
        processes.kill_group(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(10)  # reap the leader, so only live pool processes keep the group alive
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait
            pass
        processes.kill_group(self.proc.pid, signal.SIGKILL, wait=5)
        self._forget()
        return self.proc.returncode

    def children(self) -> list[int]:
        """Pids of the worker's pool processes (Linux)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def __enter__(self) -> "WorkerProcess":
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.terminate()

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited({self.proc.returncode})"
        return f"<worker process {self.nodename} pid={self.pid} pool={self.pool} x{self.concurrency} {state}>"


def _module_broker_url(module: str) -> str | None:
    """The broker of ``module``'s ``app`` when this process has imported it (a lesson app built
    with ``create_redis_app`` is on the kernel's private Redis on a RabbitMQ class broker, and so
    is its worker process): where a ping reaches the worker."""
    app = getattr(sys.modules.get(module), "app", None)
    url = getattr(getattr(app, "conf", None), "broker_url", None)
    return url if isinstance(url, str) else None


def spawn_worker(module: str, pool: str = "prefork", concurrency: int = 2, queues=None, **kwargs) -> WorkerProcess:
    """Start ``celery -A module worker`` as a subprocess; call ``.wait_ready()`` before sending work.

    Extra keywords: ``hostname``, ``loglevel``, ``prefetch_multiplier``, ``extra_args`` and any
    Celery setting for the worker's app (``task_acks_late=True``, ``task_reject_on_worker_lost=True``...).
    """
    return WorkerProcess(module, pool=pool, concurrency=concurrency, queues=queues, **kwargs)
