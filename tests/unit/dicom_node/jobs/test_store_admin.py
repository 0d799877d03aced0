"""Job store queries the admin API, metrics, sweeper and retention use (also run on PostgreSQL:
tests/integration/test_jobstore_admin_postgres.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dicom_node.contracts import CompletionReason, JobState, StudyManifest, StudySource, StudyStable
from dicom_node.errors import PermanentError
from dicom_node.jobs import DeliveryState, JobStore
from tests.unit.dicom_node.jobs.builders import make_job


def _stable(uid: str, at: datetime) -> StudyStable:
    return StudyStable(
        study_instance_uid=uid,
        source=StudySource(kind="staging", staging_path=f"/s/{uid}"),
        reason=CompletionReason.QUIET_PERIOD,
        instance_count=1,
        first_received_at=at,
        last_received_at=at,
        stable_at=at,
    )


def test_manifest_is_kept_and_listed_newest_first(store: JobStore) -> None:
    now = datetime.now(UTC)
    manifest = StudyManifest(
        study_instance_uid="1.2.3", source=StudySource(kind="staging", staging_path="/s"), series=()
    )
    with pytest.raises(PermanentError, match="record_study first"):
        store.record_manifest(manifest)
    store.record_study(_stable("1.2.3", now))
    store.record_study(_stable("1.2.4", now))
    assert store.get_study("1.2.3").has_manifest is False  # type: ignore[union-attr]
    store.record_manifest(manifest)
    assert store.get_study("1.2.3").has_manifest is True  # type: ignore[union-attr]
    assert store.get_manifest("1.2.3") == manifest and store.get_manifest("1.2.4") is None
    assert store.recent_manifests(limit=10) == [manifest]
    assert [s.study_instance_uid for s in store.list_studies()] == ["1.2.4", "1.2.3"]  # newest update first
    assert store.list_studies(updated_before=now - timedelta(days=1)) == []
    assert len(store.list_studies(since=now - timedelta(minutes=1), limit=1)) == 1


def test_note_event_tail_and_recent_workers(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    first = store.last_event_id()
    store.claim(job.job_id, "host-a:1:2")
    before = store.require_job(job.job_id).updated_at
    note = store.note(job.job_id, "message re-sent", detail={"by": "sweeper"})
    assert note.from_state == note.to_state == JobState.RUNNING and note.detail == {"by": "sweeper"}
    assert store.require_job(job.job_id).updated_at >= before
    assert store.require_job(job.job_id).state == JobState.RUNNING
    tail = store.events_after(first)
    assert [e.to_state for e in tail] == [JobState.RUNNING, JobState.RUNNING] and tail[
        -1
    ].id == store.last_event_id()
    workers = store.recent_workers(since=datetime.now(UTC) - timedelta(minutes=5))
    assert list(workers) == ["host-a:1:2"] and workers["host-a:1:2"].tzinfo is not None
    assert store.recent_workers(since=datetime.now(UTC) + timedelta(minutes=5)) == {}


def test_deliveries_in_state(store: JobStore) -> None:
    job = make_job(destinations=("PACS", "ARCHIVE"))
    store.create_job(job)
    store.start_delivery(job.job_id, "PACS")
    store.start_delivery(job.job_id, "ARCHIVE")
    store.set_delivery_state(job.job_id, "ARCHIVE", DeliveryState.DELIVERED, reason="ok")
    sending = store.deliveries_in_state([DeliveryState.SENDING])
    assert [(d.job_id, d.destination) for d in sending] == [(job.job_id, "PACS")]
    assert (
        store.deliveries_in_state(
            [DeliveryState.SENDING], updated_before=datetime.now(UTC) - timedelta(hours=1)
        )
        == []
    )


def test_cancel_transitions(store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    store.claim(job.job_id, "w")
    store.transition(job.job_id, JobState.FAILED, reason="PermanentError: x")
    assert (
        store.transition(job.job_id, JobState.SKIPPED, reason="cancelled by admin").state == JobState.SKIPPED
    )
