"""Command line: ``python -m celerylab broker|worker|where``.

* ``broker [--port N]``: serve the embedded broker as a process, so workers in other
  processes, Flower and redis-cli can attach (prints the URL, Ctrl-C to stop).
* ``worker --lesson NN`` (or ``--module M``): a real ``celery worker`` for a lesson's tasks.
* ``where``: broker URL, log folder, what the kit runs in this process.
* ``grade [paths] [--class DIR --csv FILE]``: grade lab notebooks with nbval, print a scorecard.
* ``class create|reset|remove|grade``: the instructor's side of a class on one broker (celerylab/classroom.py).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from .errors import CeleryLabError
from .i18n import _


def _cmd_broker(args) -> int:
    from .broker import _require_lupa
    from .errors import PortInUseError
    from .ports import port_in_use
    from .resp_server import EmbeddedRedisServer

    _require_lupa()
    if args.port and port_in_use(args.port, args.host):
        raise PortInUseError(_("port {port} on {host} is already in use; choose another with --port",
                               port=args.port, host=args.host))
    server = EmbeddedRedisServer(args.host, args.port or 0)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    url = f"redis://{args.host}:{server.port}/0"
    print(_("celerylab broker: {url} (in-memory; Ctrl-C to stop)", url=url), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


def lesson_module(lesson: str) -> str:
    """'01' or '1' -> the task module of lesson 01 (``celerylab.lessons.l01_*``)."""
    import pkgutil

    from . import lessons

    number = f"{int(lesson):02d}"
    for info in pkgutil.iter_modules(lessons.__path__):
        if info.name.startswith(f"l{number}_"):
            return f"celerylab.lessons.{info.name}"
    known = sorted(i.name[1:3] for i in pkgutil.iter_modules(lessons.__path__) if i.name.startswith("l"))
    raise CeleryLabError(_("no lesson {lesson}: lessons with tasks are {lessons}", lesson=repr(lesson),
                           lessons=", ".join(known)))


def _cmd_worker(args) -> int:
    from .worker import ALL_POOLS, check_pool

    check_pool(args.pool, ALL_POOLS)
    module = args.module or lesson_module(args.lesson)
    cmd = [sys.executable, "-m", "celery", "-A", module, "worker", "-P", args.pool, "-c", str(args.concurrency),
           "-l", args.loglevel, "-E"]
    if args.queues:
        cmd += ["-Q", args.queues]
    if args.broker:
        os.environ["CELERYLAB_BROKER_URL"] = args.broker
    if not os.environ.get("CELERYLAB_BROKER_URL"):
        raise CeleryLabError(_("set CELERYLAB_BROKER_URL (or --broker URL) to the broker this worker should serve"))
    from .broker import check_reachable, with_learner_vhost

    check_reachable(with_learner_vhost(os.environ["CELERYLAB_BROKER_URL"]))
    os.execv(sys.executable, cmd)
    return 0  # pragma: no cover


def _cmd_where(args) -> int:
    from . import where

    for key, value in where().items():
        print(f"{key:9} {value}")
    return 0


def _cmd_grade(args) -> int:
    from .grading.runner import command

    return command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m celerylab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("broker", help=_("serve the embedded (in-memory) Redis broker"))
    b.add_argument("--port", type=int, default=6379, help=_("port to listen on (0 = any free port; default 6379)"))
    b.add_argument("--host", default="127.0.0.1", help=_("address to bind (default 127.0.0.1: this machine only)"))
    b.set_defaults(func=_cmd_broker)
    w = sub.add_parser("worker", help=_("run a Celery worker for a lesson's tasks"))
    g = w.add_mutually_exclusive_group(required=True)
    g.add_argument("--lesson", help=_("lesson number, e.g. 01"))
    g.add_argument("--module", help=_("task module, e.g. celerylab.lessons.l00_start"))
    w.add_argument("--broker", help=_("broker URL (default: $CELERYLAB_BROKER_URL)"))
    w.add_argument("--pool", "-P", default="prefork")
    w.add_argument("--concurrency", "-c", type=int, default=2)
    w.add_argument("--queues", "-Q", help=_("comma-separated queues to consume"))
    w.add_argument("--loglevel", "-l", default="INFO")
    w.set_defaults(func=_cmd_worker)
    h = sub.add_parser("where", help=_("show the broker URL and log folder"))
    h.set_defaults(func=_cmd_where)
    gr = sub.add_parser("grade", help=_("grade lab notebooks (nbval) and print a scorecard per lab"))
    gr.add_argument("paths", nargs="*", help=_("lab notebooks to grade (default: labs/*.ipynb)"))
    gr.add_argument("--class", dest="class_dir", metavar="DIR",
                    help=_("instructor mode: grade every notebook under DIR, each in its own kernel"))
    gr.add_argument("--csv", metavar="FILE", help=_("write one row per notebook (passed, total, each exercise)"))
    gr.add_argument("--time-limit", type=float, default=300, metavar="S",
                    help=_("seconds one notebook may run before it is stopped (default 300)"))
    gr.add_argument("--cell-timeout", type=float, default=40, metavar="S",
                    help=_("seconds one cell may run before it is stopped and reported as timed out (default 40)"))
    gr.add_argument("--solutions", metavar="DIR", help=_("folder of master copies (default: the kit's solutions/)"))
    gr.set_defaults(func=_cmd_grade)
    from .classroom import add_parser as add_class_parser  # instructor: class create|reset|remove|grade

    add_class_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CeleryLabError as exc:
        print(f"celerylab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
