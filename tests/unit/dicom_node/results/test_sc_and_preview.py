from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dicom_node.contracts import ResultRole
from dicom_node.results.coding import FINDING_COLOR_RGB
from dicom_node.results.figures import image_label
from dicom_node.results.preview import render_preview
from dicom_node.results.render import key_slice_pictures
from dicom_node.results.sc import WARNING_TEXT
from dicom_node.results.sources import source_volume
from tests.unit.dicom_node.results.cases import SEGMENTS, analysis, make_case
from tests.unit.dicom_node.results.conftest import Encoded, encode


@pytest.fixture(scope="module")
def overlays(tmp_path_factory: pytest.TempPathFactory) -> Encoded:
    """Big enough (96 × 128) that the burned-in banner leaves the organs visible."""
    root = tmp_path_factory.mktemp("sc")
    return encode(make_case(root, geometry="axial", shape=(5, 96, 128)), root / "out", roles=(ResultRole.SC,))


def test_sc_images_are_rgb_overlays_of_the_key_slices(overlays: Encoded) -> None:
    encoded = overlays
    files = [f for f in encoded.bundle.files if f.role == "sc"]
    labelmap = encoded.case.labelmap
    liver_key = int(np.argmax((labelmap == 1).sum(axis=(1, 2))))
    spleen_key = int(np.argmax((labelmap == 2).sum(axis=(1, 2))))
    expected_keys = sorted({liver_key, spleen_key, encoded.analysis.findings[0].key_slice_index})
    assert len(files) == len(expected_keys)
    series = {f.series_instance_uid for f in files}
    assert len(series) == 1 and series.isdisjoint({str(encoded.case.sources[0].SeriesInstanceUID)})
    for file, k in zip(files, expected_keys, strict=True):
        image = encoded.dataset(Path(file.path).name)
        assert image.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert image.PhotometricInterpretation == "RGB" and image.SamplesPerPixel == 3
        assert (image.Rows, image.Columns) == labelmap.shape[1:]
        assert WARNING_TEXT in image.SeriesDescription and WARNING_TEXT in image.ImageComments
        assert image.BurnedInAnnotation == "NO"  # nothing burned in identifies the patient
        assert image.SourceImageSequence[0].ReferencedSOPInstanceUID == encoded.case.sources[k].SOPInstanceUID
        assert image.PatientID == encoded.case.sources[0].PatientID
        assert image.StudyInstanceUID == encoded.case.sources[0].StudyInstanceUID


def test_sc_liver_is_tinted_in_its_colour(overlays: Encoded) -> None:
    encoded = overlays
    labelmap = encoded.case.labelmap
    liver_key = int(np.argmax((labelmap == 1).sum(axis=(1, 2))))
    file = next(
        f
        for f in encoded.bundle.files
        if f.role == "sc"
        and encoded.dataset(Path(f.path).name).SourceImageSequence[0].ReferencedSOPInstanceUID
        == encoded.case.sources[liver_key].SOPInstanceUID
    )
    pixels = encoded.dataset(Path(file.path).name).pixel_array.astype(int)
    rows, columns = np.nonzero(labelmap[liver_key] == 1)
    inner = (rows.max() - 3, (columns.min() + columns.max()) // 2)  # inside, below the banner
    red, green, blue = pixels[inner]
    assert red > green + 20 and red > blue + 20  # liver colour (221, 130, 101) blended into grey
    outside = pixels[rows.max() - 3, columns.max() + 10]
    assert abs(outside[0] - outside[1]) < 5  # plain grey CT next to it


def test_preview_shows_key_slices_with_colours_and_boxes(tmp_path: Path) -> None:
    case = make_case(tmp_path, shape=(7, 24, 32))
    findings = analysis(case).findings
    path = render_preview(
        case.hu, case.labelmap, segments=SEGMENTS, findings=findings, out_path=tmp_path / "p" / "preview.png"
    )
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert image.shape[1] > 3 * image.shape[0] * 0.9  # three panels side by side
    yellow = (image == np.array(FINDING_COLOR_RGB)).all(axis=2)
    assert yellow.any(), "finding box drawn"
    liver_like = (image[:, :, 0] > image[:, :, 1] + 40) & (image[:, :, 0] > image[:, :, 2] + 40)
    assert liver_like.any(), "liver colour blended"
    assert not list((tmp_path / "p").glob(".*.tmp"))


def test_preview_rejects_mismatched_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        render_preview(
            np.zeros((2, 4, 4)),
            np.zeros((2, 4, 5), np.uint8),
            segments=(),
            findings=(),
            out_path=tmp_path / "x.png",
        )


def test_images_are_named_as_the_pacs_shows_them(tmp_path: Path) -> None:
    """Issue 12 item 12: "image 5" where the PACS shows Instance 282. Captions and comments use
    the source's SeriesNumber and InstanceNumber, whatever the slice's position in the volume."""
    case = make_case(tmp_path, shape=(7, 24, 32))
    for k, ds in enumerate(case.sources):
        ds.InstanceNumber = 300 - 3 * k  # a PACS numbering that runs against the slice order
        ds.SeriesNumber = 3
    volume = source_volume(case.sources, case.labelmap.shape)
    assert image_label(volume, 2) == "series 3, image 294"
    encoded = encode(case, tmp_path / "out", roles=(ResultRole.SC,))
    for record in encoded.bundle.files:
        sc = pydicom.dcmread(record.path)
        source_uid = sc.SourceImageSequence[0].ReferencedSOPInstanceUID
        k = next(i for i, ds in enumerate(case.sources) if ds.SOPInstanceUID == source_uid)
        assert f"series 3, image {300 - 3 * k}." in sc.ImageComments
    path = render_preview(
        case.hu,
        case.labelmap,
        segments=SEGMENTS,
        findings=(),
        out_path=tmp_path / "p.png",
        sources=case.sources,
    )
    assert path.exists()


def test_every_piece_is_outlined(tmp_path: Path) -> None:
    """Ribs: one structure in several pieces on a slice; each piece is outlined, not the largest."""
    labelmap = np.zeros((1, 20, 40), dtype=np.uint8)
    for column in (4, 14, 24, 34):
        labelmap[0, 5:9, column : column + 3] = 1
    (picture,) = key_slice_pictures(labelmap, segments=SEGMENTS[:1], findings=(), key_slices=[0])
    assert len(picture.outlines) == 4
    (anchor, _, _) = picture.captions[0]
    assert labelmap[0, int(anchor[1]), int(anchor[0])] == 1  # the caption sits on the structure
