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
    ENHANCED_CT_IMAGE_STORAGE,
    GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SEGMENTATION_STORAGE,
)
from dicom_node.errors import CannotUnderstand, IngestError, SOPClassMismatch, SOPClassNotSupported
from dicom_node.ingest.receive import split_part10
from dicom_node.ingest.validation import (
    STATUS_ABSURD_IMAGE,
    STATUS_BAD_UID,
    STATUS_GARBAGE,
    STATUS_INCONSISTENT_PIXELS,
    STATUS_NO_PIXEL_DATA,
    STATUS_NOT_THIS_SOP_CLASS,
    STATUS_TOO_LARGE,
    STATUS_TRUNCATED,
    ImageLimits,
    inflate,
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


# -- item 10 of issue 12: what ingest must refuse, each with its status and reason -------------


def _ct(ct_file: Callable[..., Path], **changes: object) -> Dataset:
    ds = dcmread(ct_file())
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def reason_of(data: bytes, ts: str = ExplicitVRLittleEndian, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(IngestError) as info:
        inspect(data, ts, **kwargs)
    return info.value.status, str(info.value)


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({"BitsStored": 20}, STATUS_INCONSISTENT_PIXELS, "BitsStored 20 with BitsAllocated 16"),
        ({"BitsStored": 0}, STATUS_INCONSISTENT_PIXELS, "BitsStored 0"),
        ({"HighBit": 16}, STATUS_INCONSISTENT_PIXELS, "HighBit 16"),
        ({"HighBit": 3}, STATUS_INCONSISTENT_PIXELS, "HighBit 3"),
        ({"PixelRepresentation": 7}, STATUS_INCONSISTENT_PIXELS, "PixelRepresentation 7"),
        ({"PhotometricInterpretation": "RGB"}, STATUS_INCONSISTENT_PIXELS, "RGB needs SamplesPerPixel 3"),
        ({"PhotometricInterpretation": "CMYK"}, STATUS_INCONSISTENT_PIXELS, "unknown"),
        ({"BitsStored": None}, STATUS_INCONSISTENT_PIXELS, "BitsStored missing"),
        ({"PixelRepresentation": None}, STATUS_INCONSISTENT_PIXELS, "PixelRepresentation missing"),
        (
            {"PhotometricInterpretation": None},
            STATUS_INCONSISTENT_PIXELS,
            "PhotometricInterpretation missing",
        ),
        ({"SamplesPerPixel": None}, STATUS_INCONSISTENT_PIXELS, "SamplesPerPixel missing"),
        ({"SamplesPerPixel": 2}, STATUS_ABSURD_IMAGE, "not an image"),
    ],
)
def test_inconsistent_image_pixel_module_is_refused_with_its_reason(
    ct_file: Callable[..., Path], changes: dict[str, object], status: int, reason: str
) -> None:
    assert_refused(encode(_ct(ct_file, **changes)), status, reason)


def assert_refused(data: bytes, status: int, reason: str, **kwargs: object) -> None:
    got_status, got_reason = reason_of(data, **kwargs)
    assert (hex(got_status), reason in got_reason) == (hex(status), True), got_reason


@pytest.mark.parametrize(
    "ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
)
@pytest.mark.parametrize(
    ("delta", "status"),
    [(-2, STATUS_TRUNCATED), (2, STATUS_ABSURD_IMAGE), (64 * 64 * 2, STATUS_ABSURD_IMAGE)],
)
def test_native_pixel_data_of_the_wrong_length_is_refused(
    ct_file: Callable[..., Path], ts: str, delta: int, status: int
) -> None:
    ds = dcmread(ct_file())
    ds.PixelData = ds.PixelData[:delta] if delta < 0 else ds.PixelData + b"\0" * delta
    assert status_of(encode(ds, ts), ts) == status


