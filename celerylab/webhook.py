"""A local webhook receiver: where Alertmanager posts its notifications in the lesson and tests.

Slack, WeCom, DingTalk, PagerDuty... all receive the same thing from Alertmanager: one JSON
document per *group* of alerts (``status``, ``groupLabels``, ``commonLabels``, ``alerts`` with
their labels and annotations). This receiver keeps every document it gets::

    hook = WebhookReceiver().start()          # http://127.0.0.1:PORT/alerts
    ...Alertmanager posts...
    hook.wait(lambda n: n["status"] == "firing")
    print(describe(hook.notifications[-1]))   # the message a chat integration would render

It runs on a thread of this process, on 127.0.0.1, and stops with the kernel.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import processes
from .ports import LOOPBACK


class WebhookReceiver:
    def __init__(self, path: str = "/alerts"):
        self.path = path
        self.notifications: list[dict] = []
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._forget = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    def start(self) -> "WebhookReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    doc = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._cond:
                    receiver.notifications.append(doc)
                    receiver._cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # no access log lines in cell output
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"celerylab-webhook-{self.port}", daemon=True)
        self._thread.start()
        self._forget = processes.register(f"webhook receiver {self.url}", self.stop)
        return self

    def wait(self, match=lambda doc: True, timeout: float = 15.0) -> dict:
        """The first notification (oldest first) for which ``match(doc)`` is true; waits for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for doc in self.notifications:
                    if match(doc):
                        return doc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching notification within {timeout:g} s "
                                       f"({len(self.notifications)} received)")
                self._cond.wait(left)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._forget:
            self._forget()
            self._forget = None

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def alertnames(doc: dict) -> list[str]:
    """The alert names in one notification, sorted."""
    return sorted({a["labels"].get("alertname", "") for a in doc.get("alerts", [])})


def describe(doc: dict) -> str:
    """One notification as short text (no times, ids or URLs): ``[FIRING:2] <group labels>``
    (status, number of firing alerts), then one line per alert with its ``summary`` annotation."""
    firing = [a for a in doc.get("alerts", []) if a.get("status") == "firing"]
    group = " ".join(f"{k}={v}" for k, v in sorted(doc.get("groupLabels", {}).items()))
    head = f"[{doc.get('status', '').upper()}" + (f":{len(firing)}" if doc.get("status") == "firing" else "") + f"] {group}"
    lines = [head]
    for a in sorted(doc.get("alerts", []), key=lambda a: sorted(a["labels"].items())):
        extra = {k: v for k, v in a["labels"].items() if k not in ("alertname", "severity", "job", "instance")}
        where = " ".join(f"{k}={v}" for k, v in sorted(extra.items()))
        lines.append(f"  {a['status']:8} {a['labels'].get('alertname', '')}"
                     + (f" ({where})" if where else "") + f": {a.get('annotations', {}).get('summary', '')}")
    return "\n".join(lines)
