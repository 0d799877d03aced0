"""Destination kind ``dicom``: a DICOM peer (PACS, archive, workstation) over DIMSE.

Send by C-STORE (:mod:`dicom_node.delivery.cstore`), confirm by a C-FIND query-back
(:mod:`dicom_node.delivery.cfind`), health by C-ECHO (Verification SOP Class, PS3.4 A.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dicom_node.contracts import ResultFile
from dicom_node.delivery.cfind import confirm_cfind
from dicom_node.delivery.cstore import echo_destination, send_cstore
from dicom_node.delivery.destination import HealthResult
from dicom_node.delivery.outcome import SendResult
from dicom_node.errors import ConfigError
from dicom_node.settings import DestinationBase, DicomDestinationSettings


class DicomPeer:
    def __init__(
        self,
        name: str,
        settings: DestinationBase,
        *,
        calling_ae_title: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(settings, DicomDestinationSettings):
            raise ConfigError(f"destination {name!r}: {type(settings).__name__} is not a DICOM peer")
        self.name = name
        self.settings = settings
        self.calling_ae_title = calling_ae_title

    def send(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> SendResult:
        if not files:
            return SendResult(())
        return send_cstore(files, self.settings, calling_ae_title=self.calling_ae_title)

    def confirm(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> tuple[bool, str]:
        return confirm_cfind(
            files,
            self.settings,
            calling_ae_title=self.calling_ae_title,
            study_instance_uid=study_instance_uid,
        )

    def health(self) -> HealthResult:
        return echo_destination(self.settings, calling_ae_title=self.calling_ae_title)
