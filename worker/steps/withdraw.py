"""Withdraw results a re-run superseded, at each destination that holds them (issue 12 item 1).

A late series (``late_series: rerun``) or a re-route (``ctnode studies reroute``) makes a new job
B that supersedes the study's earlier job A (``JobStore.mark_superseded``). A's results may
already be at a destination. Once B's results are delivered THERE (so the destination is never
left without results), :func:`plan_withdrawals` records one withdrawal per (superseded job,
destination) holding its objects, and the ``withdraw`` task runs :func:`withdraw_at`:

- a destination whose kind implements :class:`~dicom_node.delivery.destination.Withdraws` with a
  rejection note (DICOM, DICOMweb) gets a KOS "Rejected for Quality Reasons"
  (:mod:`dicom_node.results.rejection`, IHE IOCM) listing A's objects it holds;
- Orthanc deletes them through its REST API;
- a kind without ``withdraw``, or a destination with ``withdraw_superseded: false``, keeps them:
  recorded as "unsupported" with the reason.

Every step is a note in the audit trail of both jobs (A: "withdrawn at pacs by rejection note
…", B: "withdrew job A's results at pacs"). Transient failures go through the same ladder as
deliveries (quick retries, then waiting for the destination, until the retry window ends).
"""

from __future__ import annotations

import logging

from dicom_node.contracts import JobState
from dicom_node.delivery.destination import Withdraws, open_destination
from dicom_node.errors import PermanentError, TransientError
from dicom_node.jobs.records import JobRecord, WithdrawalRecord
from dicom_node.jobs.states import WITHDRAWAL_OPEN, WithdrawalState
from dicom_node.results.rejection import build_rejection_note
from worker.context import WorkerContext

logger = logging.getLogger(__name__)

WITHDRAWALS_DIR = "withdrawals"  # under the superseding job's results folder


def plan_withdrawals(ctx: WorkerContext, by_job_id: str, destination: str) -> list[str]:
    """After ``by_job_id``'s results reached ``destination``: record what to withdraw there.

    Returns the superseded job ids whose withdrawal at ``destination`` is to be run now (the
    caller sends their tasks). Idempotent: a withdrawal is planned once per (job, destination).
    """
    store = ctx.store
    dest = ctx.settings.destinations.get(destination)
    to_run: list[str] = []
    for old in store.superseded_by_chain(by_job_id):
        delivered = store.delivered_uids(old.job_id, destination)
        if not delivered or store.get_withdrawal(old.job_id, destination) is not None:
            continue
        _record, created = store.plan_withdrawal(
            old.job_id, destination, by_job_id=by_job_id, sop_instance_uids=sorted(delivered)
        )
        if not created:
            continue
        if dest is None or not dest.withdraw_superseded:
            why = (
                f"not withdrawn at {destination}: its settings say withdraw_superseded: false"
                if dest is not None
                else f"not withdrawn at {destination}: no longer configured on this node"
            )
            store.update_withdrawal(old.job_id, destination, WithdrawalState.UNSUPPORTED, detail=why)
            _audit(ctx, old.job_id, by_job_id, destination, why)
            continue
        store.note(
            old.job_id,
            f"results at {destination} to be withdrawn ({len(delivered)} object(s)): superseded by job "
            f"{by_job_id}, now delivered there",
            detail={"destination": destination, "by": by_job_id},
        )
        to_run.append(old.job_id)
    return to_run


def withdraw_at(ctx: WorkerContext, job_id: str, destination: str) -> WithdrawalRecord:
    """Run the planned withdrawal of ``job_id``'s results at ``destination`` (the task's step).

    Raises :class:`TransientError` (the destination did not answer: retried, then waiting) or
    :class:`PermanentError` (refused, or the objects' files are gone: failed with the reason).
    """
    store = ctx.store
    record = store.get_withdrawal(job_id, destination)
    if record is None:
        raise PermanentError(f"no withdrawal of job {job_id} at {destination} was planned")
    if record.state not in WITHDRAWAL_OPEN:
        return record  # done (or given up) already: a redelivered message
    old = store.require_job(job_id)
    by = store.require_job(record.by_job_id)
    dest = ctx.settings.destinations.get(destination)
    if dest is None:
        raise PermanentError(f"destination {destination!r} is not configured on this node")
    target = open_destination(
        destination, dest, calling_ae_title=ctx.settings.dicom.ae_title, environ=ctx.environ
    )
    if not isinstance(target, Withdraws):
        why = f"not withdrawn at {destination}: a {getattr(dest, 'kind', '?')} destination cannot withdraw"
        done = store.update_withdrawal(job_id, destination, WithdrawalState.UNSUPPORTED, detail=why)
        _audit(ctx, job_id, by.job_id, destination, why)
        return done
    if old.result_bundle is None:
        raise PermanentError(f"job {job_id} has no result bundle: nothing to withdraw")
    files = [f for f in old.result_bundle.files if f.sop_instance_uid in set(record.sop_instance_uids)]
    if not files:
        raise PermanentError(
            f"none of the {len(record.sop_instance_uids)} delivered objects is in job {job_id}'s bundle"
        )
    note = None
    if target.needs_rejection_note:
        note = build_rejection_note(
            files,
            superseded_job_id=job_id,
            destination=destination,
            description=_description(old, by, destination, store.delivered_uids(by.job_id, destination)),
            out_dir=ctx.results_dir(by.job_id) / WITHDRAWALS_DIR,
            uid_root=ctx.settings.uid_root,
            manufacturer=ctx.settings.manufacturer,
        )
    result = target.withdraw(files, study_instance_uid=old.study_instance_uid, rejection_note=note)
    if not result.ok:
        store.update_withdrawal(
            job_id, destination, record.state, detail=result.detail, method=result.method, attempted=True
        )
        raise (TransientError if result.transient else PermanentError)(
            f"withdrawal at {destination}: {result.detail}"
        )
    done = store.update_withdrawal(
        job_id, destination, WithdrawalState.DONE, detail=result.detail, method=result.method, attempted=True
    )
    if note is not None:
        text = (
            f"withdrawn at {destination} by rejection note {note.sop_instance_uid} ({len(files)} object(s))"
        )
    else:
        text = f"withdrawn at {destination} by {result.method}: {result.detail}"
    _audit(ctx, job_id, by.job_id, destination, text)
    logger.info(
        "superseded results withdrawn (%s): %s",
        result.method,
        result.detail,
        extra={"job_id": job_id, "stage": "withdraw", "destination": destination},
    )
    return done


def _description(old: JobRecord, by: JobRecord, destination: str, revised_uids: frozenset[str]) -> str:
    why = old.reason if old.state == JobState.SUPERSEDED else f"superseded by job {by.job_id}"
    series = sorted(
        {
            f.series_instance_uid
            for f in (by.result_bundle.files if by.result_bundle else ())
            if f.sop_instance_uid in revised_uids
        }
    )
    where = f" The revised results are in series {', '.join(series)}." if series else ""
    return (
        f"Withdrawn by ct-ai-node: results of job {old.job_id} (rule {old.rule_name}, {old.pipeline}) "
        f"superseded by job {by.job_id}: {why}.{where}"
    )


def _audit(ctx: WorkerContext, job_id: str, by_job_id: str, destination: str, text: str) -> None:
    """The same fact in both jobs' audit trails."""
    detail = {"destination": destination, "superseded": job_id, "by": by_job_id}
    ctx.store.note(job_id, text, detail=detail)
    ctx.store.note(by_job_id, f"job {job_id}: {text}", detail=detail)
