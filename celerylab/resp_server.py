"""The embedded broker's TCP server: fakeredis' in-memory Redis behind a real Redis socket.

fakeredis ships ``TcpFakeServer``, but under Celery it is slow and flaky (measured with
fakeredis 2.40 on 2 cores):

1. accepted sockets lack ``TCP_NODELAY``: Nagle plus delayed ACKs cost ~90 ms per task;
2. any error reply (NOSCRIPT at worker start, a learner's WRONGTYPE) closes the connection,
   so kombu logs "Connection closed by server" and reconnects;
3. one thread per client polls every 10 ms for pub/sub pushes and blocking wake-ups, so
   pushes lag and can overtake one another (a revoke broadcast reaching a worker after the
   task it revokes), and Celery's result backend can miss results altogether;
4. its threads are not daemons: a script that never calls ``shutdown()`` hangs at exit.

This module replaces the front end and keeps fakeredis' command engine: one asyncio event
loop (in a daemon thread) serves every client, each client backed by fakeredis'
``AsyncFakeSocket``. Blocking commands (BRPOP...) park on the loop without blocking anyone;
a PUBLISH is written to subscribers in the same loop turn, in order; errors are replies.

Speed. The broker shares the machine with the Celery worker and client it serves, so every
CPU second it spends is one they do not get. Celery sends ~25 commands per task, and
fakeredis' socket layer spent more on getting a command in and its reply out than on
running it (fakeredis 2.40: 1.8 s of broker CPU per 1000 tasks, against 0.4 s for a real
redis-server). The commands themselves are fakeredis' (the command methods, argument
types and replies are untouched); the plumbing around them is trimmed:

* reads go into one preallocated buffer (``asyncio.BufferedProtocol``): a plain
  ``Protocol`` gets a fresh bytes object per read, which asyncio allocates at 256 KiB;
* requests are split with ``hiredis.Reader`` (the C parser redis-py uses when installed)
  instead of fakeredis' generator, which copies the buffer for every line; a small
  pure-Python reader stands in when hiredis is missing;
* replies are encoded straight from what the commands return (``SimpleString`` -> ``+``,
  ``bytes`` -> ``$``, ``SimpleError`` -> ``-``), skipping fakeredis' round trip through
  redis-py exception objects (``_decode_result``), and written with one ``send()`` per
  connection per loop turn; pushes to other connections (PUBLISH, a woken BRPOP) go out
  at the end of the same turn, without an extra loop iteration or self-pipe wake-up;
* ``_process_command``, ``_run_command`` and ``Signature.apply`` are fakeredis' own, minus
  work that cannot change a result here: the command lookup and each command's argument
  plan are cached, the closed-socket sweep runs only when a socket has closed, the ACL
  check is skipped for a user found unrestricted until an ACL-changing command runs, and
  keyspace notifications are skipped when no subscription could receive them.

Measured with ``bench/broker_throughput.py`` (1000 Celery tasks with results, 2 cores), the
broker's CPU per 1000 tasks went from about 1.8 s to about 0.9 s (a real redis-server
needs 0.35 s). What is left is mostly fakeredis' Python per command and the event loop.

Threads: the ``FakeServer`` belongs to the loop thread. Every command, every change
callback and every reply runs there, which is what lets replies be batched per loop turn
and blocking commands be woken without locks; do not drive ``fake_server`` from elsewhere.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import socket
import threading
from time import time as _time
from typing import Any, Callable

import redis
from fakeredis import FakeServer
from fakeredis import _msgs as msgs
from fakeredis._commands import SUPPORTED_COMMANDS, Key
from fakeredis._core import CommandItem
from fakeredis._clients._tcp_server import encode_reply
from fakeredis._helpers import QUEUED, NoResponse, SimpleError, SimpleString
from fakeredis._socket._async import AsyncFakeSocket
from fakeredis._socket._base import BaseFakeSocket
from fakeredis._socket._resp import convert_to_resp2, extract_command, valid_response_type

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is a dependency; this keeps the broker usable without it
    hiredis = None

log = logging.getLogger("celerylab.broker")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NAME_CACHE_LIMIT = 256  # command spellings remembered per connection (b"GET", b"get"...)


class ProtocolError(Exception):
    """The client sent something that is not a RESP request."""


class _PyReader:
    """A RESP request reader with ``hiredis.Reader``'s ``feed()``/``gets()`` interface.

    Used only when hiredis is not installed. Requests are arrays of bulk strings, which is
    all Redis clients send (inline commands are not supported, as in fakeredis).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: Any, offset: int = 0, length: int = -1) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data[offset:] if length < 0 else data[offset:offset + length]

    def gets(self) -> list[bytes] | bool:
        """The next complete request, or False if it has not fully arrived yet."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return False
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return False
        count = self._header(buf, pos, end, 0x2A)  # b"*"
        pos = end + 2
        fields = []
        for _ in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return False
            start = end + 2
            stop = start + self._header(buf, pos, end, 0x24)  # b"$"
            if len(buf) < stop + 2:
                return False
            fields.append(bytes(buf[start:stop]))
            pos = stop + 2
        self._pos = pos
        if pos > 65536:  # drop what has been consumed, now and then rather than per request
            del buf[:pos]
            self._pos = 0
        return fields

    @staticmethod
    def _header(buf: bytearray, pos: int, end: int, kind: int) -> int:
        """The length in a ``*<n>`` or ``$<n>`` line."""
        if buf[pos] != kind:
            raise ProtocolError(f"expected {chr(kind)!r}, got {chr(buf[pos])!r}")
        try:
            length = int(buf[pos + 1:end])
        except ValueError:
            raise ProtocolError(f"invalid length {bytes(buf[pos + 1:end])!r}") from None
        if length < 0:
            raise ProtocolError(f"invalid length {length}")
        return length


def _reader() -> Any:
    return hiredis.Reader() if hiredis is not None else _PyReader()


def _encode_error(message: str) -> bytes:
    if "\r" in message or "\n" in message:  # as Redis does: an error reply is one line
        message = message.replace("\r", " ").replace("\n", " ")
    return b"-%s\r\n" % message.encode()


def _encode(value: Any, sock: "_WireSocket") -> bytes:
    """RESP for a value as fakeredis' commands return it (before ``_decode_result``).

    The common shapes (bulk strings, integers, status replies, flat arrays of those) take
    the fast path; the rest (null, doubles, booleans, maps, sets, big numbers), whose
    encoding depends on the connection's protocol, go through fakeredis' ``encode_reply``.
    """
    kind = type(value)
    if kind is bytes:
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return b":%d\r\n" % value
    if kind is SimpleString:
        return b"+%s\r\n" % value.value
    if kind is list or kind is tuple:
        parts = [b"*%d\r\n" % len(value)]
        append = parts.append
        for item in value:
            kind = type(item)
            if kind is bytes:
                append(b"$%d\r\n%s\r\n" % (len(item), item))
            elif kind is int and _INT64_MIN <= item <= _INT64_MAX:
                append(b":%d\r\n" % item)
            else:
                append(_encode(item, sock))
        return b"".join(parts)
    if isinstance(value, SimpleError):
        return _encode_error(value.value)
    if isinstance(value, SimpleString):
        return b"+%s\r\n" % value.value
    if kind is str:
        return _encode(value.encode(), sock)
    protocol = sock._client_info.protocol_version
    if kind is dict:
        header = b"%%%d\r\n" % len(value) if protocol == 3 else b"*%d\r\n" % (2 * len(value))
        return header + b"".join(_encode(item, sock) for pair in value.items() for item in pair)
    if kind is set or kind is frozenset:
        header = b"~%d\r\n" if protocol == 3 else b"*%d\r\n"
        return header % len(value) + b"".join(_encode(item, sock) for item in value)
    # None, float, bool, big int, a redis-py exception: fakeredis' encoder knows the protocol rules.
    return encode_reply(value, protocol, nested=True)


@functools.lru_cache(maxsize=256)
def _may_match_keyspace(pattern: bytes) -> bool:
    """Whether a PSUBSCRIBE pattern could match a keyspace-notification channel.

    Compares the pattern's literal prefix (up to its first glob character) with the
    ``__keyspace@``/``__keyevent@`` prefixes, so it errs on the side of yes.
    """
    prefix = pattern
    for special in (b"*", b"?", b"[", b"\\"):
        cut = prefix.find(special)
        if cut >= 0:
            prefix = prefix[:cut]
    return any(channel.startswith(prefix) or prefix.startswith(channel)
               for channel in (b"__keyspace@", b"__keyevent@"))


_PLANS: dict[tuple[Any, int], tuple[tuple[Any, ...], tuple[Any, ...], bool]] = {}
_UNSPECIFIED = Key.UNSPECIFIED


def _apply(sig: Any, args: list[bytes], db: Any, version: Any) -> tuple[Any, ...]:
    """``Signature.apply`` with its per-call bookkeeping done once per (command, arity).

    fakeredis rebuilds the list of argument types and walks every argument twice on each
    call; this walks only the arguments that need work (keys, and non-bytes arguments to
    convert), in the same order, with the same checks and the same results.
    """
    sig.check_arity(args, version)
    plan = _PLANS.get((sig, len(args)))
    if plan is None:
        types = list(sig.fixed)
        types.extend([sig.repeat[i % len(sig.repeat)] for i in range(len(args) - len(types))])
        convert = tuple((i, type_, isinstance(type_, Key)) for i, type_ in enumerate(types) if type_ is not bytes)
        keys = tuple((i, type_) for i, type_ in enumerate(types) if isinstance(type_, Key))
        plan = convert, keys, msgs.FLAG_DO_NOT_CREATE not in sig.flags
        if len(_PLANS) < 4096:
            _PLANS[(sig, len(args))] = plan
    convert, keys, may_create = plan
    args_list = list(args)
    # First pass: convert/validate non-keys, and short-circuit on missing keys
    for i, type_, is_key in convert:
        if is_key:
            if type_.missing_return is not _UNSPECIFIED and args_list[i] not in db:
                return (type_.missing_return,)
        else:
            args_list[i] = type_.decode(args_list[i])
    # Second pass: read keys and check their types
    command_items = []
    for i, type_ in keys:
        arg = args_list[i]
        item = db.get(arg)
        default = None
        wanted = type_.type_
        if wanted is not None:
            if item is not None and type(item.value) is not wanted:
                raise SimpleError(msgs.WRONGTYPE_MSG)
            if may_create and item is None and wanted is not bytes:
                default = wanted()
        args_list[i] = command_item = CommandItem(arg, db, item, default=default)
        command_items.append(command_item)
    return args_list, command_items


_ACCEPTED_WHILE_PUBSUB = BaseFakeSocket.ACCEPTED_COMMANDS_WHILE_PUBSUB
# Commands that can change a user's permissions or a connection's user: after one of these
# (run directly, from EXEC or from a script) every connection checks ACLs again.
_ACL_CHANGING = frozenset({"auth", "hello", "reset", "config set"}
                          | {name for name in SUPPORTED_COMMANDS if name.startswith("acl")})
_FLAG_NO_SCRIPT, _FLAG_SKIP_RESP2 = msgs.FLAG_NO_SCRIPT, msgs.FLAG_SKIP_CONVERT_TO_RESP2
_FLAG_LEAVE_EMPTY, _FLAG_TRANSACTION = msgs.FLAG_LEAVE_EMPTY_VAL, msgs.FLAG_TRANSACTION


class _WireSocket(AsyncFakeSocket):
    """fakeredis' async socket, fed from and answering onto one TCP connection.

    fakeredis' sockets parse with a generator and queue decoded replies for a client object
    to read. Here requests come from a ``hiredis.Reader`` and replies are encoded as they are
    produced into ``_out``, which the server writes with one ``send()`` at the end of the
    loop turn (see :meth:`EmbeddedRedisServer._flush`).

    Blocking commands: fakeredis' ``_blocking`` pauses the socket and answers from a task
    on the loop, then resumes it. While paused, requests stay in the reader, unparsed; on
    resume they run in order after the blocked command's reply.
    """

    def __init__(self, *args: Any, transport: asyncio.Transport, server: "EmbeddedRedisServer", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.transport = transport
        self._owner = server
        self._reader = _reader()
        self._out: list[bytes] | None = []
        self._commands: dict[bytes, tuple[Callable[..., Any] | None, Any]] = {}
        self._block_task: asyncio.Task | None = None
        # The server's ACL epoch at which this connection's user was found unrestricted.
        self._acl_checked = -1

    # -- requests in ---------------------------------------------------------------------

    def feed(self, data: Any, nbytes: int = -1) -> None:
        """Run every complete request in ``data[:nbytes]`` (after what earlier reads left).

        Called on the loop thread with the server dispatching (see ``buffer_updated``).
        """
        if not self._server.connected or self._killed:
            raise self._connection_error_class(msgs.CONNECTION_ERROR_MSG)
        self._reader.feed(data, 0, len(data) if nbytes < 0 else nbytes)
        self._drain()

    def _drain(self) -> None:
        reader = self._reader
        process = self._process_command
        while not self._paused:
            fields = reader.gets()
            if fields is False:
                return
            if type(fields) is not list:
                raise ProtocolError("expected an array of bulk strings")
            process(fields)

    def sendall(self, data: Any) -> None:  # fakeredis' entry point, kept for completeness
        self.feed(data.encode("ascii") if isinstance(data, str) else data)

    def resume(self) -> None:
        """The blocked command has been answered: run the requests that queued up behind it."""
        self._paused = False
        if self._out is None:  # the connection went away meanwhile
            return
        owner = self._owner
        owner._dispatching += 1
        try:
            self._drain()
        except Exception as exc:  # noqa: BLE001 - same handling as a read
            owner._request_failed(self, exc)
        finally:
            owner._dispatching -= 1
        if not owner._dispatching:
            owner._flush()

    def _blocking(self, timeout: float | None, func: Callable[[bool], Any],
                  shape: Callable[[Any], Any] | None = None) -> Any:
        # AsyncFakeSocket._blocking, with two changes: the change callback sets the event
        # directly (every command runs on this loop's thread, so call_soon_threadsafe's
        # self-pipe wake-up is wasted), and the task is kept so a connection that goes away
        # while blocked stops waiting instead of later popping an item nobody will read.
        ret = func(True)
        if ret is not None or self._in_transaction:
            return ret if shape is None else shape(ret)
        event = asyncio.Event()
        callback = event.set
        self._db.add_change_callback(callback)
        self._blocked = True
        self.pause()
        self._block_task = self._event_loop.create_task(self._async_blocking(timeout, func, event, callback, shape))
        return NoResponse()

    def _process_command(self, fields: list[bytes]) -> None:
        # BaseFakeSocket._process_command, minus work that cannot change the outcome: the
        # command lookup is cached per spelling, the closed-socket sweep runs only when a
        # socket has closed, and the reply skips _decode_result (see _encode).
        if not fields:
            return
        result: Any
        entry = self._commands.get(fields[0])
        if entry is not None:
            func, sig = entry
            cmd = sig.name
            cmd_arguments = fields[1:]
        else:
            cmd, cmd_arguments = extract_command(fields)
            func = sig = None
        server = self._server
        from_run_command = False
        try:
            if sig is None:
                func, sig = self._name_to_func(cmd)
                if " " not in cmd and len(self._commands) < _NAME_CACHE_LIMIT:
                    self._commands[fields[0]] = (func, sig)
            if self._acl_checked != self._owner._acl_epoch:
                # Check every command, as fakeredis does, until one finds the user unrestricted
                # (the default user is): then skip the check until an ACL-changing command runs.
                acl, user = server.acl, self._client_info.user
                acl.validate_command(user, self._client_info, fields)
                user_acl = acl._user_acl.get(user)
                if user_acl is None or (user_acl.enabled and user_acl.unrestricted()):
                    self._acl_checked = self._owner._acl_epoch
            with server.lock:
                closed = server.closed_sockets
                while closed:
                    sock = closed.pop()()
                    if sock:
                        sock._cleanup(server)
                now = _time()
                for db in server.dbs.values():
                    db.time = now
                sig.check_arity(cmd_arguments, server.version)
                if self._queueing and self._transaction is not None and _FLAG_TRANSACTION not in sig.flags:
                    self._transaction.append((func, sig, cmd_arguments))
                    result = QUEUED
                else:
                    from_run_command = True
                    result = self._run_command(func, sig, cmd_arguments, False)
        except SimpleError as exc:
            if self._queueing and not from_run_command:
                self._transaction_failed = True
            if cmd == "exec" and exc.value.startswith("ERR "):
                exc.value = "EXECABORT Transaction discarded because of: " + exc.value[4:]
                self._forget_transaction()
                self._clear_watches()
            result = exc
        suppressed = self._reply_off or self._reply_skip
        self._reply_skip, self._reply_skip_next = self._reply_skip_next, False
        if suppressed or type(result) is NoResponse:
            return
        out = self._out  # put_response, inlined
        if out is not None:
            out.append(_encode(result, self))
            if len(out) == 1:
                self._owner._mark_dirty(self)

    def _run_command(self, func: Callable[..., Any] | None, sig: Any, args: list[Any], from_script: bool) -> Any:
        # BaseFakeSocket._run_command for a "redis" server (the only kind served here), with
        # the per-command work that cannot change the outcome skipped: server-type checks,
        # and keyspace notifications when nobody can be listening. fakeredis publishes those
        # whenever anyone subscribes to anything, and Celery's result consumer always does,
        # so without the check every write builds and publishes two messages into the void.
        command_items: Any = ()
        self._subkey_events = []
        flags = sig.flags
        try:
            ret = _apply(sig, args, self._db, self._server.version)
            if from_script and _FLAG_NO_SCRIPT in flags:
                raise SimpleError(msgs.COMMAND_IN_SCRIPT_MSG)
            if self._pubsub and sig.name not in _ACCEPTED_WHILE_PUBSUB:
                raise SimpleError(msgs.BAD_COMMAND_IN_PUBSUB_MSG)
            if len(ret) == 1:
                result = ret[0]
            else:
                args, command_items = ret
                result = func(*args)  # type: ignore[misc]
                if _FLAG_SKIP_RESP2 not in flags:
                    resp = self._script_resp
                    if resp is None:
                        resp = self._client_info.protocol_version
                    if resp == 2:
                        result = convert_to_resp2(result, "redis")
                    if not valid_response_type(result, resp):
                        raise AssertionError(f"Invalid response type for {result}")
        except SimpleError as exc:
            result = exc
        if command_items:
            remove_empty_val = _FLAG_LEAVE_EMPTY not in flags
            for command_item in command_items:
                command_item.writeback(remove_empty_val=remove_empty_val)
            if self._owner._keyspace_may_listen():
                self._keyspace_notifications(command_items, sig.name.encode())
        if sig.name in _ACL_CHANGING:
            self._owner._acl_epoch += 1
        if command_items or self._subkey_events:
            self._subkey_notifications(command_items)
        return result

    def _subscribe(self, channels: Any, subscribers: dict[bytes, Any], mtype: bytes) -> NoResponse:
        if subscribers is self._server.subscribers and any(c.startswith(b"__key") for c in channels):
            self._owner._keyspace_subscribed = True  # for good: see _keyspace_may_listen
        return super()._subscribe(channels, subscribers, mtype)

    # -- replies out ---------------------------------------------------------------------

    def _decode_result(self, result: Any) -> Any:
        # Replies stay as the commands return them; _encode writes them. (fakeredis turns
        # errors into redis-py exceptions here, only for its encoder to turn them back.)
        return result

    def put_response(self, msg: Any) -> None:
        out = self._out
        if out is None:  # closed
            return
        out.append(_encode(msg, self))
        if len(out) == 1:
            self._owner._mark_dirty(self)

    def flush(self) -> None:
        out = self._out
        transport = self.transport
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if not transport.is_closing():
                transport.write(data)
        if self._killed:  # CLIENT KILL: the reply to it (if it was our own) is out; now hang up
            transport.close()

    def kill(self) -> None:
        # fakeredis only marks a killed socket, for its owner to notice on the next write;
        # Redis hangs up at once. Flush at the end of this loop turn, which closes it.
        super().kill()
        if self._out is not None:
            self._owner._mark_dirty(self)

    def detach(self) -> None:
        """The TCP connection is gone: stop answering, stop waiting, leave the server."""
        self._out = None
        task = self._block_task
        if task is not None and not task.done():
            # Its cleanup (removing the change callback) needs the server, which close() drops.
            task.add_done_callback(lambda _: self._close_quietly())
            task.cancel()
        else:
            self._close_quietly()

    def _close_quietly(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - closing twice is harmless
            pass


def _address(sockaddr: Any) -> str:
    """("127.0.0.1", 6379) -> "127.0.0.1:6379", as CLIENT LIST shows it (and redis-py parses it)."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return f"{sockaddr[0]}:{sockaddr[1]}"
    return str(sockaddr or "?:0")


