from __future__ import annotations

from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless, RLELossless

from dicom_node.contracts import ResultBundle, ResultFile, ResultRole
from dicom_node.delivery import presentation_contexts, select_files
from dicom_node.settings import DicomDestinationSettings
from tests.unit.dicom_node.delivery.objects import (
    BINARY_SEG,
    COMPREHENSIVE_3D_SR,
    GSPS,
    LABELMAP_SEG,
    SECONDARY_CAPTURE,
    make_result_bundle,
)


def _classes(files: list[ResultFile]) -> list[str]:
    return [f.sop_class_uid for f in files]


def test_default_destination_takes_binary_seg_sr_gsps(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path, kinds=("seg-binary", "seg-labelmap", "sr", "gsps", "sc"))
    assert _classes(select_files(bundle, DicomDestinationSettings())) == [
        BINARY_SEG,
        COMPREHENSIVE_3D_SR,
        GSPS,
    ]


def test_labelmap_destination_and_objects_filter(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path, kinds=("seg-binary", "seg-labelmap", "sr", "gsps", "sc"))
    dest = DicomDestinationSettings(seg_type="labelmap", objects=["seg", "sc"])
    assert _classes(select_files(bundle, dest)) == [LABELMAP_SEG, SECONDARY_CAPTURE]


def test_labelmap_falls_back_to_binary_but_never_the_other_way(tmp_path: Path) -> None:
    only_binary = make_result_bundle(tmp_path / "a", kinds=("seg-binary", "sr"))
    assert _classes(select_files(only_binary, DicomDestinationSettings(seg_type="labelmap"))) == [
        BINARY_SEG,
        COMPREHENSIVE_3D_SR,
    ]
    only_labelmap = make_result_bundle(tmp_path / "b", kinds=("seg-labelmap", "sr"))
    assert _classes(select_files(only_labelmap, DicomDestinationSettings(seg_type="binary"))) == [
        COMPREHENSIVE_3D_SR
    ]


def test_skip_already_delivered(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path, kinds=("seg-binary", "sr", "gsps"))
    done = {bundle.files[0].sop_instance_uid, bundle.files[2].sop_instance_uid}
    assert select_files(bundle, DicomDestinationSettings(), skip_sop_instance_uids=done) == [bundle.files[1]]


def _file(sop_class: str, ts: str, n: int) -> ResultFile:
    return ResultFile(
        role=ResultRole.SEG,
        path=f"/x/{n}.dcm",
        sop_class_uid=sop_class,
        sop_instance_uid=f"1.2.3.{n}",
        series_instance_uid="1.2.3",
        transfer_syntax_uid=ts,
    )


def test_presentation_contexts_cover_exactly_what_is_sent() -> None:
    files = [
        _file(BINARY_SEG, str(ExplicitVRLittleEndian), 1),
        _file(BINARY_SEG, str(ImplicitVRLittleEndian), 2),
        _file(LABELMAP_SEG, str(JPEGLSLossless), 3),
        _file(LABELMAP_SEG, str(RLELossless), 4),
        _file(COMPREHENSIVE_3D_SR, str(ExplicitVRLittleEndian), 5),
    ]
    contexts = presentation_contexts(files)
    assert contexts == [
        (BINARY_SEG, [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)]),
        (LABELMAP_SEG, [str(JPEGLSLossless)]),  # compressed: sent as stored, exact syntax
        (LABELMAP_SEG, [str(RLELossless)]),
        (COMPREHENSIVE_3D_SR, [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)]),
    ]


def test_bundle_helper_is_consistent(tmp_path: Path) -> None:
    bundle: ResultBundle = make_result_bundle(tmp_path)
    assert len({f.sop_instance_uid for f in bundle.files}) == len(bundle.files)
