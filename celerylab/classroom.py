"""The instructor's side of a class on one broker: ``python -m celerylab class ...``.

* ``create NAMES --broker URL --out class.csv``: one corner per learner, with its own password.
  On Redis an ACL user ``alice`` that may touch only keys and channels starting with ``alice:``
  (the prefix the kit gives every key of ``CELERYLAB_LEARNER=alice``); on RabbitMQ a virtual host
  ``alice`` and a user ``alice`` with rights in it only. ``class.csv`` (mode 600) holds each
  learner's ``CELERYLAB_BROKER_URL``; running ``create`` again reuses its passwords (after a Redis
  restart, whose ACL users live in memory).
* ``reset NAME``: the learner's connections closed and everything they left deleted (keys, or
  the whole vhost, re-created empty); their user and password stay.
* ``remove NAMES``: learners' keys/vhosts and users deleted.
* ``grade class.csv DIR``: grade the submissions in ``DIR/<name>/`` for the same names.

NAMES is a file (one name per line, or the class.csv) or a comma-separated list. ``--broker`` is
the instructor's URL (``redis://:adminpw@host:6379/0``); for RabbitMQ, vhosts and users are made
with ``rabbitmqctl`` on the broker's machine (``--ctl "docker compose exec -T rabbitmq rabbitmqctl"``)
and the URL only names the host and port the learners use.
"""
from __future__ import annotations

import csv
import os
import secrets
import shlex
import subprocess
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote, urlsplit

from .broker import _LEARNER_NAME
from .errors import CeleryLabError
from .i18n import _

#: What a learner's Redis user may not run: server administration, and the commands that list
#: or wipe the whole keyspace (KEYS/SCAN would show other learners' key names; ACL cannot
#: restrict them to a pattern).
REDIS_DENIED = ("-@admin", "-@dangerous", "-keys", "-scan", "-randomkey", "-flushdb", "-flushall",
                "-select", "-swapdb", "-move")


