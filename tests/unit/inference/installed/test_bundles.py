"""MONAI bundles (Model Zoo layout, random weights made here) as ``bundle:<name>`` pipelines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.bundles.runner import boxes_to_ours
from inference.contracts import VolumeInput, parse_prompt
from inference.installed.card import ModelError
from inference.installed.importer import import_model
from inference.registry import get_pipeline, info
from inference.vocabulary import LESIONS, STRUCTURES
from tests.support.monai_bundles import PREPROCESSING, make_detection_bundle, make_segmentation_bundle

pytestmark = pytest.mark.model

AXIAL = np.array([[0, 0, 1.6, -40.0], [0, 1.5, 0, -30.0], [2.5, 0, 0, 10.0], [0, 0, 0, 1.0]])


def _volume() -> VolumeInput:
    hu = np.random.default_rng(2).normal(0.0, 40.0, size=(24, 30, 36)).astype(np.float32)
    return VolumeInput(hu, AXIAL.copy())


def test_segmentation_bundle_answers_with_its_metadata_names(model_dir: Path, tmp_path: Path) -> None:
    bundle = make_segmentation_bundle(tmp_path, classes={1: "liver", 2: "spleen"})
    card = import_model(bundle, name="abdomen-seg")
    assert (card.kind, card.version, card.licence) == ("bundle", "0.1.0", "Apache-2.0 (test bundle)")
    assert card.classes == {"1": "liver", "2": "spleen"}
    assert set(info("bundle:abdomen-seg").answers()) == {"liver", "spleen"}
    pipeline = get_pipeline("bundle:abdomen-seg", device="cpu")
    volume = _volume()
    out = pipeline.run(volume, [parse_prompt(p) for p in pipeline.default_prompts])
    assert out.labelmap.shape == volume.hu.shape
    assert out.segments
    for seg in out.segments:
        assert seg.type == STRUCTURES[seg.name].type
        assert (seg.algorithm_name, seg.algorithm_version) == ("abdomen-seg", card.version_tag)


def test_detection_bundle_gives_coded_boxes(model_dir: Path, tmp_path: Path) -> None:
    card = import_model(make_detection_bundle(tmp_path), name="nodules")
    assert card.bundle["task"] == "detection" and card.classes == {"0": "lung nodule"}
    pipeline = get_pipeline("bundle:nodules", device="cpu")
    assert pipeline.default_prompts == ("detect: lung nodule",)
    volume = _volume()
    out = pipeline.run(volume, [parse_prompt("pulmonary nodule"), parse_prompt("liver")])
    assert out.detections, "the detector returns its top boxes (score threshold 0 in this bundle)"
    nodule = LESIONS["lung nodule"]
    for det in out.detections:
        assert (det.type, det.category, det.finding_site) == (
            nodule.type,
            nodule.category,
            nodule.finding_site,
        )
        k0, r0, c0, k1, r1, c1 = det.box_voxels
        assert 0 <= k0 <= k1 < 24 and 0 <= r0 <= r1 < 30 and 0 <= c0 <= c1 < 36
        assert det.algorithm_name == "nodules"
    assert [u.prompt for u in out.unmatched] == ["liver"]


def test_boxes_map_through_the_preprocessed_affine_to_our_voxels() -> None:
    """A bright block found in the bundle's preprocessed image (RAS, 3 mm) maps back onto itself."""
    import tempfile

    from monai.bundle.config_parser import ConfigParser

    from inference.bundles.runner import write_nifti

    hu = np.full((24, 30, 36), -500.0, dtype=np.float32)
    hu[3:9, 18:27, 4:13] = 300.0  # off-centre on every axis: a flipped or swapped axis would move it
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii.gz"
        write_nifti(hu, AXIAL, path)
        parser = ConfigParser({"preprocessing": {"_target_": "Compose", "transforms": PREPROCESSING}})
        image = parser.get_parsed_content("preprocessing")({"image": str(path)})["image"]
    bright = np.argwhere(np.asarray(image[0]) > 0.9)
    box = np.array([*bright.min(axis=0), *bright.max(axis=0)], dtype=np.float64)
    (ours,) = boxes_to_ours(box, np.asarray(image.affine, dtype=np.float64), AXIAL, hu.shape)
    expected = (3, 18, 4, 8, 26, 12)
    assert all(abs(a - b) <= 2 for a, b in zip(ours, expected, strict=True)), (ours, expected)


def test_tampered_bundle_file_is_refused(model_dir: Path, tmp_path: Path) -> None:
    import_model(make_segmentation_bundle(tmp_path, classes={1: "liver"}), name="seg")
    from inference.installed.card import installed_dir

    config = next((installed_dir() / "seg").rglob("inference.json"))
    config.write_text(config.read_text().replace('"softmax": true', '"softmax": false'))
    with pytest.raises(ModelError, match="does not match its card"):
        get_pipeline("bundle:seg", device="cpu")
