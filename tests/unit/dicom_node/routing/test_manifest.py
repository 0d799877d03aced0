"""Manifests built from real DICOM files written here (tmp_path), headers only."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node.contracts import CompletionReason, StudyManifest, StudySource
from dicom_node.errors import PermanentError
from dicom_node.phi import PHI_KEYWORDS
from dicom_node.routing.manifest import build_manifest, build_manifest_from_headers, read_headers
from tests.unit.dicom_node.routing.dicom_headers import (
    COMPREHENSIVE_SR,
    NODE_ROOT,
    SEG_STORAGE,
    SOURCE_ROOT,
    ct_header,
    write,
    write_axial_series,
)

STUDY = SOURCE_ROOT + "1"
SOURCE = StudySource(kind="staging", staging_path="/staging/x")


def _build(
    folder: Path,
    *,
    uid_root: str = NODE_ROOT,
    calling_ae_title: str = "",
    called_ae_title: str = "",
    completion_reason: CompletionReason | None = None,
) -> StudyManifest:
    return build_manifest(
        folder,
        source=SOURCE,
        calling_ae_title=calling_ae_title,
        called_ae_title=called_ae_title,
        completion_reason=completion_reason,
        uid_root=uid_root,
        manufacturer="ct-ai-node",
    )


def test_slices_sorted_by_position_along_normal_when_files_arrive_shuffled(tmp_path: Path) -> None:
    z = [float(v) for v in range(-50, 50, 5)]  # 20 slices, 5 mm apart
    shuffled = z[:]
    random.Random(7).shuffle(shuffled)
    series = SOURCE_ROOT + "2"
    write_axial_series(tmp_path / "s", study=STUDY, series=series, z_positions_mm=shuffled)
    manifest = _build(
        tmp_path,
        calling_ae_title="CT1 ",
        called_ae_title="NODE",
        completion_reason=CompletionReason.QUIET_PERIOD,
    )
    (only,) = manifest.series
    # SOP UIDs were numbered by write order (shuffled z); slice order must follow increasing z.
    by_sop = {f"{series}.{i + 1}": pos for i, pos in enumerate(shuffled)}
    assert [by_sop[uid] for uid in only.sop_instance_uids] == sorted(z)
    assert only.image_count == 20
    assert manifest.calling_ae_title == "CT1"
    assert manifest.called_ae_title == "NODE"
    assert manifest.completion_reason is CompletionReason.QUIET_PERIOD
    assert manifest.study_instance_uid == STUDY


def test_sorting_uses_the_slice_normal_not_z(tmp_path: Path) -> None:
    # Sagittal slices: row direction +y, column direction -z → normal = y × (-z) = -x.
    # Position along the normal is -x, so increasing position means DEcreasing x.
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    series = SOURCE_ROOT + "3"
    xs = [10.0, -20.0, 0.0, 30.0, -10.0]
    for index, x in enumerate(xs):
        ds = ct_header(
            study=STUDY, series=series, sop=f"{series}.{index}", position=(x, 0.0, 0.0), orientation=sagittal
        )
        write(ds, tmp_path / f"{index}.dcm")
    (only,) = _build(tmp_path).series
    xs_in_order = [xs[int(uid.rsplit(".", 1)[1])] for uid in only.sop_instance_uids]
    assert xs_in_order == [30.0, 10.0, 0.0, -10.0, -20.0]


def test_falls_back_to_instance_number_without_positions(tmp_path: Path) -> None:
    series = SOURCE_ROOT + "4"
    numbers = [3, 1, 2]
    for n in numbers:
        ds = ct_header(study=STUDY, series=series, sop=f"{series}.{n * 11}", position=None, instance_number=n)
        write(ds, tmp_path / f"x{n}.dcm")
    (only,) = _build(tmp_path).series
    assert only.sop_instance_uids == (f"{series}.11", f"{series}.22", f"{series}.33")


def test_slice_thickness_from_header_or_position_spacing(tmp_path: Path) -> None:
    with_header = SOURCE_ROOT + "5"
    without = SOURCE_ROOT + "6"
    write_axial_series(
        tmp_path / "a",
        study=STUDY,
        series=with_header,
        z_positions_mm=[0, 0.625, 1.25],
        slice_thickness=0.625,
    )
    write_axial_series(
        tmp_path / "b",
        study=STUDY,
        series=without,
        z_positions_mm=[0.0, 2.0, 4.0, 6.0],
        slice_thickness=None,
        series_number=3,
    )
    manifest = _build(tmp_path)
    by_uid = {s.series_instance_uid: s for s in manifest.series}
    assert by_uid[with_header].slice_thickness_mm == 0.625
    assert by_uid[with_header].attributes["SliceThickness"] == "0.625"
    assert by_uid[without].slice_thickness_mm == 2.0
    assert "SliceThickness" not in by_uid[without].attributes


def test_phi_and_person_names_are_left_out_of_attributes(tmp_path: Path) -> None:
    write_axial_series(tmp_path, study=STUDY, series=SOURCE_ROOT + "7", z_positions_mm=[0.0, 1.0])
    (only,) = _build(tmp_path).series
    written = dcmread(next(tmp_path.glob("*.dcm")))
    assert written.PatientName == "DOE^JANE"  # the file does carry them ...
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        assert keyword not in only.attributes  # ... the manifest does not
    assert "PhysiciansOfRecord" not in only.attributes  # PN, though not in PHI_KEYWORDS
    assert not PHI_KEYWORDS & set(only.attributes)
    text = repr(only.attributes)
    for value in ("DOE", "PID-778899", "ACC-123456", "19600101", "HOUSE"):
        assert value not in text
    # ordinary attributes are there, multi-valued ones joined with a backslash; no pixel data
    assert only.attributes["ImageType"] == "ORIGINAL\\PRIMARY\\AXIAL"
    assert only.attributes["PatientSex"] == "F"
    assert only.attributes["Rows"] == "4"
    assert "PixelData" not in only.attributes
    assert only.series_description == "Thorax 1.0 B31f"
    assert only.body_part_examined == "CHEST"
    assert only.series_number == 2
    assert only.modality == "CT"


def test_node_results_are_marked(tmp_path: Path) -> None:
    ct = SOURCE_ROOT + "10"
    write_axial_series(tmp_path / "ct", study=STUDY, series=ct, z_positions_mm=[0.0, 1.0])
    # by SOP class
    seg = ct_header(
        study=STUDY,
        series=SOURCE_ROOT + "11",
        sop=SOURCE_ROOT + "11.1",
        sop_class=SEG_STORAGE,
        modality="SEG",
    )
    sr = ct_header(
        study=STUDY,
        series=SOURCE_ROOT + "12",
        sop=SOURCE_ROOT + "12.1",
        sop_class=COMPREHENSIVE_SR,
        modality="SR",
    )
    # by the node's UID root (a CT-class object the node made, e.g. a resampled series)
    by_root = ct_header(study=STUDY, series=NODE_ROOT + "13", sop=NODE_ROOT + "13.1", series_number=13)
    # by Manufacturer equal to the node's
    by_maker = ct_header(
        study=STUDY,
        series=SOURCE_ROOT + "14",
        sop=SOURCE_ROOT + "14.1",
        manufacturer="ct-ai-node",
        series_number=14,
    )
    for name, ds in (("seg", seg), ("sr", sr), ("root", by_root), ("maker", by_maker)):
        write(ds, tmp_path / name / "1.dcm")
    manifest = _build(tmp_path)
    flags = {s.series_instance_uid: s.is_node_result for s in manifest.series}
    assert flags == {
        ct: False,
        SOURCE_ROOT + "11": True,
        SOURCE_ROOT + "12": True,
        NODE_ROOT + "13": True,
        SOURCE_ROOT + "14": True,
    }


def test_pydicom_shared_root_does_not_mark_everything_as_a_node_result(tmp_path: Path) -> None:
    # With the settings' default root (pydicom's), any pydicom-made CT would look like ours.
    pydicom_root = "1.2.826.0.1.3680043.8.498."
    write_axial_series(
        tmp_path, study=pydicom_root + "1", series=pydicom_root + "2", z_positions_mm=[0.0, 1.0]
    )
    (only,) = _build(tmp_path, uid_root=pydicom_root).series
    assert only.is_node_result is False


def test_unreadable_files_are_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_axial_series(
        tmp_path / "ok", study=STUDY, series=SOURCE_ROOT + "20", z_positions_mm=[0.0, 1.0, 2.0]
    )
    (tmp_path / "garbage.dcm").write_bytes(b"\x00\x01not dicom at all" * 10)
    good = next((tmp_path / "ok").glob("*.dcm"))
    (tmp_path / "truncated.dcm").write_bytes(good.read_bytes()[:200])
    (tmp_path / "marker.json").write_text("{}")  # a staging side file: passed over, not counted
    (tmp_path / ".hidden").write_bytes(b"x")
    scan = read_headers(tmp_path)
    assert len(scan.datasets) == 3
    assert sorted(s.path for s in scan.skipped) == ["garbage.dcm", "truncated.dcm"]
    with caplog.at_level(logging.WARNING, logger="dicom_node.routing.manifest"):
        manifest = _build(tmp_path)
    assert manifest.series[0].image_count == 3
    assert any(getattr(r, "skipped_files", None) == 2 for r in caplog.records)
    assert "DOE" not in caplog.text and "PID-778899" not in caplog.text


def test_empty_folder_and_mixed_studies_are_permanent_errors(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="no readable"):
        _build(tmp_path)
    write_axial_series(tmp_path / "a", study=STUDY, series=SOURCE_ROOT + "30", z_positions_mm=[0.0])
    write_axial_series(
        tmp_path / "b", study=SOURCE_ROOT + "99", series=SOURCE_ROOT + "31", z_positions_mm=[0.0]
    )
    with pytest.raises(PermanentError, match="2 studies"):
        _build(tmp_path)


def test_from_headers_matches_from_files(tmp_path: Path) -> None:
    write_axial_series(tmp_path / "a", study=STUDY, series=SOURCE_ROOT + "40", z_positions_mm=[3.0, 1.0, 2.0])
    write_axial_series(
        tmp_path / "b",
        study=STUDY,
        series=SOURCE_ROOT + "41",
        z_positions_mm=[0.0, 5.0],
        series_number=1,
        series_description="Abdomen 5.0",
    )
    from_files = _build(tmp_path)
    headers = [dcmread(p, stop_before_pixels=True) for p in sorted(tmp_path.rglob("*.dcm"), reverse=True)]
    from_memory = build_manifest_from_headers(
        headers, source=SOURCE, uid_root=NODE_ROOT, manufacturer="ct-ai-node"
    )
    assert from_memory == from_files
    # series ordered by SeriesNumber
    assert [s.series_number for s in from_files.series] == [1, 2]


# -- issue 12 item 9: one stray object must not decide for a whole series -----------------------

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _ct_series_with(tmp_path: Path, *strays: Dataset, slices: int = 60) -> tuple[str, list[str]]:
    series = SOURCE_ROOT + "40"
    sops = write_axial_series(
        tmp_path / "ct", study=STUDY, series=series, z_positions_mm=[i * 2.5 for i in range(slices)]
    )
    for index, stray in enumerate(strays):
        write(stray, tmp_path / "ct" / f"stray{index}.dcm")
    return series, sops


def test_a_secondary_capture_inside_a_ct_series_is_set_aside_not_the_series(tmp_path: Path) -> None:
    """The issue's case: a Secondary Capture filed in a 60-slice CT series."""
    sc = ct_header(
        study=STUDY,
        series=SOURCE_ROOT + "40",
        sop=SOURCE_ROOT + "40.999",
        sop_class=SC_STORAGE,
        modality="OT",
        position=None,
        orientation=None,
        instance_number=0,
    )
    series_uid, sops = _ct_series_with(tmp_path, sc)
    [series] = _build(tmp_path).series
    assert series.series_instance_uid == series_uid
    assert series.is_node_result is False
    assert series.sop_instance_uids == tuple(sops)  # slice order, the SC not among them
    assert series.image_count == 60 and series.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert series.modality == "CT"  # first-instance facts come from a CT slice, not the SC
    [aside] = series.set_aside
    assert (aside.sop_instance_uid, aside.sop_class_uid) == (SOURCE_ROOT + "40.999", SC_STORAGE)
    assert "derived object" in aside.reason


