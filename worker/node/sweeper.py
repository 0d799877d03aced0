"""The sweeper: find work that silently stopped and put it back on its way (``ctnode serve`` calls it).

One pass of :func:`sweep` looks at the job store (the only state shared by every machine) and
the broker, and fixes three kinds of stuck work, each audited in the job's trail:

1. **RUNNING jobs whose worker is gone.** On this host the claimant's identity (``host:pid:start``,
   ``worker.context.worker_identity``) tells at once whether the process still exists; for other
   hosts only time can tell: no change for longer than the task's hard time limit (Celery would
   have killed a live task by then). Such a job is requeued (RUNNING → QUEUED, message re-sent),
   or FAILED with the reason once it has been claimed more than ``queue.max_retries`` times (a
   job that kills its worker every time must not loop forever).
2. **QUEUED jobs whose message is lost.** kombu's SQLite transport hides a fetched message and
   never restores it when the worker is killed -9; a broker restart without persistence loses
   everything. A job queued for longer than ``queued_after_s`` whose task id is not among the
   broker's waiting (or unacknowledged) messages gets its message re-sent. If the broker cannot
   be read, nothing is re-sent (a long queue is not a lost message).
3. **Deliveries stuck SENDING (or PENDING after a requeue) with no message**: re-sent the same way;
   marked DEAD (and the job settled) after ``queue.max_retries`` attempts.

Duplicates are harmless by design: ``JobStore.claim`` lets exactly one run of a job start, and a
delivery skips objects already accepted (``JobStore.delivered_uids``). (Pruning the embedded
broker's fetched messages is the serve process's hourly job: ``prune_sqlite_broker``.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dicom_node.contracts import JobState
from dicom_node.errors import NodeError
from dicom_node.identity import delivery_id_for
from dicom_node.jobs import DeliveryState
from worker.admin.broker import BrokerUnavailable, pending_task_ids
from worker.context import WorkerContext, claimant_is_dead
from worker.node.requeue import requeue, send_delivery_task, send_pipeline_task

logger = logging.getLogger(__name__)

_SCAN_LIMIT = 10_000


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)  # RUNNING → QUEUED, message re-sent
    failed: list[str] = field(default_factory=list)  # RUNNING → FAILED after too many lost workers
    resent_queued: list[str] = field(default_factory=list)  # QUEUED, message was lost
    resent_deliveries: list[tuple[str, str]] = field(default_factory=list)  # (job id, destination)
    dead_deliveries: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be checked or fixed, and why

    @property
    def changed(self) -> int:
        return (
            len(self.requeued)
            + len(self.failed)
            + len(self.resent_queued)
            + len(self.resent_deliveries)
            + len(self.dead_deliveries)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requeued": self.requeued,
            "failed": self.failed,
            "resent_queued": self.resent_queued,
            "resent_deliveries": [list(p) for p in self.resent_deliveries],
            "dead_deliveries": [list(p) for p in self.dead_deliveries],
            "problems": self.problems,
        }


def sweep(
    ctx: WorkerContext,
    celery_app: Any,
    *,
    now: datetime | None = None,
    queued_after_s: float | None = None,
) -> SweepReport:
    """One sweeper pass; see the module docstring. Never raises for one job's trouble.

    ``queued_after_s``: how long a QUEUED job may wait before its message is looked for
    (default: the task's hard time limit).
    """
    now = now or datetime.now(UTC)
    settings = ctx.settings
    store = ctx.store
    limit_s = settings.queue.task_time_limit_s
    max_attempts = settings.queue.max_retries
    report = SweepReport()

    # 1. RUNNING jobs of dead workers
    for record in store.list_jobs(state=JobState.RUNNING, limit=_SCAN_LIMIT):
        age_s = (now - record.updated_at).total_seconds()
        local_dead = claimant_is_dead(record.worker)
        if not local_dead and age_s <= limit_s:
            continue
        how = (
            f"worker {record.worker} is gone (process ended)"
            if local_dead
            else f"worker {record.worker or '?'} silent for {age_s:.0f} s (task time limit {limit_s} s)"
        )
        try:
            if record.attempts > max_attempts:
                store.transition(
                    record.job_id,
                    JobState.FAILED,
                    reason=f"sweeper: {how}; claimed {record.attempts} times, giving up (WorkerLost)",
                    detail={"by": "sweeper", "attempts": record.attempts},
                    expect_from={JobState.RUNNING},
                )
                report.failed.append(record.job_id)
            else:
                requeue(store, celery_app, settings, record.job_id, who="sweeper", stale_detail=how)
                report.requeued.append(record.job_id)
        except NodeError as exc:  # e.g. the job moved on meanwhile (a slow worker finished)
            report.problems.append(f"job {record.job_id}: {exc}")

    # 2. and 3. need to know what the broker still holds
    cutoff = now - timedelta(seconds=limit_s if queued_after_s is None else queued_after_s)
    queued = [r for r in store.list_jobs(state=JobState.QUEUED, limit=_SCAN_LIMIT) if r.updated_at < cutoff]
    delivery_cutoff = now - timedelta(seconds=limit_s)
    stuck = store.deliveries_in_state(
        (DeliveryState.SENDING, DeliveryState.PENDING), updated_before=delivery_cutoff, limit=_SCAN_LIMIT
    )
    pending: set[str] | None = None
    if queued or stuck:
        try:
            pending = pending_task_ids(settings.broker_url)
        except BrokerUnavailable as exc:
            report.problems.append(f"lost messages not checked: {exc}")

    if pending is not None:
        for record in queued:
            if record.job_id in pending:
                continue  # still waiting in a long queue
            try:
                send_pipeline_task(celery_app, record.job)
                store.note(
                    record.job_id,
                    f"sweeper: task message re-sent (queued since {record.updated_at:%Y-%m-%d %H:%M:%S} UTC, "
                    "no message on the broker)",
                    detail={"by": "sweeper"},
                )
                report.resent_queued.append(record.job_id)
            except Exception as exc:  # broker refused: try again next pass
                report.problems.append(f"job {record.job_id}: re-send failed: {exc}")

        for delivery in stuck:
            key = (delivery.job_id, delivery.destination)
            if delivery_id_for(*key) in pending:
                continue
            try:
                job = store.get_job(delivery.job_id)
                if job is None or job.state != JobState.DELIVERING:
                    continue  # settled meanwhile, or requeued for inference
                if delivery.attempts > max_attempts:
                    why = f"sweeper: delivery stuck {delivery.state.value} after {delivery.attempts} attempts"
                    store.set_delivery_state(*key, DeliveryState.DEAD, reason=why)
                    store.settle_deliveries(delivery.job_id)
                    report.dead_deliveries.append(key)
                    continue
                send_delivery_task(celery_app, *key)
                # PENDING with a fresh updated_at: waiting for the re-sent message, and not
                # re-sent again before another whole period has passed.
                store.set_delivery_state(*key, DeliveryState.PENDING, reason="sweeper: message re-sent")
                store.note(
                    delivery.job_id,
                    f"sweeper: delivery to {delivery.destination} re-sent (stuck {delivery.state.value}, "
                    "no message on the broker)",
                    detail={"by": "sweeper", "destination": delivery.destination},
                )
                report.resent_deliveries.append(key)
            except Exception as exc:
                report.problems.append(f"delivery of job {delivery.job_id} to {delivery.destination}: {exc}")

    if report.changed or report.problems:
        logger.warning(
            "sweeper: %d requeued, %d failed, %d queued re-sent, %d deliveries re-sent, %d dead; %d problems",
            len(report.requeued),
            len(report.failed),
            len(report.resent_queued),
            len(report.resent_deliveries),
            len(report.dead_deliveries),
            len(report.problems),
            extra={"stage": "sweeper"},
        )
    return report
