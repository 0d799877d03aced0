"""Dataset readers on tiny folders made here: nnU-Net raw and TotalSegmentator layouts, names
mapped into the vocabulary, unknown names listed (never guessed), the dataset card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")

from inference.datasets.card import CARD_NAME, write_dataset_card
from inference.datasets.nifti import load_nifti_lps, save_nifti_lps
from inference.datasets.nnunet import NnUNetWriter, read_nnunet
from inference.datasets.totalseg import read_dataset, read_totalseg

SHAPE = (6, 8, 10)
AFFINE = np.diag([2.0, 1.5, 1.5, 1.0])  # index (i, j, k) → LPS (x, y, z) mm


def _labelmap() -> np.ndarray:
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[1:3, 1:4, 1:4] = 1  # 18 voxels
    lab[3:5, 4:6, 5:9] = 2  # 16 voxels
    lab[5, 0, 0] = 3  # 1 voxel
    return lab


def _hu() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)


def test_nifti_round_trip_keeps_array_and_lps_affine(tmp_path: Path) -> None:
    save_nifti_lps(tmp_path / "a.nii.gz", _hu(), AFFINE)
    data, affine = load_nifti_lps(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(data, _hu())
    np.testing.assert_allclose(affine, AFFINE)


def test_nnunet_reader_maps_names_and_lists_unknown(tmp_path: Path) -> None:
    root = tmp_path / "Dataset001_Tiny"
    for case in ("case_a", "case_b"):
        save_nifti_lps(root / "imagesTr" / f"{case}_0000.nii.gz", _hu(), AFFINE)
        save_nifti_lps(root / "labelsTr" / f"{case}.nii.gz", _labelmap(), AFFINE)
    save_nifti_lps(root / "imagesTr" / "nolabel_0000.nii.gz", _hu(), AFFINE)  # skipped: no labels
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "liver": 1, "kidney_left": 2, "glorbic_node": 3},
                "numTraining": 2,
                "file_ending": ".nii.gz",
            }
        )
    )
    index = read_nnunet(root)
    assert [c.case_id for c in index.cases] == ["case_a", "case_b"]
    assert index.mapping.mapped == {"liver": "liver", "kidney_left": "left kidney"}
    assert index.unknown == ("glorbic_node",)
    masks = dict(index.cases[0].load().masks())
    assert {k: int(v.sum()) for k, v in masks.items()} == {"liver": 18, "kidney_left": 16, "glorbic_node": 1}

    card = json.loads(write_dataset_card(index, tmp_path / "card").read_text())
    assert card["n_cases"] == 2 and card["layout"] == "nnunet"
    assert card["unknown_names"] == ["glorbic_node"]
    assert card["structures"]["kidney_left"] == {"vocabulary": "left kidney", "training_label": "left kidney"}
    assert card["spacings_mm"] == [[2.0, 1.5, 1.5]]


def test_totalseg_reader_reads_segmentations_folder(tmp_path: Path) -> None:
    subject = tmp_path / "ts" / "s0001"
    save_nifti_lps(subject / "ct.nii.gz", _hu(), AFFINE)
    lab = _labelmap()
    for value, name in ((1, "liver"), (2, "lung_upper_lobe_left"), (3, "wobble_gland")):
        save_nifti_lps(subject / "segmentations" / f"{name}.nii.gz", (lab == value).astype(np.uint8), AFFINE)
    index = read_dataset(tmp_path / "ts")  # a folder of subjects, layout detected
    assert index.layout == "totalsegmentator" and [c.case_id for c in index.cases] == ["s0001"]
    assert index.mapping.mapped == {"liver": "liver", "lung_upper_lobe_left": "left upper lobe"}
    assert index.unknown == ("wobble_gland",)
    masks = dict(index.cases[0].load().masks())
    assert int(masks["lung_upper_lobe_left"].sum()) == 16


def test_totalseg_multilabel_and_masks_on_another_grid(tmp_path: Path) -> None:
    """labels.nii.gz + classes.json (subject_a's form), and a crop whose mask lies on a larger
    grid than the image (subject_c_pulmonary's heart): brought onto the image grid."""
    subject = tmp_path / "multi"
    save_nifti_lps(subject / "ct.nii.gz", _hu(), AFFINE)
    save_nifti_lps(subject / "labels.nii.gz", _labelmap(), AFFINE)
    (subject / "classes.json").write_text(json.dumps({"1": "spleen", "2": "kidney_right", "3": "zzz"}))
    index = read_totalseg(subject)
    assert index.mapping.mapped == {"spleen": "spleen", "kidney_right": "right kidney"}
    assert index.unknown == ("zzz",)

    crop = tmp_path / "crop"
    save_nifti_lps(crop / "ct_cropped.nii.gz", _hu(), AFFINE)
    big = np.zeros((10, 12, 14), dtype=np.uint8)
    big[3:5, 3:6, 3:6] = 1  # shifted by (2, 2, 2) voxels: image voxels [1:3, 1:4, 1:4]
    shifted = AFFINE.copy()
    shifted[:3, 3] = -np.array([2 * 2.0, 2 * 1.5, 2 * 1.5])  # big grid's origin: 2 voxels before
    save_nifti_lps(crop / "heart.nii.gz", big, shifted)
    masks = dict(read_totalseg(crop).cases[0].load().masks())
    assert masks["heart"].shape == SHAPE
    np.testing.assert_array_equal(np.argwhere(masks["heart"]), np.argwhere(_labelmap() == 1))


def test_nnunet_writer_is_resumable_and_keeps_label_values(tmp_path: Path) -> None:
    root = tmp_path / "out"
    w = NnUNetWriter(root, {"liver": 1}, {"name": "out", "teacher": {"name": "t", "version": "1"}})
    w.write("c1", _hu().astype(np.float32), AFFINE, (_labelmap() == 1).astype(np.uint8), {"teacher": "t"})
    again = NnUNetWriter(root, {}, {"name": "out"})
    assert again.has("c1") and not again.has("c2")
    assert again.labels == {"background": 0, "liver": 1}
    index = read_nnunet(root)
    assert [c.case_id for c in index.cases] == ["c1"] and index.cases[0].extra == {"teacher": "t"}
    assert (root / CARD_NAME).exists() is False  # the card is the caller's to write
