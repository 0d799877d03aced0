"""The job store: job state, the audit trail and deliveries (SQLite or PostgreSQL).

It is the source of truth for what the node did; Celery only carries messages. Typical use by the
worker tasks::

    store = JobStore.open(settings.database_url)          # migrates to head: once per process
    record, created = store.create_job(job)               # idempotent by job_id
    if store.claim(job.job_id, worker="host:pid", stale_after_s=time_limit_s):
        ...                                               # run the model
        store.record_result(job.job_id, bundle, timings_s={"inference": 12.3})
    store.transition(job.job_id, JobState.DELIVERING, reason="sending to PACS")
    store.start_delivery(job.job_id, "PACS")
    store.record_delivery(report, state=DeliveryState.DELIVERED)
    store.settle_deliveries(job.job_id)                   # job → delivered / failed / dead

Every state change goes through :meth:`JobStore.transition` (or :meth:`claim`, which uses the same
rules), is checked against ``dicom_node.jobs.states`` and appends a ``job_events`` row with its
time and reason in the same transaction. Concurrent writers are safe: each change is a
compare-and-set ``UPDATE ... WHERE state = <observed>``, retried on a lost race.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from dicom_node.contracts import (
    CompletionReason,
    Job,
    JobState,
    ResultBundle,
    StudyManifest,
    StudySource,
    StudyStable,
)
from dicom_node.errors import PermanentError
from dicom_node.jobs.core import rowcount
from dicom_node.jobs.deliveries import DeliveryStore, delivery_record, withdrawal_record
from dicom_node.jobs.engine import make_engine
from dicom_node.jobs.migrate import upgrade_to_head
from dicom_node.jobs.records import (
    ConfigChange,
    JobDetail,
    JobEvent,
    JobRecord,
    StudyRecord,
)
from dicom_node.jobs.states import (
    ACTIVE,
    CLAIMABLE,
    DeliveryState,
    InvalidTransition,
    check_transition,
    job_state_after_deliveries,
)
from dicom_node.jobs.tables import (
    ConfigAuditRow,
    DeliveryRow,
    JobEventRow,
    JobRow,
    StudyRow,
    WithdrawalRow,
    utcnow,
)

logger = logging.getLogger(__name__)

_CAS_ATTEMPTS = 20


class JobNotFound(PermanentError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id} in the job store")


class JobStore(DeliveryStore):
    """Typed access to the job store. Create with :meth:`open`; thread- and process-safe."""

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, busy_timeout_s: float = 30.0, migrate: bool = True) -> JobStore:
        """Connect to ``url`` and (by default) upgrade the schema to the newest migration."""
        engine = make_engine(url, busy_timeout_s=busy_timeout_s)
        if migrate:
            upgrade_to_head(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- studies ------------------------------------------------------------------------------

    def record_study(self, stable: StudyStable, *, state: str = "stable") -> StudyRecord:
        """Insert or update the study row from a completion event (earliest first-received kept)."""
        now = utcnow()
        with self._tx() as s:
            row = s.get(StudyRow, stable.study_instance_uid)
            if row is None:
                row = StudyRow(
                    study_instance_uid=stable.study_instance_uid,
                    first_received_at=stable.first_received_at,
                    last_received_at=stable.last_received_at,
                    stable_at=stable.stable_at,
                    state=state,
                    completion_reason=stable.reason.value,
                    calling_ae_title=stable.calling_ae_title,
                    instance_count=stable.instance_count,
                    source=stable.source.model_dump(mode="json"),
                    updated_at=now,
                )
                s.add(row)
            else:
                if row.first_received_at is None or stable.first_received_at < row.first_received_at:
                    row.first_received_at = stable.first_received_at
                row.last_received_at = stable.last_received_at
                row.stable_at = stable.stable_at
                row.state = state
                row.completion_reason = stable.reason.value
                row.calling_ae_title = stable.calling_ae_title or row.calling_ae_title
                row.instance_count = stable.instance_count
                row.source = stable.source.model_dump(mode="json")
                row.updated_at = now
            s.flush()
            return _study_record(row)

    def get_study(self, study_instance_uid: str) -> StudyRecord | None:
        with self._tx() as s:
            row = s.get(StudyRow, study_instance_uid)
            return _study_record(row) if row is not None else None

    def record_manifest(self, manifest: StudyManifest) -> None:
        """Keep the study's routing manifest, so a draft rule set can be replayed on it later.

        The routing step calls this right after building the manifest (after :meth:`record_study`);
        a later routing of the same study replaces it. The manifest holds headers only, with patient
        identifiers left out by construction (``dicom_node.phi``).
        """
        with self._tx() as s:
            row = s.get(StudyRow, manifest.study_instance_uid)
            if row is None:
                raise PermanentError(f"study {manifest.study_instance_uid} not recorded: record_study first")
            row.manifest = manifest.model_dump(mode="json")

    def get_manifest(self, study_instance_uid: str) -> StudyManifest | None:
        with self._tx() as s:
            row = s.get(StudyRow, study_instance_uid)
            return StudyManifest.model_validate(row.manifest) if row is not None and row.manifest else None

    def list_studies(
        self, *, limit: int = 100, since: datetime | None = None, updated_before: datetime | None = None
    ) -> list[StudyRecord]:
        """Most recently updated first; ``since``/``updated_before`` compare with the last update."""
        stmt = select(StudyRow)
        if since is not None:
            stmt = stmt.where(StudyRow.updated_at >= since)
        if updated_before is not None:
            stmt = stmt.where(StudyRow.updated_at < updated_before)
        stmt = stmt.order_by(StudyRow.updated_at.desc(), StudyRow.study_instance_uid).limit(limit)
        with self._tx() as s:
            return [_study_record(r) for r in s.scalars(stmt).all()]

    def recent_manifests(self, *, limit: int = 50) -> list[StudyManifest]:
        """Manifests of the last ``limit`` routed studies, most recently updated first (rule replay)."""
        stmt = (
            select(StudyRow.manifest)
            .where(StudyRow.manifest.is_not(None))
            .order_by(StudyRow.updated_at.desc(), StudyRow.study_instance_uid)
            .limit(limit)
        )
        with self._tx() as s:
            return [StudyManifest.model_validate(m) for m in s.scalars(stmt).all() if m]

    # -- jobs ---------------------------------------------------------------------------------

    def create_job(
        self, job: Job, *, state: JobState = JobState.QUEUED, reason: str = ""
    ) -> tuple[JobRecord, bool]:
        """Record ``job``; the same ``job_id`` again returns the stored record and ``False``.

        ``INSERT ... ON CONFLICT DO NOTHING`` on both backends, so two processes creating the same
        job at once get one row and exactly one ``created=True``. ``state`` may be QUEUED or SKIPPED
        (e.g. a late-series policy of "ignore").
        """
        if state not in (JobState.QUEUED, JobState.SKIPPED):
            raise PermanentError(f"a job is created queued or skipped, not {state.value}")
        now = utcnow()
        reason = reason or f"created by rule {job.rule_name!r}"
        values = {
            "job_id": job.job_id,
            "study_instance_uid": job.study_instance_uid,
            "rule_name": job.rule_name,
            "ruleset_digest": job.ruleset_digest,
            "pipeline": job.pipeline,
            "model_version": job.model_version,
            "priority": job.priority.value,
            "destinations": list(job.destinations),
            "shadow": job.shadow,
            "state": state.value,
            "reason": reason,
            "attempts": 0,
            "worker": None,
            "superseded_by": None,
            "created_at": now,
            "updated_at": now,
            "job": job.model_dump(mode="json"),
            "result_bundle": None,
            "timings": {},
        }
        with self._tx() as s:
            stmt = self._insert(JobRow.__table__).values(**values).on_conflict_do_nothing()
            created = rowcount(s.execute(stmt)) == 1
            if created:
                s.add(_event(job.job_id, None, state, reason, {"rule": job.rule_name}, now))
            row = s.get(JobRow, job.job_id)
            assert row is not None  # inserted now or earlier, and rows are never deleted
            return _job_record(row), created

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            return _job_record(row) if row is not None else None

    def require_job(self, job_id: str) -> JobRecord:
        record = self.get_job(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def job_detail(self, job_id: str) -> JobDetail | None:
        """The job, its events (oldest first) and its deliveries."""
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                return None
            events = s.scalars(
                select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)
            ).all()
            deliveries = s.scalars(
                select(DeliveryRow).where(DeliveryRow.job_id == job_id).order_by(DeliveryRow.destination)
            ).all()
            withdrawals = s.scalars(
                select(WithdrawalRow)
                .where(WithdrawalRow.job_id == job_id)
                .order_by(WithdrawalRow.destination)
            ).all()
            return JobDetail(
                job=_job_record(row),
                events=tuple(_event_record(e) for e in events),
                deliveries=tuple(delivery_record(d) for d in deliveries),
                withdrawals=tuple(withdrawal_record(w) for w in withdrawals),
            )

    def events(self, job_id: str) -> list[JobEvent]:
        with self._tx() as s:
            rows = s.scalars(
                select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)
            ).all()
            return [_event_record(r) for r in rows]

    def transition(
        self,
        job_id: str,
        to_state: JobState,
        *,
        reason: str,
        detail: Mapping[str, Any] | None = None,
        expect_from: Collection[JobState] | None = None,
    ) -> JobRecord:
        """Move a job to ``to_state`` with an audited reason; the one place states change.

        A move to the current state is a no-op (no event). ``expect_from`` narrows the allowed
        starting states further (e.g. a delivery retry only from FAILED/DEAD). Raises
        :class:`~dicom_node.jobs.states.InvalidTransition` or :class:`JobNotFound`.
        """
        for _ in range(_CAS_ATTEMPTS):
            with self._tx() as s:
                row = s.get(JobRow, job_id)
                if row is None:
                    raise JobNotFound(job_id)
                current = JobState(row.state)
                if expect_from is not None and current not in expect_from and current != to_state:
                    raise InvalidTransition(job_id, current, to_state)
                if not check_transition(job_id, current, to_state):
                    return _job_record(row)
                now = utcnow()
                changed = rowcount(
                    s.execute(
                        update(JobRow)
                        .where(JobRow.job_id == job_id, JobRow.state == current.value)
                        .values(state=to_state.value, reason=reason, updated_at=now)
                    )
                )
                if changed == 1:
                    s.add(_event(job_id, current, to_state, reason, dict(detail or {}), now))
                    s.flush()
                    s.refresh(row)
                    logger.info(
                        "job %s: %s → %s (%s)",
                        job_id,
                        current.value,
                        to_state.value,
                        reason,
                        extra={"job_id": job_id, "stage": "jobs"},
                    )
                    return _job_record(row)
            # lost a race with another writer: read again and re-check the move
        raise PermanentError(f"job {job_id}: state kept changing under {_CAS_ATTEMPTS} attempts")

    def claim(self, job_id: str, worker: str, *, stale_after_s: float | None = None) -> bool:
        """Atomically take a QUEUED job for running; ``True`` for exactly one claimant.

        A job that is delivered, encoded, superseded (anything but QUEUED) is not re-run. A
        RUNNING job may be taken over only when ``stale_after_s`` is given and its last change is
        older than that: its worker died (pass the task's hard time limit: a live worker would
        have been killed by then; a redelivered Celery message after a worker crash arrives only
        after the broker's visibility timeout, which settings keep above that limit).
        """
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(job_id)
            current = JobState(row.state)
            now = utcnow()
            stale = (
                current == JobState.RUNNING
                and stale_after_s is not None
                and row.updated_at < now - timedelta(seconds=stale_after_s)
            )
            if current not in CLAIMABLE and not stale:
                return False
            conditions = [JobRow.job_id == job_id, JobRow.state == current.value]
            if stale:
                conditions.append(JobRow.updated_at == row.updated_at)
            changed = rowcount(
                s.execute(
                    update(JobRow)
                    .where(*conditions)
                    .values(
                        state=JobState.RUNNING.value,
                        worker=worker,
                        attempts=JobRow.attempts + 1,
                        reason=f"claimed by {worker}",
                        updated_at=now,
                    )
                )
            )
            if changed != 1:
                return False
            reason = f"claimed by {worker}" + (" (previous worker stale)" if stale else "")
            s.add(_event(job_id, current, JobState.RUNNING, reason, {"worker": worker}, now))
            return True

    def record_result(
        self,
        job_id: str,
        bundle: ResultBundle,
        *,
        timings_s: Mapping[str, float] | None = None,
        reason: str = "results encoded",
    ) -> JobRecord:
        """Store the result bundle (paths + UIDs, no pixels) and move RUNNING → ENCODED."""
        if bundle.job_id != job_id:
            raise PermanentError(f"bundle of job {bundle.job_id} given for job {job_id}")
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(job_id)
            row.result_bundle = bundle.model_dump(mode="json")
            if timings_s:
                row.timings = {**row.timings, **{k: float(v) for k, v in timings_s.items()}}
        return self.transition(job_id, JobState.ENCODED, reason=reason, detail={"files": len(bundle.files)})

    def add_timings(self, job_id: str, timings_s: Mapping[str, float]) -> None:
        """Merge per-stage timings (seconds) into the job, e.g. ``{"deliver.PACS": 0.4}``."""
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(job_id)
            row.timings = {**row.timings, **{k: float(v) for k, v in timings_s.items()}}

    def list_jobs(
        self,
        *,
        state: JobState | Collection[JobState] | None = None,
        study_instance_uid: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Newest first. ``since`` compares with the creation time."""
        stmt = select(JobRow)
        if state is not None:
            states = [state] if isinstance(state, JobState) else list(state)
            stmt = stmt.where(JobRow.state.in_([s.value for s in states]))
        if study_instance_uid is not None:
            stmt = stmt.where(JobRow.study_instance_uid == study_instance_uid)
        if since is not None:
            stmt = stmt.where(JobRow.created_at >= since)
        stmt = stmt.order_by(JobRow.created_at.desc(), JobRow.job_id).limit(limit)
        with self._tx() as s:
            return [_job_record(r) for r in s.scalars(stmt).all()]

    def real_work_waiting(self) -> int:
        """Real (not shadow) work a worker could take now: jobs QUEUED or ENCODED (their
        deliveries about to be queued) and deliveries PENDING or SENDING. Deliveries waiting on a
        destination that is down do not count. For the shadow lane: shadow jobs step aside while
        this is not zero."""
        jobs = (
            select(func.count())
            .select_from(JobRow)
            .where(
                JobRow.shadow.is_(False), JobRow.state.in_([JobState.QUEUED.value, JobState.ENCODED.value])
            )
        )
        deliveries = (
            select(func.count())
            .select_from(DeliveryRow)
            .where(DeliveryRow.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value]))
        )
        with self._tx() as s:
            return int(s.scalar(jobs) or 0) + int(s.scalar(deliveries) or 0)

    def dead_letters(self, *, limit: int = 100) -> list[JobRecord]:
        """Jobs whose retries ran out (state DEAD): the dead-letter list, kept here, not in a broker."""
        return self.list_jobs(state=JobState.DEAD, limit=limit)

    def jobs_for_study(self, study_instance_uid: str, rule_name: str | None = None) -> list[JobRecord]:
        """Every job of a study (optionally of one rule), oldest first: for the late-series policy."""
        stmt = select(JobRow).where(JobRow.study_instance_uid == study_instance_uid)
        if rule_name is not None:
            stmt = stmt.where(JobRow.rule_name == rule_name)
        stmt = stmt.order_by(JobRow.created_at, JobRow.job_id)
        with self._tx() as s:
            return [_job_record(r) for r in s.scalars(stmt).all()]

    def mark_superseded(self, job_ids: Iterable[str], *, by_job_id: str, reason: str = "") -> list[str]:
        """Mark earlier jobs SUPERSEDED by ``by_job_id``; returns those actually changed.

        Jobs already final in another way (skipped) or the new job itself are left alone.
        """
        changed: list[str] = []
        reason = reason or f"superseded by job {by_job_id}"
        for job_id in job_ids:
            if job_id == by_job_id:
                continue
            record = self.get_job(job_id)
            if record is None or record.state not in ACTIVE | {JobState.FAILED, JobState.DEAD}:
                continue
            self.transition(job_id, JobState.SUPERSEDED, reason=reason, detail={"by": by_job_id})
            with self._tx() as s:
                s.execute(update(JobRow).where(JobRow.job_id == job_id).values(superseded_by=by_job_id))
            changed.append(job_id)
        return changed

    def superseded_by_chain(self, job_id: str) -> list[JobRecord]:
        """Every job ``job_id`` supersedes, directly or through jobs that never delivered (A
        superseded by B superseded by C: C's results replace A's too), oldest first."""
        found: dict[str, JobRecord] = {}
        frontier = {job_id}
        while frontier:
            with self._tx() as s:
                rows = s.scalars(select(JobRow).where(JobRow.superseded_by.in_(frontier))).all()
                records = [_job_record(r) for r in rows if r.job_id not in found and r.job_id != job_id]
            frontier = set()
            for record in records:
                found[record.job_id] = record
                frontier.add(record.job_id)
        return sorted(found.values(), key=lambda r: (r.created_at, r.job_id))

    def note(self, job_id: str, reason: str, *, detail: Mapping[str, Any] | None = None) -> JobEvent:
        """Audit something done to a job that leaves its state as it is (e.g. a task message re-sent).

        Appends an event whose from and to state are the current one, and bumps ``updated_at`` (so a
        sweeper that re-sent a message waits a whole period before trying again).
        """
        now = utcnow()
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(job_id)
            current = JobState(row.state)
            row.updated_at = now
            event = _event(job_id, current, current, reason, dict(detail or {}), now)
            s.add(event)
            s.flush()
            return _event_record(event)

    def events_after(self, after_id: int, *, limit: int = 5000) -> list[JobEvent]:
        """Audit events with an id above ``after_id``, oldest first (for metrics that tail the trail)."""
        stmt = select(JobEventRow).where(JobEventRow.id > after_id).order_by(JobEventRow.id).limit(limit)
        with self._tx() as s:
            return [_event_record(r) for r in s.scalars(stmt).all()]

    def last_event_id(self) -> int:
        with self._tx() as s:
            return int(s.scalar(select(func.max(JobEventRow.id))) or 0)

    def recent_workers(self, *, since: datetime) -> dict[str, datetime]:
        """Workers that claimed a job changed since ``since``: identity → latest change."""
        stmt = (
            select(JobRow.worker, func.max(JobRow.updated_at))
            .where(JobRow.worker.is_not(None), JobRow.updated_at >= since)
            .group_by(JobRow.worker)
        )
        with self._tx() as s:
            rows = s.execute(stmt).all()
        # max() over the TypeDecorator column comes back raw on SQLite: make it aware UTC.
        out: dict[str, datetime] = {}
        for worker, at in rows:
            if worker is None or at is None:
                continue
            moment = datetime.fromisoformat(at) if isinstance(at, str) else at
            out[str(worker)] = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return out

    def stale_running(self, *, older_than_s: float) -> list[JobRecord]:
        """RUNNING jobs untouched for ``older_than_s``: their worker died (for a sweeper/operator)."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        stmt = select(JobRow).where(JobRow.state == JobState.RUNNING.value, JobRow.updated_at < cutoff)
        with self._tx() as s:
            return [_job_record(r) for r in s.scalars(stmt).all()]

    def settle_deliveries(self, job_id: str) -> JobState | None:
        """Move the job to DELIVERED / FAILED / DEAD once every destination has an outcome.

        Destinations of the job with no delivery row yet count as pending. Returns the state the
        job was moved to, or None while deliveries are still in flight.
        """
        job = self.require_job(job_id)
        by_dest = {d.destination: d.state for d in self.deliveries_for(job_id)}
        states = [by_dest.get(dest, DeliveryState.PENDING) for dest in job.destinations]
        target = job_state_after_deliveries(states)
        if target is None:
            return None
        if job.state == target:
            return target
        summary = {dest: by_dest.get(dest, DeliveryState.PENDING).value for dest in job.destinations}
        self.transition(job_id, target, reason=f"deliveries settled: {summary}", detail=summary)
        return target

    # -- config audit -------------------------------------------------------------------------

    def record_config_change(self, *, who: str, what: str, diff: Mapping[str, Any]) -> ConfigChange:
        with self._tx() as s:
            row = ConfigAuditRow(at=utcnow(), who=who, what=what, diff=dict(diff))
            s.add(row)
            s.flush()
            return _config_change(row)

    def config_changes(self, *, limit: int = 100) -> list[ConfigChange]:
        with self._tx() as s:
            rows = s.scalars(select(ConfigAuditRow).order_by(ConfigAuditRow.id.desc()).limit(limit)).all()
            return [_config_change(r) for r in rows]

    # -- housekeeping -------------------------------------------------------------------------

    def count_by_state(self) -> dict[JobState, int]:
        """Number of jobs per state (for metrics and ``ctnode jobs list`` headers)."""
        with self._tx() as s:
            rows = s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
            return {JobState(state): int(n) for state, n in rows}


# -- row → record ---------------------------------------------------------------------------------


def _event(
    job_id: str,
    from_state: JobState | None,
    to_state: JobState,
    reason: str,
    detail: dict[str, Any],
    at: datetime,
) -> JobEventRow:
    return JobEventRow(
        job_id=job_id,
        at=at,
        from_state=from_state.value if from_state is not None else None,
        to_state=to_state.value,
        reason=reason,
        detail=detail,
    )


def _job_record(row: JobRow) -> JobRecord:
    return JobRecord(
        job_id=row.job_id,
        study_instance_uid=row.study_instance_uid,
        rule_name=row.rule_name,
        ruleset_digest=row.ruleset_digest,
        pipeline=row.pipeline,
        model_version=row.model_version,
        priority=row.priority,
        destinations=tuple(row.destinations),
        shadow=row.shadow,
        state=JobState(row.state),
        reason=row.reason,
        attempts=row.attempts,
        worker=row.worker,
        superseded_by=row.superseded_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        job=Job.model_validate(row.job),
        result_bundle=ResultBundle.model_validate(row.result_bundle) if row.result_bundle else None,
        timings_s={k: float(v) for k, v in (row.timings or {}).items()},
    )


def _event_record(row: JobEventRow) -> JobEvent:
    return JobEvent(
        id=row.id,
        job_id=row.job_id,
        at=row.at,
        from_state=JobState(row.from_state) if row.from_state else None,
        to_state=JobState(row.to_state),
        reason=row.reason,
        detail=row.detail or {},
    )


def _study_record(row: StudyRow) -> StudyRecord:
    return StudyRecord(
        study_instance_uid=row.study_instance_uid,
        state=row.state,
        completion_reason=CompletionReason(row.completion_reason) if row.completion_reason else None,
        calling_ae_title=row.calling_ae_title,
        instance_count=row.instance_count,
        source=StudySource.model_validate(row.source),
        first_received_at=row.first_received_at,
        last_received_at=row.last_received_at,
        stable_at=row.stable_at,
        updated_at=row.updated_at,
        has_manifest=row.manifest is not None,
    )


def _config_change(row: ConfigAuditRow) -> ConfigChange:
    return ConfigChange(id=row.id, at=row.at, who=row.who, what=row.what, diff=dict(row.diff))
