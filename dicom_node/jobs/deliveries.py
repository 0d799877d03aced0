"""The job store's delivery side: deliveries per (job, destination), destination health, and
withdrawals of superseded results. :class:`~dicom_node.jobs.store.JobStore` inherits these.

A delivery's retry window counts from its first failure (``first_failed_at``, set when it first
goes RETRYING or WAITING, cleared when it is delivered); a WAITING delivery carries the time of
its next slow attempt (``next_attempt_at``). The serve process resumes WAITING deliveries and
withdrawals (``worker.node.destinations``) and records what each destination's health check saw.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from dicom_node.contracts import DeliveryReport
from dicom_node.errors import PermanentError
from dicom_node.identity import delivery_id_for, withdrawal_id_for
from dicom_node.jobs.core import StoreCore, rowcount
from dicom_node.jobs.records import DeliveryRecord, DestinationStatus, WithdrawalRecord
from dicom_node.jobs.states import DeliveryState, WithdrawalState
from dicom_node.jobs.tables import DeliveryRow, DestinationStatusRow, WithdrawalRow, utcnow

# Delivery states in which the retry window runs (the first failure is remembered).
_FAILING = frozenset({DeliveryState.RETRYING, DeliveryState.WAITING})


def _window_fields(row: DeliveryRow, state: DeliveryState, now: datetime) -> None:
    if state in _FAILING and row.first_failed_at is None:
        row.first_failed_at = now
    if state == DeliveryState.DELIVERED:
        row.first_failed_at = None
    if state != DeliveryState.WAITING:
        row.next_attempt_at = None


class DeliveryStore(StoreCore):
    # -- deliveries ---------------------------------------------------------------------------

    def start_delivery(self, job_id: str, destination: str) -> DeliveryRecord:
        """Create (idempotently) the delivery row and count one more attempt (state SENDING)."""
        now = utcnow()
        delivery_id = delivery_id_for(job_id, destination)
        with self._tx() as s:
            s.execute(
                self._insert(DeliveryRow.__table__)
                .values(
                    delivery_id=delivery_id,
                    job_id=job_id,
                    destination=destination,
                    state=DeliveryState.PENDING.value,
                    attempts=0,
                    last_error="",
                    delivered_sop_instance_uids=[],
                    failed={},
                    warnings={},
                    confirmed=False,
                    confirmation_detail="",
                    created_at=now,
                    updated_at=now,
                    first_failed_at=None,
                    next_attempt_at=None,
                )
                .on_conflict_do_nothing()
            )
            s.execute(
                update(DeliveryRow)
                .where(DeliveryRow.delivery_id == delivery_id)
                .values(
                    state=DeliveryState.SENDING.value,
                    attempts=DeliveryRow.attempts + 1,
                    next_attempt_at=None,
                    updated_at=now,
                )
            )
            row = s.get(DeliveryRow, delivery_id)
            assert row is not None
            s.refresh(row)
            return delivery_record(row)

    def record_delivery(
        self, report: DeliveryReport, *, state: DeliveryState, error: str = ""
    ) -> DeliveryRecord:
        """Store the outcome of one attempt.

        Delivered SOP Instance UIDs accumulate across attempts (a retry sends only what is still
        missing: :meth:`delivered_uids`); ``failed`` is replaced by this attempt's failures.
        """
        delivery_id = delivery_id_for(report.job_id, report.destination)
        now = utcnow()
        with self._tx() as s:
            row = s.get(DeliveryRow, delivery_id)
            if row is None:
                raise PermanentError(
                    f"delivery of job {report.job_id} to {report.destination} was never started"
                )
            before = row.delivered_sop_instance_uids
            delivered = list(dict.fromkeys([*before, *report.delivered_sop_instance_uids]))
            row.delivered_sop_instance_uids = delivered
            row.failed = {k: v for k, v in report.failed.items() if k not in delivered}
            row.warnings = {**row.warnings, **report.warnings}
            row.state = state.value
            row.last_error = error
            row.confirmed = report.confirmed
            row.confirmation_detail = report.confirmation_detail
            row.updated_at = now
            _window_fields(row, state, now)
            s.flush()
            return delivery_record(row)

    def get_delivery(self, job_id: str, destination: str) -> DeliveryRecord | None:
        with self._tx() as s:
            row = s.get(DeliveryRow, delivery_id_for(job_id, destination))
            return delivery_record(row) if row is not None else None

    def require_delivery(self, job_id: str, destination: str) -> DeliveryRecord:
        record = self.get_delivery(job_id, destination)
        if record is None:
            raise PermanentError(f"delivery of job {job_id} to {destination} was never started")
        return record

    def deliveries_for(self, job_id: str) -> list[DeliveryRecord]:
        with self._tx() as s:
            rows = s.scalars(
                select(DeliveryRow).where(DeliveryRow.job_id == job_id).order_by(DeliveryRow.destination)
            ).all()
            return [delivery_record(r) for r in rows]

    def delivered_uids(self, job_id: str, destination: str) -> frozenset[str]:
        """SOP Instance UIDs already accepted by ``destination`` (skip them on a retry)."""
        record = self.get_delivery(job_id, destination)
        return frozenset(record.delivered_sop_instance_uids) if record else frozenset()

    def deliveries_in_state(
        self,
        states: Collection[DeliveryState],
        *,
        updated_before: datetime | None = None,
        destination: str | None = None,
        limit: int = 1000,
    ) -> list[DeliveryRecord]:
        """Deliveries in one of ``states`` (optionally untouched since ``updated_before``), oldest first."""
        stmt = select(DeliveryRow).where(DeliveryRow.state.in_([st.value for st in states]))
        if updated_before is not None:
            stmt = stmt.where(DeliveryRow.updated_at < updated_before)
        if destination is not None:
            stmt = stmt.where(DeliveryRow.destination == destination)
        stmt = stmt.order_by(DeliveryRow.updated_at).limit(limit)
        with self._tx() as s:
            return [delivery_record(r) for r in s.scalars(stmt).all()]

    def set_delivery_state(
        self,
        job_id: str,
        destination: str,
        state: DeliveryState,
        *,
        reason: str,
        next_attempt_at: datetime | None = None,
        expect_from: Collection[DeliveryState] | None = None,
    ) -> bool:
        """E.g. RETRYING after a transient failure, WAITING (with ``next_attempt_at``) when quick
        retries are used up, DEAD when the retry window is over, PENDING on requeue or resumption.

        ``expect_from``: change only from one of these states (a compare-and-set: the serve
        process and a worker may race); returns whether the row changed.
        """
        now = utcnow()
        with self._tx() as s:
            row = s.get(DeliveryRow, delivery_id_for(job_id, destination))
            if row is None:
                raise PermanentError(f"delivery of job {job_id} to {destination} was never started")
            if expect_from is not None and DeliveryState(row.state) not in expect_from:
                return False
            row.state = state.value
            row.last_error = reason
            row.updated_at = now
            _window_fields(row, state, now)
            if state == DeliveryState.WAITING:
                row.next_attempt_at = next_attempt_at
            return True

    # -- destination health -------------------------------------------------------------------

    def record_destination_health(
        self, name: str, *, up: bool, detail: str, at: datetime | None = None
    ) -> DestinationStatus:
        """What a health check of ``name`` saw; ``since`` moves only when up/down changes."""
        at = at or utcnow()
        with self._tx() as s:
            row = s.get(DestinationStatusRow, name)
            if row is None:
                row = DestinationStatusRow(name=name, up=up, since=at, checked_at=at, detail=detail[:2000])
                s.add(row)
            else:
                if row.up != up:
                    row.since = at
                row.up = up
                row.checked_at = at
                row.detail = detail[:2000]
            s.flush()
            return destination_status(row)

    def destination_statuses(self) -> dict[str, DestinationStatus]:
        with self._tx() as s:
            return {r.name: destination_status(r) for r in s.scalars(select(DestinationStatusRow)).all()}

    # -- withdrawals --------------------------------------------------------------------------

    def plan_withdrawal(
        self, job_id: str, destination: str, *, by_job_id: str, sop_instance_uids: Sequence[str]
    ) -> tuple[WithdrawalRecord, bool]:
        """Record that ``job_id``'s results at ``destination`` are to be withdrawn (idempotent)."""
        now = utcnow()
        withdrawal_id = withdrawal_id_for(job_id, destination)
        with self._tx() as s:
            created = (
                rowcount(
                    s.execute(
                        self._insert(WithdrawalRow.__table__)
                        .values(
                            withdrawal_id=withdrawal_id,
                            job_id=job_id,
                            destination=destination,
                            by_job_id=by_job_id,
                            state=WithdrawalState.PENDING.value,
                            method="",
                            attempts=0,
                            sop_instance_uids=list(sop_instance_uids),
                            detail=f"superseded by job {by_job_id}",
                            first_failed_at=None,
                            next_attempt_at=None,
                            created_at=now,
                            updated_at=now,
                        )
                        .on_conflict_do_nothing()
                    )
                )
                == 1
            )
            row = s.get(WithdrawalRow, withdrawal_id)
            assert row is not None
            return withdrawal_record(row), created

    def get_withdrawal(self, job_id: str, destination: str) -> WithdrawalRecord | None:
        with self._tx() as s:
            row = s.get(WithdrawalRow, withdrawal_id_for(job_id, destination))
            return withdrawal_record(row) if row is not None else None

    def withdrawals_for(self, job_id: str) -> list[WithdrawalRecord]:
        """Withdrawals of ``job_id``'s results (it is the superseded job)."""
        return self._withdrawals(WithdrawalRow.job_id == job_id)

    def withdrawals_by(self, by_job_id: str) -> list[WithdrawalRecord]:
        """Withdrawals made for ``by_job_id`` (the superseding job)."""
        return self._withdrawals(WithdrawalRow.by_job_id == by_job_id)

    def withdrawals_in_state(
        self, states: Collection[WithdrawalState], *, limit: int = 1000
    ) -> list[WithdrawalRecord]:
        return self._withdrawals(WithdrawalRow.state.in_([st.value for st in states]), limit=limit)

    def _withdrawals(self, condition: ColumnElement[bool], *, limit: int = 1000) -> list[WithdrawalRecord]:
        stmt = select(WithdrawalRow).where(condition).order_by(WithdrawalRow.created_at).limit(limit)
        with self._tx() as s:
            return [withdrawal_record(r) for r in s.scalars(stmt).all()]

    def update_withdrawal(
        self,
        job_id: str,
        destination: str,
        state: WithdrawalState,
        *,
        detail: str,
        method: str | None = None,
        attempted: bool = False,
        next_attempt_at: datetime | None = None,
        failing: bool = False,
    ) -> WithdrawalRecord:
        """Move a withdrawal on; ``failing`` (or WAITING) starts its retry window if not yet."""
        now = utcnow()
        with self._tx() as s:
            row = _withdrawal_row(s, job_id, destination)
            row.state = state.value
            row.detail = detail[:4000]
            if method is not None:
                row.method = method
            if attempted:
                row.attempts += 1
            if (failing or state == WithdrawalState.WAITING) and row.first_failed_at is None:
                row.first_failed_at = now
            row.next_attempt_at = next_attempt_at if state == WithdrawalState.WAITING else None
            row.updated_at = now
            s.flush()
            return withdrawal_record(row)


