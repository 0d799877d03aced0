from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_node.contracts import CodedConcept, ResultRole
from dicom_node.results.figures import format_hu, format_volume_ml
from dicom_node.results.labels import label_stats
from dicom_node.results.sources import source_volume
from dicom_node.results.sr import SegReference, build_sr
from tests.unit.dicom_node.results.cases import SEGMENTS, UID_ROOT, WHEN, analysis, make_case
from tests.unit.dicom_node.results.conftest import Encoded, encode
from tests.unit.dicom_node.results.dataset_diff import dataset_differences

IMAGING_MEASUREMENTS = "126010"
MEASUREMENT_GROUP = "125007"


def _code(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue)


def _groups(sr: Dataset) -> list[Dataset]:
    container = next(i for i in sr.ContentSequence if _code(i) == IMAGING_MEASUREMENTS)
    return [g for g in container.ContentSequence if _code(g) == MEASUREMENT_GROUP]


def _items(group: Dataset, code: str) -> list[Dataset]:
    return [i for i in group.ContentSequence if _code(i) == code]


def _text(group: Dataset, code: str) -> str:
    return str(_items(group, code)[0].TextValue)


def _num(item: Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def _tracking_uid(group: Dataset) -> str:
    return str(_items(group, "112040")[0].UID)


def _finding_type(group: Dataset) -> str:
    codes = _items(group, "121071")
    return str(codes[0].ConceptCodeSequence[0].CodeValue) if codes else ""


def _voxel_ml(affine: np.ndarray) -> float:
    return abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0


def test_volumetric_groups_measure_the_label_map_and_point_at_the_seg(encoded: Encoded) -> None:
    sr = encoded.dataset("sr.dcm")
    seg = encoded.dataset("seg.dcm")
    tracking_by_segment = {int(s.SegmentNumber): str(s.TrackingUID) for s in seg.SegmentSequence}
    volumetric = [g for g in _groups(sr) if _items(g, "121191")]  # has a Referenced Segment
    present = [s for s in SEGMENTS if (encoded.case.labelmap == s.segment_number).any()]
    assert len(volumetric) == len(present) == 2
    measured = {m.segment_number: m for m in encoded.analysis.measurements}
    for group, segment in zip(volumetric, present, strict=True):
        reference = _items(group, "121191")[0].ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert int(reference.ReferencedSegmentNumber) == segment.segment_number
        assert _tracking_uid(group) == tracking_by_segment[segment.segment_number]
        assert _finding_type(group) == segment.type.value
        # Volume recomputed here from the label map and the known geometry.
        count = int(np.count_nonzero(encoded.case.labelmap == segment.segment_number))
        volume = next(i for i in _items(group, "118565006"))
        assert _num(volume) == pytest.approx(count * _voxel_ml(encoded.case.affine), abs=1e-3)
        assert volume.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "ml"
        attenuation = _items(group, "112031")
        derivations = {a.ContentSequence[0].ConceptCodeSequence[0].CodeMeaning: _num(a) for a in attenuation}
        assert derivations["Mean"] == pytest.approx(measured[segment.segment_number].mean_hu, abs=0.05)
        expected_sd = measured[segment.segment_number].std_hu
        assert derivations["Standard Deviation"] == pytest.approx(expected_sd, abs=0.05)
        # the comment says the same numbers in words (issue 12 item 11)
        mean, sd = measured[segment.segment_number].mean_hu, measured[segment.segment_number].std_hu
        expected_line = (
            f"{segment.label}: {format_volume_ml(count * _voxel_ml(encoded.case.affine))}, "
            f"mean {format_hu(mean)} (SD {round(sd)})"
        )
        assert _text(group, "121106") == expected_line


def test_bounding_box_group_gives_edges_in_lps(encoded: Encoded) -> None:
    sr = encoded.dataset("sr.dcm")
    affine = encoded.case.affine
    boxes = [g for g in _groups(sr) if _items(g, "121207") and not _items(g, "111030")]  # Height, no region
    assert len(boxes) == 2
    liver = next(g for g in boxes if _finding_type(g) == "10200004")
    where = np.argwhere(encoded.case.labelmap == 1)
    lo, hi = where.min(axis=0), where.max(axis=0)
    corner = (affine @ [*(lo - 0.5), 1.0])[:3]
    for code, axis in (("103355008", 2), ("131197000", 1), ("121207", 0)):
        item = _items(liver, code)[0]
        edge = np.array(item.ContentSequence[0].GraphicData, dtype=float).reshape(2, 3)
        np.testing.assert_allclose(edge[0], corner, atol=1e-3)
        expected = affine[:3, axis] * (hi[axis] - lo[axis] + 1)
        np.testing.assert_allclose(edge[1] - edge[0], expected, atol=1e-3)
        assert _num(item) == pytest.approx(float(np.linalg.norm(expected)), abs=0.01)
        assert item.ContentSequence[0].ValueType == "SCOORD3D"


def test_planar_groups_box_each_segment_on_its_key_slice(encoded: Encoded) -> None:
    sr = encoded.dataset("sr.dcm")
    planar = [g for g in _groups(sr) if _items(g, "111030")]  # Image Region
    labelmap = encoded.case.labelmap
    for segment in SEGMENTS:
        mask = labelmap == segment.segment_number
        matching = [g for g in planar if _finding_type(g) == segment.type.value]
        if not mask.any():
            assert matching == []
            continue
        (group,) = matching
        key = int(np.argmax(mask.sum(axis=(1, 2))))
        region = _items(group, "111030")[0]
        assert region.GraphicType == "POLYLINE"
        image = region.ContentSequence[0].ReferencedSOPSequence[0]
        assert image.ReferencedSOPInstanceUID == encoded.case.sources[key].SOPInstanceUID
        points = np.array(region.GraphicData, dtype=float).reshape(-1, 2)  # (column, row)
        rows, columns = np.nonzero(mask[key])
        assert points[:, 0].min() == columns.min() and points[:, 0].max() == columns.max() + 1
        assert points[:, 1].min() == rows.min() and points[:, 1].max() == rows.max() + 1
        np.testing.assert_array_equal(points[0], points[-1])


def test_finding_and_snippet_groups(encoded: Encoded) -> None:
    sr = encoded.dataset("sr.dcm")
    finding = encoded.analysis.findings[0]
    planar = [g for g in _groups(sr) if _items(g, "111030")]
    (lesion,) = [g for g in planar if _finding_type(g) == finding.type.value]
    region = _items(lesion, "111030")[0]
    _, row0, column0, _, row1, column1 = finding.box_voxels
    points = np.array(region.GraphicData, dtype=float).reshape(-1, 2)
    assert (points[:, 0].min(), points[:, 0].max()) == (column0, column1 + 1)
    assert (points[:, 1].min(), points[:, 1].max()) == (row0, row1 + 1)
    image = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert image.ReferencedSOPInstanceUID == encoded.case.sources[finding.key_slice_index].SOPInstanceUID
    texts = [i.TextValue for i in _items(lesion, "121106")]
    assert any(finding.text in t for t in texts)
    site = [i for i in lesion.ContentSequence if _code(i) == "363698007"]
    assert site and site[0].ConceptCodeSequence[0].CodeValue == "10200004"

    snippet = encoded.analysis.snippets[0]
    (snippet_group,) = [g for g in planar if _items(g, "111030")[0].GraphicType == "CIRCLE"]
    circle = _items(snippet_group, "111030")[0]
    centre = np.array(circle.GraphicData[:2], dtype=float)
    index = np.linalg.inv(encoded.case.affine) @ [*snippet.point_lps_mm, 1.0]
    np.testing.assert_allclose(centre, [index[2] + 0.5, index[1] + 0.5], atol=1e-3)
    image = circle.ContentSequence[0].ReferencedSOPSequence[0]
    assert image.ReferencedSOPInstanceUID == encoded.case.sources[snippet.slice_index].SOPInstanceUID
    assert snippet.text in _text(snippet_group, "121106")


def test_summary_and_descriptions_are_qualitative_text(encoded: Encoded) -> None:
    sr = encoded.dataset("sr.dcm")
    (evaluations,) = [i for i in sr.ContentSequence if _code(i) == "C0034375"]
    texts = [(_code(i), i.TextValue) for i in evaluations.ContentSequence]
    # the pipeline's own lines for the structures are replaced by the encoders' (same numbers as
    # the SEG); here all three name a structure
    descriptions: list[tuple[str, str]] = []
    lines = [t for code, t in texts[1 : 1 + 2]]
    assert [line.split(":")[0] for line in lines] == ["Liver", "Spleen"]  # each structure's figures
    assert texts == [("121073", encoded.analysis.summary), *[("121106", t) for t in lines], *descriptions]
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"
    assert sr.SeriesDescription == "AI SR - ct-anatomy-basic 1.0.0"


def test_viewer_safe_profile_has_image_coordinates_in_every_group(tmp_path: Path) -> None:
    """OHIF 3.13 crashes on groups without image coordinates: the planar-only profile has none."""
    result = encode(
        make_case(tmp_path, geometry="feet-first"),
        tmp_path / "out",
        roles=(ResultRole.SEG, ResultRole.SR_PLANAR),
    )
    sr = result.dataset("sr-planar.dcm")
    groups = _groups(sr)
    assert groups
    for group in groups:
        regions = _items(group, "111030")
        assert len(regions) == 1 and regions[0].ContentSequence[0].ValueType == "IMAGE"
    evidence_uids = {
        i.ReferencedSOPInstanceUID
        for s in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }
    assert evidence_uids == {str(ds.SOPInstanceUID) for ds in result.case.sources}


def test_fast_document_equals_highdicom_document(tmp_path: Path) -> None:
    """build_sr attaches the content tree after highdicom made the document: same dataset."""
    case = make_case(tmp_path, geometry="oblique")
    options = {
        "volume": source_volume(case.sources, case.labelmap.shape),
        "seg": SegReference("1.2.840.10008.5.1.4.1.1.66.4", UID_ROOT + "901", UID_ROOT + "900"),
        "series_instance_uid": UID_ROOT + "910",
        "sop_instance_uid": UID_ROOT + "911",
        "series_number": 903,
        "manufacturer": "ct-ai-node",
        "tracking_uids": {1: UID_ROOT + "1.1", 2: UID_ROOT + "1.2", 3: UID_ROOT + "1.3"},
        "content_datetime": WHEN,
    }
    stats = label_stats(case.labelmap, 3)
    documents = []
    for reference in (False, True):
        sr = build_sr(case.sources, stats, analysis(case), reference_document=reference, **options)  # type: ignore[arg-type]
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, sr, enforce_file_format=True)
        documents.append(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    assert dataset_differences(documents[1], documents[0]) == []


def test_findings_first_then_organs_and_no_region_for_whole_body_structures(tmp_path: Path) -> None:
    """Issue 14: findings lead; a diffuse structure (the "spleen" here marked whole-body) gets
    measurement rows but no planar region; a compact one names itself as finding site."""
    case = make_case(tmp_path, shape=(7, 24, 32))
    result = analysis(case)
    segments = tuple(s.model_copy(update={"diffuse": s.segment_number == 2}) for s in result.segments)
    full = encode(case, tmp_path / "full", analysis=result.model_copy(update={"segments": segments}))
    planar = encode(
        case,
        tmp_path / "planar",
        analysis=result.model_copy(update={"segments": segments}),
        roles=(ResultRole.SR_PLANAR,),
    )
    groups = _groups(full.dataset("sr.dcm"))
    kinds = [_finding_type(g) for g in groups]
    assert kinds[0] == "52988006"  # the lesion first
    regions = [g for g in groups if _items(g, "111030")]
    assert "78961009" not in [_finding_type(g) for g in regions]  # no region around the spleen
    assert "78961009" in [_finding_type(g) for g in groups if _items(g, "121191")]  # but its rows
    liver = next(g for g in regions if _finding_type(g) == "10200004")
    site = _items(liver, "363698007")[0].ConceptCodeSequence[0]
    assert (site.CodeValue, site.CodeMeaning) == ("10200004", "Liver")
    assert len(_items(liver, "118565006")) == 1  # its volume on the drawing
    planar_groups = _groups(planar.dataset("sr-planar.dcm"))
    assert "78961009" not in [_finding_type(g) for g in planar_groups]
    (evaluations,) = [i for i in planar.dataset("sr-planar.dcm").ContentSequence if _code(i) == "C0034375"]
    assert any(str(i.TextValue).startswith("Spleen: ") for i in evaluations.ContentSequence)


def test_a_lateral_structure_carries_its_laterality_on_the_finding_site(tmp_path: Path) -> None:
    """TID 1419: Finding Site (363698007) with a Laterality (272741003) concept modifier, from the
    SEG's Segmented Property Type Modifier: "left kidney" is not just "Kidney" in the SR."""
    case = make_case(tmp_path, geometry="axial", shape=(7, 24, 32))
    left = CodedConcept(value="7771000", scheme_designator="SCT", meaning="Left")
    base = analysis(case)
    lateral = base.segments[1].model_copy(update={"type_modifier": left, "diffuse": False})
    result = base.model_copy(update={"segments": (base.segments[0], lateral, *base.segments[2:])})
    sr = encode(case, tmp_path / "out", analysis=result, roles=(ResultRole.SEG, ResultRole.SR)).dataset(
        "sr.dcm"
    )
    sites = [
        site
        for group in _groups(sr)
        if _items(group, "111030") and _finding_type(group) == lateral.type.value
        for site in _items(group, "363698007")
    ]
    assert sites, "no planar group for the lateral segment"
    for site in sites:
        (modifier,) = [m for m in site.get("ContentSequence", []) if _code(m) == "272741003"]
        assert modifier.RelationshipType == "HAS CONCEPT MOD"
        assert modifier.ConceptCodeSequence[0].CodeValue == "7771000"
