"""Send one job's results to one destination, recording every attempt in the job store.

Idempotent per (job, destination): a delivery already DELIVERED is not sent again, and a retry
sends only the objects the destination has not accepted yet (``JobStore.delivered_uids``). The
job moves ENCODED → DELIVERING on the first attempt and settles (DELIVERED / FAILED / DEAD) once
every destination has an outcome.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from dicom_node.contracts import DeliveryReport, JobState
from dicom_node.delivery.deliver import deliver
from dicom_node.delivery.outcome import DeliveryIncomplete, DeliveryRejected
from dicom_node.errors import PermanentError
from dicom_node.jobs.records import DeliveryRecord
from dicom_node.jobs.states import DeliveryState
from worker.context import WorkerContext

logger = logging.getLogger(__name__)

# Jobs in these states have nothing (more) to deliver: a stale message is dropped.
_NOTHING_TO_SEND = frozenset({JobState.SUPERSEDED, JobState.SKIPPED, JobState.QUEUED, JobState.RUNNING})


def deliver_to(
    ctx: WorkerContext, job_id: str, destination: str, *, attempt: int = 1
) -> DeliveryRecord | None:
    """One delivery attempt. Returns the delivery record, or None when nothing is to be sent.

    Raises :class:`DeliveryIncomplete` (transient: retry) or :class:`DeliveryRejected` /
    :class:`PermanentError` (fail); the attempt is recorded before raising.
    """
    store = ctx.store
    record = store.require_job(job_id)
    if record.state in _NOTHING_TO_SEND:
        logger.info(
            "delivery dropped: job is %s",
            record.state.value,
            extra={"job_id": job_id, "stage": "delivery", "destination": destination},
        )
        return None
    existing = store.get_delivery(job_id, destination)
    if existing is not None and existing.state == DeliveryState.DELIVERED:
        return existing  # a redelivered message: done already
    if record.result_bundle is None:
        raise PermanentError(f"job {job_id} has no encoded results to deliver")
    if destination not in record.destinations:
        raise PermanentError(f"{destination!r} is not a destination of job {job_id}")
    dest = ctx.settings.destinations.get(destination)
    if dest is None:
        raise PermanentError(f"destination {destination!r} is not configured on this node")
    if record.state == JobState.ENCODED:
        store.transition(
            job_id,
            JobState.DELIVERING,
            reason=f"delivering to {', '.join(record.destinations)}",
            expect_from={JobState.ENCODED, JobState.DELIVERING},
        )
    store.start_delivery(job_id, destination)
    t0 = time.perf_counter()
    try:
        report = deliver(
            record.result_bundle,
            destination,
            dest,
            calling_ae_title=ctx.settings.dicom.ae_title,
            already_delivered=store.delivered_uids(job_id, destination),
            attempt=attempt,
            environ=ctx.environ,
        )
    except DeliveryIncomplete as exc:
        store.record_delivery(exc.report, state=DeliveryState.RETRYING, error=str(exc))
        raise
    except DeliveryRejected as exc:
        store.record_delivery(exc.report, state=DeliveryState.FAILED, error=str(exc))
        raise
    except PermanentError as exc:
        _record_failure(ctx, job_id, destination, DeliveryState.FAILED, str(exc))
        raise
    finally:
        store.add_timings(job_id, {f"deliver.{destination}": round(time.perf_counter() - t0, 4)})
    delivered = store.record_delivery(report, state=DeliveryState.DELIVERED)
    logger.info(
        "delivered %d object(s)%s",
        len(report.delivered_sop_instance_uids),
        "" if report.confirmed else f" (unconfirmed: {report.confirmation_detail})",
        extra={"job_id": job_id, "stage": "delivery", "destination": destination},
    )
    store.settle_deliveries(job_id)
    return delivered


def _record_failure(
    ctx: WorkerContext, job_id: str, destination: str, state: DeliveryState, error: str
) -> None:
    report = DeliveryReport(job_id=job_id, destination=destination, finished_at=datetime.now(UTC))
    ctx.store.record_delivery(report, state=state, error=error)


def give_up(
    ctx: WorkerContext, job_id: str, destination: str, state: DeliveryState, reason: str
) -> JobState | None:
    """Mark this destination FAILED or DEAD and settle the job if every destination is decided."""
    store = ctx.store
    if store.get_delivery(job_id, destination) is None:
        store.start_delivery(job_id, destination)
    store.set_delivery_state(job_id, destination, state, reason=reason)
    return store.settle_deliveries(job_id)
