from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from dicom_node.errors import PermanentError
from dicom_node.imaging.reader import load_series, load_series_from_datasets
from tests.unit.dicom_node.imaging.cases import (
    GEOMETRIES,
    STUDY_UID,
    UID_ROOT,
    axial_head_first,
    feet_first,
    phantom_hu,
    write_case,
)


@pytest.fixture
def series(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    hu = phantom_hu((7, 16, 20))
    affine = GEOMETRIES["oblique"]()
    return hu, affine, write_case(tmp_path / "ct", hu, affine)


def test_sorts_shuffled_files(series: tuple[np.ndarray, np.ndarray, list[Path]]) -> None:
    hu, affine, paths = series
    shuffled = list(paths)
    random.Random(3).shuffle(shuffled)
    assert shuffled != paths
    loaded = load_series(shuffled)
    np.testing.assert_array_equal(loaded.hu, hu)
    np.testing.assert_allclose(loaded.affine_lps, affine, atol=1e-5)
    assert loaded.paths == tuple(paths)
    assert [int(d.InstanceNumber) for d in loaded.datasets] == list(range(1, 8))
    assert loaded.sop_instance_uids == tuple(str(pydicom.dcmread(p).SOPInstanceUID) for p in paths)
    assert all("PixelData" not in d for d in loaded.datasets)
    assert loaded.frame_numbers == (None,) * 7


def test_feet_first_sorts_along_the_normal(tmp_path: Path) -> None:
    hu = phantom_hu((5, 8, 9))
    affine = feet_first()
    loaded = load_series(list(reversed(write_case(tmp_path, hu, affine))))
    # The normal of IOP (-1,0,0,0,1,0) points to the feet: z decreases with the slice index.
    z = [float(d.ImagePositionPatient[2]) for d in loaded.datasets]
    assert z == sorted(z, reverse=True)
    np.testing.assert_array_equal(loaded.hu, hu)
    np.testing.assert_allclose(loaded.affine_lps, affine, atol=1e-5)
    assert loaded.spacing_mm == pytest.approx((3.0, 0.75, 0.75))


def test_from_datasets_equals_from_files(series: tuple[np.ndarray, np.ndarray, list[Path]]) -> None:
    _, _, paths = series
    datasets = [pydicom.dcmread(p) for p in reversed(paths)]
    from_memory = load_series_from_datasets(datasets)
    from_files = load_series(paths)
    np.testing.assert_array_equal(from_memory.hu, from_files.hu)
    np.testing.assert_array_equal(from_memory.affine_lps, from_files.affine_lps)
    assert from_memory.sop_instance_uids == from_files.sop_instance_uids
    assert from_memory.paths == ()
    assert all("PixelData" in d for d in datasets), "the caller's datasets must not be modified"
    assert all("PixelData" not in d for d in from_memory.datasets)


def test_rescale_slope_and_intercept_per_slice(tmp_path: Path) -> None:
    hu = (phantom_hu((4, 8, 8)) // 2) * 2  # even HU, so slope 2 is exact
    paths = write_case(tmp_path, hu, axial_head_first())
    for k in (1, 3):
        ds = pydicom.dcmread(paths[k])
        stored = ((hu[k] + 1024) // 2).astype(np.int16)
        ds.PixelData = stored.tobytes()
        ds.RescaleSlope = "2"
        ds.RescaleIntercept = "-1024"
        ds.save_as(paths[k])
    loaded = load_series(paths)
    np.testing.assert_array_equal(loaded.hu, hu)
    assert loaded.hu.dtype == np.float32


@pytest.mark.parametrize(
    "transfer_syntax",
    [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless],
    ids=lambda uid: uid.name,
)
def test_lossless_transfer_syntaxes_decode_to_the_same_hu(tmp_path: Path, transfer_syntax: str) -> None:
    hu = phantom_hu((3, 64, 48))  # OpenJPEG refuses its default 6 resolutions on tiny tiles
    paths = write_case(tmp_path, hu, axial_head_first(), transfer_syntax_uid=transfer_syntax)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == transfer_syntax
    loaded = load_series(paths)
    np.testing.assert_array_equal(loaded.hu, hu)
    from_memory = load_series_from_datasets([pydicom.dcmread(p) for p in paths])
    np.testing.assert_array_equal(from_memory.hu, hu)


def _dcmcjpeg(src: Path, dst: Path, mode: str) -> None:
    tool = shutil.which("dcmcjpeg")
    if tool is None:
        pytest.skip("DCMTK dcmcjpeg not installed (Debian dcmtk)")
    subprocess.run([tool, mode, str(src), str(dst)], check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize(
    ("mode", "transfer_syntax"), [("+e1", JPEGLosslessSV1), ("+el", JPEGLossless)], ids=["sv1", "process14"]
)
def test_jpeg_lossless_decodes_to_the_same_hu(tmp_path: Path, mode: str, transfer_syntax: str) -> None:
    hu = phantom_hu((3, 16, 12))
    paths = write_case(tmp_path / "src", hu, axial_head_first())
    out = tmp_path / "jpeg"
    out.mkdir()
    jpeg_paths = []
    for path in paths:
        _dcmcjpeg(path, out / path.name, mode)
        jpeg_paths.append(out / path.name)
    assert pydicom.dcmread(jpeg_paths[0]).file_meta.TransferSyntaxUID == transfer_syntax
    np.testing.assert_array_equal(load_series(jpeg_paths).hu, hu)


def _unsigned_series(out_dir: Path, hu: np.ndarray, *, bits: int, slope: int) -> list[Path]:
    """CT slices stored unsigned with fewer bits (what lossy JPEG processes can carry)."""
    out_dir.mkdir(parents=True)
    affine = axial_head_first()
    paths = []
    for k in range(hu.shape[0]):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=["unsigned", str(bits), str(k)])
        ds.StudyInstanceUID = STUDY_UID
        ds.SeriesInstanceUID = UID_ROOT + "55"
        ds.Modality = "CT"
        ds.ImagePositionPatient = [float(v) for v in (affine @ [k, 0, 0, 1])[:3]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.8, 0.7]
        ds.Rows, ds.Columns = hu.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 8 if bits == 8 else 16
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = -1024
        stored = ((hu[k] + 1024) / slope).astype(np.uint8 if bits == 8 else np.uint16)
        ds.PixelData = stored.tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out_dir / f"{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _smooth_hu() -> np.ndarray:
    s, r, c = np.meshgrid(np.arange(3), np.arange(32), np.arange(24), indexing="ij")
    return (-904 + 24 * r + 16 * c + 8 * s).astype(np.float32)  # multiples of 8 that fit 8 bits at slope 8


def test_jpeg_baseline_decodes_close_to_the_source(tmp_path: Path) -> None:
    # Smooth content: lossy JPEG keeps it within a few stored values.
    bits, slope = 8, 8
    hu = _smooth_hu()
    paths = _unsigned_series(tmp_path / "src", hu, bits=bits, slope=slope)
    exact = load_series(paths).hu
    np.testing.assert_array_equal(exact, hu)
    out = tmp_path / "jpeg"
    out.mkdir()
    for path in paths:
        _dcmcjpeg(path, out / path.name, "+eb")
    jpeg_paths = [out / p.name for p in paths]
    assert pydicom.dcmread(jpeg_paths[0]).file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    decoded = load_series(jpeg_paths).hu
    assert np.mean(np.abs(decoded - hu)) < slope  # under one stored value on average
    assert np.abs(decoded - hu).max() <= 4 * slope


def test_jpeg_extended_12bit_is_a_clear_permanent_error(tmp_path: Path) -> None:
    """No installed decoder handles 12-bit JPEG Extended (only the GPL pylibjpeg-libjpeg would)."""
    paths = _unsigned_series(tmp_path / "src", _smooth_hu(), bits=12, slope=1)
    out = tmp_path / "jpeg"
    out.mkdir()
    for path in paths:
        _dcmcjpeg(path, out / path.name, "+ee")
    jpeg_paths = [out / p.name for p in paths]
    assert pydicom.dcmread(jpeg_paths[0]).file_meta.TransferSyntaxUID == JPEGExtended12Bit
    with pytest.raises(PermanentError, match="pixel data cannot be decoded"):
        load_series(jpeg_paths)


def test_enhanced_ct_multiframe(series: tuple[np.ndarray, np.ndarray, list[Path]], tmp_path: Path) -> None:
    hu, affine, paths = series
    legacy = [pydicom.dcmread(p) for p in paths]
    random.Random(1).shuffle(legacy)  # frames in a non-sorted order inside the instance
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy,
        series_instance_uid=UID_ROOT + "77",
        series_number=9,
        sop_instance_uid=UID_ROOT + "78",
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    loaded = load_series([path])
    np.testing.assert_array_equal(loaded.hu, hu)
    np.testing.assert_allclose(loaded.affine_lps, affine, atol=1e-5)
    assert loaded.sop_instance_uids == (UID_ROOT + "78",) * 7
    header = loaded.datasets[0]
    for k, frame_number in enumerate(loaded.frame_numbers):
        assert frame_number is not None
        item = header.PerFrameFunctionalGroupsSequence[frame_number - 1]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, (affine @ [k, 0, 0, 1])[:3], atol=1e-4)
    assert sorted(loaded.frame_numbers) == list(range(1, 8))  # type: ignore[type-var]
    np.testing.assert_array_equal(load_series_from_datasets([pydicom.dcmread(path)]).hu, hu)


def test_gap_is_rejected(series: tuple[np.ndarray, np.ndarray, list[Path]]) -> None:
    _, _, paths = series
    with pytest.raises(PermanentError, match="gap"):
        load_series(paths[:3] + paths[4:])


def test_duplicate_position_is_rejected(
    series: tuple[np.ndarray, np.ndarray, list[Path]], tmp_path: Path
) -> None:
    _, _, paths = series
    ds = pydicom.dcmread(paths[2])
    ds.SOPInstanceUID = UID_ROOT + "3.3.3"
    copy = tmp_path / "copy.dcm"
    ds.save_as(copy)
    with pytest.raises(PermanentError, match="duplicate slice position"):
        load_series([*paths, copy])


def test_irregular_spacing_is_rejected(series: tuple[np.ndarray, np.ndarray, list[Path]]) -> None:
    _, affine, paths = series
    ds = pydicom.dcmread(paths[3])
    shifted = (affine @ [2.6, 0, 0, 1])[:3]
    ds.ImagePositionPatient = [float(v) for v in shifted]
    ds.save_as(paths[3])
    with pytest.raises(PermanentError, match="irregular slice spacing"):
        load_series(paths)


def test_mixed_orientation_is_rejected(series: tuple[np.ndarray, np.ndarray, list[Path]]) -> None:
    _, _, paths = series
    ds = pydicom.dcmread(paths[5])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(paths[5])
    with pytest.raises(PermanentError, match="mixed orientation"):
        load_series(paths)


def test_mixed_matrix_and_series_are_rejected(tmp_path: Path) -> None:
    a = write_case(tmp_path / "a", phantom_hu((3, 8, 8)), axial_head_first())
    b = write_case(tmp_path / "b", phantom_hu((3, 8, 10)), feet_first(), series_uid=UID_ROOT + "5")
    with pytest.raises(PermanentError, match="different series"):
        load_series([*a, *b])
    ds = pydicom.dcmread(b[0])
    ds.SeriesInstanceUID = pydicom.dcmread(a[0]).SeriesInstanceUID
    ds.save_as(b[0])
    with pytest.raises(PermanentError, match="mixed matrix size"):
        load_series([*a, b[0]])


def test_localizer_in_the_series_is_skipped(
    series: tuple[np.ndarray, np.ndarray, list[Path]], tmp_path: Path
) -> None:
    hu, _, paths = series
    ds = pydicom.dcmread(paths[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.SOPInstanceUID = UID_ROOT + "4.4"
    scout = tmp_path / "scout.dcm"
    ds.save_as(scout)
    loaded = load_series([scout, *paths])
    np.testing.assert_array_equal(loaded.hu, hu)


def test_unreadable_and_empty_inputs(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(PermanentError, match="not readable"):
        load_series([junk])
    with pytest.raises(PermanentError, match="no files"):
        load_series([])
    no_pixels = Dataset()
    no_pixels.SOPInstanceUID = "1.2.3"
    with pytest.raises(PermanentError, match="no pixel data"):
        load_series_from_datasets([no_pixels])


def test_single_slice_uses_the_slice_thickness(tmp_path: Path) -> None:
    hu = phantom_hu((1, 6, 6))
    affine = axial_head_first()
    loaded = load_series(write_case(tmp_path, hu, affine))
    np.testing.assert_allclose(loaded.affine_lps, affine, atol=1e-6)


def _set_everywhere(paths: list[Path], **attributes: object) -> None:
    """Write raw values (also ones pydicom would refuse to assign: NaN, 1e6) into every file."""
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in attributes.items():
            tag = pydicom.datadict.tag_for_keyword(keyword)
            raw = str(value).encode("ascii")
            raw += b" " * (len(raw) % 2)
            vr = pydicom.datadict.dictionary_VR(tag)
            # A raw element is written as it is: pydicom does not validate it on the way out.
            ds[tag] = RawDataElement(BaseTag(tag), vr, len(raw), raw, 0, False, True)
        ds.save_as(path)


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"RescaleSlope": "NaN"}, "not finite"),
        ({"RescaleIntercept": "inf"}, "not finite"),
        ({"RescaleSlope": "0"}, "RescaleSlope 0 is not a CT rescale"),
        ({"RescaleSlope": "-1"}, "RescaleSlope -1 is not a CT rescale"),
        ({"RescaleSlope": "two"}, "is not a number"),
        ({"PixelSpacing": "0\\0"}, "PixelSpacing 0 mm is implausible"),
        ({"PixelSpacing": "1e6\\1e6"}, "PixelSpacing 1e\\+06 mm is implausible"),
        ({"PixelSpacing": "-0.7\\0.7"}, "PixelSpacing -0.7 mm is implausible"),
        ({"PixelSpacing": "15\\15"}, "field of view of 240 mm|field of view"),
        ({"ImageOrientationPatient": "0\\0\\0\\0\\0\\0"}, "not two orthogonal unit vectors"),
        ({"ImageOrientationPatient": "1\\0\\0\\1\\0\\0"}, "not two orthogonal unit vectors"),
        ({"ImageOrientationPatient": "2\\0\\0\\0\\1\\0"}, "not two orthogonal unit vectors"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_values_no_ct_scanner_writes_are_refused_with_the_attribute(
    tmp_path: Path, attributes: dict[str, str], reason: str
) -> None:
    """Issue 12 item 6: implausible geometry and rescale fail the job before inference."""
    paths = write_case(tmp_path / "ct", phantom_hu((4, 16, 16)), axial_head_first())
    _set_everywhere(paths, **attributes)
    if reason.startswith("field of view"):
        with pytest.raises(PermanentError, match="field of view"):
            # 16 columns × 15 mm = 240 mm is fine; a 512 matrix at 15 mm (7680 mm) is not.
            paths_512 = write_case(tmp_path / "big", phantom_hu((2, 512, 512)), axial_head_first())
            _set_everywhere(paths_512, PixelSpacing="15\\15")
            load_series(paths_512)
        return
    with pytest.raises(PermanentError, match=reason):
        load_series(paths)


def test_implausible_slice_steps_and_lengths_are_refused(tmp_path: Path) -> None:
    hu = phantom_hu((3, 8, 8))
    tight = axial_head_first()
    tight[:3, 0] = (0, 0, 0.03)  # 0.03 mm between slices
    with pytest.raises(PermanentError, match=r"slice step 0\.03 mm"):
        load_series(write_case(tmp_path / "tight", hu, tight))
    far = axial_head_first()
    far[:3, 0] = (0, 0, 2000.0)
    with pytest.raises(PermanentError, match="slice step 2000 mm"):
        load_series(write_case(tmp_path / "far", hu, far))
