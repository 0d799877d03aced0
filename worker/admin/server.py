"""Run the admin app with uvicorn in a background thread (``ctnode serve`` and the tests).

::

    server = AdminServer(app, host="127.0.0.1", port=8990).start()   # returns once it accepts
    ...
    server.stop()

``port=0`` picks a free port (read it back from :attr:`AdminServer.port`). Uvicorn's access log
is off: request lines would be noise beside the node's structured logs, and although the bearer
token travels in a header (never logged), a client that put one in a query string would have it
written out. Errors still go to the ``uvicorn.error`` logger.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class AdminServer:
    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 8990, log_level: str = "warning"
    ) -> None:
        self.host = host
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            return self._requested_port
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, *, timeout_s: float = 15.0) -> AdminServer:
        """Bind (so the port is known and taken before returning), serve in a thread, wait until started."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="admin-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"admin API on {self.host}:{self.port} stopped while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"admin API on {self.host}:{self.port} did not start in {timeout_s} s")
            time.sleep(0.02)
        return self

    def stop(self, *, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> AdminServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
