"""Where the kit's broker lives: embedded (in this process) or a real one from the environment.

``start_broker()`` is what every lesson calls, directly or through :func:`celerylab.create_app`:

* with ``CELERYLAB_BROKER_URL`` unset, it serves an in-memory Redis (fakeredis) on
  127.0.0.1 in a background thread; calling it again in the same kernel returns the same
  broker, so re-running a cell changes nothing;
* with ``CELERYLAB_BROKER_URL=redis://...`` or ``amqp://...``, it checks that broker answers
  (within 5 s, or one clear error line) and uses it instead.

Classrooms: with ``CELERYLAB_LEARNER=alice`` too, 30 learners share one broker without seeing
each other's tasks. On Redis every key and channel the kit, Celery and kombu use gets the
prefix ``alice:`` (kombu's and Celery's ``global_keyprefix``); on RabbitMQ the learner works
in the virtual host ``alice`` (the instructor creates it: see docs/classroom.md).
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import processes
from .errors import BrokerUnreachableError, CeleryLabError, LupaMissingError, PortInUseError
from .i18n import _
from .ports import LOOPBACK, port_in_use

BROKER_URL_ENV = "CELERYLAB_BROKER_URL"
RESULT_BACKEND_ENV = "CELERYLAB_RESULT_BACKEND"
LEARNER_ENV = "CELERYLAB_LEARNER"
_LEARNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
REACH_TIMEOUT = 5.0


@dataclass
class Broker:
    """A running broker: ``url`` for Celery, ``result_backend`` for results, ``stop()`` to end it."""

    url: str
    result_backend: str
    embedded: bool
    _server: object = field(default=None, repr=False)
    _forget: object = field(default=None, repr=False)

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port

    @property
    def transport(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def running(self) -> bool:
        return self._server is not None or not self.embedded

    def stop(self) -> None:
        """Stop an embedded broker (and forget it); a real broker is left running."""
        global _current
        with _lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
            if self._forget is not None:
                self._forget()
                self._forget = None
            if _current is self:
                _current = None

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __str__(self) -> str:
        if self.embedded:
            return _("embedded fakeredis broker at {url}", url=self.url)
        return _("external broker at {url}", url=self.url)


_lock = threading.RLock()
_current: Broker | None = None


def _require_lupa() -> None:
    try:
        import lupa  # noqa: F401
    except ImportError:
        raise LupaMissingError(_(
            "the embedded broker needs the 'lupa' package (kombu's Lua scripts fail on fakeredis "
            "without it): run `pip install lupa`, or `make lab` to reinstall the kit"
        )) from None


def learner() -> str | None:
    """The learner name from ``CELERYLAB_LEARNER`` (None when unset); a bad name is one clear error."""
    name = os.environ.get(LEARNER_ENV, "").strip()
    if not name:
        return None
    if not _LEARNER_NAME.fullmatch(name):
        raise CeleryLabError(_("{variable}={name}: use 1-40 letters, digits, '_', '-' or '.', "
                               "starting with a letter or digit (e.g. alice or team-3)",
                               variable=LEARNER_ENV, name=repr(name)))
    return name


def learner_prefix() -> str:
    """``"alice:"`` for learner alice, ``""`` without one: the prefix of every Redis key."""
    name = learner()
    return f"{name}:" if name else ""


def with_learner_vhost(url: str) -> str:
    """An amqp URL moved into the learner's own virtual host (unchanged without a learner)."""
    name = learner()
    parts = urlsplit(url)
    if not name or not parts.scheme.startswith(("amqp", "pyamqp")):
        return url
    return parts._replace(path=f"/{name}").geturl()


def learner_key(name: str) -> str:
    """``name`` as this learner's Redis key: ``"alice:l05:ledger"`` for alice, unchanged without a learner."""
    return learner_prefix() + name


#: Where a command's keys are, for :class:`LearnerRedis`: ``(first, last, step)`` over the
#: arguments after the command name (``last`` -1: up to the end, -2: all but the last one).
_ONE = (0, 0, 1)
_KEY_POSITIONS: dict[str, tuple[int, int, int]] = {
    **dict.fromkeys((
        "GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX APPEND STRLEN SETRANGE GETRANGE INCR INCRBY "
        "INCRBYFLOAT DECR DECRBY EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL PERSIST TYPE DUMP RESTORE "
        "LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LREM LTRIM LINSERT LPOS "
        "HSET HSETNX HMSET HGET HMGET HDEL HLEN HKEYS HVALS HGETALL HEXISTS HINCRBY HINCRBYFLOAT HSCAN HSTRLEN "
        "SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SSCAN "
        "ZADD ZREM ZRANGE ZREVRANGE ZRANGEBYSCORE ZREVRANGEBYSCORE ZCARD ZSCORE ZMSCORE ZINCRBY ZRANK "
        "ZREVRANK ZCOUNT ZPOPMIN ZPOPMAX ZREMRANGEBYSCORE ZREMRANGEBYRANK ZSCAN "
        "XADD XLEN XRANGE XREVRANGE XTRIM XDEL SETBIT GETBIT BITCOUNT PFADD PUBLISH").split(), _ONE),
    **dict.fromkeys("DEL UNLINK EXISTS TOUCH MGET WATCH PFCOUNT SINTER SUNION SDIFF".split(), (0, -1, 1)),
    **dict.fromkeys("MSET MSETNX".split(), (0, -1, 2)),
    **dict.fromkeys("BLPOP BRPOP BZPOPMIN BZPOPMAX".split(), (0, -2, 1)),
    **dict.fromkeys("RENAME RENAMENX RPOPLPUSH BRPOPLPUSH LMOVE BLMOVE SMOVE COPY".split(), (0, 1, 1)),
}
#: Commands without keys a learner's client may send as they are.
_NO_KEYS = frozenset("PING ECHO TIME MULTI EXEC DISCARD UNWATCH SCRIPT CLIENT HELLO AUTH SELECT".split())


