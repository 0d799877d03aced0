from __future__ import annotations

import io
import random
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_node.contracts import ResultRole, SegmentDescription
from dicom_node.errors import PermanentError
from dicom_node.results.coding import cielab
from dicom_node.results.seg import (
    BINARY_SEG_SOP_CLASS,
    LABELMAP_SEG_SOP_CLASS,
    SegSeries,
    SegType,
    build_seg,
    write_seg,
)
from tests.unit.dicom_node.results.cases import ALGORITHM, SEGMENTS, UID_ROOT, WHEN, Case, make_case
from tests.unit.dicom_node.results.conftest import encode
from tests.unit.dicom_node.results.dataset_diff import dataset_differences

SERIES = SegSeries(
    series_instance_uid=UID_ROOT + "900",
    sop_instance_uid=UID_ROOT + "901",
    series_number=901,
    algorithm=ALGORITHM,
    manufacturer="ct-ai-node",
    series_description="AI SEG - ct-anatomy-basic 1.0.0",
    tracking_uids={1: UID_ROOT + "1.1", 2: UID_ROOT + "1.2", 3: UID_ROOT + "1.3"},
    dimension_organization_uid=UID_ROOT + "902",
    content_datetime=WHEN,
)


def _written(case: Case, seg_type: SegType = "binary") -> tuple[Dataset, bytes]:
    buffer = io.BytesIO()
    write_seg(buffer, case.sources, case.labelmap, SEGMENTS, seg_type=seg_type, series=SERIES)
    data = buffer.getvalue()
    return pydicom.dcmread(io.BytesIO(data)), data


def _round_trip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(
    ("geometry", "shape"),
    [("axial", (7, 24, 32)), ("feet-first", (6, 20, 16)), ("oblique", (7, 21, 30))],
    ids=["axial-whole-byte-rows", "feet-first", "oblique-odd-size"],
)
def test_fast_binary_seg_equals_highdicom(tmp_path: Path, geometry: str, shape: tuple[int, int, int]) -> None:
    """The fast encoder must write exactly the bytes of highdicom's dataset written by pydicom (the
    condition for keeping it, issue 10 item 6), and so every attribute and every frame."""
    case = make_case(tmp_path, geometry=geometry, shape=shape)
    fast, fast_bytes = _written(case)
    highdicom_seg = build_seg(case.sources, case.labelmap, SEGMENTS, seg_type="binary", series=SERIES)
    highdicom_bytes = io.BytesIO()
    pydicom.dcmwrite(highdicom_bytes, highdicom_seg, enforce_file_format=True)
    reference = pydicom.dcmread(io.BytesIO(highdicom_bytes.getvalue()))
    assert dataset_differences(reference, fast) == []  # says what differs, if anything does
    np.testing.assert_array_equal(fast.pixel_array, reference.pixel_array)
    assert fast_bytes == highdicom_bytes.getvalue()


@pytest.mark.parametrize("seg_type", ["binary", "labelmap"])
def test_every_frame_lies_on_its_source_slice(tmp_path: Path, seg_type: SegType) -> None:
    case = make_case(tmp_path, geometry="feet-first", shape=(6, 20, 16))
    seg, _ = _written(case, seg_type)
    assert seg.SOPClassUID == (BINARY_SEG_SOP_CLASS if seg_type == "binary" else LABELMAP_SEG_SOP_CLASS)
    by_uid = {str(ds.SOPInstanceUID): (k, ds) for k, ds in enumerate(case.sources)}
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    seen: set[tuple[int, int]] = set()
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source_uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k, source = by_uid[source_uid]
        np.testing.assert_allclose(
            [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
            [float(v) for v in source.ImagePositionPatient],
        )
        if seg_type == "binary":
            segment_number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            np.testing.assert_array_equal(frame.astype(bool), case.labelmap[k] == segment_number)
            seen.add((segment_number, k))
        else:
            np.testing.assert_array_equal(frame, case.labelmap[k])
            seen.add((0, k))
    if seg_type == "binary":
        expected = {(int(s), int(k)) for k, s in zip(*np.nonzero(_presence(case.labelmap)), strict=True)}
        assert seen == expected  # one frame per (segment, slice) with voxels, no empty frames


def _presence(labelmap: np.ndarray) -> np.ndarray:
    """[slice, label] → label occurs in the slice (labels ≥ 1)."""
    out = np.zeros((labelmap.shape[0], int(labelmap.max()) + 1), dtype=bool)
    for k in range(labelmap.shape[0]):
        out[k, np.unique(labelmap[k])] = True
    out[:, 0] = False
    return out


def test_segments_are_coded_and_identified(tmp_path: Path) -> None:
    seg, _ = _written(make_case(tmp_path))
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3]
    for item, described in zip(seg.SegmentSequence, SEGMENTS, strict=True):
        assert item.SegmentLabel == described.label
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == described.type.value
        assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == described.category.value
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == ALGORITHM.name
        assert item.TrackingID == described.tracking_id
        assert SERIES.tracking_uids is not None
        assert item.TrackingUID == SERIES.tracking_uids[described.segment_number]
        assert "RecommendedDisplayCIELabValue" in item
    assert list(seg.SegmentSequence[0].RecommendedDisplayCIELabValue) == list(cielab((221, 130, 101)).value)
    assert seg.SeriesDescription == "AI SEG - ct-anatomy-basic 1.0.0"
    assert seg.ContentDate == "20261123" and seg.ContentTime == "103000"


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    _, first = _written(case)
    _, again = _written(case)
    assert first == again


