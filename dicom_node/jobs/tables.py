"""The job store's tables (SQLAlchemy 2 typed ORM); the schema itself is made by the Alembic
migrations in ``dicom_node/jobs/migrations`` (keep both in step: a test compares them).

No pixel data and no patient identifiers are stored here: UIDs, rule names, states, reasons and
the JSON of the contracts (which carry no PHI by construction, see ``dicom_node.phi``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

UID = String(64)  # PS3.5 9.1: a UID is at most 64 characters
JOB_ID = String(36)  # a uuid in its canonical text form


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL keeps the zone (timestamptz); SQLite has no zone, so values are stored as naive UTC
    and given back as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the job store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class StudyRow(Base):
    __tablename__ = "studies"

    study_instance_uid: Mapped[str] = mapped_column(UID, primary_key=True)
    first_received_at: Mapped[datetime | None]
    last_received_at: Mapped[datetime | None]
    stable_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(32))
    completion_reason: Mapped[str | None] = mapped_column(String(64))
    calling_ae_title: Mapped[str] = mapped_column(String(16), default="")
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(index=True)
    # The StudyManifest the routing step built (headers only, PHI left out by construction): what
    # a draft rule set is replayed against (admin API). None until the study is routed.
    manifest: Mapped[dict[str, Any] | None]


class JobRow(Base):
    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(JOB_ID, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    rule_name: Mapped[str] = mapped_column(String(128))
    ruleset_digest: Mapped[str] = mapped_column(String(128))
    pipeline: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(128))
    priority: Mapped[str] = mapped_column(String(16))
    destinations: Mapped[list[Any]]
    shadow: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    superseded_by: Mapped[str | None] = mapped_column(JOB_ID)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    job: Mapped[dict[str, Any]]
    result_bundle: Mapped[dict[str, Any] | None]
    timings: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_jobs_study_rule", "study_instance_uid", "rule_name"),)


class JobEventRow(Base):
    """Append-only audit trail: one row per state change (never updated, never deleted)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(JOB_ID, ForeignKey("jobs.job_id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]]


class DeliveryRow(Base):
    __tablename__ = "deliveries"

    delivery_id: Mapped[str] = mapped_column(JOB_ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(JOB_ID, ForeignKey("jobs.job_id", ondelete="CASCADE"), index=True)
    destination: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_sop_instance_uids: Mapped[list[Any]]
    failed: Mapped[dict[str, Any]]
    warnings: Mapped[dict[str, Any]]
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmation_detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The retry window (queue.delivery_retry_window_s) counts from the first failure; a WAITING
    # delivery is attempted again at next_attempt_at at the latest. Both cleared on delivery.
    first_failed_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("job_id", "destination", name="uq_deliveries_job_destination"),
        Index("ix_deliveries_state", "state"),
    )


class DestinationStatusRow(Base):
    """What the last health check of a destination saw (C-ECHO, QIDO-RS, ...), and since when."""

    __tablename__ = "destination_status"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    up: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[datetime]  # when ``up`` last changed
    checked_at: Mapped[datetime]
    detail: Mapped[str] = mapped_column(Text, default="")


class WithdrawalRow(Base):
    """A superseded job's results withdrawn (or to withdraw) at one destination."""

    __tablename__ = "withdrawals"

    withdrawal_id: Mapped[str] = mapped_column(JOB_ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(JOB_ID, ForeignKey("jobs.job_id", ondelete="CASCADE"), index=True)
    destination: Mapped[str] = mapped_column(String(128))
    by_job_id: Mapped[str] = mapped_column(JOB_ID)  # the job whose results supersede these
    state: Mapped[str] = mapped_column(String(16), index=True)
    method: Mapped[str] = mapped_column(String(32), default="")  # "rejection-note", "delete", ...
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sop_instance_uids: Mapped[list[Any]]  # what is withdrawn (delivered there earlier)
    detail: Mapped[str] = mapped_column(Text, default="")
    first_failed_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("job_id", "destination", name="uq_withdrawals_job_destination"),)


class ConfigAuditRow(Base):
    """Who changed which configuration, when, and how (for the admin API)."""

    __tablename__ = "config_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    who: Mapped[str] = mapped_column(String(255))
    what: Mapped[str] = mapped_column(String(255))
    diff: Mapped[dict[str, Any]]