def test_ct_pixels_under_an_sr_sop_class_are_a900(ct_file: Callable[..., Path]) -> None:
    for sop_class in (COMPREHENSIVE_3D_SR_STORAGE, GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE):
        ds = _ct(ct_file, SOPClassUID=sop_class)
        assert_refused(
            encode(ds),
            STATUS_NOT_THIS_SOP_CLASS,
            "Pixel Data in a SOP class without pixels",
            negotiated_sop_class_uid=sop_class,
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"PhotometricInterpretation": "RGB", "SamplesPerPixel": 3, "PlanarConfiguration": 0},
        {"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7},
    ],
)
def test_a_ct_sop_class_holding_no_ct_image_is_a900(
    ct_file: Callable[..., Path], changes: dict[str, object]
) -> None:
    ds = _ct(ct_file, **changes)
    samples = int(ds.SamplesPerPixel)
    ds.PixelData = bytes(64 * 64 * samples * (int(ds.BitsAllocated) // 8))  # the right length
    assert_refused(encode(ds), STATUS_NOT_THIS_SOP_CLASS, "not a CT image")


def _secondary_capture(ct_file: Callable[..., Path], **changes: object) -> Dataset:
    ds = _ct(
        ct_file,
        SOPClassUID=SECONDARY_CAPTURE_IMAGE_STORAGE,
        PhotometricInterpretation="RGB",
        SamplesPerPixel=3,
        PlanarConfiguration=0,
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelRepresentation=0,
        RescaleSlope=None,
        RescaleIntercept=None,
    )
    ds.PixelData = bytes(64 * 64 * 3)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def test_a_true_colour_secondary_capture_passes_and_needs_its_planar_configuration(
    ct_file: Callable[..., Path],
) -> None:
    sc = SECONDARY_CAPTURE_IMAGE_STORAGE
    inspected = inspect(encode(_secondary_capture(ct_file)), negotiated_sop_class_uid=sc)
    assert inspected.sop_class_uid == sc
    for planar in (None, 2):
        assert_refused(
            encode(_secondary_capture(ct_file, PlanarConfiguration=planar)),
            STATUS_INCONSISTENT_PIXELS,
            "PlanarConfiguration",
            negotiated_sop_class_uid=sc,
        )
    # RGB pixels (3 bytes per pixel) with SamplesPerPixel 1
    assert_refused(
        encode(_secondary_capture(ct_file, SamplesPerPixel=1)),
        STATUS_INCONSISTENT_PIXELS,
        "RGB needs SamplesPerPixel 3, not 1",
        negotiated_sop_class_uid=sc,
    )


def test_an_enhanced_ct_multiframe_passes(ct_file: Callable[..., Path]) -> None:
    ds = _ct(ct_file, SOPClassUID=ENHANCED_CT_IMAGE_STORAGE, NumberOfFrames=3)
    ds.PixelData = ds.PixelData * 3
    inspected = inspect(encode(ds), negotiated_sop_class_uid=ENHANCED_CT_IMAGE_STORAGE)
    assert inspected.header.NumberOfFrames == 3


def test_a_data_set_larger_than_max_instance_bytes_is_a701(ct_file: Callable[..., Path]) -> None:
    _, data = dataset_bytes(ct_file())
    small = ImageLimits(max_instance_bytes=len(data) - 1)
    assert_refused(data, STATUS_TOO_LARGE, "exceeds max_instance_bytes", limits=small)
    inspect(data, limits=ImageLimits(max_instance_bytes=len(data)))  # at the limit: fine


def test_a_deflate_bomb_is_refused_before_it_inflates() -> None:
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = compressor.compress(b"\0" * (64 * 2**20)) + compressor.flush()
    assert len(bomb) < 100_000
    with pytest.raises(IngestError) as info:
        inflate(bomb, max_bytes=2**20)
    assert info.value.status == STATUS_TOO_LARGE
    assert len(inflate(bomb, max_bytes=64 * 2**20)) == 64 * 2**20  # exactly at the limit: fine


def _testdata(name: str) -> tuple[str, str, bytes]:
    from pydicom.data import get_testdata_file

    data = Path(str(get_testdata_file(name))).read_bytes()
    meta, offset = split_part10(data)
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID), data[offset:]


def test_native_ybr_full_422_counts_two_samples_per_pixel() -> None:
    """PS3.3 C.7.6.3.1.2: Y Y Cb Cr per two pixels (pydicom's real example file)."""
    sop_class, ts, data = _testdata("SC_ybr_full_422_uncompressed.dcm")
    assert inspect(data, ts, negotiated_sop_class_uid=sop_class).sop_class_uid == sop_class


def test_implicit_vr_under_an_explicit_transfer_syntax_is_named() -> None:
    sop_class, ts, data = _testdata("SC_rgb_jpeg.dcm")  # pydicom's file is encoded implicit VR
    assert_refused(
        data,
        STATUS_GARBAGE,
        "implicit VR data set under an explicit VR",
        ts=ts,
        negotiated_sop_class_uid=sop_class,
    )


def test_a_parametric_map_with_float_pixel_data_is_not_refused_as_pixel_less(
    ct_file: Callable[..., Path],
) -> None:
    from dicom_node.constants import PARAMETRIC_MAP_STORAGE

    ds = _ct(ct_file, SOPClassUID=PARAMETRIC_MAP_STORAGE, PixelData=None, BitsAllocated=32, BitsStored=None)
    ds.FloatPixelData = bytes(64 * 64 * 4)
    assert (
        inspect(encode(ds), negotiated_sop_class_uid=PARAMETRIC_MAP_STORAGE).sop_class_uid
        == PARAMETRIC_MAP_STORAGE
    )


def _nested(depth: int) -> Dataset:
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    return inner


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_defined_length_sequences_are_walked_too(ct_file: Callable[..., Path], ts: str) -> None:
    """pydicom writes defined lengths: the walk must enter those sequences as well (depth,
    items that overrun their sequence), not only the undefined-length ones."""
    ds = dcmread(ct_file())
    ds.ContentSequence = _nested(10).ContentSequence  # real SR trees nest about this deep
    inspect(encode(ds, ts), ts)
    ds.ContentSequence = _nested(40).ContentSequence
    assert_refused(encode(ds, ts), STATUS_GARBAGE, "nested too deeply", ts=ts)
    # an item that claims more than its sequence holds
    ds.ContentSequence = _nested(2).ContentSequence
    data = bytearray(encode(ds, ts))
    item_at = data.index(b"\xfe\xff\x00\xe0")
    data[item_at + 4 : item_at + 8] = (0x1000).to_bytes(4, "little")
    assert status_of(bytes(data), ts) == STATUS_TRUNCATED


def test_encapsulated_fragments_are_not_walked_as_data_sets(ct_file: Callable[..., Path]) -> None:
    _, data = dataset_bytes(ct_file(RLELossless))  # RLE segments are not DICOM elements
    assert inspect(data, RLELossless).header.Rows == 64


@pytest.mark.parametrize(
    ("tag", "vr", "new_vr", "keyword"),
    [
        (b"\x28\x00\x10\x00", b"US", b"UL", "Rows"),
        (b"\x28\x00\x02\x00", b"US", b"FD", "SamplesPerPixel"),
        (b"\x08\x00\x70\x00", b"LO", b"FD", "Manufacturer"),
    ],
)
def test_a_value_pydicom_cannot_decode_is_refused_by_name(
    ct_file: Callable[..., Path], tag: bytes, vr: bytes, new_vr: bytes, keyword: str
) -> None:
    """Found by bench/fuzz_ingest.py: a VR changed in transit (US → UL on 2 bytes) raised from
    deep inside the receive path ("internal error") instead of a refusal."""
    ds = dcmread(ct_file())
    ds.Manufacturer = "ACME"  # 4 bytes: not a whole FD
    data = bytearray(encode(ds))
    at = data.index(tag + vr)
    data[at + 4 : at + 6] = new_vr
    assert_refused(bytes(data), STATUS_GARBAGE, f"{keyword} does not decode")
