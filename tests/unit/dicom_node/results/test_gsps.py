from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from scipy import ndimage

from dicom_node.contracts import ResultRole
from dicom_node.results.coding import cielab, segment_color
from dicom_node.results.figures import format_hu, format_volume_ml, plain
from tests.unit.dicom_node.results.cases import SEGMENTS, make_case
from tests.unit.dicom_node.results.conftest import Encoded, encode


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Encoded:
    """A 20-row × 48-column feet-first CT with the spleen far right (columns > rows):
    swapping (column, row) would put its outline outside the image."""
    root = tmp_path_factory.mktemp("wide")
    case = make_case(root, geometry="feet-first", shape=(6, 20, 48))
    case.labelmap[case.labelmap == 2] = 0
    case.labelmap[2:4, 12:17, 36:45] = 2
    return encode(case, root / "out", roles=(ResultRole.GSPS,))


def _annotations(gsps: Dataset) -> list[Dataset]:
    return list(gsps.GraphicAnnotationSequence)


def test_graphic_data_is_column_row_inside_the_image(wide: Encoded) -> None:
    gsps = wide.dataset("gsps.dcm")
    rows, columns = wide.case.labelmap.shape[1:]
    by_uid = {str(ds.SOPInstanceUID): k for k, ds in enumerate(wide.case.sources)}
    spleen_seen = False
    for annotation in _annotations(gsps):
        k = by_uid[annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
        for graphic in annotation.get("GraphicObjectSequence", []):
            assert graphic.GraphicAnnotationUnits == "PIXEL"
            points = np.array(graphic.GraphicData, dtype=float).reshape(-1, 2)
            assert (points[:, 0] >= 0).all() and (points[:, 0] <= columns).all()
            assert (points[:, 1] >= 0).all() and (points[:, 1] <= rows).all()
            if annotation.GraphicLayer.startswith("S02"):
                spleen_seen = True
                mask_rows, mask_columns = np.nonzero(wide.case.labelmap[k] == 2)
                # x is the column: the outline spans exactly the spleen's columns, y its rows.
                assert (points[:, 0].min(), points[:, 0].max()) == (
                    mask_columns.min(),
                    mask_columns.max() + 1,
                )
                assert (points[:, 1].min(), points[:, 1].max()) == (mask_rows.min(), mask_rows.max() + 1)
                assert points[:, 0].max() > rows  # only possible as a column
    assert spleen_seen


def test_one_annotation_per_layer_and_image_within_the_series(wide: Encoded) -> None:
    gsps = wide.dataset("gsps.dcm")
    keys = [
        (a.GraphicLayer, a.ReferencedImageSequence[0].ReferencedSOPInstanceUID) for a in _annotations(gsps)
    ]
    assert len(keys) == len(set(keys))
    assert all(len(a.ReferencedImageSequence) == 1 for a in _annotations(gsps))
    (series,) = gsps.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == wide.case.sources[0].SeriesInstanceUID
    referenced = {i.ReferencedSOPInstanceUID for i in series.ReferencedImageSequence}
    assert referenced == {str(ds.SOPInstanceUID) for ds in wide.case.sources}
    assert gsps.BodyPartExamined == "ABDOMEN"


def test_layers_colours_and_texts(wide: Encoded) -> None:
    gsps = wide.dataset("gsps.dcm")
    layers = {layer.GraphicLayer: layer for layer in gsps.GraphicLayerSequence}
    assert set(layers) == {"S01 LIVER", "S02 SPLEEN", "FINDINGS", "SNIPPETS"}  # kidney has no voxel
    liver = layers["S01 LIVER"]
    assert list(liver.GraphicLayerRecommendedDisplayCIELabValue) == list(
        cielab(segment_color(SEGMENTS[0])).value
    )
    texts = {
        a.GraphicLayer: [t.UnformattedTextValue for t in a.get("TextObjectSequence", [])]
        for a in _annotations(gsps)
    }
    voxel_ml = abs(float(np.linalg.det(wide.case.affine[:3, :3]))) / 1000
    spleen = wide.case.labelmap == 2
    spleen_ml = np.count_nonzero(spleen) * voxel_ml
    measured = next(m for m in wide.analysis.measurements if m.segment_number == 2)
    # the numbers of the SR and the PDF: volume from the SEG's voxels, the pipeline's mean HU
    assert texts["S02 SPLEEN"] == [
        plain(
            f"Spleen: {format_volume_ml(spleen_ml)}, "
            f"mean {format_hu(measured.mean_hu)} (SD {round(measured.std_hu)})"
        )
    ]
    assert texts["FINDINGS"][0].startswith("Liver lesion: 6 x 5 x 4 mm, 0.08 mL, mean 20 HU, series ")
    assert texts["SNIPPETS"] == [wide.analysis.snippets[0].text]


def test_key_slice_is_where_the_segment_is_largest(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(6, 16, 16))
    case.labelmap[4, 2:12, 2:12] = 1  # slice 4 now has the largest liver area
    result = encode(case, tmp_path / "out", roles=(ResultRole.GSPS,))
    gsps = result.dataset("gsps.dcm")
    liver = next(a for a in _annotations(gsps) if a.GraphicLayer == "S01 LIVER")
    assert liver.ReferencedImageSequence[0].ReferencedSOPInstanceUID == case.sources[4].SOPInstanceUID


# ---------------------------------------------------------------------------------------------
# Geometry checked without a viewer (issue 14 item 3)
# ---------------------------------------------------------------------------------------------


def _segment_distances(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest segment of a polyline ((column, row) coordinates)."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    length2 = np.maximum((ab**2).sum(axis=1), 1e-12)
    t = np.clip(((points[:, None, :] - a[None]) * ab[None]).sum(axis=2) / length2[None], 0, 1)
    nearest = a[None] + t[..., None] * ab[None]
    return np.sqrt(((points[:, None, :] - nearest) ** 2).sum(axis=2)).min(axis=1)


def _outer_boundary_pixels(mask: np.ndarray) -> np.ndarray:
    """(column, row) centres of the pixels on the outer edge of each piece (holes filled)."""
    filled = ndimage.binary_fill_holes(mask)
    edge = filled & ~ndimage.binary_erosion(filled, border_value=0)
    rows, columns = np.nonzero(edge)
    return np.stack([columns + 0.5, rows + 0.5], axis=1)


def _seg_frames(seg: Dataset, sources: list[Dataset]) -> dict[tuple[int, int], np.ndarray]:
    """(segment number, slice index) -> that frame of the written SEG, read back."""
    by_uid = {str(ds.SOPInstanceUID): k for k, ds in enumerate(sources)}
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    out = {}
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        out[(number, by_uid[str(uid)])] = pixels[index].astype(bool)
    return out


@pytest.mark.parametrize("shape", [(6, 20, 48), (5, 8, 8)], ids=["wide", "tiny"])
def test_gsps_geometry_against_the_seg(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    """dcmpschk-independent checks: every graphic inside its image, every outline within 1 pixel of
    the SEG's contour on that slice (all pieces), every text anchored inside the body and on what it
    names. The 5×8×8 case has a detection box reaching outside the image (highdicom refused it:
    "graphic data outside the valid range")."""
    case = make_case(tmp_path, geometry="feet-first", shape=shape)
    if shape[1] > 8:  # a structure in three pieces on one slice (ribs)
        case.labelmap[case.labelmap == 2] = 0
        for column in (30, 36, 42):
            case.labelmap[2:4, 12:16, column : column + 3] = 2
    body = case.hu > -500
    case.labelmap[~body] = 0  # as a pipeline's structures are: inside the body
    result = encode(case, tmp_path / "out", roles=(ResultRole.SEG, ResultRole.GSPS))
    gsps, seg = result.dataset("gsps.dcm"), result.dataset("seg.dcm")
    frames = _seg_frames(seg, case.sources)
    rows, columns = shape[1:]
    by_uid = {str(ds.SOPInstanceUID): k for k, ds in enumerate(case.sources)}
    outlines_checked = 0
    for annotation in _annotations(gsps):
        k = by_uid[annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
        layer = str(annotation.GraphicLayer)
        number = int(layer[1:3]) if layer.startswith("S") and layer[1:3].isdigit() else None
        polylines = []
        for graphic in annotation.get("GraphicObjectSequence", []):
            points = np.array(graphic.GraphicData, dtype=float).reshape(-1, 2)
            assert (points >= 0).all() and (points[:, 0] <= columns).all() and (points[:, 1] <= rows).all()
            polylines.append(points)
        if number is not None:
            contour = _outer_boundary_pixels(frames[(number, k)])
            outline_vertices = np.concatenate(polylines)
            # every vertex is a corner of a boundary pixel; every boundary pixel is next to an outline
            to_contour = np.sqrt(((outline_vertices[:, None, :] - contour[None]) ** 2).sum(axis=2)).min(
                axis=1
            )
            assert (to_contour <= 1.0).all(), to_contour.max()
            nearest = np.min([_segment_distances(contour, line) for line in polylines], axis=0)
            assert (nearest <= 1.0).all(), nearest.max()
            assert len(polylines) == ndimage.label(frames[(number, k)], structure=np.ones((3, 3)))[1]
            outlines_checked += 1
        for text in annotation.get("TextObjectSequence", []):
            column, row = (float(v) for v in text.AnchorPoint)
            assert 0 <= column <= columns and 0 <= row <= rows
            pixel = (min(int(row), rows - 1), min(int(column), columns - 1))
            if number is not None:
                assert frames[(number, k)][pixel], (layer, pixel)  # on the structure it names
                assert body[k][pixel], (layer, pixel)
            elif layer == "FINDINGS":
                assert body[k][pixel], (layer, pixel)
    assert outlines_checked >= 1
    if shape[1] > 8:
        spleen = [a for a in _annotations(gsps) if str(a.GraphicLayer).startswith("S02")]
        assert len(spleen[0].GraphicObjectSequence) == 3  # every rib, not only the largest


@pytest.mark.slow
def test_dcmpschk_on_the_tiny_case(tmp_path: Path) -> None:
    tool = shutil.which("dcmpschk")
    if tool is None:
        pytest.fail("dcmpschk not found: scripts/setup installs DCMTK")
    case = make_case(tmp_path, shape=(5, 8, 8))
    result = encode(case, tmp_path / "out", roles=(ResultRole.GSPS,))
    out = subprocess.run(
        [tool, str(result.out_dir / "gsps.dcm")], capture_output=True, text=True, timeout=120
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "Test passed" in text, text
