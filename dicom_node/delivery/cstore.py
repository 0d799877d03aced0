"""C-STORE SCU: send result objects to a DICOM destination and check every status.

One association per attempt, proposing exactly the SOP classes / transfer syntaxes being sent
(:func:`~dicom_node.delivery.selection.presentation_contexts`), optional TLS, every response
status classified (:mod:`dicom_node.delivery.outcome`). Nothing here raises for a peer problem:
association failures become the same outcome for every instance, so the caller always gets a
:class:`SendResult` to record and decide on.

- connection refused / reset / timed out, association aborted, A-ASSOCIATE-RJ "rejected-transient"
  → transient for every instance;
- A-ASSOCIATE-RJ "rejected-permanent" (e.g. called AE title not recognised, PS3.8 9.3.4) →
  permanent: a configuration problem that retrying cannot fix;
- association accepted but no presentation context for an object's SOP class / transfer syntax →
  permanent for that object ("SOP Class not supported" by the peer).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, evt
from pynetdicom.association import Association

from dicom_node.constants import VERIFICATION
from dicom_node.contracts import ResultFile
from dicom_node.delivery.destination import HealthResult
from dicom_node.delivery.outcome import (
    InstanceOutcome,
    OutcomeKind,
    SendResult,
    all_failed,
    classify_dimse_status,
    describe_dimse_status,
)
from dicom_node.delivery.selection import presentation_contexts
from dicom_node.errors import ConfigError
from dicom_node.settings import DicomDestinationSettings, TLSSettings

logger = logging.getLogger(__name__)


def client_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """TLS client context for DICOM TLS (PS3.15 B.1/B.9): verify the peer, optional client cert."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(tls.ca_certificates) if tls.ca_certificates else None,
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.certificate and tls.private_key:
            context.load_cert_chain(str(tls.certificate), str(tls.private_key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"destination TLS files unusable: {exc}") from exc
    return context


def send_cstore(
    files: Sequence[ResultFile], dest: DicomDestinationSettings, *, calling_ae_title: str
) -> SendResult:
    """Send ``files`` to ``dest`` over one association; one outcome per file, in order."""
    uids = [f.sop_instance_uid for f in files]
    if not files:
        return SendResult(())
    where = f"{dest.ae_title}@{dest.host}:{dest.port}"

    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = dest.timeout_s
    ae.dimse_timeout = dest.timeout_s
    ae.network_timeout = dest.timeout_s
    ae.connection_timeout = dest.timeout_s
    for sop_class, syntaxes in presentation_contexts(files):
        ae.add_requested_context(sop_class, syntaxes)

    rejection: dict[str, Any] = {}

    def _on_acse_recv(event: Any) -> None:
        primitive = event.primitive
        result = getattr(primitive, "result", None)
        if result in (0x01, 0x02):
            rejection["result"] = result
            rejection["text"] = f"{primitive.result_str}, {primitive.source_str}: {primitive.reason_str}"

    tls_args = None
    if dest.tls.enabled:
        tls_args = (client_ssl_context(dest.tls), dest.host)
    started = time.monotonic()
    try:
        assoc = ae.associate(
            dest.host,
            dest.port,
            ae_title=dest.ae_title,
            tls_args=tls_args,
            evt_handlers=[(evt.EVT_ACSE_RECV, _on_acse_recv)],
        )
    except (OSError, ssl.SSLError) as exc:  # DNS failure, TLS handshake failure before ACSE
        return all_failed(uids, OutcomeKind.TRANSIENT, f"cannot connect to {where}: {exc}")

    try:
        if not assoc.is_established:
            return _association_failed(assoc, uids, where, rejection)
        outcomes = _send_all(assoc, files, where)
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
    result = SendResult(tuple(outcomes))
    logger.info(
        "C-STORE to %s: %d delivered, %d failed in %.2f s",
        where,
        len(result.delivered),
        len(result.failed),
        time.monotonic() - started,
        extra={"stage": "delivery", "destination": dest.ae_title},
    )
    return result


def _association_failed(
    assoc: Association, uids: list[str], where: str, rejection: dict[str, Any]
) -> SendResult:
    if assoc.is_rejected:
        text = rejection.get("text", "association rejected")
        if rejection.get("result") == 0x01:
            return all_failed(uids, OutcomeKind.PERMANENT, f"{where} rejected the association: {text}")
        return all_failed(uids, OutcomeKind.TRANSIENT, f"{where} rejected the association: {text}")
    if assoc.is_aborted and assoc.rejected_contexts and not assoc.accepted_contexts:
        # PS3.8 9.3.3.2: every proposed presentation context refused: the peer supports none
        # of these SOP classes / transfer syntaxes.
        refused = sorted({str(cx.abstract_syntax) for cx in assoc.rejected_contexts})
        return all_failed(
            uids, OutcomeKind.PERMANENT, f"{where} accepted no presentation context (SOP classes {refused})"
        )
    if assoc.is_aborted:
        return all_failed(uids, OutcomeKind.TRANSIENT, f"{where} aborted the association")
    return all_failed(uids, OutcomeKind.TRANSIENT, f"cannot associate with {where} (refused or timed out)")


def _send_all(assoc: Association, files: Sequence[ResultFile], where: str) -> list[InstanceOutcome]:
    outcomes: list[InstanceOutcome] = []
    for f in files:
        uid = f.sop_instance_uid
        if not assoc.is_established:
            outcomes.append(InstanceOutcome(uid, OutcomeKind.TRANSIENT, f"association with {where} lost"))
            continue
        try:
            dataset = dcmread(Path(f.path))
        except (OSError, InvalidDicomError) as exc:
            outcomes.append(InstanceOutcome(uid, OutcomeKind.PERMANENT, f"result file unreadable: {exc}"))
            continue
        if dataset.get("SOPInstanceUID") != uid or dataset.get("SOPClassUID") != f.sop_class_uid:
            outcomes.append(
                InstanceOutcome(uid, OutcomeKind.PERMANENT, "result file does not match its bundle entry")
            )
            continue
        try:
            response = assoc.send_c_store(dataset)
        except ValueError as exc:
            # pynetdicom refuses before sending: no accepted presentation context for this SOP
            # class / transfer syntax (the peer does not support it), or an invalid dataset.
            if "presentation context" in str(exc):
                detail = f"Refused: SOP Class not supported by peer ({exc})"
            else:
                detail = f"cannot be sent as it is: {exc}"
            outcomes.append(InstanceOutcome(uid, OutcomeKind.PERMANENT, detail))
            continue
        except (OSError, RuntimeError) as exc:
            outcomes.append(InstanceOutcome(uid, OutcomeKind.TRANSIENT, f"sending failed: {exc}"))
            continue
        status = int(response.Status) if response is not None and "Status" in response else None
        kind = classify_dimse_status(status)
        detail = describe_dimse_status(status)
        comment = response.get("ErrorComment") if response is not None else None
        if comment:
            detail += f" ({comment})"
        outcomes.append(InstanceOutcome(uid, kind, detail, status))
        if kind != OutcomeKind.DELIVERED:
            logger.warning(
                "C-STORE of %s to %s: %s",
                uid,
                where,
                detail,
                extra={"stage": "delivery", "sop_instance_uid": uid},
            )
    return outcomes


def echo_destination(dest: DicomDestinationSettings, *, calling_ae_title: str) -> HealthResult:
    """Verification SOP Class (PS3.4 A.4): associate with ``dest`` and send one C-ECHO.

    Never raises for a peer problem: refused, rejected (with the A-ASSOCIATE-RJ reason, e.g. the
    called AE title unknown), aborted or a non-zero status all come back as ``ok=False``.
    """
    where = f"{dest.ae_title}@{dest.host}:{dest.port}"
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = dest.timeout_s
    ae.add_requested_context(VERIFICATION)
    rejection: dict[str, Any] = {}

    def _on_acse_recv(event: Any) -> None:
        primitive = event.primitive
        if getattr(primitive, "result", None) in (0x01, 0x02):
            rejection["text"] = f"{primitive.result_str}, {primitive.source_str}: {primitive.reason_str}"

    tls_args = (client_ssl_context(dest.tls), dest.host) if dest.tls.enabled else None
    started = time.monotonic()
    try:
        assoc = ae.associate(
            dest.host,
            dest.port,
            ae_title=dest.ae_title,
            tls_args=tls_args,
            evt_handlers=[(evt.EVT_ACSE_RECV, _on_acse_recv)],
        )
    except (OSError, ssl.SSLError) as exc:
        return HealthResult(False, f"cannot connect to {where}: {exc}", time.monotonic() - started)
    try:
        if not assoc.is_established:
            if assoc.is_rejected:
                detail = f"{where} rejected the association: {rejection.get('text', 'rejected')}"
            elif assoc.is_aborted:
                detail = f"{where} aborted the association"
            else:
                detail = f"cannot associate with {where} (refused or timed out)"
            return HealthResult(False, detail, time.monotonic() - started)
        response = assoc.send_c_echo()
        status = int(response.Status) if response is not None and "Status" in response else None
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
    elapsed = time.monotonic() - started
    if status == 0x0000:
        return HealthResult(True, f"C-ECHO to {where}: Success", elapsed, status)
    shown = f"0x{status:04X}" if status is not None else "no response"
    return HealthResult(False, f"C-ECHO to {where}: {shown}", elapsed, status)
