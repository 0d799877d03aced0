"""The ingest core: validate → register PHI → stage → InstanceStored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGLSLossless

from dicom_node.constants import CT_IMAGE_STORAGE, SEGMENTATION_STORAGE
from dicom_node.errors import CannotUnderstand, IngestError
from dicom_node.ingest.receive import InstanceReceiver, Origin
from dicom_node.ingest.staging import Staging
from dicom_node.ingest.validation import ImageLimits
from dicom_node.phi import redact
from tests.unit.dicom_node.ingest.conftest import dataset_bytes

ORIGIN = Origin(
    calling_ae_title="STORESCU", called_ae_title="CTAINODE", peer_address="127.0.0.1", association_id="x1"
)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver(tmp_path: Path) -> InstanceReceiver:
    return InstanceReceiver(
        Staging(tmp_path / "staging", min_free_bytes=0),
        limits=ImageLimits(),
        uid_root="1.2.826.0.1.3680043.10.999.",
        clock=lambda: NOW,
    )


def receive(receiver: InstanceReceiver, path: Path, *, sop_class: str = CT_IMAGE_STORAGE):  # type: ignore[no-untyped-def]
    ts, data = dataset_bytes(path)
    sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    return receiver.receive(
        data, transfer_syntax_uid=ts, sop_class_uid=sop_class, sop_instance_uid=sop, origin=ORIGIN
    )


@pytest.mark.parametrize("ts", [None, DeflatedExplicitVRLittleEndian, JPEGLSLossless])
def test_receive_stages_the_bytes_as_sent(
    receiver: InstanceReceiver, ct_file: Callable[..., Path], ts: str | None
) -> None:
    source = ct_file(ts) if ts else ct_file()
    stored = receive(receiver, source)
    reference = dcmread(source)
    assert stored.path.endswith(
        f"{reference.StudyInstanceUID}/{reference.SeriesInstanceUID}/{reference.SOPInstanceUID}.dcm"
    )
    staged = dcmread(stored.path)
    assert staged.file_meta.TransferSyntaxUID == reference.file_meta.TransferSyntaxUID
    # the data set part is byte-identical to what the sender encoded
    assert dataset_bytes(Path(stored.path))[1] == dataset_bytes(source)[1]
    assert (staged.pixel_array == reference.pixel_array).all()
    assert stored.calling_ae_title == "STORESCU" and stored.association_id == "x1"
    assert stored.received_at == NOW
    assert stored.routable and not stored.duplicate
    assert stored.sop_class_uid == CT_IMAGE_STORAGE


def test_second_receive_is_duplicate(receiver: InstanceReceiver, ct_file: Callable[..., Path]) -> None:
    source = ct_file()
    first = receive(receiver, source)
    mtime = Path(first.path).stat().st_mtime_ns
    second = receive(receiver, source)
    assert second.duplicate and second.path == first.path
    assert Path(first.path).stat().st_mtime_ns == mtime


def test_expected_count_travels_with_the_instance(
    receiver: InstanceReceiver, ct_file: Callable[..., Path]
) -> None:
    stored = receive(receiver, ct_file(images_in_acquisition=True))
    assert stored.expected_series_instances == 1


def test_patient_identifiers_are_registered_for_the_log_filter(
    receiver: InstanceReceiver, ct_file: Callable[..., Path]
) -> None:
    source = ct_file(patient_name="ZEBRAFISH^QUENTIN", patient_id="PID-31337", accession_number="ACC-424242")
    receive(receiver, source)
    text = redact("name ZEBRAFISH^QUENTIN id PID-31337 acc ACC-424242 family ZEBRAFISH")
    for value in ("ZEBRAFISH", "QUENTIN", "PID-31337", "ACC-424242"):
        assert value not in text
    assert text.count("[PHI]") >= 4


def test_derived_object_is_stored_but_not_routable(
    receiver: InstanceReceiver, ct_file: Callable[..., Path]
) -> None:
    source = ct_file()
    ds = dcmread(source)
    ds.SOPClassUID = SEGMENTATION_STORAGE  # header only: this test is about routing, not the SEG IOD
    ds.file_meta.MediaStorageSOPClassUID = SEGMENTATION_STORAGE
    ds.save_as(source, enforce_file_format=True)
    stored = receive(receiver, source, sop_class=SEGMENTATION_STORAGE)
    assert Path(stored.path).exists()
    assert not stored.routable


def test_failure_stages_nothing(receiver: InstanceReceiver, ct_file: Callable[..., Path]) -> None:
    ts, data = dataset_bytes(ct_file())
    with pytest.raises(IngestError):
        receiver.receive(
            data[:-100],
            transfer_syntax_uid=ts,
            sop_class_uid=CT_IMAGE_STORAGE,
            sop_instance_uid=None,
            origin=ORIGIN,
        )
    assert [p for p in receiver.staging.root.rglob("*.dcm")] == []


def test_receive_part10_replaces_file_meta(receiver: InstanceReceiver, ct_file: Callable[..., Path]) -> None:
    source = ct_file()
    stored = receiver.receive_part10(source.read_bytes(), origin=ORIGIN)
    assert dcmread(stored.path).file_meta.SendingApplicationEntityTitle == "STORESCU"
    with pytest.raises(CannotUnderstand):
        receiver.receive_part10(b"\0" * 200, origin=ORIGIN)


@pytest.mark.parametrize(
    "origin",
    [
        ORIGIN,
        Origin(calling_ae_title="ODD", called_ae_title="NODE_A", peer_address="::1", association_id="y"),
        Origin(calling_ae_title="", called_ae_title="", peer_address="", association_id=""),
    ],
)
def test_file_meta_encoding_reads_back_with_pydicom(origin: Origin) -> None:
    from dicom_node.ingest.receive import file_meta_bytes, split_part10

    head = file_meta_bytes(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid="1.2.3.45",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        origin=origin,
    )
    assert head[:128] == b"\0" * 128 and head[128:132] == b"DICM"
    meta, offset = split_part10(head)  # pydicom's reader over our bytes
    assert offset == len(head)
    assert meta.FileMetaInformationGroupLength == len(head) - 132 - 12
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE
    assert meta.MediaStorageSOPInstanceUID == "1.2.3.45"
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert meta.ImplementationClassUID and meta.ImplementationVersionName == "CTAINODE_010"
    assert meta.get("SendingApplicationEntityTitle", "") == origin.calling_ae_title
    assert meta.get("ReceivingApplicationEntityTitle", "") == origin.called_ae_title
    if origin.peer_address:
        assert origin.peer_address in str(meta.SendingPresentationAddress)
    assert len(head) % 2 == 0


# -- data sets streamed to a file (C-STORE through pynetdicom's temporary file, spilled STOW parts)


@pytest.mark.parametrize("ts", [None, DeflatedExplicitVRLittleEndian, JPEGLSLossless])
def test_receive_file_stages_what_receive_would(
    tmp_path: Path, ct_file: Callable[..., Path], ts: str | None
) -> None:
    source = ct_file(ts) if ts else ct_file()
    by_bytes = InstanceReceiver(
        Staging(tmp_path / "a", min_free_bytes=0), limits=ImageLimits(), uid_root="1.2.9.", clock=lambda: NOW
    )
    by_file = InstanceReceiver(
        Staging(tmp_path / "b", min_free_bytes=0), limits=ImageLimits(), uid_root="1.2.9.", clock=lambda: NOW
    )
    expected = receive(by_bytes, source)
    stored = by_file.receive_part10_file(source, origin=ORIGIN)
    assert Path(stored.path).read_bytes() == Path(expected.path).read_bytes()
    assert stored.model_dump(exclude={"path"}) == expected.model_dump(exclude={"path"})
    assert source.exists()  # the caller's file is left to its owner
    assert list((tmp_path / "b" / ".incoming").iterdir()) == []


def test_receive_file_refusals_leave_nothing_behind(
    receiver: InstanceReceiver, ct_file: Callable[..., Path], tmp_path: Path
) -> None:
    source = ct_file()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(source.read_bytes()[:-100])
    with pytest.raises(CannotUnderstand) as info:
        receiver.receive_part10_file(truncated, origin=ORIGIN)
    assert info.value.status == 0xC001
    assert info.value.__traceback__ is not None
    small = InstanceReceiver(receiver.staging, limits=ImageLimits(max_instance_bytes=1000), uid_root="1.2.9.")
    with pytest.raises(IngestError) as too_big:
        small.receive_part10_file(source, origin=ORIGIN)
    assert too_big.value.status == 0xA701
    assert list(receiver.staging.root.rglob("*.dcm")) == []
    assert list(receiver.staging.incoming.iterdir()) == []
    truncated.unlink()  # not held open by a leftover memory map
