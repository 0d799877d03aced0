from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from dicom_node.imaging.reader import load_series
from dicom_node.imaging.writer import WINDOW_PRESETS, write_ct_series
from tests.unit.dicom_node.imaging.cases import (
    GEOMETRIES,
    PATIENT,
    SERIES_UID,
    STUDY_UID,
    UID_ROOT,
    axial_head_first,
    phantom_hu,
    write_case,
)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_round_trip_preserves_hu_and_lps_affine(tmp_path: Path, geometry: str) -> None:
    affine = GEOMETRIES[geometry]()
    hu = phantom_hu((6, 20, 28))  # non-square: 20 rows × 28 columns
    paths = write_case(tmp_path, hu, affine)
    loaded = load_series(paths)
    np.testing.assert_array_equal(loaded.hu, hu)
    np.testing.assert_allclose(loaded.affine_lps, affine, atol=1e-5)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_affine_agrees_with_highdicom(tmp_path: Path, geometry: str) -> None:
    """highdicom's own series→volume code is an independent reading of the written geometry.

    highdicom sorts right-handed for (slice, down, right), i.e. along column × row = -normal, the
    opposite of the node's convention (contracts.py); ``ensure_handedness`` flips it to ours.
    """
    affine = GEOMETRIES[geometry]()
    hu = phantom_hu((5, 12, 16))
    paths = write_case(tmp_path, hu, affine)
    volume = hd.get_volume_from_series([pydicom.dcmread(p) for p in reversed(paths)])
    volume = volume.ensure_handedness("LEFT_HANDED", flip_axis=0)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(volume.array, hu)


def test_slice_headers_follow_the_affine(tmp_path: Path) -> None:
    affine = GEOMETRIES["oblique"]()
    hu = phantom_hu((4, 10, 14))
    paths = write_case(tmp_path, hu, affine, series_description="SYNTH", body_part_examined="chest")
    normal = np.cross(affine[:3, 2], affine[:3, 1])
    normal /= np.linalg.norm(normal)
    locations = []
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.InstanceNumber == k + 1
        assert ds.Rows == 10 and ds.Columns == 14
        expected = affine @ np.array([k, 0, 0, 1.0])
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected[:3], atol=1e-5)
        locations.append(float(ds.SliceLocation))
        assert ds.FrameOfReferenceUID == pydicom.dcmread(paths[0]).FrameOfReferenceUID
        assert list(ds.WindowCenterWidthExplanation) == [name for _, _, name in WINDOW_PRESETS]
        assert ds.BodyPartExamined == "CHEST"
        assert ds.PatientName == PATIENT.name and ds.PatientID == PATIENT.id
        assert ds.StudyInstanceUID == STUDY_UID and ds.SeriesInstanceUID == SERIES_UID
        assert ds.SOPInstanceUID.startswith(UID_ROOT)
        assert ds.PixelRepresentation == 1 and ds.RescaleSlope == 1 and ds.RescaleIntercept == 0
    steps = np.diff(locations)
    np.testing.assert_allclose(steps, np.linalg.norm(affine[:3, 0]), atol=1e-5)


def test_uids_are_deterministic(tmp_path: Path) -> None:
    hu = phantom_hu((3, 8, 8))
    first = [pydicom.dcmread(p) for p in write_case(tmp_path / "a", hu, axial_head_first())]
    again = [pydicom.dcmread(p) for p in write_case(tmp_path / "b", hu, axial_head_first())]
    other = [
        pydicom.dcmread(p)
        for p in write_case(tmp_path / "c", hu, axial_head_first(), series_uid=UID_ROOT + "99")
    ]
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]
    assert len({d.SOPInstanceUID for d in first}) == 3
    assert first[0].FrameOfReferenceUID == again[0].FrameOfReferenceUID
    assert not {d.SOPInstanceUID for d in first} & {d.SOPInstanceUID for d in other}


def test_rounds_and_clips_to_int16(tmp_path: Path) -> None:
    hu = np.array([[[-1000.4, 12.6], [40000.0, -40000.0]]], dtype=np.float32)
    loaded = load_series(write_case(tmp_path, hu, axial_head_first()))
    np.testing.assert_array_equal(loaded.hu, [[[-1000, 13], [32767, -32768]]])


def test_rejects_slice_axis_against_the_normal(tmp_path: Path) -> None:
    affine = axial_head_first()
    affine[:3, 0] *= -1
    with pytest.raises(ValueError, match="normal"):
        write_case(tmp_path, phantom_hu((2, 4, 4)), affine)


def test_rejects_unsupported_transfer_syntax(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot write"):
        write_ct_series(
            phantom_hu((1, 4, 4)),
            axial_head_first(),
            tmp_path,
            study_instance_uid=STUDY_UID,
            series_instance_uid=SERIES_UID,
            uid_root=UID_ROOT,
            patient=PATIENT,
            transfer_syntax_uid=pydicom.uid.JPEGBaseline8Bit,
        )


def test_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_case(tmp_path, phantom_hu((3, 4, 4)), axial_head_first())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IM00001.dcm", "IM00002.dcm", "IM00003.dcm"]