def test_other_strays_are_set_aside_with_their_reason(tmp_path: Path) -> None:
    ours = ct_header(
        study=STUDY, series=SOURCE_ROOT + "40", sop=NODE_ROOT + "7.1", position=(-100.0, -120.0, 500.0)
    )
    mr = ct_header(
        study=STUDY,
        series=SOURCE_ROOT + "40",
        sop=SOURCE_ROOT + "40.777",
        sop_class=MR_STORAGE,
        modality="MR",
    )
    _, sops = _ct_series_with(tmp_path, ours, mr, slices=5)
    [series] = _build(tmp_path).series
    assert series.sop_instance_uids == tuple(sops) and not series.is_node_result
    reasons = {item.sop_instance_uid: item.reason for item in series.set_aside}
    assert reasons.keys() == {NODE_ROOT + "7.1", SOURCE_ROOT + "40.777"}
    assert "UID under this node's root" in reasons[NODE_ROOT + "7.1"]
    assert reasons[SOURCE_ROOT + "40.777"] == "MR Image Storage in a series of CT Image Storage"


def test_a_series_of_results_only_is_still_a_node_result_and_nothing_is_set_aside(tmp_path: Path) -> None:
    for index in range(3):
        seg = ct_header(
            study=STUDY,
            series=SOURCE_ROOT + "50",
            sop=f"{SOURCE_ROOT}50.{index}",
            sop_class=SEG_STORAGE,
            modality="SEG",
            instance_number=index + 1,
        )
        write(seg, tmp_path / "seg" / f"{index}.dcm")
    [series] = _build(tmp_path).series
    assert series.is_node_result is True and series.set_aside == () and series.image_count == 3


