"""STOW-RS delivery to a DICOMweb server, and QIDO-RS query-back to confirm it.

Error mapping (same outcome classes as C-STORE, :mod:`dicom_node.delivery.outcome`):

- connection refused/reset, timeouts, HTTP 5xx, 408, 429 → transient for every instance;
- other HTTP 4xx without per-instance detail (400, 401, 403, 404, 413, 415...) → permanent;
- a PS3.18 store response (200, 202 "some stored", 409 "none stored", 10.5.3): each instance
  in ``FailedSOPSequence`` by its ``FailureReason`` (a C-STORE status code), each in
  ``ReferencedSOPSequence`` delivered (with its ``WarningReason`` recorded).

The bearer token comes from the environment variable named by ``DicomwebDestinationSettings.token_env``;
it is put in the request header only, never logged, never stored.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from dicomweb_client import DICOMwebClient
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from dicom_node.contracts import ResultFile
from dicom_node.delivery.outcome import (
    InstanceOutcome,
    OutcomeKind,
    SendResult,
    all_failed,
    classify_dimse_status,
    classify_http_status,
    describe_dimse_status,
)
from dicom_node.errors import ConfigError
from dicom_node.settings import DicomwebDestinationSettings

logger = logging.getLogger(__name__)

SOP_INSTANCE_UID_TAG = "00080018"


def bearer_token(dest: DicomwebDestinationSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The token from ``$<dest.token_env>`` in ``environ`` (the worker passes the environment its
    entry point captured; default this process's); None when the destination needs none."""
    if not dest.token_env:
        return None
    token = (os.environ if environ is None else environ).get(dest.token_env)
    if not token:
        raise ConfigError(f"environment variable {dest.token_env} (token_env of a destination) is not set")
    return token


def dicomweb_client_for(
    dest: DicomwebDestinationSettings, environ: Mapping[str, str] | None = None
) -> DICOMwebClient:
    """A client for ``dest.url`` with its token, TLS files and timeout; its own retries off."""
    session = requests.Session()
    token = bearer_token(dest, environ)
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token}"
    if dest.tls.enabled:
        if dest.tls.ca_certificates:
            session.verify = str(dest.tls.ca_certificates)
        if dest.tls.certificate and dest.tls.private_key:
            session.cert = (str(dest.tls.certificate), str(dest.tls.private_key))
    client = DICOMwebClient(dest.url, session=session, timeout=dest.timeout_s)
    # Retries belong to the node's policy (backoff, dead letters), not to the HTTP client.
    client.set_http_retry_params(retry=False)
    return client


def send_stow(
    files: Sequence[ResultFile],
    dest: DicomwebDestinationSettings,
    *,
    study_instance_uid: str,
    client: DICOMwebClient | None = None,
) -> SendResult:
    """POST ``files`` in one STOW-RS request to ``{url}/studies/{study}``; one outcome per file."""
    if not files:
        return SendResult(())
    client = client or dicomweb_client_for(dest)
    outcomes: dict[str, InstanceOutcome] = {}
    datasets: list[Dataset] = []
    for f in files:
        try:
            ds = dcmread(Path(f.path))
        except (OSError, InvalidDicomError) as exc:
            outcomes[f.sop_instance_uid] = InstanceOutcome(
                f.sop_instance_uid, OutcomeKind.PERMANENT, f"result file unreadable: {exc}"
            )
            continue
        if ds.get("SOPInstanceUID") != f.sop_instance_uid:
            outcomes[f.sop_instance_uid] = InstanceOutcome(
                f.sop_instance_uid, OutcomeKind.PERMANENT, "result file does not match its bundle entry"
            )
            continue
        datasets.append(ds)
    sent = [str(ds.SOPInstanceUID) for ds in datasets]
    started = time.monotonic()
    if datasets:
        outcomes.update(_post(client, datasets, sent, study_instance_uid, dest.url))
    result = SendResult(tuple(outcomes[f.sop_instance_uid] for f in files))
    logger.info(
        "STOW-RS to %s: %d delivered, %d failed in %.2f s",
        dest.url,
        len(result.delivered),
        len(result.failed),
        time.monotonic() - started,
        extra={"stage": "delivery"},
    )
    return result


def _post(
    client: DICOMwebClient, datasets: list[Dataset], sent: list[str], study: str, url: str
) -> dict[str, InstanceOutcome]:
    try:
        response = client.store_instances(datasets, study_instance_uid=study)
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        body = _response_dataset(exc.response)
        if body is not None and ("FailedSOPSequence" in body or "ReferencedSOPSequence" in body):
            return _per_instance(body, sent, default=OutcomeKind.TRANSIENT)
        kind = classify_http_status(code) if code else OutcomeKind.TRANSIENT
        if kind == OutcomeKind.DELIVERED:  # raise_for_status only raises for >= 400
            kind = OutcomeKind.TRANSIENT
        return _same(sent, kind, f"HTTP {code} from {url}")
    except (requests.ConnectionError, requests.Timeout) as exc:
        return _same(sent, OutcomeKind.TRANSIENT, f"cannot reach {url}: {type(exc).__name__}")
    except requests.RequestException as exc:
        return _same(sent, OutcomeKind.TRANSIENT, f"request to {url} failed: {type(exc).__name__}")
    if response is None or ("ReferencedSOPSequence" not in response and "FailedSOPSequence" not in response):
        # 200 with no store response body: accepted as a whole; the QIDO query-back confirms it.
        return _same(sent, OutcomeKind.DELIVERED, "stored (no per-instance response)")
    return _per_instance(response, sent, default=OutcomeKind.TRANSIENT)


