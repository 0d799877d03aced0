"""Requeue and cancel jobs: one implementation for ``ctnode jobs retry``, the admin API and the sweeper.

A requeue first moves the job in the store (an audited transition with who and why), then sends
the Celery task by *name* (the contract with worker/tasks.py)::

    worker.tasks.run_pipeline(job)               job = Job.model_dump(mode="json"), task id = job id
    worker.tasks.deliver(job_id, destination)    task id = identity.delivery_id_for(job_id, destination)

The store moves first: a message that arrives before the move would find the job unclaimable.
If sending then fails (broker down) the job stays QUEUED/DELIVERING with no message, which the
sweeper (``worker.node.sweeper``) notices and re-sends; nothing is lost.

Requeueable: FAILED and DEAD jobs, and a RUNNING job whose worker is gone (no change for longer
than the task's hard time limit: e.g. a worker killed -9 on the SQLite broker, which does not
redeliver). A duplicate message is harmless: ``JobStore.claim`` lets exactly one run start.

Cancel: a QUEUED, FAILED or DEAD job → SKIPPED with the operator's reason (``states.py``); a
message still on the broker then finds nothing to claim.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from dicom_node.constants import TASK_DELIVER, TASK_RUN_PIPELINE
from dicom_node.contracts import Job, JobState
from dicom_node.errors import PermanentError
from dicom_node.identity import delivery_id_for
from dicom_node.jobs import DeliveryState, JobNotFound, JobRecord, JobStore
from dicom_node.jobs.states import CANCELLABLE
from dicom_node.settings import Settings
from worker.tasks.app import queue_for

logger = logging.getLogger(__name__)

Stage = Literal["inference", "delivery"]
STAGES: tuple[Stage, ...] = ("inference", "delivery")


class RequeueRefused(PermanentError):
    """The job cannot be requeued or cancelled as asked (its state, its destinations)."""


@dataclass(frozen=True)
class SentMessage:
    """One task message handed to the broker."""

    task: str
    task_id: str
    queue: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class RequeueOutcome:
    job_id: str
    stage: Stage
    state: JobState  # the job's state after the requeue
    reason: str  # what went into the audit trail
    messages: tuple[SentMessage, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "stage": self.stage,
            "state": self.state.value,
            "reason": self.reason,
            "messages": [
                {"task": m.task, "task_id": m.task_id, "queue": m.queue, "args": list(m.args)}
                for m in self.messages
            ],
        }


def send_pipeline_task(celery_app: Any, job: Job) -> SentMessage:
    """Send ``run_pipeline(job)`` with task id = job id (to the STAT lane for a STAT job)."""
    args = [job.model_dump(mode="json")]
    celery_app.send_task(TASK_RUN_PIPELINE, args=args, task_id=job.job_id)
    return SentMessage(TASK_RUN_PIPELINE, job.job_id, queue_for(TASK_RUN_PIPELINE, args) or "", tuple(args))


def send_delivery_task(celery_app: Any, job_id: str, destination: str) -> SentMessage:
    """Send ``deliver(job_id, destination)`` with task id = the delivery id."""
    task_id = delivery_id_for(job_id, destination)
    celery_app.send_task(TASK_DELIVER, args=[job_id, destination], task_id=task_id)
    return SentMessage(TASK_DELIVER, task_id, queue_for(TASK_DELIVER) or "", (job_id, destination))


def is_stale(record: JobRecord, settings: Settings, *, now: datetime | None = None) -> bool:
    """A RUNNING job untouched for longer than the hard task time limit: its worker is gone."""
    now = now or datetime.now(UTC)
    age_s = (now - record.updated_at).total_seconds()
    return record.state == JobState.RUNNING and age_s > settings.queue.task_time_limit_s


def undelivered_destinations(store: JobStore, record: JobRecord) -> list[str]:
    delivered = {
        d.destination for d in store.deliveries_for(record.job_id) if d.state == DeliveryState.DELIVERED
    }
    return [d for d in record.destinations if d not in delivered]


def requeue(
    store: JobStore,
    celery_app: Any,
    settings: Settings,
    job_id: str,
    *,
    stage: Stage | None = None,
    destinations: Sequence[str] = (),
    reason: str = "",
    who: str = "operator",
    stale_detail: str = "",
) -> RequeueOutcome:
    """Requeue a failed, dead or abandoned (stale running) job; audited with ``who`` and ``reason``.

    ``stage``: "inference" (run the model again) or "delivery" (send the stored results again);
    default delivery when the job has results, else inference. ``destinations``: delivery only,
    default every destination not yet delivered. ``stale_detail`` replaces the default note on a
    stale running job (the sweeper says how it knows the worker is dead).
    Raises :class:`~dicom_node.jobs.JobNotFound` or :class:`RequeueRefused`.
    """
    record = store.get_job(job_id)
    if record is None:
        raise JobNotFound(job_id)
    stale = is_stale(record, settings) or bool(stale_detail and record.state == JobState.RUNNING)
    if record.state not in (JobState.FAILED, JobState.DEAD) and not stale:
        hint = (
            " (still running: it is requeued only after the task time limit)"
            if record.state == JobState.RUNNING
            else ""
        )
        raise RequeueRefused(
            f"job {job_id} is {record.state.value}: only failed or dead jobs are requeued{hint}"
        )
    if stage is not None and stage not in STAGES:
        raise RequeueRefused(f"unknown stage {stage!r}: use inference or delivery")
    chosen: Stage = stage or ("delivery" if record.result_bundle is not None else "inference")
    why = f"requeued by {who} ({chosen})" + (f": {reason}" if reason else "")
    if stale:
        limit_s = settings.queue.task_time_limit_s
        why += "; " + (stale_detail or f"worker {record.worker or '?'} gone (no change for over {limit_s} s)")

    if chosen == "inference":
        if destinations:
            raise RequeueRefused("destinations apply to a delivery requeue only")
        moved = store.transition(job_id, JobState.QUEUED, reason=why, detail={"stage": chosen, "by": who})
        message = send_pipeline_task(celery_app, record.job)
        logger.info(
            "job %s requeued (inference) by %s", job_id, who, extra={"job_id": job_id, "stage": "requeue"}
        )
        return RequeueOutcome(job_id, chosen, moved.state, why, (message,))

    if record.result_bundle is None:
        raise RequeueRefused(f"job {job_id} has no results to deliver: use --stage inference")
    targets = list(destinations) or undelivered_destinations(store, record)
    unknown = [d for d in targets if d not in record.destinations]
    if unknown:
        raise RequeueRefused(f"not a destination of job {job_id}: {', '.join(unknown)}")
    if not targets:
        raise RequeueRefused(f"every destination of job {job_id} is already delivered")
    moved = store.transition(
        job_id,
        JobState.DELIVERING,
        reason=why,
        detail={"stage": chosen, "destinations": targets, "by": who},
        expect_from={JobState.FAILED, JobState.DEAD},
    )
    messages = []
    for dest in targets:
        if store.get_delivery(job_id, dest) is not None:
            store.set_delivery_state(job_id, dest, DeliveryState.PENDING, reason=why)
        messages.append(send_delivery_task(celery_app, job_id, dest))
    logger.info(
        "job %s requeued (delivery to %d destinations) by %s",
        job_id,
        len(targets),
        who,
        extra={"job_id": job_id, "stage": "requeue"},
    )
    return RequeueOutcome(job_id, chosen, moved.state, why, tuple(messages))


def cancel(store: JobStore, job_id: str, *, reason: str = "", who: str = "operator") -> JobRecord:
    """A queued, failed or dead job → SKIPPED ("cancelled by <who>: <reason>"); nothing else runs.

    Raises :class:`~dicom_node.jobs.JobNotFound` or :class:`RequeueRefused` (running, encoded,
    delivering or already final: those are not cancelled).
    """
    record = store.get_job(job_id)
    if record is None:
        raise JobNotFound(job_id)
    if record.state not in CANCELLABLE:
        allowed = ", ".join(sorted(s.value for s in CANCELLABLE))
        raise RequeueRefused(f"job {job_id} is {record.state.value}: only {allowed} jobs are cancelled")
    why = f"cancelled by {who}" + (f": {reason}" if reason else "")
    moved = store.transition(
        job_id, JobState.SKIPPED, reason=why, detail={"cancelled_by": who}, expect_from=CANCELLABLE
    )
    logger.info("job %s cancelled by %s", job_id, who, extra={"job_id": job_id, "stage": "requeue"})
    return moved
