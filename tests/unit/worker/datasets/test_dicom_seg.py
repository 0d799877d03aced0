"""DICOM CT + SEG pairs as a dataset (worker/datasets/dicom_seg.py): pairing, masks on the CT
grid, segment names mapped into the vocabulary, an unknown one listed and not written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")

import highdicom as hd
from pydicom import dcmread
from pydicom.sr.codedict import codes

from worker.datasets.dicom_seg import find_ct_seg_pairs, read_pair, write_pairs_as_nnunet
from worker.demo.synth_study import make_synthetic_study


def _segment(number: int, label: str, prop: hd.sr.CodedConcept) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=codes.SCT.Organ,
        segmented_property_type=prop,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


@pytest.fixture
def ct_and_seg(tmp_path: Path) -> tuple[Path, np.ndarray]:
    study = make_synthetic_study(tmp_path / "in", seed=4, slices=8, matrix=32)
    sources = [dcmread(p) for p in study.dicom_paths]
    order = np.argsort([float(d.ImagePositionPatient[2]) for d in sources])
    sources = [sources[i] for i in order]
    mask = np.zeros((len(sources), 32, 32, 2), dtype=bool)
    mask[2:5, 10:20, 8:14, 0] = True  # "Liver"
    mask[6, 1:3, 1:3, 1] = True  # a label and type the vocabulary does not know
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            _segment(1, "Liver", codes.SCT.Liver),
            _segment(2, "Glorbic node", hd.sr.CodedConcept("T-9999", "99TEST", "Glorbic node")),
        ],
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(tmp_path / "in" / "dicom" / "seg.dcm")
    return tmp_path / "in" / "dicom", mask


def test_pairs_are_found_and_masks_land_on_the_ct_grid(ct_and_seg: tuple[Path, np.ndarray]) -> None:
    folder, mask = ct_and_seg
    (pair,) = find_ct_seg_pairs(folder)
    assert pair.case_id.startswith("ct_") and len(pair.ct_paths) == 8
    hu, affine, masks = read_pair(pair)
    assert hu.shape == mask.shape[:3] and affine.shape == (4, 4)
    assert set(masks) == {"Liver", "Glorbic node"}
    # The CT volume's slices are in the reader's order; the SEG frames follow the same sources.
    assert int(masks["Liver"].sum()) == int(mask[..., 0].sum())


def test_pairs_become_an_nnunet_dataset_with_the_unknown_name_listed(
    ct_and_seg: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    from inference.datasets.nnunet import read_nnunet

    folder, mask = ct_and_seg
    result = write_pairs_as_nnunet(folder, tmp_path / "ds", progress=False)
    assert result["written"] == 1 and result["unknown"] == ["Glorbic node"]
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1}  # the unknown segment is not written
    index = read_nnunet(tmp_path / "ds")
    masks = dict(index.cases[0].load().masks())
    assert int(masks["liver"].sum()) == int(mask[..., 0].sum())
    card = json.loads(Path(result["card"]).read_text())
    assert card["unknown_names"] == ["Glorbic node"]
    again = write_pairs_as_nnunet(folder, tmp_path / "ds", progress=False)
    assert again["written"] == 0 and again["skipped"] == 1


def test_a_seg_without_referenced_series_is_paired_by_its_source_images(
    ct_and_seg: tuple[Path, np.ndarray],
) -> None:
    """Some writers leave out the Referenced Series Sequence; the frames' Source Image Sequence
    still names the CT images, and so their series."""
    folder, _mask = ct_and_seg
    seg = dcmread(folder / "seg.dcm")
    assert "ReferencedSeriesSequence" in seg  # the fixture's SEG had it: this test removes it
    del seg.ReferencedSeriesSequence
    seg.save_as(folder / "seg.dcm")
    (pair,) = find_ct_seg_pairs(folder)
    assert len(pair.ct_paths) == 8 and pair.segment_names == ("Liver", "Glorbic node")