def test_enhanced_ct_source(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(6, 16, 16))
    legacy = [pydicom.dcmread(p) for p in case.paths]
    random.Random(5).shuffle(legacy)
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy,
        series_instance_uid=UID_ROOT + "70",
        series_number=70,
        sop_instance_uid=UID_ROOT + "71",
        instance_number=1,
    )
    header = _round_trip(enhanced)
    del header.PixelData
    sources = [header] * case.labelmap.shape[0]
    buffer = io.BytesIO()
    write_seg(buffer, sources, case.labelmap, SEGMENTS, series=SERIES)
    seg = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    slice_positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in case.sources])
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source_ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        frame_number = int(source_ref.ReferencedFrameNumber)
        ipp = (
            header.PerFrameFunctionalGroupsSequence[frame_number - 1]
            .PlanePositionSequence[0]
            .ImagePositionPatient
        )
        distances = np.linalg.norm(slice_positions - np.array([float(v) for v in ipp]), axis=1)
        k = int(np.argmin(distances))
        assert distances[k] < 1e-3
        segment_number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        np.testing.assert_array_equal(frame.astype(bool), case.labelmap[k] == segment_number)


def test_empty_label_map_still_gives_a_valid_seg(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(4, 8, 8))
    case.labelmap[:] = 0
    seg, _ = _written(case)
    assert int(seg.NumberOfFrames) >= 1
    assert not seg.pixel_array.any()


def test_inconsistent_inputs_are_permanent_errors(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(4, 8, 8))
    too_many = case.labelmap.copy()
    too_many[0, 0, 0] = 4
    with pytest.raises(PermanentError, match="label 4"):
        write_seg(io.BytesIO(), case.sources, too_many, SEGMENTS, series=SERIES)
    with pytest.raises(PermanentError, match="slices"):
        write_seg(io.BytesIO(), case.sources[:3], case.labelmap, SEGMENTS, series=SERIES)
    with pytest.raises(PermanentError, match="not sorted"):
        write_seg(io.BytesIO(), case.sources[::-1], case.labelmap, SEGMENTS, series=SERIES)
    with pytest.raises(PermanentError, match="segment numbers"):
        write_seg(io.BytesIO(), case.sources, case.labelmap, SEGMENTS[1:], series=SERIES)