class _ClientProtocol(asyncio.BufferedProtocol):
    """One TCP connection: bytes in -> fakeredis -> replies out.

    A buffered protocol: the loop reads into the server's one receive buffer
    (``recv_into``), which the reader copies from at once. A plain ``Protocol`` gets a
    fresh bytes object per read, which asyncio allocates at 256 KiB and shrinks to fit:
    an mmap, an mremap and a munmap for every few-byte request.
    """

    def __init__(self, server: "EmbeddedRedisServer"):
        self.server = server
        self.fake: _WireSocket | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport
        self.fake = _WireSocket(self.server.fake_server, 0, client_class=redis.Redis, lua_modules=None,
                                transport=transport, server=self.server,
                                client_info={"laddr": _address(transport.get_extra_info("sockname")),
                                             "addr": _address(transport.get_extra_info("peername")),
                                             "fd": sock.fileno() if sock is not None else -1})
        self.server._clients.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server._recv_buffer

    def buffer_updated(self, nbytes: int) -> None:
        server = self.server
        server._dispatching += 1
        try:
            self.fake.feed(server._recv_buffer, nbytes)
        except Exception as exc:  # noqa: BLE001 - see _request_failed
            server._request_failed(self.fake, exc)
        finally:
            server._dispatching -= 1
        if not server._dispatching:
            server._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._clients.discard(self)
        fake, self.fake = self.fake, None
        if fake is not None:
            fake.detach()


