"""Destination kind ``orthanc``: an Orthanc server through its own REST API.

Why a kind of its own rather than the ``dicomweb`` kind pointed at Orthanc's DICOMweb plugin:
withdrawing superseded results needs Orthanc's REST API anyway (Orthanc stores a KOS rejection
note like any object and hides nothing: IHE IOCM is not implemented there), and one REST root
with one set of HTTP credentials (the ``ctnode-worker`` user of deploy/orthanc) then does all four
parts, without the DICOMweb plugin:

=========  ===================================================================================
send       ``POST /instances`` with each Part 10 file: "Success" or "AlreadyStored" (delivered)
confirm    ``POST /tools/lookup`` with each SOP Instance UID: found as an Instance
health     ``GET /system``
withdraw   ``POST /tools/lookup`` then ``DELETE /instances/{id}``; an instance not found is gone
=========  ===================================================================================

Errors: connection refused/reset and timeouts, HTTP 5xx, 408 and 429 are transient; other 4xx
(a malformed file is 400, bad credentials 401) permanent. Credentials come from the environment
variables the settings name (``username_env`` / ``password_env``), read from the environment the
worker's entry point captured; they are put in the request only, never logged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from dicom_node.contracts import ResultFile
from dicom_node.delivery.destination import HealthResult
from dicom_node.delivery.outcome import (
    InstanceOutcome,
    OutcomeKind,
    SendResult,
    WithdrawResult,
    classify_http_status,
)
from dicom_node.errors import ConfigError
from dicom_node.settings import DestinationBase, OrthancDestinationSettings


class OrthancServer:
    needs_rejection_note = False  # Orthanc deletes; a rejection note there would hide nothing

    def __init__(
        self,
        name: str,
        settings: DestinationBase,
        *,
        calling_ae_title: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(settings, OrthancDestinationSettings):
            raise ConfigError(f"destination {name!r}: {type(settings).__name__} is not an Orthanc server")
        self.name = name
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self._environ = os.environ if environ is None else environ
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            user = self._environ.get(self.settings.username_env, "")
            password = self._environ.get(self.settings.password_env, "")
            if user:
                session.auth = (user, password)
            tls = self.settings.tls
            if tls.enabled:
                if tls.ca_certificates:
                    session.verify = str(tls.ca_certificates)
                if tls.certificate and tls.private_key:
                    session.cert = (str(tls.certificate), str(tls.private_key))
            self._session = session
        return self._session

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.base}{path}", timeout=self.settings.timeout_s, **kwargs)

    # -- send / confirm / health ----------------------------------------------------------------

    def send(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> SendResult:
        outcomes = []
        for f in files:
            outcomes.append(self._upload(f))
            if outcomes[-1].kind == OutcomeKind.TRANSIENT:
                # the server is unreachable or overloaded: the rest would fail the same way
                rest = [g.sop_instance_uid for g in files[len(outcomes) :]]
                outcomes += [
                    InstanceOutcome(uid, OutcomeKind.TRANSIENT, "not tried: " + outcomes[-1].detail)
                    for uid in rest
                ]
                break
        return SendResult(tuple(outcomes))

    def _upload(self, f: ResultFile) -> InstanceOutcome:
        where = f"POST {self.base}/instances"
        try:
            body = Path(f.path).read_bytes()
        except OSError as exc:
            return InstanceOutcome(
                f.sop_instance_uid, OutcomeKind.PERMANENT, f"cannot read {f.path}: {exc.strerror}"
            )
        try:
            response = self._request(
                "POST", "/instances", data=body, headers={"Content-Type": "application/dicom"}
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            return InstanceOutcome(
                f.sop_instance_uid, OutcomeKind.TRANSIENT, f"{where}: {type(exc).__name__}"
            )
        kind = classify_http_status(response.status_code)
        if kind != OutcomeKind.DELIVERED:
            return InstanceOutcome(
                f.sop_instance_uid, kind, f"{where}: HTTP {response.status_code}", response.status_code
            )
        status = _json(response).get("Status", "")
        if status == "AlreadyStored":
            return InstanceOutcome(f.sop_instance_uid, OutcomeKind.WARNING, "Orthanc: AlreadyStored", 200)
        return InstanceOutcome(
            f.sop_instance_uid, OutcomeKind.DELIVERED, f"Orthanc: {status or 'stored'}", 200
        )

    def _lookup(self, sop_instance_uid: str) -> str | None:
        """Orthanc's ID of the instance with this SOP Instance UID, or None. Raises requests errors."""
        response = self._request("POST", "/tools/lookup", data=sop_instance_uid)
        response.raise_for_status()
        for match in response.json():
            if match.get("Type") == "Instance":
                return str(match["ID"])
        return None

    def confirm(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> tuple[bool, str]:
        try:
            missing = [f.sop_instance_uid for f in files if self._lookup(f.sop_instance_uid) is None]
        except (requests.RequestException, ValueError) as exc:
            return False, f"Orthanc lookup at {self.base}: {type(exc).__name__}"
        if missing:
            return False, f"Orthanc lookup: {len(missing)} of {len(files)} instances not found: {missing[:5]}"
        return True, f"Orthanc lookup: all {len(files)} instances found"

    def health(self) -> HealthResult:
        started = time.monotonic()
        try:
            response = self._request("GET", "/system")
        except requests.RequestException as exc:
            return HealthResult(
                False, f"GET {self.base}/system: {type(exc).__name__}", time.monotonic() - started
            )
        elapsed = time.monotonic() - started
        if response.status_code != 200:
            return HealthResult(
                False, f"GET {self.base}/system: HTTP {response.status_code}", elapsed, response.status_code
            )
        version = _json(response).get("Version", "?")
        return HealthResult(True, f"Orthanc {version} at {self.base}: OK", elapsed, 200)

    # -- withdraw (dicom_node.delivery.destination.Withdraws) ------------------------------------

    def withdraw(
        self, files: Sequence[ResultFile], *, study_instance_uid: str, rejection_note: ResultFile | None
    ) -> WithdrawResult:
        """Delete ``files`` from Orthanc (instances already gone count as withdrawn)."""
        deleted = gone = 0
        for f in files:
            try:
                orthanc_id = self._lookup(f.sop_instance_uid)
                if orthanc_id is None:
                    gone += 1
                    continue
                response = self._request("DELETE", f"/instances/{orthanc_id}")
            except (requests.ConnectionError, requests.Timeout) as exc:
                return WithdrawResult(False, "delete", f"Orthanc at {self.base}: {type(exc).__name__}", True)
            except (requests.RequestException, ValueError) as exc:
                code = getattr(getattr(exc, "response", None), "status_code", 0) or 0
                transient = classify_http_status(code) == OutcomeKind.TRANSIENT if code else False
                return WithdrawResult(
                    False, "delete", f"Orthanc lookup: {type(exc).__name__} {code or ''}", transient
                )
            if response.status_code == 404:
                gone += 1
                continue
            if response.status_code != 200:
                transient = classify_http_status(response.status_code) == OutcomeKind.TRANSIENT
                return WithdrawResult(
                    False, "delete", f"DELETE /instances/{orthanc_id}: HTTP {response.status_code}", transient
                )
            deleted += 1
        return WithdrawResult(
            True, "delete", f"deleted {deleted} instance(s) from Orthanc ({gone} already gone)"
        )


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
