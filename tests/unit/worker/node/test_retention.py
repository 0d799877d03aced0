"""Retention on a real SQLite job store and real folders: only done, old studies lose their files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dicom_node.contracts import Job, JobState, StudySource
from dicom_node.jobs import JobStore
from dicom_node.settings import Settings
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from tests.unit.worker.admin.conftest import make_manifest, record_routed_study, settings_for
from worker.node.retention import prune

LATER = datetime.now(UTC) + timedelta(days=30)  # retention_days is 7 in these settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    with JobStore.open(settings.database_url) as opened:
        yield opened


def staged_study(settings: Settings, store: JobStore, uid: str, *, state: JobState) -> tuple[Job, list[Path]]:
    """A study with staged files, fetched files and a result folder; its one job in ``state``."""
    record_routed_study(store, make_manifest(uid))
    staging = settings.storage.staging_dir / uid
    base = make_job(study_instance_uid=uid)
    job = base.model_copy(update={"source": StudySource(kind="staging", staging_path=str(staging))})
    folders = [
        staging / "1.2.3",
        settings.storage.root / "fetched" / uid / "1.2.3",
        settings.storage.results_dir / job.job_id,
    ]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "a.dcm").write_bytes(b"x" * 1000)
    store.create_job(job)
    if state != JobState.QUEUED:
        store.claim(job.job_id, "w1")
    if state == JobState.DELIVERED:
        store.record_result(job.job_id, make_bundle(job))
        store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
        store.transition(job.job_id, JobState.DELIVERED, reason="delivered")
    elif state == JobState.FAILED:
        store.transition(job.job_id, JobState.FAILED, reason="PermanentError: bad input")
    return job, [staging, settings.storage.root / "fetched" / uid, settings.storage.results_dir / job.job_id]


def test_prunes_only_done_old_studies(settings: Settings, store: JobStore) -> None:
    done, done_dirs = staged_study(
        settings, store, "1.2.826.0.1.3680043.8.498.5001", state=JobState.DELIVERED
    )
    _active, active_dirs = staged_study(
        settings, store, "1.2.826.0.1.3680043.8.498.5002", state=JobState.QUEUED
    )
    _failed, failed_dirs = staged_study(
        settings, store, "1.2.826.0.1.3680043.8.498.5003", state=JobState.FAILED
    )

    assert prune(settings, store).studies_pruned == []  # nothing is old yet
    dry = prune(settings, store, now=LATER, dry_run=True)
    assert dry.studies_pruned == [done.study_instance_uid] and all(d.exists() for d in done_dirs)

    report = prune(settings, store, now=LATER)
    assert report.studies_pruned == [done.study_instance_uid]
    assert sorted(report.removed) == sorted(str(d) for d in done_dirs) and report.freed_bytes == 3000
    assert not any(d.exists() for d in done_dirs)
    assert all(d.exists() for d in active_dirs + failed_dirs)
    assert "active" in report.kept["1.2.826.0.1.3680043.8.498.5002"]
    assert "awaiting an operator" in report.kept["1.2.826.0.1.3680043.8.498.5003"]
    assert store.require_job(done.job_id).state == JobState.DELIVERED  # the audit trail stays


def test_never_removes_outside_the_storage_root(settings: Settings, store: JobStore, tmp_path: Path) -> None:
    uid = "1.2.826.0.1.3680043.8.498.6001"
    outside = tmp_path / "elsewhere" / uid
    outside.mkdir(parents=True)
    (outside / "keep.dcm").write_bytes(b"x")
    record_routed_study(store, make_manifest(uid))
    job = make_job(study_instance_uid=uid).model_copy(
        update={"source": StudySource(kind="staging", staging_path=str(outside))}
    )
    store.create_job(job, state=JobState.SKIPPED, reason="late series ignored")
    prune(settings, store, now=LATER)
    assert (outside / "keep.dcm").exists()
