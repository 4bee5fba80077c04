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
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import redis
from fakeredis import FakeServer
from fakeredis._clients._tcp_server import encode_reply
from fakeredis._socket._async import AsyncFakeSocket

log = logging.getLogger("celerylab.broker")

READ_SIZE = 1 << 16


class _Client:
    """One TCP connection: bytes in -> fakeredis socket -> replies out, in order."""

    def __init__(self, server: FakeServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        self.peer = peer
        self.fake = AsyncFakeSocket(server, 0, client_class=redis.Redis, lua_modules=None,
                                    client_info={"laddr": local, "addr": peer, "fd": sock.fileno() if sock else -1})

    def flush_replies(self) -> None:
        """Encode every queued reply and hand it to the transport (no await: keeps order)."""
        fake = self.fake
        responses = fake.responses
        if not responses:
            return
        protocol = fake._client_info.protocol_version
        chunks = []
        while True:
            try:
                value = responses.get_nowait()
            except asyncio.QueueEmpty:
                break
            chunks.append(encode_reply(value, protocol))
        fake._response_available.clear()
        if chunks and not self.writer.is_closing():
            self.writer.write(b"".join(chunks))

    async def pump_pushes(self) -> None:
        """Write replies that arrive without a request: pub/sub messages, blocking-command wake-ups."""
        event = self.fake._response_available
        while True:
            await event.wait()
            self.flush_replies()
            if self.writer.is_closing():
                return
            await self.writer.drain()

    async def serve(self) -> None:
        pusher = asyncio.ensure_future(self.pump_pushes())
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                try:
                    self.fake.sendall(data)
                except redis.ConnectionError:  # CLIENT KILL, or the server stopping
                    break
                except Exception as exc:  # a protocol error: answer it as Redis does, then hang up
                    self.fake.put_response(redis.ResponseError(f"Protocol error: {exc}"))
                    self.flush_replies()
                    break
                self.flush_replies()
                await self.writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the peer went away, or the server is stopping
        finally:
            pusher.cancel()
            try:
                self.fake.close()
            except Exception:  # noqa: BLE001 - closing twice is harmless
                pass
            self.writer.close()


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
        self._clients: set[_Client] = set()
        self._stopped = threading.Event()

    @property
    def server_address(self) -> tuple[str, int]:
        return (self.host, self.port)

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
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def on_client(reader, writer):
            client = _Client(self.fake_server, reader, writer)
            self._clients.add(client)
            try:
                await client.serve()
            finally:
                self._clients.discard(client)

        server = loop.run_until_complete(asyncio.start_server(on_client, sock=self._sock, limit=READ_SIZE))
        ready.set()
        try:
            loop.run_until_complete(self._wait_stopped())
        finally:
            server.close()
            for client in list(self._clients):
                client.writer.close()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    async def _wait_stopped(self) -> None:
        while not self._stopped.is_set():
            await asyncio.sleep(0.1)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        self._thread = None
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "EmbeddedRedisServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
