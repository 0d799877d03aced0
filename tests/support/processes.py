"""Real peers for tests: free ports, processes started by fixtures and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_until(
    predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.05, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.1f} s waiting for {what or predicate}")


class ManagedProcess:
    """A child process in its own process group, killed by PID (group) on stop."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL the whole group at once, like a crashed host would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()


@contextlib.contextmanager
def managed(
    argv: Sequence[str],
    *,
    log_path: Path,
    ready: Callable[[], bool] | None = None,
    ready_timeout_s: float = 20.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[ManagedProcess]:
    proc = ManagedProcess(argv, log_path=log_path, env=env, cwd=cwd)
    try:
        if ready is not None:
            try:
                wait_until(lambda: ready() or not proc.alive(), timeout_s=ready_timeout_s, what=argv[0])
            except TimeoutError:
                raise TimeoutError(f"{argv[0]} not ready; log:\n{proc.log_text()[-2000:]}") from None
            if not proc.alive():
                raise RuntimeError(f"{argv[0]} exited early; log:\n{proc.log_text()[-2000:]}")
        yield proc
    finally:
        proc.stop()
