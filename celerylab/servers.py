"""Real brokers on 127.0.0.1: a ``redis-server`` or ``rabbitmq-server`` of our own.

For the real-broker track (``make test-brokers``), the durability lesson and tests that need
a broker they can restart. Each server runs in its own process group, in its own data folder,
on a free loopback port, and is registered with :mod:`celerylab.processes`, so it stops with
the kernel::

    with RedisServer(appendonly=True) as redis:      # AOF: every write is logged to disk
        ... redis.url ...
        redis.restart()                               # same port, same data folder

Command line: run a command with ``CELERYLAB_BROKER_URL`` pointing at a fresh server, then
stop it (the exit status is the command's)::

    python -m celerylab.servers redis -- pytest --nbval notebooks
    python -m celerylab.servers rabbitmq --results redis -- pytest --nbval notebooks
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import processes
from .errors import CeleryLabError
from .i18n import N_, _
from .ports import LOOPBACK, free_port, port_in_use

START_TIMEOUT = 60.0
#: the server runs under this watchdog: it dies with the process that started it
SUPERVISE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervise.py")


class ServerMissingError(CeleryLabError):
    """The server's program is not installed."""


class ServerStartError(CeleryLabError):
    """The server did not start."""


class RealServer:
    """Common part: a server process in its own group, in ``datadir``, on ``port``."""

    name = "server"
    program = ""
    install_hint = ""

    def __init__(self, port: int | None = None, datadir: str | None = None):
        self.port = port or free_port()
        self._own_dir = datadir is None
        self.datadir = datadir or tempfile.mkdtemp(prefix=f"celerylab-{self.name}-")
        os.makedirs(self.datadir, exist_ok=True)
        self.started = False  # ever started
        self.proc: subprocess.Popen | None = None
        self._forget = None
        self.logfile = os.path.join(self.datadir, f"{self.name}.log")

    # -- what each server defines -------------------------------------------------------
    @property
    def url(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return dict(os.environ)

    def ready(self) -> bool:
        return port_in_use(self.port)

    # -- lifecycle ----------------------------------------------------------------------
    def binary(self) -> str:
        path = shutil.which(self.program) or (self.program if os.path.exists(self.program) else None)
        if path is None:
            raise ServerMissingError(_("{server} is not installed ({hint})", server=self.name, hint=_(self.install_hint)))
        return path

    def start(self, timeout: float = START_TIMEOUT) -> "RealServer":
        if self.proc is not None:
            return self
        if port_in_use(self.port):
            raise ServerStartError(_("port {port} on {host} is already in use; pick another port",
                                     port=self.port, host=LOOPBACK))
        log = open(self.logfile, "ab")
        supervised = [sys.executable, SUPERVISE, str(os.getpid()), "--", *self.command()]
        self.proc = subprocess.Popen(supervised, env=self.env(), cwd=self.datadir, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.started = True
        self._forget = processes.register(f"{self.name} on {LOOPBACK}:{self.port}", self.stop)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop()
                if code is not None:
                    raise ServerStartError(_("{server} exited with status {status}; its log: {log}",
                                             server=self.name, status=code, log=self.logfile))
                raise ServerStartError(_("{server} not ready within {timeout:.0f} s; its log: {log}",
                                         server=self.name, timeout=timeout, log=self.logfile))
            time.sleep(0.1)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM: a clean shutdown that keeps its data), then its group."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                processes.kill_group(proc.pid, signal.SIGTERM, wait=timeout)
            processes.kill_group(proc.pid, signal.SIGKILL, wait=5)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self._forget is not None:
            self._forget()
            self._forget = None

    def crash(self) -> None:
        """SIGKILL the server: no clean shutdown, as in an out-of-memory kill (not a power cut: the
        operating system still holds what the server wrote)."""
        proc = self.proc
        if proc is not None:
            processes.kill_group(proc.pid, signal.SIGKILL, wait=5)
            proc.wait(5)
        self.stop()

    def restart(self, crash: bool = False) -> "RealServer":
        """Stop (or ``crash``) and start again on the same port with the same data folder."""
        self.crash() if crash else self.stop()
        deadline = time.monotonic() + 10
        while port_in_use(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    def close(self) -> None:
        """Stop and remove the data folder (if we made it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def __enter__(self) -> "RealServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.proc is not None and self.proc.poll() is None else "stopped"
        return f"<{self.name} {self.url} {state}>"


class RedisServer(RealServer):
    """``redis-server`` on loopback; ``appendonly=True`` logs every write (AOF, fsync always)."""

    name = "redis-server"
    program = "redis-server"
    install_hint = N_("apt-get install redis-server, or `make test-brokers` as root")

    def __init__(self, port: int | None = None, datadir: str | None = None, appendonly: bool = False):
        super().__init__(port, datadir)
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary(), "--port", str(self.port), "--bind", LOOPBACK, "--dir", self.datadir,
                "--save", "", "--protected-mode", "yes", "--daemonize", "no",
                "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"]

    def ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            # ResponseError: LOADING the append-only file; InvalidResponse: another program answered
            # on the port before our server bound it (start() then reports that our server exited)
            return False


class RabbitMQServer(RealServer):
    """``rabbitmq-server`` on loopback, no plugins; its node and Erlang ports on loopback too.

    The node's name is fixed by its port, so a restart finds its durable queues again.
    """

    name = "rabbitmq-server"
    program = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    install_hint = N_("apt-get install rabbitmq-server, or `make test-brokers` as root")

    def __init__(self, port: int | None = None, datadir: str | None = None):
        super().__init__(port, datadir)
        self.dist_port = free_port()
        self.node = f"celerylab{self.port}@localhost"
        self._epmd_was_running = port_in_use(4369)

    def binary(self) -> str:
        if not os.path.exists(self.program):
            found = shutil.which("rabbitmq-server")
            if found is None:
                raise ServerMissingError(_("{server} is not installed ({hint})", server=self.name,
                                           hint=_(self.install_hint)))
            return found
        return self.program

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}//"

    def command(self) -> list[str]:
        return [self.binary()]

    def env(self) -> dict:
        plugins = os.path.join(self.datadir, "enabled_plugins")
        if not os.path.exists(plugins):
            with open(plugins, "w") as f:
                f.write("[].\n")
        env = dict(os.environ)
        env.update(
            HOME=self.datadir,  # the Erlang cookie lives here
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=LOOPBACK,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=os.path.join(self.datadir, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.datadir, "log"),
            RABBITMQ_PID_FILE=os.path.join(self.datadir, "rabbitmq.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=plugins,
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS=LOOPBACK,
        )
        return env

    def ready(self) -> bool:
        if not port_in_use(self.port):
            return False
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=2) as conn:
                conn.connect()
            return True
        except Exception:  # noqa: BLE001 - still booting
            return False

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node (e.g. ``ctl("add_vhost", "alice")``)."""
        ctl = os.path.join(os.path.dirname(self.binary()), "rabbitmqctl")  # not /usr/sbin's, which su's
        out = subprocess.run([ctl, "-n", self.node, *args], env=self.env(), capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise CeleryLabError(_("rabbitmqctl {command} failed: {output}", command=" ".join(args),
                                   output=(out.stderr or out.stdout).strip()))
        return out.stdout

    def close(self) -> None:
        super().close()
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        if self.started and not self._epmd_was_running and os.path.exists(epmd):
            # Erlang's port mapper daemonizes when a node starts: stop the one we started
            subprocess.run([epmd, "-kill"], env={**os.environ, "ERL_EPMD_ADDRESS": LOOPBACK},
                           capture_output=True, timeout=10)


SERVERS = {"redis": RedisServer, "rabbitmq": RabbitMQServer}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m celerylab.servers",
                                     description=_("Run a command with CELERYLAB_BROKER_URL set to a fresh real broker."))
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--aof", action="store_true", help=_("redis: append-only file on"))
    parser.add_argument("--results", choices=["redis"],
                        help=_("also start a redis-server for results (CELERYLAB_RESULT_BACKEND)"))
    parser.usage = "python -m celerylab.servers {rabbitmq,redis} [--aof] [--results redis] -- COMMAND..."
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error(_("give the command to run after --"))
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    kwargs = {"appendonly": True} if args.aof and args.server == "redis" else {}
    servers = [SERVERS[args.server](**kwargs)]
    if args.results:
        servers.append(RedisServer())
    env = dict(os.environ)
    env.pop("CELERYLAB_RESULT_BACKEND", None)
    try:
        for server, variable in zip(servers, ("CELERYLAB_BROKER_URL", "CELERYLAB_RESULT_BACKEND")):
            print(_("==> starting {server} on {host}:{port}", server=server.name, host=LOOPBACK, port=server.port),
                  flush=True)
            server.start()
            env[variable] = server.url
        shown = " ".join(f"{v}={env[v]}" for v in ("CELERYLAB_BROKER_URL", "CELERYLAB_RESULT_BACKEND") if v in env)
        print(f"==> {shown} {' '.join(command)}", flush=True)
        return subprocess.call(command, env=env)
    except CeleryLabError as exc:
        print(_("error: {error}", error=exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        for server in reversed(servers):
            print(_("==> stopping {server}", server=server.name), flush=True)
            server.close()


if __name__ == "__main__":
    sys.exit(main())
