"""Per-instance outcomes of a delivery attempt, their classification, and the errors raised.

Every status a destination answers is mapped here, in one place, for both protocols:

======================================  ===========  =================================================
status                                   outcome      why
======================================  ===========  =================================================
0x0000 Success                           delivered
0x0001, 0xB000-0xBFFF Warning            warning      stored (e.g. coercion of data elements, PS3.4
                                                      Table B.2-1): delivered, the warning recorded
0x0111 Duplicate SOP Instance            warning      output UIDs are deterministic: the peer already
                                                      holds this very object (PS3.7 C.4.2.1.4)
0xA700-0xA7FF Refused: Out of Resources  transient    PS3.4 Table B.2-1; retried with backoff
0x0110 Processing failure, 0x0213        transient    the peer failed, not the object (PS3.7 C)
Resource limitation, 0x0210 Duplicate
invocation, no response (timeout/abort)
0xA900-0xA9FF Data Set does not match    permanent    the object is refused as it is: retrying
SOP Class, 0xC000-0xCFFF Cannot                       cannot help (keeps the per-instance reason)
understand, 0x0122 SOP Class not
supported, 0x0124 Not authorized, any
other failure
======================================  ===========  =================================================

A delivery attempt that leaves any instance *transient* and none *permanent* raises
:class:`DeliveryIncomplete` (a :class:`~dicom_node.errors.TransientError`: retry, re-sending only
the failed instances); any *permanent* one raises :class:`DeliveryRejected` (a
:class:`~dicom_node.errors.PermanentError`). Both carry the :class:`DeliveryReport` of what did
get through, so the job store records partial success.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from dicom_node.contracts import DeliveryReport, ResultFile
from dicom_node.errors import PermanentError, TransientError


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    WARNING = "warning"  # delivered, with a remark
    TRANSIENT = "transient"  # not delivered; trying again may help
    PERMANENT = "permanent"  # not delivered; refused as it is


_TRANSIENT_STATUSES = frozenset({0x0110, 0x0210, 0x0213})
_DUPLICATE_SOP_INSTANCE = 0x0111


def classify_dimse_status(status: int | None) -> OutcomeKind:
    """Map a C-STORE response status (or None: no response) to an outcome (table above)."""
    if status is None:
        return OutcomeKind.TRANSIENT
    if status == 0x0000:
        return OutcomeKind.DELIVERED
    if status == 0x0001 or 0xB000 <= status <= 0xBFFF or status == _DUPLICATE_SOP_INSTANCE:
        return OutcomeKind.WARNING
    if 0xA700 <= status <= 0xA7FF or status in _TRANSIENT_STATUSES:
        return OutcomeKind.TRANSIENT
    return OutcomeKind.PERMANENT


def describe_dimse_status(status: int | None) -> str:
    """``0xA700 Refused: Out of Resources``-style text for logs and the audit trail."""
    if status is None:
        return "no response (timeout or association lost)"
    names = {
        0x0000: "Success",
        0x0001: "Warning",
        0x0110: "Processing failure",
        0x0111: "Duplicate SOP Instance",
        0x0117: "Invalid SOP Instance",
        0x0122: "Refused: SOP Class not supported",
        0x0124: "Refused: Not authorized",
        0x0210: "Duplicate invocation",
        0x0211: "Unrecognized operation",
        0x0212: "Mistyped argument",
        0x0213: "Resource limitation",
        0xB000: "Warning: Coercion of Data Elements",
        0xB006: "Warning: Elements Discarded",
        0xB007: "Warning: Data Set does not match SOP Class",
    }
    if status in names:
        name = names[status]
    elif 0xA700 <= status <= 0xA7FF:
        name = "Refused: Out of Resources"
    elif 0xA900 <= status <= 0xA9FF:
        name = "Error: Data Set does not match SOP Class"
    elif 0xC000 <= status <= 0xCFFF:
        name = "Error: Cannot understand"
    elif 0xB000 <= status <= 0xBFFF:
        name = "Warning"
    else:
        name = "Failure"
    return f"0x{status:04X} {name}"


def classify_http_status(code: int) -> OutcomeKind:
    """Whole-request HTTP outcome for STOW-RS when no per-instance detail is available.

    5xx, 408 Request Timeout and 429 Too Many Requests are transient; other 4xx are permanent
    (bad request, unauthorised, forbidden, unsupported media type...). 2xx is success.
    """
    if 200 <= code < 300:
        return OutcomeKind.DELIVERED
    if code >= 500 or code in (408, 429):
        return OutcomeKind.TRANSIENT
    return OutcomeKind.PERMANENT


@dataclass(frozen=True)
class InstanceOutcome:
    sop_instance_uid: str
    kind: OutcomeKind
    detail: str
    status: int | None = None


@dataclass(frozen=True)
class SendResult:
    """Outcomes of one attempt to one destination, one per instance attempted."""

    outcomes: tuple[InstanceOutcome, ...]

    def uids(self, *kinds: OutcomeKind) -> tuple[str, ...]:
        return tuple(o.sop_instance_uid for o in self.outcomes if o.kind in kinds)

    @property
    def delivered(self) -> tuple[str, ...]:
        return self.uids(OutcomeKind.DELIVERED, OutcomeKind.WARNING)

    @property
    def warnings(self) -> dict[str, str]:
        return {o.sop_instance_uid: o.detail for o in self.outcomes if o.kind == OutcomeKind.WARNING}

    @property
    def failed(self) -> dict[str, str]:
        bad = (OutcomeKind.TRANSIENT, OutcomeKind.PERMANENT)
        return {o.sop_instance_uid: f"{o.kind.value}: {o.detail}" for o in self.outcomes if o.kind in bad}

    @property
    def any_permanent(self) -> bool:
        return any(o.kind == OutcomeKind.PERMANENT for o in self.outcomes)

    @property
    def any_transient(self) -> bool:
        return any(o.kind == OutcomeKind.TRANSIENT for o in self.outcomes)


def all_failed(uids: Iterable[str], kind: OutcomeKind, detail: str) -> SendResult:
    """The same outcome for every instance (e.g. connection refused before anything was sent)."""
    return SendResult(tuple(InstanceOutcome(uid, kind, detail) for uid in uids))


class DeliveryIncomplete(TransientError):
    """Some instances were not delivered for reasons that may pass; ``report`` says which."""

    def __init__(self, report: DeliveryReport) -> None:
        self.report = report
        super().__init__(_summary("delivery incomplete", report))


class DeliveryRejected(PermanentError):
    """The destination refused at least one instance for good; ``report`` keeps every reason."""

    def __init__(self, report: DeliveryReport) -> None:
        self.report = report
        super().__init__(_summary("delivery rejected", report))


def _summary(head: str, report: DeliveryReport) -> str:
    reasons = sorted(set(report.failed.values()))
    shown = "; ".join(reasons[:3]) + (f"; … ({len(reasons) - 3} more)" if len(reasons) > 3 else "")
    return (
        f"{head} to {report.destination}: {len(report.delivered_sop_instance_uids)} delivered, "
        f"{len(report.failed)} failed ({shown})"
    )


def report_for(
    result: SendResult,
    *,
    job_id: str,
    destination: str,
    already_delivered: Iterable[str] = (),
    attempt: int = 1,
    confirmed: bool = False,
    confirmation_detail: str = "",
) -> DeliveryReport:
    """A DeliveryReport for one attempt; ``already_delivered`` (earlier attempts) is included."""
    delivered = tuple(dict.fromkeys([*already_delivered, *result.delivered]))
    return DeliveryReport(
        job_id=job_id,
        destination=destination,
        delivered_sop_instance_uids=delivered,
        failed=result.failed,
        warnings=result.warnings,
        confirmed=confirmed,
        confirmation_detail=confirmation_detail,
        attempts=attempt,
        finished_at=datetime.now(UTC),
    )


def raise_for_outcome(report: DeliveryReport, result: SendResult) -> DeliveryReport:
    """Return the report when everything got through; raise the matching error otherwise."""
    if result.any_permanent:
        raise DeliveryRejected(report)
    if result.any_transient:
        raise DeliveryIncomplete(report)
    return report


@dataclass(frozen=True)
class WithdrawResult:
    """The outcome of withdrawing superseded results at one destination."""

    ok: bool
    method: str  # "rejection-note" or "delete"
    detail: str
    transient: bool = False  # not ok, and trying again later may help (the peer is down)


class _Sends(Protocol):
    def send(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> SendResult: ...


def withdraw_by_rejection_note(
    destination: _Sends, files: Sequence[ResultFile], *, study_instance_uid: str, note: ResultFile | None
) -> WithdrawResult:
    """Withdraw ``files`` by sending ``note`` (a KOS rejection note) like any result object."""
    if note is None:
        return WithdrawResult(False, "rejection-note", "no rejection note was given")
    result = destination.send([note], study_instance_uid=study_instance_uid)
    if note.sop_instance_uid in result.delivered:
        warning = result.warnings.get(note.sop_instance_uid)
        return WithdrawResult(
            True,
            "rejection-note",
            f"rejection note {note.sop_instance_uid} accepted for {len(files)} object(s)"
            + (f" ({warning})" if warning else ""),
        )
    detail = result.failed.get(note.sop_instance_uid, "no outcome for the rejection note")
    return WithdrawResult(
        False, "rejection-note", f"rejection note not accepted: {detail}", result.any_transient
    )