class _LearnerKeys:
    """Puts ``self.learner_prefix`` in front of every key of every command (see :func:`redis_client`)."""

    learner_prefix = ""

    def _learner_args(self, args):
        command, *rest = args
        name = str(command.decode() if isinstance(command, bytes) else command).upper()
        if name in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"):
            n = int(rest[1])
            return [command, rest[0], rest[1], *(self._prefixed(k) for k in rest[2:2 + n]), *rest[2 + n:]]
        if name in ("KEYS", "SCAN", "RANDOMKEY", "FLUSHDB", "FLUSHALL"):
            raise CeleryLabError(_(
                "{command} goes over every learner's keys: a class broker denies it to learners "
                "(keep the keys you need in a set, or delete them by name)", command=name))
        if name in _NO_KEYS:
            return list(args)
        if name not in _KEY_POSITIONS:
            raise CeleryLabError(_("the learner's Redis client does not know where {command}'s keys are "
                                   "(add it to celerylab.broker._KEY_POSITIONS)", command=name))
        first, last, step = _KEY_POSITIONS[name]
        stop = len(rest) + last + 1 if last < 0 else last + 1
        return [command, *(self._prefixed(a) if first <= i < stop and (i - first) % step == 0 else a
                           for i, a in enumerate(rest))]

    def _prefixed(self, key):
        return self.learner_prefix.encode() + key if isinstance(key, bytes) else f"{self.learner_prefix}{key}"

    def execute_command(self, *args, **options):
        return super().execute_command(*self._learner_args(args), **options)

    def parse_response(self, connection, command_name, **options):
        response = super().parse_response(connection, command_name, **options)
        if str(command_name).upper() in ("BLPOP", "BRPOP") and response:  # [key, value]: the key unprefixed
            key, value = response
            return type(response)((key[len(self.learner_prefix):], value))
        return response


def redis_client(url: str, **kwargs):
    """A redis-py client for ``url`` that sees the same keys as this learner's Celery apps.

    With ``CELERYLAB_LEARNER=alice`` every key of every command gets alice's prefix
    (``r.rpush("l05:ledger", ...)`` writes ``alice:l05:ledger``, the keys her Redis user may
    touch); KEYS and SCAN, which would go over the whole keyspace, raise an error. Without a
    learner it is a plain ``redis.Redis``.
    """
    import redis

    prefix = learner_prefix()
    if not prefix:
        return redis.Redis.from_url(url, **kwargs)

    class LearnerPipeline(_LearnerKeys, redis.client.Pipeline):
        learner_prefix = prefix

    class LearnerRedis(_LearnerKeys, redis.Redis):
        learner_prefix = prefix

        def pipeline(self, transaction=True, shard_hint=None):
            return LearnerPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)

    return LearnerRedis(connection_pool=redis.ConnectionPool.from_url(url, **kwargs))


def start_broker(port: int | None = None, host: str = LOOPBACK) -> Broker:
    """Start (or reuse) the broker for this kernel.

    ``port=None`` reuses the running embedded broker or picks a free port; a given port that
    something else listens on raises :class:`PortInUseError`.
    """
    global _current
    url = os.environ.get(BROKER_URL_ENV)
    with _lock:
        if url:
            url = with_learner_vhost(url)
            if _current is not None and _current.url == url:
                return _current
            check_reachable(url)
            _current = Broker(url=url, result_backend=_result_backend_for(url), embedded=False)
            return _current
        if _current is not None and _current.running and (port is None or port == _current.port):
            return _current
        _require_lupa()
        from .resp_server import EmbeddedRedisServer

        if port and port_in_use(port, host):
            raise PortInUseError(_(
                "port {port} on {host} is already in use by another program; "
                "call start_broker() without a port to get a free one", port=port, host=host
            ))
        try:
            server = EmbeddedRedisServer(host, port or 0).start()
        except OSError as exc:
            raise PortInUseError(_("cannot listen on {host}:{port}: {reason}", host=host, port=port,
                                   reason=exc.strerror)) from None
        url = f"redis://{host}:{server.port}/0"
        broker = Broker(url=url, result_backend=url, embedded=True, _server=server)
        broker._forget = processes.register(f"embedded broker {url}", broker.stop)
        _current = broker
        return broker


