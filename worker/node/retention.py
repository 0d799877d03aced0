"""Retention: remove staged, fetched and result files of studies that are done and old.

A study's files go when **every** job of the study is final (delivered, skipped — which includes
cancelled — or superseded) and neither the study nor any of its jobs changed for
``storage.retention_days``. A study that fired no rule goes after the same age. Everything else
is kept, with the reason in the report:

- an active job (queued, running, encoded, delivering) needs its input and results;
- a FAILED or DEAD job may be requeued by an operator, which needs the same files: it is kept
  until someone requeues or cancels it (both are one click on the dashboard);
- a study folder written to recently (late instances) is kept whatever the store says.

The job store rows (the audit trail) are never deleted here. Only folders under
``storage.root`` are removed: ``staging/<study>``, ``fetched/<study>`` and ``results/<job_id>``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dicom_node.contracts import JobState
from dicom_node.jobs import JobStore
from dicom_node.jobs.states import FINAL
from dicom_node.settings import Settings

logger = logging.getLogger(__name__)

_SCAN_LIMIT = 100_000


@dataclass
class RetentionReport:
    studies_pruned: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # folders removed (or that would be, dry run)
    freed_bytes: int = 0
    kept: dict[str, str] = field(default_factory=dict)  # old study → why its files stay
    problems: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "studies_pruned": self.studies_pruned,
            "removed": self.removed,
            "freed_bytes": self.freed_bytes,
            "kept": self.kept,
            "problems": self.problems,
            "dry_run": self.dry_run,
        }


def _size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _latest_mtime(folder: Path) -> datetime | None:
    """Newest mtime of the folder and its direct children (a new instance touches its series folder)."""
    try:
        stamps = [folder.stat().st_mtime, *(c.stat().st_mtime for c in folder.iterdir())]
    except OSError:
        return None
    return datetime.fromtimestamp(max(stamps), UTC)


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def prune(
    settings: Settings, store: JobStore, *, now: datetime | None = None, dry_run: bool = False
) -> RetentionReport:
    """Remove the files of done studies older than ``storage.retention_days``; see the module docstring."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.storage.retention_days)
    root = settings.storage.root
    report = RetentionReport(dry_run=dry_run)

    for study in store.list_studies(limit=_SCAN_LIMIT, updated_before=cutoff):
        uid = study.study_instance_uid
        jobs = store.jobs_for_study(uid)
        busy = [j for j in jobs if j.state not in FINAL]
        if busy:
            waiting = [j for j in busy if j.state in (JobState.FAILED, JobState.DEAD)]
            report.kept[uid] = (
                f"{len(waiting)} failed/dead job(s) awaiting an operator (requeue or cancel)"
                if len(waiting) == len(busy)
                else f"{len(busy) - len(waiting)} active job(s)"
            )
            continue
        recent = [j for j in jobs if j.updated_at >= cutoff]
        if recent:
            report.kept[uid] = f"job {recent[0].job_id} changed within the retention period"
            continue

        inputs = [settings.storage.staging_dir / uid, root / "fetched" / uid]
        inputs += [p for j in jobs if (p := Path(j.job.source.staging_path or "")).name == uid]
        outputs = [settings.storage.results_dir / j.job_id for j in jobs]
        targets = list(dict.fromkeys(f for f in [*inputs, *outputs] if f.is_dir() and _inside(f, root)))
        if any((m := _latest_mtime(f)) is not None and m >= cutoff for f in inputs if f in targets):
            report.kept[uid] = "files written within the retention period (late instances?)"
            continue

        pruned = False
        for folder in targets:
            try:
                size = _size_bytes(folder)
                if not dry_run:
                    shutil.rmtree(folder)
            except OSError as exc:
                report.problems.append(f"{folder}: {exc.strerror or exc}")
                continue
            report.removed.append(str(folder))
            report.freed_bytes += size
            pruned = True
        if pruned:
            report.studies_pruned.append(uid)

    if report.studies_pruned or report.problems:
        logger.info(
            "retention%s: %d studies, %d folders, %.1f MB freed; %d problems",
            " (dry run)" if dry_run else "",
            len(report.studies_pruned),
            len(report.removed),
            report.freed_bytes / 1e6,
            len(report.problems),
            extra={"stage": "retention"},
        )
    return report