def test_set_aside_is_logged_and_survives_the_manifest_json(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sc = ct_header(study=STUDY, series=SOURCE_ROOT + "40", sop=SOURCE_ROOT + "40.999", sop_class=SC_STORAGE)
    _ct_series_with(tmp_path, sc, slices=3)
    caplog.set_level(logging.WARNING)
    manifest = _build(tmp_path)
    assert any("1 of 4 instances set aside" in r.getMessage() for r in caplog.records)
    again = StudyManifest.model_validate_json(manifest.model_dump_json())
    assert again.series[0].set_aside == manifest.series[0].set_aside  # recorded with the manifest


def test_the_study_with_a_stray_routes_instead_of_ending_no_rule(tmp_path: Path) -> None:
    """Before: the SC marked the whole series a node result and the study matched no rule."""
    from dicom_node.routing.match import evaluate
    from dicom_node.routing.rules import Rule, RuleSet

    sc = ct_header(study=STUDY, series=SOURCE_ROOT + "40", sop=SOURCE_ROOT + "40.999", sop_class=SC_STORAGE)
    series_uid, _ = _ct_series_with(tmp_path, sc)
    rule = Rule.model_validate(
        {"name": "ct", "pipeline": "unified-ct", "destinations": ["pacs"], "when": {"modality": "CT"}}
    )
    decision = evaluate(_build(tmp_path), RuleSet(rules=(rule,), source_name="t.yaml", lines={"ct": 1}))
    [match] = decision.matches
    assert match.series_instance_uids == (series_uid,)
