"""Validation of received data sets: each malformed kind gets its own DIMSE status."""

from __future__ import annotations

import random
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from dicom_node.constants import (
    COMPREHENSIVE_3D_SR_STORAGE,
    CT_IMAGE_STORAGE,
    SEGMENTATION_STORAGE,
)
from dicom_node.errors import CannotUnderstand, IngestError, SOPClassMismatch, SOPClassNotSupported
from dicom_node.ingest.receive import split_part10
from dicom_node.ingest.validation import (
    STATUS_ABSURD_IMAGE,
    STATUS_BAD_UID,
    STATUS_GARBAGE,
    STATUS_NO_PIXEL_DATA,
    STATUS_TRUNCATED,
    ImageLimits,
    inspect_dataset,
    is_valid_uid,
    walk_structure,
)
from tests.unit.dicom_node.ingest.conftest import dataset_bytes

LIMITS = ImageLimits(max_rows=1024, max_columns=1024, max_frames=100)


def encode(ds: Dataset, transfer_syntax_uid: str = ExplicitVRLittleEndian) -> bytes:
    """A data set's encoding without File Meta, as it travels in a C-STORE."""
    ds.file_meta.TransferSyntaxUID = transfer_syntax_uid
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    _, offset = split_part10(data)
    return data[offset:]


def inspect(data: bytes, ts: str = ExplicitVRLittleEndian, **kwargs: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "transfer_syntax_uid": ts,
        "negotiated_sop_class_uid": CT_IMAGE_STORAGE,
        "affected_sop_instance_uid": None,
        "limits": LIMITS,
    }
    args.update(kwargs)
    return inspect_dataset(data, **args)  # type: ignore[arg-type]


def status_of(data: bytes, ts: str = ExplicitVRLittleEndian, **kwargs: object) -> int:
    with pytest.raises(IngestError) as info:
        inspect(data, ts, **kwargs)
    return info.value.status


@pytest.mark.parametrize(
    "ts",
    [
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        RLELossless,
        JPEGLSLossless,
        JPEG2000Lossless,
    ],
)
def test_valid_ct_passes_in_every_transfer_syntax(ct_file: Callable[..., Path], ts: str) -> None:
    path = ct_file(ts)
    file_ts, data = dataset_bytes(path)
    assert file_ts == ts
    inspected = inspect(data, ts)
    reference = dcmread(path, stop_before_pixels=True)
    assert inspected.sop_instance_uid == reference.SOPInstanceUID
    assert inspected.study_instance_uid == reference.StudyInstanceUID
    assert inspected.series_instance_uid == reference.SeriesInstanceUID
    assert inspected.header.Rows == 64
    assert "PixelData" not in inspected.header  # the header parse stops before pixels


@pytest.mark.parametrize(
    "ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless]
)
@pytest.mark.parametrize("cut", [1, 9, 500])
def test_truncated_data_is_refused_as_truncated(ct_file: Callable[..., Path], ts: str, cut: int) -> None:
    _, data = dataset_bytes(ct_file(ts))
    assert status_of(data[:-cut], ts) == STATUS_TRUNCATED


def test_truncated_inside_header_is_refused(ct_file: Callable[..., Path]) -> None:
    _, data = dataset_bytes(ct_file())
    # cut inside the header elements (well before Pixel Data)
    assert status_of(data[:301]) in (STATUS_TRUNCATED, STATUS_BAD_UID)
    with pytest.raises(CannotUnderstand):
        inspect(data[:301])