class EmbeddedRedisServer:
    """A Redis-protocol server on host:port backed by a fresh ``fakeredis.FakeServer``.

    ``start()`` serves from a daemon thread and returns once the port is open;
    ``stop()`` closes the listener and every client connection.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, version: tuple = (7, 4)):
        self.host = host
        self.fake_server = FakeServer(server_type="redis", version=version)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[_ClientProtocol] = set()
        self._stopped = threading.Event()
        self._stop_waiter: asyncio.Future | None = None
        self._loop_thread: int | None = None
        # Output batching, all on the loop thread: sockets with replies not yet written, and
        # whether the loop is inside a read (or a resume), whose end writes them.
        self._dirty: list[_WireSocket] = []
        self._dispatching = 0
        self._flush_scheduled = False
        # Bumped by every ACL-changing command (see _WireSocket._process_command).
        self._acl_epoch = 0
        # Set once any client SUBSCRIBEs to a keyspace-notification channel (see _WireSocket._run_command).
        self._keyspace_subscribed = False
        # Every connection reads into this buffer; the loop thread consumes it before the next read.
        self._recv_buffer = memoryview(bytearray(1 << 16))

    @property
    def server_address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- output --------------------------------------------------------------------------

    def _mark_dirty(self, sock: _WireSocket) -> None:
        """``sock`` has its first unwritten reply: make sure it is written this loop turn."""
        self._dirty.append(sock)
        if self._dispatching or self._flush_scheduled:
            return  # the read (or resume) in progress flushes at its end
        # A reply produced outside a read: a blocking command answered from its task.
        self._flush_scheduled = True
        loop = self._loop
        try:
            if threading.get_ident() == self._loop_thread:
                loop.call_soon(self._flush)
            else:  # defensive: see "Threads" in the module docstring
                loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop has closed: the server is gone, and so is the reader
            pass

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            for sock in dirty:
                sock.flush()

    def _keyspace_may_listen(self) -> bool:
        """Whether a keyspace notification could reach anyone (cheap, and errs on the side of yes)."""
        if self._keyspace_subscribed:
            return True
        for pattern in self.fake_server.psubscribers:
            if _may_match_keyspace(pattern):
                return True
        return False

    def _request_failed(self, fake: _WireSocket, exc: Exception) -> None:
        """A read could not be handled: tell the client why, as Redis would."""
        if isinstance(exc, redis.ConnectionError):  # CLIENT KILL, or FakeServer.connected = False
            fake.transport.close()
        elif isinstance(exc, ProtocolError) or (hiredis is not None and isinstance(exc, hiredis.ProtocolError)):
            # Unparseable input: the stream cannot be resynchronised, so answer and hang up.
            fake.put_response(SimpleError(f"ERR Protocol error: {exc}"))
            fake.flush()
            fake.transport.close()
        else:  # a fakeredis bug in one command: report it, keep the connection
            log.exception("embedded broker: command failed")
            fake.put_response(SimpleError(f"ERR internal error in the embedded broker: {exc!r}"))
            try:
                fake._drain()  # what followed it in the same read
            except Exception as again:  # noqa: BLE001
                self._request_failed(fake, again)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "EmbeddedRedisServer":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"celerylab-broker-{self.port}",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` (used by ``python -m celerylab broker``)."""
        self._run(threading.Event())

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop_thread = threading.get_ident()
        self._stop_waiter = loop.create_future()
        self._loop = loop

        server = loop.run_until_complete(loop.create_server(lambda: _ClientProtocol(self), sock=self._sock))
        ready.set()
        try:
            if not self._stopped.is_set():
                loop.run_until_complete(self._stop_waiter)
        finally:
            server.close()
            for client in list(self._clients):
                client.transport.close()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    def _wake_stopped(self) -> None:
        if self._stop_waiter is not None and not self._stop_waiter.done():
            self._stop_waiter.set_result(None)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def stop(self) -> None:
        self._stopped.set()
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake_stopped)
            except RuntimeError:  # the loop has already closed
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        if loop is None:  # never started: the listening socket is still ours to close
            self._sock.close()
        self._thread = None

    def __enter__(self) -> "EmbeddedRedisServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
