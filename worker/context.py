"""What a worker process holds between tasks: settings, the job store, the rules in force.

Built once per process by the entry point (``ctnode worker``/``serve``/``infer``) and passed to the
steps; never a module global. The rules file is re-read when it changes on disk; a bad file keeps
the rules in force and logs the error with file:line, so a typo never stops routing.
"""

from __future__ import annotations

import difflib
import logging
import os
import pwd
import socket
import threading
from collections.abc import Mapping
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


def use_model_directory(settings: Settings) -> None:
    """Point the model card lookup at ``settings.model.directory`` for this process.

    ``inference.model.card`` reads ``$CTNODE_MODEL_DIR`` both where the routing step computes the
    model version for job ids and where the worker loads the weights, so the two always agree.
    """
    if settings.model.directory is not None:
        os.environ["CTNODE_MODEL_DIR"] = str(settings.model.directory)


def file_owner(path: Path) -> str:
    """Who changed a config file, as well as a file can tell: its owner (and the host)."""
    try:
        owner = pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, OSError):
        owner = "?"
    return f"{owner}@{socket.gethostname()} (file {path.name})"


def rules_diff(
    before: RuleSet | None, before_text: str, after: RuleSet, after_text: str
) -> dict[str, object]:
    """Digest change, rules added/removed/changed by name, and a unified diff of the text."""
    old = {r.name: r.model_dump(mode="json") for r in before.rules} if before else {}
    new = {r.name: r.model_dump(mode="json") for r in after.rules}
    text_diff = list(
        difflib.unified_diff(
            before_text.splitlines(), after_text.splitlines(), "before", "after", lineterm=""
        )
    )
    return {
        "from_digest": before.digest if before else None,
        "to_digest": after.digest,
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(n for n in set(old) & set(new) if old[n] != new[n]),
        "text_diff": text_diff[:400],
    }


@dataclass
class WorkerContext:
    settings: Settings
    store: JobStore
    name: str = field(default_factory=worker_identity)
    # The environment the entry point started with: secrets named in settings (tokens, Orthanc
    # credentials) are read from this snapshot, never from os.environ inside a task.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _rules: RuleSet | None = None
    _rules_mtime_ns: int = -1
    _rules_text: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Settings) -> WorkerContext:
        use_model_directory(settings)
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
                self._reload(path)
                self._rules_mtime_ns = mtime
            if self._rules is None:  # _reload raised for a first bad file; this is unreachable
                raise ConfigError("no rules loaded", location=str(path))
            return self._rules

    def _reload(self, path: Path) -> None:
        """Load the file; audit the change (who, when, diff) or the rejection in the job store."""
        previous, previous_text = self._rules, self._rules_text
        text = path.read_text(errors="replace")
        try:
            rules = load_rules(
                path,
                known_pipelines=self.known_pipelines(),
                known_destinations=self.settings.destinations.keys(),
            )
        except ConfigError as exc:
            if previous is None:
                raise
            logger.error("rules file rejected, keeping digest %s: %s", previous.digest[:12], exc)
            self._audit(path, "rules rejected", {"error": str(exc)[:4000], "kept_digest": previous.digest})
            return
        self._rules, self._rules_text = rules, text
        logger.info("rules loaded from %s: digest %s", path, rules.digest[:12])
        if previous is None or previous.digest != rules.digest:
            self._audit(path, "rules", rules_diff(previous, previous_text, rules, text))

    def _audit(self, path: Path, what: str, diff: dict[str, object]) -> None:
        try:
            self.store.record_config_change(who=file_owner(path), what=what, diff=diff)
        except Exception:  # the audit must never stop routing
            logger.exception("could not audit the rules change")

    def results_dir(self, job_id: str) -> Path:
        return self.settings.storage.results_dir / job_id