def test_truncated_deflate_stream_is_refused(ct_file: Callable[..., Path]) -> None:
    _, data = dataset_bytes(ct_file(DeflatedExplicitVRLittleEndian))
    assert status_of(data[: len(data) // 2], DeflatedExplicitVRLittleEndian) == STATUS_TRUNCATED


@pytest.mark.parametrize(
    "ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_garbage_bytes_are_refused(ts: str, seed: int) -> None:
    data = random.Random(seed).randbytes(4096)
    assert status_of(data, ts) in (STATUS_GARBAGE, STATUS_TRUNCATED)


def test_empty_data_set_is_garbage() -> None:
    assert status_of(b"") == STATUS_GARBAGE


def test_missing_pixel_data_is_refused(ct_file: Callable[..., Path]) -> None:
    ds = dcmread(ct_file())
    del ds.PixelData
    assert status_of(encode(ds)) == STATUS_NO_PIXEL_DATA


def test_sr_needs_no_pixel_data(ct_file: Callable[..., Path]) -> None:
    ds = dcmread(ct_file())
    del ds.PixelData
    ds.SOPClassUID = COMPREHENSIVE_3D_SR_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = COMPREHENSIVE_3D_SR_STORAGE
    inspected = inspect(encode(ds), negotiated_sop_class_uid=COMPREHENSIVE_3D_SR_STORAGE)
    assert inspected.sop_class_uid == COMPREHENSIVE_3D_SR_STORAGE


def test_sop_class_other_than_negotiated_is_a900(ct_file: Callable[..., Path]) -> None:
    _, data = dataset_bytes(ct_file())
    with pytest.raises(SOPClassMismatch) as info:
        inspect(data, negotiated_sop_class_uid=SEGMENTATION_STORAGE)
    assert info.value.status == 0xA900


def test_sop_instance_other_than_affected_is_a900(ct_file: Callable[..., Path]) -> None:
    _, data = dataset_bytes(ct_file())
    assert status_of(data, affected_sop_instance_uid="1.2.3.4") == 0xA900


def test_unsupported_sop_class_is_0122(ct_file: Callable[..., Path]) -> None:
    _, data = dataset_bytes(ct_file())
    with pytest.raises(SOPClassNotSupported):
        inspect(data, negotiated_sop_class_uid="1.2.840.10008.5.1.4.1.1.4")  # MR Image Storage


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("Rows", 0), ("Columns", 0), ("Rows", 5000), ("Columns", 5000), ("NumberOfFrames", 1000)],
)
def test_absurd_dimensions_are_refused(ct_file: Callable[..., Path], keyword: str, value: int) -> None:
    ds = dcmread(ct_file())
    setattr(ds, keyword, value)
    assert status_of(encode(ds)) == STATUS_ABSURD_IMAGE


def test_pixel_data_longer_than_image_is_refused(ct_file: Callable[..., Path]) -> None:
    ds = dcmread(ct_file())
    ds.PixelData = ds.PixelData + b"\0" * 64
    assert status_of(encode(ds)) == STATUS_ABSURD_IMAGE


def test_pixel_data_shorter_than_image_is_truncated(ct_file: Callable[..., Path]) -> None:
    ds = dcmread(ct_file())
    ds.PixelData = ds.PixelData[:-128]
    assert status_of(encode(ds)) == STATUS_TRUNCATED


def test_rows_claiming_more_than_sent_is_refused(ct_file: Callable[..., Path]) -> None:
    ds = dcmread(ct_file())
    ds.Rows = 128  # within limits, but the pixel data holds 64 rows
    assert status_of(encode(ds)) == STATUS_TRUNCATED


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
@pytest.mark.parametrize(
    "bad_uid",
    ["../../etc", "1.2.3/4", "", "1.2.3." + "4" * 70, "1.2.abc"],
)
def test_uids_that_are_not_uids_are_refused(ct_file: Callable[..., Path], bad_uid: str) -> None:
    ds = dcmread(ct_file())
    ds.StudyInstanceUID = bad_uid
    assert status_of(encode(ds)) == STATUS_BAD_UID


def test_nested_undefined_length_sequences_are_walked(ct_file: Callable[..., Path]) -> None:
    ds = dcmread(ct_file())
    inner = Dataset()
    inner.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    inner.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item = Dataset()
    item.ReferencedImageSequence = Sequence([inner])
    ds.SourceImageSequence = Sequence([item])
    # undefined lengths (PS3.5 7.5.1): the walker must follow the delimiters
    ds["SourceImageSequence"].is_undefined_length = True
    item["ReferencedImageSequence"].is_undefined_length = True
    data = encode(ds)
    assert b"\xfe\xff\xdd\xe0" in data  # pydicom wrote undefined-length sequences
    inspect(data)
    # cut inside the sequence: the walker notices what pydicom would silently accept
    seq_at = data.index(b"\x08\x00\x40\x11")  # (0008,1140) Referenced Image Sequence
    with pytest.raises(CannotUnderstand) as info:
        walk_structure(data[: seq_at + 20], implicit_vr=False)
    assert info.value.status == STATUS_TRUNCATED


def test_walk_finds_pixel_data_layout(ct_file: Callable[..., Path]) -> None:
    _, native = dataset_bytes(ct_file())
    layout = walk_structure(native, implicit_vr=False)
    assert layout is not None and layout.length == 64 * 64 * 2
    _, rle = dataset_bytes(ct_file(RLELossless))
    layout = walk_structure(rle, implicit_vr=False)
    assert layout is not None and layout.length is None and layout.item_count == 2  # BOT + 1 fragment


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", True),
        ("0", True),
        ("1.2." + "3" * 60, True),
        ("1.2." + "3" * 61, False),
        ("1..2", False),
        ("1.2.", False),
        ("..", False),
        ("1.2\x00", False),
        (None, False),
    ],
)
def test_is_valid_uid(value: object, valid: bool) -> None:
    assert is_valid_uid(value) is valid