def _same(uids: list[str], kind: OutcomeKind, detail: str) -> dict[str, InstanceOutcome]:
    return {o.sop_instance_uid: o for o in all_failed(uids, kind, detail).outcomes}


def _per_instance(body: Dataset, sent: list[str], *, default: OutcomeKind) -> dict[str, InstanceOutcome]:
    """PS3.18 10.5.3.1 store response → one outcome per sent instance."""
    out: dict[str, InstanceOutcome] = {}
    for item in body.get("FailedSOPSequence", []):
        uid = str(item.get("ReferencedSOPInstanceUID", ""))
        reason = item.get("FailureReason")
        status = int(reason) if reason is not None else None
        kind = classify_dimse_status(status) if status is not None else OutcomeKind.PERMANENT
        if kind in (OutcomeKind.DELIVERED, OutcomeKind.WARNING):  # a "failure" with a success code
            kind = OutcomeKind.PERMANENT
        out[uid] = InstanceOutcome(uid, kind, f"STOW-RS failure: {describe_dimse_status(status)}", status)
    for item in body.get("ReferencedSOPSequence", []):
        uid = str(item.get("ReferencedSOPInstanceUID", ""))
        warning = item.get("WarningReason")
        if warning is not None:
            out[uid] = InstanceOutcome(
                uid, OutcomeKind.WARNING, describe_dimse_status(int(warning)), int(warning)
            )
        else:
            out[uid] = InstanceOutcome(uid, OutcomeKind.DELIVERED, "stored", 0)
    for uid in sent:
        if uid not in out:
            out[uid] = InstanceOutcome(uid, default, "not acknowledged in the STOW-RS response")
    return {uid: out[uid] for uid in sent}


def _response_dataset(response: requests.Response | None) -> Dataset | None:
    if response is None or not response.content:
        return None
    content_type = response.headers.get("Content-Type") or ""
    # Orthanc's DICOMweb plugin (1.7) sends its 409 store response without a Content-Type:
    # try JSON unless the server said it is something else.
    if content_type and "json" not in content_type:
        return None
    try:
        payload: Any = response.json()
        if isinstance(payload, list):  # some servers wrap the dataset in a list
            payload = payload[0] if payload else {}
        return Dataset.from_json(payload)
    except (ValueError, TypeError, KeyError):
        return None


def confirm_qido(
    files: Sequence[ResultFile],
    dest: DicomwebDestinationSettings,
    *,
    study_instance_uid: str,
    client: DICOMwebClient | None = None,
) -> tuple[bool, str]:
    """QIDO-RS query-back: does the server list every SOP Instance we sent? → (confirmed, detail).

    Queries ``/studies/{study}/series/{series}/instances`` once per series of the files (PS3.18
    10.6). Any error is reported as not confirmed (with the reason), never raised: confirmation
    is evidence for the audit trail, the store response already decided delivery.
    """
    if not files:
        return True, "nothing to confirm"
    client = client or dicomweb_client_for(dest)
    wanted: dict[str, set[str]] = {}
    for f in files:
        wanted.setdefault(f.series_instance_uid, set()).add(f.sop_instance_uid)
    found: set[str] = set()
    try:
        for series_uid, uids in wanted.items():
            # No get_remaining: a server that ignores ``offset`` would make it page forever.
            found |= _qido_sop_uids(client, study_instance_uid, series_uid, None)
            # A server may cap its answer (its own paging limit): ask for any still missing
            # by SOP Instance UID, one by one (a handful of result objects per job).
            for uid in sorted(uids - found):
                found |= _qido_sop_uids(client, study_instance_uid, series_uid, uid)
    except (requests.RequestException, ValueError) as exc:
        return False, f"QIDO-RS query-back failed: {type(exc).__name__}: {exc}"
    expected = set().union(*wanted.values())
    missing = sorted(expected - found)
    if missing:
        return False, f"QIDO-RS: {len(missing)} of {len(expected)} instances not found: {missing[:5]}"
    return True, f"QIDO-RS: all {len(expected)} instances found"


def _qido_sop_uids(client: DICOMwebClient, study: str, series: str, sop_instance_uid: str | None) -> set[str]:
    rows = client.search_for_instances(
        study_instance_uid=study,
        series_instance_uid=series,
        fields=["SOPInstanceUID"],
        search_filters={"SOPInstanceUID": sop_instance_uid} if sop_instance_uid else None,
    )
    found: set[str] = set()
    for row in rows:
        found.update(str(v) for v in row.get(SOP_INSTANCE_UID_TAG, {}).get("Value", []))
    return found