def check_names(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        name = name.strip()
        if not name or name.startswith("#"):
            continue
        if not _LEARNER_NAME.fullmatch(name):
            raise CeleryLabError(_("learner name {name}: use 1-40 letters, digits, '_', '-' or '.', "
                                   "starting with a letter or digit", name=repr(name)))
        if name not in out:
            out.append(name)
    if not out:
        raise CeleryLabError(_("no learner names given"))
    return out


def read_names(spec: str) -> list[str]:
    """Names from a file (one per line, or a class.csv's first column) or ``alice,bob``."""
    path = Path(spec)
    if path.is_file():
        text = path.read_text()
        if text.startswith("name,"):
            return check_names(row["name"] for row in csv.DictReader(text.splitlines()))
        return check_names(text.splitlines())
    return check_names(spec.split(","))


def read_passwords(path: str | None) -> dict[str, str]:
    if not path or not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        return {row["name"]: row["password"] for row in csv.DictReader(f)}


def learner_url(broker_url: str, name: str, password: str) -> str:
    """The ``CELERYLAB_BROKER_URL`` learner ``name`` uses (their user; their vhost on RabbitMQ)."""
    parts = urlsplit(broker_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(name, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    path = f"/{name}" if parts.scheme.startswith(("amqp", "pyamqp")) else (parts.path or "/0")
    return parts._replace(netloc=netloc, path=path).geturl()


# -- Redis: ACL users with key and channel patterns ---------------------------------------------
class RedisClass:
    def __init__(self, admin_url: str):
        import redis

        self.url = admin_url
        self.client = redis.Redis.from_url(admin_url, socket_timeout=30, socket_connect_timeout=5)

    def channels(self, name: str) -> list[str]:
        """Pub/sub rules: ``&alice:*`` for PUBLISH/SUBSCRIBE; Redis compares a PSUBSCRIBE pattern
        literally, so the patterns kombu subscribes to (Celery's events, worker gossip, the
        control mailbox) are allowed by name."""
        db = (urlsplit(self.url).path or "/0").lstrip("/") or "0"
        patterns = (f"/{db}.celeryev/*", f"/{db}.celeryev/worker.*", f"/{db}.celery.pidbox")
        return [f"&{name}:*", *(f"&{name}:{p}" for p in patterns)]

    def create(self, name: str, password: str) -> None:
        # reset: forget earlier rules; ~ keys and & pub/sub channels (Celery's events, kombu's
        # fanout) starting with the learner's prefix only
        self.client.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", f"~{name}:*",
                                    *self.channels(name), "+@all", *REDIS_DENIED)

    def disconnect(self, name: str) -> int:
        try:
            return int(self.client.execute_command("CLIENT", "KILL", "USER", name))
        except Exception:  # noqa: BLE001 - no such user/connection
            return 0

    def delete_keys(self, name: str) -> int:
        removed = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=f"{name}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += self.client.unlink(*batch)
                batch = []
        if batch:
            removed += self.client.unlink(*batch)
        return removed

    def reset(self, name: str) -> str:
        self.client.execute_command("ACL", "SETUSER", name, "off")  # no reconnect meanwhile
        closed = self.disconnect(name)
        removed = self.delete_keys(name)
        self.client.execute_command("ACL", "SETUSER", name, "on")
        return _("{name}: {closed} connections closed, {removed} keys deleted", name=name, closed=closed, removed=removed)

    def remove(self, name: str) -> str:
        self.client.execute_command("ACL", "DELUSER", name)
        closed = self.disconnect(name)
        removed = self.delete_keys(name)
        return _("{name}: user removed, {closed} connections closed, {removed} keys deleted",
                 name=name, closed=closed, removed=removed)

    def keys(self, name: str) -> int:
        return sum(1 for _ in self.client.scan_iter(match=f"{name}:*", count=1000))

    def close(self) -> None:
        self.client.close()


# -- RabbitMQ: a vhost and a user per learner ---------------------------------------------------
def rabbitmqctl(command: str = "rabbitmqctl") -> Callable[..., str]:
    """``rabbitmqctl`` (or e.g. ``docker compose exec -T rabbitmq rabbitmqctl``) as a function."""
    argv = shlex.split(command)

    def ctl(*args: str) -> str:
        out = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise CeleryLabError(_("rabbitmqctl {command} failed: {output}", command=" ".join(args),
                                   output=(out.stderr or out.stdout).strip()))
        return out.stdout

    return ctl


class RabbitClass:
    def __init__(self, ctl: Callable[..., str]):
        self.ctl = ctl

    def _names(self, what: str) -> set[str]:
        args = ("--quiet", "--no-table-headers") + (("name",) if what == "vhosts" else ())
        out = self.ctl(f"list_{what}", *args)  # list_users takes no column names
        return {line.split("\t")[0].strip() for line in out.splitlines() if line.strip()}

    def create_many(self, passwords: dict[str, str]) -> None:
        """All learners at once: one ``rabbitmqctl import_definitions`` (a call per learner and
        step takes about a second each). Existing users get the new password hash."""
        import base64
        import hashlib
        import json
        import tempfile

        def password_hash(password: str) -> str:  # rabbit_password_hashing_sha256: salt + sha256(salt + pw)
            salt = secrets.token_bytes(4)
            return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()

        definitions = {
            "users": [{"name": n, "password_hash": password_hash(pw), "hashing_algorithm": "rabbit_password_hashing_sha256",
                       "tags": []} for n, pw in passwords.items()],
            "vhosts": [{"name": n} for n in passwords],
            "permissions": [{"user": n, "vhost": n, "configure": ".*", "write": ".*", "read": ".*"} for n in passwords],
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="celerylab-class-") as f:
            os.chmod(f.name, 0o600)
            json.dump(definitions, f)
            f.flush()
            self.ctl("import_definitions", f.name)

    def create(self, name: str, password: str) -> None:
        if name not in self._names("vhosts"):
            self.ctl("add_vhost", name)
        if name in self._names("users"):
            self.ctl("change_password", name, password)
        else:
            self.ctl("add_user", name, password)
        self.ctl("set_permissions", "-p", name, name, ".*", ".*", ".*")

    def reset(self, name: str) -> str:
        # deleting the vhost closes its connections and drops its queues, exchanges and messages
        if name in self._names("vhosts"):
            self.ctl("delete_vhost", name)
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, name, ".*", ".*", ".*")
        return _("{name}: vhost emptied (connections closed, queues and messages deleted)", name=name)

    def remove(self, name: str, known: tuple[set, set] | None = None) -> str:
        vhosts, users = known or (self._names("vhosts"), self._names("users"))
        if name in vhosts:
            self.ctl("delete_vhost", name)
        if name in users:
            self.ctl("delete_user", name)
        return _("{name}: vhost and user removed", name=name)

    def remove_many(self, names: list[str]) -> list[str]:
        known = (self._names("vhosts"), self._names("users"))
        return [self.remove(name, known) for name in names]

    def queues(self, name: str) -> list[str]:
        out = self.ctl("list_queues", "-p", name, "--quiet", "--no-table-headers", "name", "messages")
        return [line for line in out.splitlines() if line.strip()]

    def close(self) -> None:
        pass


def for_broker(broker_url: str, ctl: Callable[..., str] | str | None = None):
    scheme = urlsplit(broker_url).scheme
    if scheme.startswith("redis"):
        return RedisClass(broker_url)
    if scheme.startswith(("amqp", "pyamqp")):
        return RabbitClass(ctl if callable(ctl) else rabbitmqctl(ctl or "rabbitmqctl"))
    raise CeleryLabError(_("--broker {url}: use redis://... or amqp://...", url=repr(broker_url)))


def create_class(broker_url: str, names: list[str], out: str | None = None, ctl=None) -> dict[str, str]:
    """Create every learner's corner; returns ``{name: their CELERYLAB_BROKER_URL}``."""
    passwords = read_passwords(out)
    admin = for_broker(broker_url, ctl)
    urls: dict[str, str] = {}
    try:
        for name in names:
            passwords[name] = passwords.get(name) or secrets.token_urlsafe(12)
            urls[name] = learner_url(broker_url, name, passwords[name])
        if isinstance(admin, RabbitClass):
            admin.create_many({name: passwords[name] for name in names})
        else:
            for name in names:
                admin.create(name, passwords[name])
    finally:
        admin.close()
    if out:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", "password", "CELERYLAB_BROKER_URL"])
            for name in names:
                writer.writerow([name, passwords[name], urls[name]])
    return urls


def _cmd(args) -> int:
    if args.action == "grade":
        return grade_class(args)
    names = read_names(args.names)
    if args.action == "create":
        urls = create_class(args.broker, names, args.out, args.ctl)
        if args.out:
            print(_("class created: {count} learners ({names}); their CELERYLAB_BROKER_URL and password are in {out}",
                    count=len(urls), names=", ".join(names), out=args.out))
        else:
            print(_("class created: {count} learners ({names})", count=len(urls), names=", ".join(names)))
        if not args.out:
            for name, url in urls.items():
                print(f"{name}\tCELERYLAB_LEARNER={name} CELERYLAB_BROKER_URL={url}")
        return 0
    admin = for_broker(args.broker, args.ctl)
    try:
        if args.action == "remove" and isinstance(admin, RabbitClass):
            print("\n".join(admin.remove_many(names)))
        else:
            for name in names:
                print(admin.reset(name) if args.action == "reset" else admin.remove(name))
    finally:
        admin.close()
    return 0


def grade_class(args) -> int:
    """Grade ``DIR/<name>/*.ipynb`` for every learner of the class; say who handed in nothing."""
    from .grading.runner import find_notebooks, grade
    from .grading.scorecard import format_card, write_csv

    base = Path(args.dir)
    if not base.is_dir():
        raise CeleryLabError(_("{folder}: no such folder", folder=args.dir))
    names = read_names(args.names)
    paths, missing = [], []
    for name in names:
        found = find_notebooks(base / name) if (base / name).is_dir() else []
        (paths.extend(found) if found else missing.append(name))
    strangers = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name not in names
                       and not p.name.startswith("."))
    if missing:
        print(_("no submission from: {names}", names=", ".join(missing)))
    if strangers:
        print(_("not in the class (not graded): {names}", names=", ".join(strangers)))
    if not paths:
        raise CeleryLabError(_("{folder}: no notebooks from any learner of the class", folder=args.dir))
    results = grade(paths, time_limit=args.time_limit, cell_timeout=min(args.cell_timeout, args.time_limit),
                    on_result=lambda r: print(format_card(r, os.path.relpath(r.notebook, base)), flush=True))
    if args.csv:
        write_csv(results, args.csv, base=base)
    complete = sum(r.ok for r in results)
    print(_("{notebooks} notebooks from {handed_in} of {learners} learners graded, {complete} with every exercise passed",
            notebooks=len(results), handed_in=len(names) - len(missing), learners=len(names), complete=complete))
    return 0 if complete == len(results) and not missing else 1


