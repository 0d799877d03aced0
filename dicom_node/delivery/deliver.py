"""``deliver``: one attempt to send a job's results to one named destination.

The Celery ``deliver`` task (worker/tasks.py) calls this and records the outcome in the job store::

    store.start_delivery(job_id, name)
    try:
        report = deliver(bundle, name, dest, calling_ae_title=settings.dicom.ae_title,
                         already_delivered=store.delivered_uids(job_id, name),
                         attempt=record.attempts)
        store.record_delivery(report, state=DeliveryState.DELIVERED)
    except DeliveryIncomplete as exc:   # TransientError: retry with backoff
        store.record_delivery(exc.report, state=DeliveryState.RETRYING, error=str(exc))
    except DeliveryRejected as exc:     # PermanentError: job FAILED, reasons kept per instance
        store.record_delivery(exc.report, state=DeliveryState.FAILED, error=str(exc))

A retry sends only what is not yet delivered; output UIDs are deterministic, so re-sending an
object the destination already holds is harmless either way.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from dicom_node.contracts import DeliveryReport, ResultBundle
from dicom_node.delivery.destination import open_destination
from dicom_node.delivery.outcome import raise_for_outcome, report_for
from dicom_node.delivery.selection import select_files
from dicom_node.settings import DestinationBase

logger = logging.getLogger(__name__)


def deliver(
    bundle: ResultBundle,
    dest_name: str,
    dest: DestinationBase,
    *,
    calling_ae_title: str,
    already_delivered: Collection[str] = (),
    attempt: int = 1,
    confirm: bool = True,
    environ: Mapping[str, str] | None = None,
) -> DeliveryReport:
    """Send the files ``dest`` takes (its result kinds, ``dest.roles``) that are not yet delivered.

    Returns the report when every selected object is delivered (warnings recorded). Raises
    :class:`~dicom_node.delivery.outcome.DeliveryIncomplete` (transient) or
    :class:`~dicom_node.delivery.outcome.DeliveryRejected` (permanent), each carrying the
    report of this attempt (delivered so far, per-instance failure reasons).

    Once everything is delivered it is confirmed (``confirm=True``) by the destination's own
    query-back (QIDO-RS for DICOMweb, C-FIND for a DICOM peer: ``confirmed`` /
    ``confirmation_detail``; a peer without C-FIND, like storescp, leaves it unconfirmed with the
    reason). No storage commitment.
    """
    destination = open_destination(dest_name, dest, calling_ae_title=calling_ae_title, environ=environ)
    delivered_before = set(already_delivered)
    selected = select_files(bundle, dest)
    to_send = [f for f in selected if f.sop_instance_uid not in delivered_before]
    earlier = [f.sop_instance_uid for f in selected if f.sop_instance_uid in delivered_before]
    result = destination.send(to_send, study_instance_uid=bundle.study_instance_uid)
    confirmed, confirmation = False, ""
    if confirm and not result.any_permanent and not result.any_transient:
        confirmed, confirmation = destination.confirm(selected, study_instance_uid=bundle.study_instance_uid)
    report = report_for(
        result,
        job_id=bundle.job_id,
        destination=dest_name,
        already_delivered=earlier,
        attempt=attempt,
        confirmed=confirmed,
        confirmation_detail=confirmation,
    )
    logger.info(
        "delivery of job %s to %s (attempt %d): %d of %d objects delivered%s",
        bundle.job_id,
        dest_name,
        attempt,
        len(report.delivered_sop_instance_uids),
        len(selected),
        ", confirmed" if confirmed else "",
        extra={"job_id": bundle.job_id, "stage": "delivery", "destination": dest_name},
    )
    return raise_for_outcome(report, result)
