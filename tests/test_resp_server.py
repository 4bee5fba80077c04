"""The embedded broker's TCP front (celerylab.resp_server) against a plain redis-py client.

Each test starts its own EmbeddedRedisServer on a free loopback port and stops it after.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from celerylab import resp_server
from celerylab.resp_server import EmbeddedRedisServer


@pytest.fixture
def server():
    srv = EmbeddedRedisServer().start()
    yield srv
    srv.stop()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    """The RESP version the client negotiates (redis-py 8 defaults to 3; kombu's clients use 3)."""
    return request.param


def client(srv: EmbeddedRedisServer, **kwargs) -> redis.Redis:
    return redis.Redis(host=srv.host, port=srv.port, socket_timeout=5, **kwargs)


def raw(srv: EmbeddedRedisServer) -> socket.socket:
    sock = socket.create_connection((srv.host, srv.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def command(*args: bytes | str) -> bytes:
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def read_until(sock: socket.socket, expected: bytes, timeout: float = 5) -> bytes:
    """Read from sock until `expected` has arrived in full (or fail after timeout)."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < len(expected):
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def wait_blocked(srv: EmbeddedRedisServer, count: int = 1, timeout: float = 5) -> None:
    """Wait until `count` connections are parked in a blocking command."""
    deadline = time.monotonic() + timeout
    while sum(bool(c.fake and c.fake._blocked) for c in list(srv._clients)) < count:
        assert time.monotonic() < deadline, "no client got blocked"
        time.sleep(0.002)


def test_set_get_round_trip(server, protocol):
    r = client(server, protocol=protocol)
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == b"hello"
    assert r.get("missing") is None
    value = bytes(range(256)) * 100  # binary-safe, and larger than one small read
    r.set("blob", value)
    assert r.get("blob") == value


def test_binds_loopback_and_sets_nodelay(server):
    assert server.server_address == ("127.0.0.1", server.port)
    r = client(server)
    r.ping()
    [conn] = [c for c in server._clients]
    sock = conn.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sock.getsockname()[0] == "127.0.0.1"


@pytest.mark.parametrize("failing", [
    pytest.param(lambda r: (r.lpush("a-list", "x"), r.get("a-list")), id="wrongtype"),
    pytest.param(lambda r: r.execute_command("NO-SUCH-COMMAND", "arg"), id="unknown-command"),
    pytest.param(lambda r: r.evalsha("0" * 40, 0), id="noscript"),
    pytest.param(lambda r: r.execute_command("GET"), id="wrong-arity"),
])
def test_error_reply_keeps_the_connection(server, failing, protocol):
    r = client(server, protocol=protocol)
    before = r.client_id()
    with pytest.raises(redis.ResponseError) as caught:
        failing(r)
    message = str(caught.value)
    assert message and "Protocol error" not in message and "internal error" not in message
    assert r.client_id() == before  # same connection: the server did not hang up
    assert r.set("after", "1") and r.get("after") == b"1"


def test_error_replies_carry_redis_error_codes(server):
    sock = raw(server)
    sock.sendall(command("LPUSH", "l", "x") + command("GET", "l") + command("EVALSHA", "0" * 40, "0"))
    data = read_until(sock, b":1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n-NOSCRIPT")
    assert data.startswith(b":1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n-NOSCRIPT ")
    sock.close()


def test_pipeline_replies_in_order(server, protocol):
    r = client(server, protocol=protocol)
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"k{i}", i)
        pipe.incr(f"k{i}")
    pipe.hset("h", "f", "v")
    pipe.get("h")  # WRONGTYPE in the middle of a pipeline...
    pipe.get("k199")  # ...and the commands after it still run
    results = pipe.execute(raise_on_error=False)
    assert results[:400] == [x for i in range(200) for x in (True, i + 1)]
    assert results[400] == 1
    assert isinstance(results[401], redis.ResponseError)
    assert results[402] == b"200"


def test_pipelined_bytes_in_one_write(server):
    sock = raw(server)
    sock.sendall(b"".join(command("SET", f"p{i}", str(i)) for i in range(50)) + command("GET", "p49"))
    expected = b"+OK\r\n" * 50 + b"$2\r\n49\r\n"
    assert read_until(sock, expected) == expected
    sock.close()


def test_request_split_across_writes(server):
    sock = raw(server)
    request = command("SET", "split", "x" * 1000) + command("GET", "split")
    for i in range(0, len(request), 7):
        sock.sendall(request[i:i + 7])
        time.sleep(0.0005 if i % 140 == 0 else 0)
    expected = b"+OK\r\n$1000\r\n" + b"x" * 1000 + b"\r\n"
    assert read_until(sock, expected) == expected
    sock.close()


def test_multi_exec(server, protocol):
    r = client(server, protocol=protocol)
    pipe = r.pipeline(transaction=True)
    pipe.set("counter", 10).incr("counter").lpush("queue", "a", "b").get("counter")
    assert pipe.execute() == [True, 11, 2, b"11"]
    # A command that fails to queue aborts the transaction (EXECABORT), connection intact.
    before = r.client_id()
    sock = raw(server)
    sock.sendall(command("MULTI") + command("SET", "x") + command("EXEC"))
    data = read_until(sock, b"+OK\r\n-ERR wrong number of arguments for 'set' command\r\n-EXECABORT")
    assert data.startswith(b"+OK\r\n-ERR wrong number of arguments for 'set' command\r\n-EXECABORT ")
    sock.close()
    assert r.client_id() == before


def test_brpop_does_not_block_others_and_wakes_promptly(server, protocol):
    blocked = client(server, protocol=protocol)
    other = client(server, protocol=protocol)
    got: list = []
    woke_at: list[float] = []

    def waiter():
        got.append(blocked.brpop(["jobs"], timeout=5))
        woke_at.append(time.perf_counter())

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_blocked(server)
    started = time.perf_counter()
    assert other.set("unrelated", "1") is True  # not held up by the parked BRPOP
    assert time.perf_counter() - started < 0.05
    pushed_at = time.perf_counter()
    other.lpush("jobs", "job-1")
    thread.join(5)
    assert [list(g) for g in got] == [[b"jobs", b"job-1"]]  # a tuple in RESP2, a list in RESP3
    assert woke_at[0] - pushed_at < 0.05
    assert other.llen("jobs") == 0


def test_commands_behind_a_parked_brpop_wait_their_turn(server):
    sock = raw(server)
    sock.sendall(command("BRPOP", "q", "0") + command("PING") + command("GET", "later"))
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):  # PING is not answered before the BRPOP
        sock.recv(100)
    client(server).lpush("q", "item")
    expected = b"*2\r\n$1\r\nq\r\n$4\r\nitem\r\n+PONG\r\n$-1\r\n"
    assert read_until(sock, expected) == expected
    sock.close()


def test_brpop_timeout_returns_none(server, protocol):
    r = client(server, protocol=protocol)
    started = time.perf_counter()
    assert r.brpop(["nothing"], timeout=0.2) is None
    elapsed = time.perf_counter() - started
    assert 0.15 <= elapsed < 1.5
    assert r.ping() is True


def test_disconnected_brpop_does_not_eat_later_pushes(server):
    sock = raw(server)
    sock.sendall(command("BRPOP", "work", "0"))
    r = client(server)
    r.ping()
    wait_blocked(server)
    sock.close()
    deadline = time.monotonic() + 5
    while server.client_count > 1:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    r.lpush("work", "precious")
    time.sleep(0.05)
    assert r.lrange("work", 0, -1) == [b"precious"]


def test_publish_reaches_subscriber_promptly_and_in_order(server, protocol):
    r = client(server, protocol=protocol)
    pubsub = client(server, protocol=protocol).pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    started = time.perf_counter()
    assert r.publish("news", "first") == 1
    message = pubsub.get_message(timeout=1)
    assert message["data"] == b"first"
    assert time.perf_counter() - started < 0.05
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.publish("news", str(i))
    pipe.execute()
    received = []
    deadline = time.monotonic() + 5
    while len(received) < 100 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message:
            received.append(message["data"])
    assert received == [str(i).encode() for i in range(100)]
    pubsub.close()


def test_pattern_subscriber_gets_keyspace_notifications(server):
    # fakeredis publishes keyspace events to whoever listens; the fast path must not drop them.
    pubsub = client(server).pubsub()
    pubsub.psubscribe("__keyspace@0__:*")
    assert pubsub.get_message(timeout=1)["type"] == "psubscribe"
    client(server).set("watched", "1")
    message = pubsub.get_message(timeout=1)
    assert message and message["channel"] == b"__keyspace@0__:watched" and message["data"] == b"set"
    pubsub.close()


def test_channel_subscriber_gets_keyspace_notifications(server):
    exact = client(server).pubsub()
    exact.subscribe("__keyevent@0__:del")
    assert exact.get_message(timeout=1)["type"] == "subscribe"
    r = client(server)
    r.set("watched", "1")
    r.delete("watched")
    message = exact.get_message(timeout=1)
    assert message and message["channel"] == b"__keyevent@0__:del" and message["data"] == b"watched"
    exact.close()


def test_resp3_hello(server):
    r = client(server, protocol=3)
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}
    r.zadd("z", {"m": 1.5})
    assert r.zscore("z", "m") == 1.5
    sock = raw(server)
    sock.sendall(command("HELLO", "3") + command("GET", "nope") + command("HGETALL", "h"))
    data = read_until(sock, b"%", timeout=1)
    assert data.startswith(b"%")  # HELLO answers with a RESP3 map
    data += read_until(sock, b"x" * 200, timeout=0.3) if b"_\r\n" not in data else b""
    assert b"_\r\n%2\r\n" in data  # RESP3 null, then a map
    sock.close()


def test_protocol_error_closes_the_connection(server):
    sock = raw(server)
    sock.sendall(b"*1\r\n$x\r\n")  # not a length
    data = read_until(sock, b"-ERR Protocol error", timeout=2)
    assert data.startswith(b"-ERR Protocol error")
    assert sock.recv(100) == b""  # and then hung up
    sock.close()
    assert client(server).ping() is True


def test_client_list_parses(server):
    r = client(server)
    r.ping()
    [entry] = r.client_list()
    assert entry["addr"].startswith("127.0.0.1:") and entry["laddr"] == f"127.0.0.1:{server.port}"


def test_client_kill_hangs_up(server):
    victim = raw(server)
    victim.sendall(command("CLIENT", "ID"))
    victim_id = int(read_until(victim, b":1\r\n")[1:].split(b"\r\n")[0])
    assert client(server).client_kill_filter(_id=victim_id) == 1
    victim.settimeout(2)
    assert victim.recv(100) == b""
    victim.close()


def test_stop_frees_the_port_and_the_thread():
    srv = EmbeddedRedisServer().start()
    port = srv.port
    r = redis.Redis(port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    r.ping()
    assert any(t.name == f"celerylab-broker-{port}" for t in threading.enumerate())
    srv.stop()
    assert not any(t.name == f"celerylab-broker-{port}" for t in threading.enumerate())
    with pytest.raises(redis.ConnectionError):
        r.ping()  # the client's connection was closed, nothing listens any more...
    with socket.socket() as probe:  # ...and the port can be served again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_stop_before_start_closes_the_listener():
    srv = EmbeddedRedisServer()
    port = srv.port
    srv.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize("make_reader", [
    pytest.param(resp_server._PyReader, id="pure-python"),
    pytest.param(lambda: resp_server.hiredis.Reader(), id="hiredis",
                 marks=pytest.mark.skipif(resp_server.hiredis is None, reason="hiredis is not installed")),
])
def test_readers_split_requests_alike(make_reader):
    reader = make_reader()
    stream = command("SET", "k", "v\r\nwith crlf") + command("GET", "k") + command("PING")
    requests = []
    for i in range(len(stream)):  # one byte at a time: every partial state
        reader.feed(stream[i:i + 1], 0, 1)
        while (request := reader.gets()) is not False:
            requests.append(request)
    assert requests == [[b"SET", b"k", b"v\r\nwith crlf"], [b"GET", b"k"], [b"PING"]]


@pytest.mark.parametrize("make_reader, error", [
    pytest.param(resp_server._PyReader, resp_server.ProtocolError, id="pure-python"),
    pytest.param(lambda: resp_server.hiredis.Reader(), getattr(resp_server.hiredis, "ProtocolError", None),
                 id="hiredis", marks=pytest.mark.skipif(resp_server.hiredis is None, reason="no hiredis")),
])
def test_readers_reject_garbage(make_reader, error):
    reader = make_reader()
    garbage = b"*1\r\n$x\r\n"
    reader.feed(garbage, 0, len(garbage))
    with pytest.raises(error):
        reader.gets()


def test_server_without_hiredis(monkeypatch):
    monkeypatch.setattr(resp_server, "hiredis", None)
    with EmbeddedRedisServer() as srv:
        assert isinstance(resp_server._reader(), resp_server._PyReader)
        r = client(srv)
        pipe = r.pipeline(transaction=True)
        pipe.set("k", "v" * 100_000).get("k").lpush("l", "a")
        assert pipe.execute() == [True, b"v" * 100_000, 1]
        sock = raw(srv)
        sock.sendall(b"*1\r\n$x\r\n")
        assert read_until(sock, b"-ERR Protocol error", timeout=2).startswith(b"-ERR Protocol error")
        sock.close()
        assert r.get("k") == b"v" * 100_000


def test_acl_changes_apply_to_open_connections(server):
    admin = client(server)
    learner = client(server)
    assert learner.set("k", "v") and learner.get("k") == b"v"  # default user: unrestricted
    admin.execute_command("ACL", "SETUSER", "default", "reset", "on", "nopass", "~*", "&*",
                          "+set", "+acl", "+multi", "+exec", "+client")
    with pytest.raises(redis.exceptions.NoPermissionError):
        learner.get("k")  # the same connection is checked again after ACL SETUSER
    assert learner.set("k", "w") is True
    pipe = admin.pipeline(transaction=True)  # an ACL change inside MULTI/EXEC counts too
    pipe.execute_command("ACL", "SETUSER", "default", "+get")
    pipe.execute()
    assert learner.get("k") == b"w"
