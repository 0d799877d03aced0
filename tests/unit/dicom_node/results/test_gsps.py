from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicom_node.contracts import ResultRole
from dicom_node.results.coding import cielab, segment_color
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
    spleen_ml = np.count_nonzero(wide.case.labelmap == 2) * voxel_ml
    assert texts["S02 SPLEEN"] == [f"Spleen: {9 * 0.75:.0f} x {5 * 0.75:.0f} mm, {spleen_ml:.1f} mL"]
    assert texts["FINDINGS"][0].startswith("Liver lesion 6 x 5 x 4 mm")
    assert texts["SNIPPETS"] == [wide.analysis.snippets[0].text]


def test_key_slice_is_where_the_segment_is_largest(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(6, 16, 16))
    case.labelmap[4, 2:12, 2:12] = 1  # slice 4 now has the largest liver area
    result = encode(case, tmp_path / "out", roles=(ResultRole.GSPS,))
    gsps = result.dataset("gsps.dcm")
    liver = next(a for a in _annotations(gsps) if a.GraphicLayer == "S01 LIVER")
    assert liver.ReferencedImageSequence[0].ReferencedSOPInstanceUID == case.sources[4].SOPInstanceUID
