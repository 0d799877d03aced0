"""What a worker process holds between tasks: settings, the job store, the rules in force.

Built once per process by the entry point (``ctnode worker``/``serve``/``infer``) and passed to the
steps; never a module global. The rules file is re-read when it changes on disk; a bad file keeps
the rules in force and logs the error with file:line, so a typo never stops routing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dicom_node.errors import ConfigError
from dicom_node.jobs.store import JobStore
from dicom_node.routing.loader import load_rules
from dicom_node.routing.rules import RuleSet
from dicom_node.settings import Settings
from inference import registry

logger = logging.getLogger(__name__)


def worker_identity() -> str:
    """``host:pid:start`` — enough to tell whether the claimant of a job is still alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start_ticks(os.getpid())}"


def _process_start_ticks(pid: int) -> str:
    # Field 22 of /proc/<pid>/stat is the start time in clock ticks: a recycled PID differs.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[19]


def claimant_is_dead(worker: str | None) -> bool:
    """True when ``worker`` (from :func:`worker_identity`) ran on this host and is gone."""
    if not worker:
        return False
    try:
        host, pid_text, ticks = worker.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False  # another machine: only its time limit can tell (JobStore.claim stale_after_s)
    return _process_start_ticks(pid) != ticks


@dataclass
class WorkerContext:
    settings: Settings
    store: JobStore
    name: str = field(default_factory=worker_identity)
    _rules: RuleSet | None = None
    _rules_mtime_ns: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Settings) -> WorkerContext:
        return cls(settings=settings, store=JobStore.open(settings.database_url))

    def close(self) -> None:
        self.store.close()

    def known_pipelines(self) -> list[str]:
        return registry.available()

    def rules(self) -> RuleSet:
        """The rule set in force, reloaded when the file's mtime changes."""
        path = self.settings.rules_file
        with self._lock:
            try:
                mtime = path.stat().st_mtime_ns
            except OSError as exc:
                if self._rules is None:
                    raise ConfigError(f"cannot read rules: {exc.strerror}", location=str(path)) from exc
                logger.error(
                    "rules file %s unreadable (%s): keeping digest %s", path, exc, self._rules.digest
                )
                return self._rules
            if self._rules is None or mtime != self._rules_mtime_ns:
                try:
                    self._rules = load_rules(
                        path,
                        known_pipelines=self.known_pipelines(),
                        known_destinations=self.settings.destinations.keys(),
                    )
                    logger.info("rules loaded from %s: digest %s", path, self._rules.digest[:12])
                except ConfigError as exc:
                    if self._rules is None:
                        raise
                    logger.error("rules file rejected, keeping digest %s: %s", self._rules.digest[:12], exc)
                self._rules_mtime_ns = mtime
            return self._rules

    def results_dir(self, job_id: str) -> Path:
        return self.settings.storage.results_dir / job_id
