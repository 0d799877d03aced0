"""A real redis-server for tests, on a free loopback port, stopped by PID.

``redis-server --port P --bind 127.0.0.1 --save "" --appendonly no``: no persistence (a stop
loses everything, like a broker crash without AOF), data dir under the test's temp folder. The
server can be stopped and started again on the same port to test outages::

    with redis_server(tmp_path) as redis:
        app = make_celery(settings_with(broker_url=redis.url))
        redis.stop()      # broker down
        redis.start()     # back, same port, empty
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ManagedProcess, free_port, wait_until


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, work_dir: Path, *, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server not found: scripts/setup --test installs the Debian redis-server package"
            )
        self.binary = binary
        self.work_dir = work_dir
        self.port = port or free_port()
        self.process: ManagedProcess | None = None
        work_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout_s: float = 20.0) -> None:
        if self.process is not None and self.process.alive():
            return
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.work_dir),
        ]
        self.process = ManagedProcess(argv, log_path=self.work_dir / f"redis-{self.port}.log")
        try:
            wait_until(
                lambda: _pong(self.port) or not self.process_alive(), timeout_s=timeout_s, what="redis-server"
            )
        except TimeoutError:
            self.stop()
            raise
        if not self.process_alive():
            log = self.process.log_text()[-2000:]
            self.stop()
            raise RuntimeError(f"redis-server exited early; log:\n{log}")

    def process_alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def kill9(self) -> None:
        if self.process is not None:
            self.process.kill9()
            self.process.stop()
            self.process = None


@contextlib.contextmanager
def redis_server(work_dir: Path, *, port: int | None = None) -> Iterator[RedisServer]:
    """Start a private redis-server; stop it (by PID) when the block ends."""
    server = RedisServer(work_dir, port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
