"""The ingest core shared by every receive path (C-STORE SCP, STOW-RS): validate, stage, describe.

:meth:`InstanceReceiver.receive` takes one data set exactly as it came off the wire, checks it
(:func:`~dicom_node.ingest.validation.inspect_dataset`), registers its patient identifiers with the
PHI log filter, writes it as a Part 10 file (our File Meta + the received bytes, never re-encoded)
through :class:`~dicom_node.ingest.staging.Staging`, and returns the
:class:`~dicom_node.contracts.InstanceStored` hand-off. Failures raise an
:class:`~dicom_node.errors.IngestError` whose ``status`` is the DIMSE status to answer (the STOW
path uses the same codes as FailureReason, PS3.18 Table 10.5.3-2).

The File Meta records who sent the object (PS3.10 Table 7.1-1): SendingApplicationEntityTitle =
calling AE, ReceivingApplicationEntityTitle = called AE, SendingPresentationAddress =
``dicom://<address>``; restart recovery reads them back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from dicom_node.contracts import InstanceStored
from dicom_node.errors import CannotUnderstand
from dicom_node.ingest.classify import expected_series_instances, is_routable, phi_values
from dicom_node.ingest.staging import Staging
from dicom_node.ingest.validation import STATUS_GARBAGE, ImageLimits, InspectedInstance, inspect_dataset
from dicom_node.phi import remember_identifiers

logger = logging.getLogger(__name__)

_PREAMBLE = b"\x00" * 128 + b"DICM"
IMPLEMENTATION_VERSION_NAME = "CTAINODE_010"


@dataclass(frozen=True)
class Origin:
    """Who sent an instance, as the receive path knows it (no patient data)."""

    calling_ae_title: str
    called_ae_title: str
    peer_address: str
    association_id: str


def presentation_address(peer_address: str) -> str:
    """``dicom://host`` form for (0002,0027) Sending Presentation Address (VR UR)."""
    if not peer_address:
        return ""
    return f"dicom://[{peer_address}]" if ":" in peer_address else f"dicom://{peer_address}"


def file_meta_bytes(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    origin: Origin,
) -> bytes:
    """Preamble, "DICM" and the File Meta group (PS3.10 7.1) for a staged file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if origin.called_ae_title:
        meta.SourceApplicationEntityTitle = origin.called_ae_title[:16]
        meta.ReceivingApplicationEntityTitle = origin.called_ae_title[:16]
    if origin.calling_ae_title:
        meta.SendingApplicationEntityTitle = origin.calling_ae_title[:16]
    address = presentation_address(origin.peer_address)
    if address:
        meta.SendingPresentationAddress = address
    buffer = DicomBytesIO()
    buffer.write(_PREAMBLE)
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


def _not_file_meta(tag: object, vr: object, length: object) -> bool:
    return int(tag) >> 16 != 0x0002  # type: ignore[call-overload]


def split_part10(data: bytes | memoryview) -> tuple[FileMetaDataset, int]:
    """File Meta of a Part 10 file in memory and the offset where its data set starts."""
    view = memoryview(data)
    if len(view) < 132 or bytes(view[128:132]) != b"DICM":
        raise CannotUnderstand("not a DICOM Part 10 file (no DICM prefix)", status=STATUS_GARBAGE)
    stream = BytesIO(view)
    stream.seek(132)
    try:
        meta_ds = read_dataset(stream, False, True, stop_when=_not_file_meta)
    except Exception as exc:
        raise CannotUnderstand(
            f"File Meta does not parse: {type(exc).__name__}", status=STATUS_GARBAGE
        ) from exc
    offset = stream.tell()
    meta = FileMetaDataset(meta_ds)
    for keyword in ("TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"):
        if keyword not in meta:
            raise CannotUnderstand(f"File Meta without {keyword}", status=STATUS_GARBAGE)
    return meta, offset


class InstanceReceiver:
    """Validate → register PHI → stage → describe; one instance per call, thread-safe."""

    def __init__(
        self,
        staging: Staging,
        *,
        limits: ImageLimits,
        uid_root: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.staging = staging
        self.limits = limits
        self.uid_root = uid_root
        self._clock = clock
        self._last_phi: tuple[str, ...] = ()

    def inspect(
        self,
        data: bytes | memoryview,
        *,
        transfer_syntax_uid: str,
        sop_class_uid: str,
        sop_instance_uid: str | None,
    ) -> InspectedInstance:
        return inspect_dataset(
            data,
            transfer_syntax_uid=transfer_syntax_uid,
            negotiated_sop_class_uid=sop_class_uid,
            affected_sop_instance_uid=sop_instance_uid,
            limits=self.limits,
        )

    def receive(
        self,
        data: bytes | memoryview,
        *,
        transfer_syntax_uid: str,
        sop_class_uid: str,
        sop_instance_uid: str | None,
        origin: Origin,
    ) -> InstanceStored:
        """Stage one data set (no File Meta, as received); raise IngestError with the status.

        ``sop_class_uid`` is the negotiated abstract syntax (C-STORE) or the File Meta's Media
        Storage SOP Class (STOW); ``sop_instance_uid`` the command's Affected SOP Instance UID.
        """
        inspected = self.inspect(
            data,
            transfer_syntax_uid=transfer_syntax_uid,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
        )
        self._remember_phi(inspected)
        head = file_meta_bytes(
            sop_class_uid=inspected.sop_class_uid,
            sop_instance_uid=inspected.sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            origin=origin,
        )
        path, duplicate = self.staging.store_bytes(
            (head, data),
            study_instance_uid=inspected.study_instance_uid,
            series_instance_uid=inspected.series_instance_uid,
            sop_instance_uid=inspected.sop_instance_uid,
        )
        return InstanceStored(
            study_instance_uid=inspected.study_instance_uid,
            series_instance_uid=inspected.series_instance_uid,
            sop_instance_uid=inspected.sop_instance_uid,
            sop_class_uid=inspected.sop_class_uid,
            path=str(path),
            calling_ae_title=origin.calling_ae_title,
            called_ae_title=origin.called_ae_title,
            peer_address=origin.peer_address,
            association_id=origin.association_id,
            received_at=self._clock(),
            duplicate=duplicate,
            routable=is_routable(
                sop_class_uid=inspected.sop_class_uid,
                series_instance_uid=inspected.series_instance_uid,
                sop_instance_uid=inspected.sop_instance_uid,
                uid_root=self.uid_root,
            ),
            expected_series_instances=expected_series_instances(inspected.header),
        )

    def receive_part10(self, data: bytes | memoryview, *, origin: Origin) -> InstanceStored:
        """Stage a whole Part 10 file (e.g. one part of a STOW-RS request); the File Meta is
        replaced by ours, the data set bytes are kept as sent."""
        meta, offset = split_part10(data)
        return self.receive(
            memoryview(data)[offset:],
            transfer_syntax_uid=str(meta.TransferSyntaxUID),
            sop_class_uid=str(meta.MediaStorageSOPClassUID).rstrip("\x00 "),
            sop_instance_uid=str(meta.MediaStorageSOPInstanceUID).rstrip("\x00 "),
            origin=origin,
        )

    def _remember_phi(self, inspected: InspectedInstance) -> None:
        # A series repeats the same identifiers in every slice: skip the registry when unchanged.
        values = tuple(phi_values(inspected.header))
        if values and values != self._last_phi:
            remember_identifiers(values)
            self._last_phi = values