_experiment_redis = None

#: Set by the kernel to its private experiment Redis; a worker process the kernel spawns (and
#: that imports a lesson module) finds the same Redis there.
EXPERIMENT_REDIS_ENV = "CELERYLAB_REDIS_DEMO_URL"


def experiment_redis_url() -> str:
    """A Redis for cells that show Redis internals (lists, priority bands, raw messages).

    The kit's broker when it is Redis; on RabbitMQ, a private embedded Redis in this kernel, so
    those cells show the same thing whatever broker the class uses. Worker processes the
    kernel spawns use the kernel's one.
    """
    global _experiment_redis
    broker = start_broker()
    if broker.transport.startswith("redis"):
        return broker.url
    inherited = os.environ.get(EXPERIMENT_REDIS_ENV)
    if inherited and os.environ.get(processes.PARENT_PID_ENV) and _experiment_redis is None:
        return inherited  # a worker process the kernel started
    with _lock:
        if _experiment_redis is None:
            _require_lupa()
            from .resp_server import EmbeddedRedisServer

            server = EmbeddedRedisServer(LOOPBACK, 0).start()

            def stop() -> None:
                global _experiment_redis
                server.stop()
                _experiment_redis = None
                os.environ.pop(EXPERIMENT_REDIS_ENV, None)

            processes.register(f"embedded Redis for Redis experiments (port {server.port})", stop)
            _experiment_redis = f"redis://{LOOPBACK}:{server.port}/0"
            os.environ[EXPERIMENT_REDIS_ENV] = _experiment_redis  # spawned workers inherit it
        return _experiment_redis


def current_broker() -> Broker | None:
    return _current


def _result_backend_for(url: str) -> str:
    explicit = os.environ.get(RESULT_BACKEND_ENV)
    if explicit:
        return explicit
    if url.startswith(("redis://", "rediss://")):
        return url
    return "rpc://"  # amqp brokers: results come back over the broker itself


def check_reachable(url: str, timeout: float = REACH_TIMEOUT) -> None:
    """Raise BrokerUnreachableError (one line) unless url answers within timeout seconds."""
    parts = urlsplit(url)
    scheme = parts.scheme
    default_ports = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}
    if scheme not in default_ports:
        raise BrokerUnreachableError(_(
            "{variable}={url}: unsupported scheme {scheme}; use redis://host:port/db or amqp://user:pw@host:port/vhost",
            variable=BROKER_URL_ENV, url=repr(url), scheme=repr(scheme)
        ))
    host, port = parts.hostname or "localhost", parts.port or default_ports[scheme]
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise BrokerUnreachableError(_(
            "cannot reach the broker in {variable} ({host}:{port}): {reason}; "
            "start it, fix the URL, or unset {variable} to use the embedded broker",
            variable=BROKER_URL_ENV, host=host, port=port, reason=reason
        )) from None
    # Something answered TCP; make sure it speaks the broker's protocol (a proxy or the wrong
    # service would otherwise hang Celery later). Bounded by a thread join, whatever the client does.
    outcome: list[BaseException | None] = []

    def handshake() -> None:
        try:
            from kombu import Connection

            with Connection(url, connect_timeout=timeout,
                            transport_options={"socket_timeout": timeout, "read_timeout": timeout}) as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below as one line
            outcome.append(exc)

    thread = threading.Thread(target=handshake, name="celerylab-broker-check", daemon=True)
    thread.start()
    thread.join(max(0.5, deadline - time.monotonic()))
    if not outcome:
        raise BrokerUnreachableError(_(
            "the broker in {variable} ({host}:{port}) accepted a connection but did not answer as "
            "{scheme} within {timeout:.0f} s; check the URL and that the broker is running",
            variable=BROKER_URL_ENV, host=host, port=port, scheme=scheme, timeout=timeout
        ))
    if outcome[0] is not None:
        reason = str(outcome[0]).splitlines()[0] if str(outcome[0]) else type(outcome[0]).__name__
        vhost = urlsplit(url).path.lstrip("/")
        if ("vhost" in reason.lower() or "access" in reason.lower()) and vhost not in ("", "/"):
            raise BrokerUnreachableError(_(
                "the broker in {variable} ({host}:{port}) refused us: {reason} (your instructor creates the "
                "virtual host {quoted} and your access to it: rabbitmqctl add_vhost {vhost}, see docs/classroom.md)",
                variable=BROKER_URL_ENV, host=host, port=port, reason=reason, quoted=repr(vhost), vhost=vhost))
        raise BrokerUnreachableError(_("the broker in {variable} ({host}:{port}) refused us: {reason}",
                                       variable=BROKER_URL_ENV, host=host, port=port, reason=reason))