def add_parser(sub) -> None:
    """The ``class`` subcommand of ``python -m celerylab``."""
    c = sub.add_parser("class", help=_("instructor: create/reset/remove a class's learners on one broker, grade them"))
    c.add_argument("action", choices=["create", "reset", "remove", "grade"])
    c.add_argument("names", nargs="?", help=_("learner names: a file (one a line, or class.csv) or alice,bob"))
    c.add_argument("dir", nargs="?", help=_("grade: the folder holding one sub-folder per learner"))
    c.add_argument("--broker", default=os.environ.get("CELERYLAB_BROKER_URL"),
                   help=_("the instructor's broker URL (default: $CELERYLAB_BROKER_URL)"))
    c.add_argument("--out", metavar="FILE", help=_("create: write name,password,CELERYLAB_BROKER_URL (mode 600)"))
    c.add_argument("--ctl", default="rabbitmqctl", help=_("RabbitMQ: how to run rabbitmqctl (default: rabbitmqctl)"))
    c.add_argument("--csv", metavar="FILE", help=_("grade: one row per notebook"))
    c.add_argument("--time-limit", type=float, default=300, metavar="S")
    c.add_argument("--cell-timeout", type=float, default=40, metavar="S")
    c.set_defaults(func=_run)


def _run(args) -> int:
    if args.action == "grade":
        if not args.dir or not args.names:
            raise CeleryLabError(_("class grade NAMES DIR: the class's names and the submissions folder"))
        return grade_class(args)
    if not args.names:
        raise CeleryLabError(_("class {action}: give the learner names (a file or alice,bob)", action=args.action))
    if not args.broker:
        raise CeleryLabError(_("set --broker URL (or CELERYLAB_BROKER_URL) to the class broker"))
    return _cmd(args)