def test_a_segment_holds_what_lies_inside_it_and_every_object_says_the_same_numbers(tmp_path: Path) -> None:
    """Issue 12 item 11: the body with the liver inside it. The BINARY SEG's body has no hole at
    the liver; the SR's coded volume, its text and the GSPS caption count the same voxels."""
    from dicom_node.contracts import SegmentMeasurement
    from dicom_node.results.figures import format_volume_ml, plain
    from tests.unit.dicom_node.results.cases import ORGAN, analysis

    case = make_case(tmp_path, shape=(7, 24, 32))
    labelmap = np.zeros_like(case.labelmap)
    labelmap[1:6, 2:22, 2:30] = 1  # body
    labelmap[2:5, 6:12, 8:16] = 2  # liver, inside it
    case.labelmap = labelmap
    body_mask = labelmap > 0
    voxel_ml = abs(float(np.linalg.det(case.affine[:3, :3]))) / 1000
    base = analysis(case)
    body = base.segments[0].model_copy(
        update={"label": "Body", "type": ORGAN, "contains": (2,), "diffuse": True, "description": ""}
    )
    liver = base.segments[1].model_copy(update={"label": "Liver", "type": base.segments[0].type})
    measurements = tuple(
        SegmentMeasurement(
            segment_number=n,
            volume_ml=float(m.sum()) * voxel_ml,
            mean_hu=float(case.hu[m].mean()),
            std_hu=float(case.hu[m].std()),
            voxel_count=int(m.sum()),
            bbox_voxels=(0, 0, 0, 1, 1, 1),
            bbox_lps_mm=(0.0, 0.0, 0.0, 1.0, 1.0, 1.0),
        )
        for n, m in ((1, body_mask), (2, labelmap == 2))
    )
    result = base.model_copy(
        update={"segments": (body, liver), "measurements": measurements, "findings": (), "snippets": ()}
    )
    encoded = encode(
        case,
        tmp_path / "out",
        analysis=result,
        roles=(ResultRole.SEG, ResultRole.SEG_LABELMAP, ResultRole.SR, ResultRole.GSPS),
    )
    seg = encoded.dataset("seg.dcm")
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), *labelmap.shape[1:]).astype(bool)
    by_uid = {str(ds.SOPInstanceUID): k for k, ds in enumerate(case.sources)}
    rebuilt = np.zeros(labelmap.shape, dtype=bool)
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        if int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == 1:
            uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            rebuilt[by_uid[str(uid)]] = frames[index]
    np.testing.assert_array_equal(rebuilt, body_mask)  # no hole where the liver is
    painted = encoded.dataset("seg-labelmap.dcm").pixel_array
    assert (painted == 1).sum() == (labelmap == 1).sum()  # a LABELMAP cannot overlap: painted only

    sr = encoded.dataset("sr.dcm")
    body_ml = float(body_mask.sum()) * voxel_ml
    volumes, texts = [], []
    for item in sr.ContentSequence:
        for group in item.get("ContentSequence", []):
            concepts = [str(i.ConceptNameCodeSequence[0].CodeValue) for i in group.get("ContentSequence", [])]
            if (
                "121191" in concepts
                and group.ContentSequence[concepts.index("121071")].ConceptCodeSequence[0].CodeValue
                == ORGAN.value
            ):
                volumes.append(
                    float(
                        group.ContentSequence[concepts.index("118565006")]
                        .MeasuredValueSequence[0]
                        .NumericValue
                    )
                )
            texts += [str(i.TextValue) for i in group.get("ContentSequence", []) if i.ValueType == "TEXT"]
    assert volumes == [pytest.approx(body_ml, abs=1e-3)]
    assert any(t.startswith(f"Body: {format_volume_ml(body_ml)}, mean") for t in texts)
    gsps = encoded.dataset("gsps.dcm")
    captions = [
        str(t.UnformattedTextValue)
        for a in gsps.GraphicAnnotationSequence
        for t in a.get("TextObjectSequence", [])
    ]
    liver_lines = [t for t in texts if t.startswith("Liver: ")]
    assert captions == [
        plain(liver_lines[0])
    ]  # the body (whole-body) is not drawn; the liver says the SR's words


def _containing_case(tmp_path: Path) -> tuple[Case, list[SegmentDescription]]:
    """Segment 1 contains segment 2 (a body with an organ in it): the BINARY SEG overlaps."""
    case = make_case(tmp_path, shape=(6, 16, 24))
    labelmap = np.zeros_like(case.labelmap)
    labelmap[1:5, 2:14, 2:22] = 1
    labelmap[2:4, 5:9, 6:12] = 2
    case.labelmap = labelmap
    segments = [SEGMENTS[0].model_copy(update={"contains": (2,)}), SEGMENTS[1]]
    return case, segments


def test_a_segment_with_others_inside_overlaps_them_in_both_paths(tmp_path: Path) -> None:
    """PS3.3 C.8.20.2.3: the body segment holds the organ inside it, so Segments Overlap is YES in
    the fast path as in highdicom's (the fast path used to say NO), and the bytes stay identical."""
    case, segments = _containing_case(tmp_path)
    fast = io.BytesIO()
    write_seg(fast, case.sources, case.labelmap, segments, series=SERIES)
    reference = io.BytesIO()
    pydicom.dcmwrite(
        reference, build_seg(case.sources, case.labelmap, segments, series=SERIES), enforce_file_format=True
    )
    seg = pydicom.dcmread(io.BytesIO(fast.getvalue()))
    assert seg.SegmentsOverlap == "YES"
    assert fast.getvalue() == reference.getvalue()


def test_enhanced_ct_keeps_what_a_segment_contains(tmp_path: Path) -> None:
    """Multi-frame sources used to drop the stacked masks: the body lost the organ inside it."""
    case, segments = _containing_case(tmp_path)
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(p) for p in case.paths],
        series_instance_uid=UID_ROOT + "80",
        series_number=80,
        sop_instance_uid=UID_ROOT + "81",
        instance_number=1,
    )
    header = _round_trip(enhanced)
    del header.PixelData
    buffer = io.BytesIO()
    write_seg(buffer, [header] * case.labelmap.shape[0], case.labelmap, segments, series=SERIES)
    seg = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    assert seg.SegmentsOverlap == "YES"
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns).astype(bool)
    body_voxels = sum(
        int(frame.sum())
        for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True)
        if int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == 1
    )
    assert body_voxels == int((case.labelmap > 0).sum())