def _withdrawal_row(s: Session, job_id: str, destination: str) -> WithdrawalRow:
    row = s.get(WithdrawalRow, withdrawal_id_for(job_id, destination))
    if row is None:
        raise PermanentError(f"no withdrawal of job {job_id} at {destination} was planned")
    return row


# -- row → record ---------------------------------------------------------------------------------


def delivery_record(row: DeliveryRow) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=row.delivery_id,
        job_id=row.job_id,
        destination=row.destination,
        state=DeliveryState(row.state),
        attempts=row.attempts,
        last_error=row.last_error,
        delivered_sop_instance_uids=tuple(row.delivered_sop_instance_uids),
        failed=dict(row.failed),
        warnings=dict(row.warnings),
        confirmed=row.confirmed,
        confirmation_detail=row.confirmation_detail,
        created_at=row.created_at,
        updated_at=row.updated_at,
        first_failed_at=row.first_failed_at,
        next_attempt_at=row.next_attempt_at,
    )


def destination_status(row: DestinationStatusRow) -> DestinationStatus:
    return DestinationStatus(
        name=row.name, up=row.up, since=row.since, checked_at=row.checked_at, detail=row.detail
    )


def withdrawal_record(row: WithdrawalRow) -> WithdrawalRecord:
    return WithdrawalRecord(
        withdrawal_id=row.withdrawal_id,
        job_id=row.job_id,
        destination=row.destination,
        by_job_id=row.by_job_id,
        state=WithdrawalState(row.state),
        method=row.method,
        attempts=row.attempts,
        sop_instance_uids=tuple(row.sop_instance_uids),
        detail=row.detail,
        first_failed_at=row.first_failed_at,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
