"""Flower as a real subprocess on 127.0.0.1, with basic auth, and a small client for its REST API.

::

    flower = celerylab.start_flower(app, wait_for=["orders@worker-a"])   # healthy, sees the worker
    flower.api("/api/workers")                  # JSON, with the basic-auth header
    flower.get("/api/workers", auth=False).status   # 401: the API is closed without credentials
    flower.metrics()                            # Flower's own Prometheus text (/metrics is open)
    flower.stop()                               # or celerylab.cleanup(), or the kernel exiting

Why a subprocess: Flower's event thread never stops inside a kernel, and a real deployment
runs it as its own process anyway. It runs in its own process group and watches the kernel
(like every process the kit starts), so it never outlives it.

The password is random per start and is handed to Flower through the environment
(``FLOWER_BASIC_AUTH``, the same option as ``--basic-auth``) rather than the command line,
where any local user could read it with ``ps``. Nothing here prints it: it would end up in a
saved notebook. Read it from ``flower.password`` in a scratch cell if you want to log in.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from . import logs, processes
from .broker import start_broker
from .errors import CeleryLabError, PortInUseError
from .i18n import _
from .ports import LOOPBACK, free_port, port_in_use


class FlowerMissingError(CeleryLabError):
    pass


class FlowerStartError(CeleryLabError):
    pass


class FlowerAPIError(CeleryLabError):
    pass


@dataclass(frozen=True)
class Response:
    """One HTTP answer: ``status`` (None when nothing answered), ``text``, ``json()``."""

    status: int | None
    text: str
    content_type: str = ""

    def json(self):
        return json.loads(self.text)


def _require_flower() -> None:
    if importlib.util.find_spec("flower") is None:
        raise FlowerMissingError(_(
            "Flower is not installed in this Python: run `pip install flower==2.2.0` "
            "(or `make lab`, which installs everything the lessons use)"))


#: Started with ``python -c`` so the kit's parent watchdog runs inside Flower's process too. In a class
#: (``CELERYLAB_LEARNER``), the app Flower runs (Celery's default app: no ``-A``) gets the learner's key
#: prefix, like the learner's own apps: Flower sees (and its user may read) only the learner's queues and events.
_BOOT = ("import celerylab, sys; from celery import current_app; from celerylab.flower import _learner_conf; "
         "conf = _learner_conf(sys.argv[sys.argv.index('--broker') + 1]); "
         "conf and current_app.config_from_object(conf); "
         "from celery.bin.celery import main; sys.exit(main())")


def _learner_conf(broker_url: str) -> dict:
    """Celery settings for Flower's app: in a class on Redis, the learner's ``global_keyprefix`` (broker and results)."""
    from .broker import learner_prefix

    prefix = learner_prefix()
    if not prefix or not broker_url.startswith(("redis://", "rediss://")):
        return {}
    return {"broker_transport_options": {"global_keyprefix": prefix},
            "result_backend_transport_options": {"global_keyprefix": prefix}}


class Flower:
    """A Flower subprocess. ``url``, ``user``, ``password``, ``logfile``; ``get``/``api``/``stop``."""

    def __init__(self, broker_url: str, result_backend: str | None = None, port: int | None = None,
                 host: str = LOOPBACK, user: str = "admin", password: str | None = None,
                 url_prefix: str | None = None, extra_args=()):
        _require_flower()
        if port and port_in_use(port, host):
            raise PortInUseError(_("port {port} on {host} is already in use: start Flower without a port "
                                   "to get a free one, or stop what listens there", port=port, host=host))
        self.host = host
        self.port = port or free_port(host)
        self.user = user
        self.password = password or secrets.token_urlsafe(12)
        self.url_prefix = (url_prefix or "").strip("/")
        self.broker_url = broker_url
        self.logfile = logs.log_path(f"flower-{self.port}")
        env = processes.child_env()
        env["FLOWER_BASIC_AUTH"] = f"{self.user}:{self.password}"
        env.pop("FLOWER_UNAUTHENTICATED_API", None)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-c", _BOOT, "--broker", broker_url]
        if result_backend:
            cmd += ["--result-backend", result_backend]
        cmd += ["flower", f"--address={host}", f"--port={self.port}", "--inspect_timeout=500"]
        if self.url_prefix:
            cmd.append(f"--url_prefix={self.url_prefix}")
        cmd += list(extra_args)
        self.cmd = cmd
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._forget = processes.register(f"flower on {self.host}:{self.port} (pid {self.proc.pid})", self.stop)

    # -- addresses -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The web UI (it asks for the user and password)."""
        return f"http://{self.host}:{self.port}/" + (f"{self.url_prefix}/" if self.url_prefix else "")

    def _url(self, path: str) -> str:
        return self.url.rstrip("/") + "/" + path.lstrip("/")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- HTTP ------------------------------------------------------------------------------
    def _auth_header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def get(self, path: str, auth: bool = True, timeout: float = 5.0, method: str = "GET",
            data: dict | None = None) -> Response:
        """One request to Flower; ``auth=False`` leaves out the basic-auth header."""
        body = json.dumps(data).encode() if data is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self._url(path), data=body, method=method)
        if auth:
            req.add_header("Authorization", self._auth_header())
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Response(resp.status, resp.read().decode("utf-8", "replace"),
                                resp.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read().decode("utf-8", "replace"), exc.headers.get("Content-Type", ""))
        except OSError as exc:
            return Response(None, str(getattr(exc, "reason", exc)))

    def api(self, path: str, **kwargs):
        """GET (or ``method="POST"``) a JSON endpoint with auth; raise one clear line unless 200."""
        resp = self.get(path, **kwargs)
        if resp.status != 200:
            if resp.text.strip():
                raise FlowerAPIError(_("Flower {path} answered {status}: {reason}", path=path, status=resp.status,
                                       reason=resp.text.strip().splitlines()[0][:200]))
            raise FlowerAPIError(_("Flower {path} answered {status}: no body", path=path, status=resp.status))
        return resp.json()

    def workers(self, refresh: bool = False) -> dict:
        """``/api/workers``: worker name -> what Flower's last inspect found (stats, queues...)."""
        return self.api("/api/workers" + ("?refresh=1" if refresh else ""))

    def tasks(self, **params) -> dict:
        """``/api/tasks``: task id -> what Flower learnt from events (name, state, runtime...)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return self.api("/api/tasks" + (f"?{query}" if query else ""))

    def wait_tasks(self, ids, states=("SUCCESS", "FAILURE"), timeout: float = 10.0) -> dict:
        """Wait until Flower reports every task in ``ids`` in one of ``states`` (its events lag
        the result backend by a few ms); returns ``{id: task info}`` for those tasks."""
        ids = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            found = {k: v for k, v in self.tasks().items() if k in ids}
            if len(found) == len(ids) and all(v.get("state") in states for v in found.values()):
                return found
            if time.monotonic() > deadline:
                done = sum(1 for v in found.values() if v.get("state") in states)
                raise FlowerAPIError(_("Flower knows {done} of {total} tasks as finished after {timeout:g} s",
                                       done=done, total=len(ids), timeout=timeout))
            time.sleep(0.05)

    def queue_lengths(self) -> dict:
        """``/api/queues/length``: queue name -> messages waiting (every priority band counted)."""
        return {q["name"]: q["messages"] for q in self.api("/api/queues/length")["active_queues"]}

    def metrics(self) -> str:
        """Flower's ``/metrics`` text (Prometheus format; open even with basic auth)."""
        resp = self.get("/metrics", auth=False)
        if resp.status != 200:
            raise FlowerAPIError(_("Flower /metrics answered {status}", status=resp.status))
        return resp.text

    def metric_lines(self, prefix: str = "flower_") -> list[str]:
        return [line for line in self.metrics().splitlines() if line.startswith(prefix)]

    # -- lifecycle ---------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 20.0, wait_for=(), app=None) -> "Flower":
        """Wait until ``/healthcheck`` answers, then until Flower has heard each worker in
        ``wait_for`` (a heartbeat in ``/metrics``: its event stream works) and lists it in
        ``/api/workers`` (its remote-control inspect works). With ``app``, workers are asked for
        a heartbeat every half second rather than waiting for their own (every 2 s)."""
        deadline = time.monotonic() + timeout
        poked = 0.0
        while True:
            resp = self.get("/healthcheck", auth=False, timeout=1.0)
            if resp.status == 200:
                break
            self._check_alive_or_timeout(deadline, timeout)
            time.sleep(0.05)
        pending = list(wait_for)
        while pending:
            online = set()
            for line in self.metric_lines("flower_worker_online{"):
                if line.rstrip().endswith(" 1.0"):
                    online.add(line.split('worker="', 1)[1].split('"', 1)[0])
            if app is not None and not online.issuperset(pending) and time.monotonic() - poked > 0.5:
                poked = time.monotonic()
                try:
                    app.control.heartbeat(destination=[w for w in pending if w not in online])
                except Exception:  # their own heartbeats come anyway
                    pass
            listed = set(self.workers(refresh=True)) if online.issuperset(pending) else set()
            pending = [w for w in pending if w not in online or w not in listed]
            if not pending:
                break
            self._check_alive_or_timeout(deadline, timeout, pending)
            time.sleep(0.1)
        return self

    def _check_alive_or_timeout(self, deadline: float, timeout: float, pending=None) -> None:
        """Raise if Flower exited, or (once past ``deadline``) that it is not healthy yet
        (``pending``: the workers it has not seen; None: its /healthcheck did not answer)."""
        if not self.alive:
            detail = logs.tail(self.logfile, 3)
            if "Address already in use" in detail or "Errno 98" in detail:
                raise PortInUseError(_("Flower could not listen on {host}:{port}: address already in use",
                                       host=self.host, port=self.port))
            first = _("Flower exited with status {status} (log: {log})", status=self.proc.returncode, log=self.logfile)
            raise FlowerStartError(f"{first}\n{detail}".rstrip())
        if time.monotonic() > deadline:
            self.stop()
            if pending is None:
                raise FlowerStartError(_("Flower on {host}:{port} did not answer /healthcheck within {timeout:.0f} s "
                                         "(log: {log})", host=self.host, port=self.port, timeout=timeout,
                                         log=self.logfile))
            raise FlowerStartError(_("Flower on {host}:{port} did not see worker(s) {workers} within {timeout:.0f} s "
                                     "(log: {log})", host=self.host, port=self.port, workers=", ".join(pending),
                                     timeout=timeout, log=self.logfile))

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (Flower shuts down cleanly), then SIGKILL to its process group if needed."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        processes.kill_group(self.proc.pid, signal.SIGKILL, wait=2)
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait
            pass
        self._forget()
        if _current.get(self.broker_url) is self:
            del _current[self.broker_url]
        return self.proc.returncode

    def iframe(self, width: str = "100%", height: int = 500):
        """The UI in an IFrame. An IFrame cannot send the basic-auth header: the browser asks
        for the user and password itself (or, on a remote JupyterHub, cannot reach 127.0.0.1)."""
        from IPython.display import IFrame

        return IFrame(self.url, width=width, height=height)

    def __enter__(self) -> "Flower":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:  # never shows the password
        state = "running" if self.alive else f"exited({self.proc.returncode})"
        return f"<flower {self.url} user={self.user!r} password=*** {state}>"


_current: dict[str, Flower] = {}


def start_flower(app=None, port: int | None = None, user: str = "admin", password: str | None = None,
                 url_prefix: str | None = None, wait_for=(), timeout: float = 20.0, extra_args=()) -> Flower:
    """Start Flower on 127.0.0.1 for ``app``'s broker (default: the kit's broker) and wait until
    it is healthy and has heard every worker named in ``wait_for``.

    Re-running the cell replaces the Flower it started before on the same broker.
    """
    _require_flower()
    if app is not None:
        broker_url = str(app.conf.broker_url)
        backend = app.conf.result_backend
    else:
        broker = start_broker()
        broker_url, backend = broker.url, broker.result_backend
    previous = _current.pop(broker_url, None)
    if previous is not None:
        previous.stop()
    flower = Flower(broker_url, backend if isinstance(backend, str) else None, port=port, user=user,
                    password=password, url_prefix=url_prefix, extra_args=extra_args)
    _current[broker_url] = flower
    try:
        flower.wait_ready(timeout, wait_for=wait_for, app=app)
    except BaseException:
        flower.stop()
        raise
    return flower
