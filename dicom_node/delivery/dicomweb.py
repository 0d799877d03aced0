"""Destination kind ``dicomweb``: a DICOMweb server (PS3.18).

Send by STOW-RS, confirm by a QIDO-RS query-back (:mod:`dicom_node.delivery.stow`), health by a
QIDO-RS study search limited to one answer (the DICOMweb counterpart of a C-ECHO). One HTTP
client (session, token, TLS files) per destination object.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import requests
from dicomweb_client import DICOMwebClient

from dicom_node.contracts import ResultFile
from dicom_node.delivery.destination import HealthResult
from dicom_node.delivery.outcome import SendResult
from dicom_node.delivery.stow import confirm_qido, dicomweb_client_for, send_stow
from dicom_node.errors import ConfigError
from dicom_node.settings import DestinationBase, DicomwebDestinationSettings


class DicomwebServer:
    def __init__(
        self,
        name: str,
        settings: DestinationBase,
        *,
        calling_ae_title: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(settings, DicomwebDestinationSettings):
            raise ConfigError(f"destination {name!r}: {type(settings).__name__} is not a DICOMweb server")
        self.name = name
        self.settings = settings
        self._environ = environ
        self._client: DICOMwebClient | None = None

    @property
    def client(self) -> DICOMwebClient:
        if self._client is None:
            self._client = dicomweb_client_for(self.settings, self._environ)
        return self._client

    def send(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> SendResult:
        if not files:
            return SendResult(())
        return send_stow(files, self.settings, study_instance_uid=study_instance_uid, client=self.client)

    def confirm(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> tuple[bool, str]:
        return confirm_qido(files, self.settings, study_instance_uid=study_instance_uid, client=self.client)

    def health(self) -> HealthResult:
        where = self.settings.url
        started = time.monotonic()
        try:
            self.client.search_for_studies(limit=1)
        except ConfigError as exc:  # e.g. the token's environment variable is not set
            return HealthResult(False, str(exc), time.monotonic() - started)
        except (requests.RequestException, ValueError) as exc:
            code = getattr(getattr(exc, "response", None), "status_code", None)
            return HealthResult(
                False, f"QIDO-RS to {where}: {type(exc).__name__}: {exc}", time.monotonic() - started, code
            )
        return HealthResult(True, f"QIDO-RS to {where}: OK", time.monotonic() - started, 200)
