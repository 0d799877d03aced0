"""What the job store gives back: frozen, JSON-ready snapshots (never live ORM objects)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dicom_node.contracts import CompletionReason, Job, JobState, ResultBundle, StudySource
from dicom_node.jobs.states import DeliveryState, WithdrawalState


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StudyRecord(Record):
    study_instance_uid: str
    state: str
    completion_reason: CompletionReason | None
    calling_ae_title: str
    instance_count: int
    source: StudySource
    first_received_at: datetime | None
    last_received_at: datetime | None
    stable_at: datetime | None
    updated_at: datetime
    has_manifest: bool = False  # the routing manifest is kept (rule replay can use this study)


class JobRecord(Record):
    job_id: str
    study_instance_uid: str
    rule_name: str
    ruleset_digest: str
    pipeline: str
    model_version: str
    priority: str
    destinations: tuple[str, ...]
    shadow: bool
    state: JobState
    reason: str
    attempts: int
    worker: str | None
    superseded_by: str | None
    created_at: datetime
    updated_at: datetime
    job: Job
    result_bundle: ResultBundle | None
    # seconds per stage, e.g. {"fetch": 1.2, "inference": 30.1, "encode": 0.8, "deliver.PACS": 0.4}
    timings_s: dict[str, float] = Field(default_factory=dict)


class JobEvent(Record):
    """One audited state change."""

    id: int
    job_id: str
    at: datetime
    from_state: JobState | None
    to_state: JobState
    reason: str
    detail: dict[str, Any] = Field(default_factory=dict)


class DeliveryRecord(Record):
    delivery_id: str
    job_id: str
    destination: str
    state: DeliveryState
    attempts: int
    last_error: str
    delivered_sop_instance_uids: tuple[str, ...]
    failed: dict[str, str]
    warnings: dict[str, str]
    confirmed: bool
    confirmation_detail: str
    created_at: datetime
    updated_at: datetime
    first_failed_at: datetime | None = None  # the retry window counts from here
    next_attempt_at: datetime | None = None  # a WAITING delivery is tried again by then


class DestinationStatus(Record):
    """The last health check of a destination: up or down, since when, and what it said."""

    name: str
    up: bool
    since: datetime
    checked_at: datetime
    detail: str


class WithdrawalRecord(Record):
    withdrawal_id: str
    job_id: str  # the superseded job
    destination: str
    by_job_id: str  # the job whose results supersede it
    state: WithdrawalState
    method: str
    attempts: int
    sop_instance_uids: tuple[str, ...]
    detail: str
    first_failed_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


class JobDetail(Record):
    """A job with its whole audit trail and its deliveries (``ctnode jobs show``)."""

    job: JobRecord
    events: tuple[JobEvent, ...]
    deliveries: tuple[DeliveryRecord, ...]
    withdrawals: tuple[WithdrawalRecord, ...] = ()  # this job's results withdrawn at destinations


class ConfigChange(Record):
    id: int
    at: datetime
    who: str
    what: str
    diff: dict[str, Any]
