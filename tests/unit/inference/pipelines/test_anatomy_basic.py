"""``ct-anatomy-basic`` against the synthetic phantom's truth (small grids: seconds, not minutes).

At ~2.3 mm pixels partial volume costs the thin structures some Dice (the airway most); the
512×512 figures are in bench/RESULTS.md (bench/anatomy_basic.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.contracts import Request, Task, VolumeInput
from inference.pipelines.anatomy_basic import AnatomyBasicPipeline, segment_anatomy
from inference.registry import get_pipeline
from inference.synth import SynthCase, make_case

SHAPE = (60, 192, 192)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def chest() -> SynthCase:
    return make_case(1, shape=SHAPE, lesions=False)  # a chest CT: trachea, carina, lungs


@pytest.fixture(scope="module")
def contrast_chest() -> SynthCase:
    return make_case(3, shape=SHAPE, lesions=False, phase="arterial")


@pytest.fixture(scope="module")
def abdomen() -> SynthCase:
    case = make_case(7, shape=SHAPE, lesions=False)
    assert case.protocol == "abdomen"
    return case


def test_structures_match_the_phantom_truth(chest: SynthCase) -> None:
    assert chest.protocol == "chest"
    volume = VolumeInput(chest.hu, chest.affine_lps)
    found = segment_anatomy(volume, ["body", "left lung", "right lung", "lungs", "airway", "bone"])
    assert found.missing == {}
    assert dice(found.masks["body"], chest.mask("body")) > 0.99
    assert dice(found.masks["lungs"], chest.mask("lungs")) > 0.97
    # left and right are not swapped (LPS +x is the patient's left)
    assert dice(found.masks["left lung"], chest.mask("left lung")) > 0.97
    assert dice(found.masks["right lung"], chest.mask("right lung")) > 0.97
    assert dice(found.masks["airway"], chest.mask("airway")) > 0.65
    assert dice(found.masks["bone"], chest.mask("bone")) > 0.93


def test_contrast_filled_blood_is_not_bone(contrast_chest: SynthCase) -> None:
    volume = VolumeInput(contrast_chest.hu, contrast_chest.affine_lps)
    bone = segment_anatomy(volume, ["bone"]).masks["bone"]
    blood = contrast_chest.mask("aorta") | contrast_chest.mask("heart")
    assert float(np.median(contrast_chest.hu[contrast_chest.mask("aorta")])) > 200  # really enhanced
    assert float((bone & blood).sum()) < 0.05 * float(blood.sum())
    assert dice(bone, contrast_chest.mask("bone")) > 0.9


def test_abdomen_has_no_trachea_and_says_so(abdomen: SynthCase) -> None:
    volume = VolumeInput(abdomen.hu, abdomen.affine_lps)
    out = AnatomyBasicPipeline().run(volume, [Request(Task.SEG, "airway"), Request(Task.SEG, "bone")])
    assert [s.name for s in out.segments] == ["bone"]
    assert [u.prompt for u in out.unmatched] == ["airway"]
    assert "no trachea" in out.unmatched[0].reason
    assert not abdomen.mask("airway").any()


def test_pipeline_outputs(chest: SynthCase) -> None:
    pipeline = get_pipeline("ct-anatomy-basic")
    assert isinstance(pipeline, AnatomyBasicPipeline)
    volume = VolumeInput(chest.hu, chest.affine_lps)
    requests = [
        Request(Task.SEG, "Right Lung"),
        Request(Task.SEG, "body"),
        Request(Task.SEG, "liver"),  # known structure, not served
        Request(Task.SEG, "flux capacitor"),  # unknown
        Request(Task.DET, "lung nodule"),  # not a segmentation
    ]
    out = pipeline.run(volume, requests)
    assert out.model_name == "ct-anatomy-basic"
    assert out.labelmap.shape == chest.hu.shape and out.labelmap.dtype == np.uint16
    by_name = {s.name: s for s in out.segments}
    assert set(by_name) == {"right lung", "body"}
    assert by_name["right lung"].prompt == "Right Lung"
    assert {u.prompt for u in out.unmatched} == {"liver", "flux capacitor", "lung nodule"}
    # one label per voxel, the larger structure painted first: the lung keeps its own voxels
    lung = out.labelmap == by_name["right lung"].label_value
    assert dice(lung, chest.mask("right lung")) > 0.97
    assert set(np.unique(out.labelmap).tolist()) == {0, *(s.label_value for s in out.segments)}
    # measurements describe the whole structure (the body includes its lungs)
    m = by_name["body"].measurements
    voxel_ml = float(np.prod(volume.spacing_mm)) / 1000.0
    assert m.voxel_count > int((out.labelmap == by_name["body"].label_value).sum())
    assert m.volume_ml == pytest.approx(m.voxel_count * voxel_ml)
    lung_m = by_name["right lung"].measurements
    assert -950 < lung_m.mean_hu < -600
    assert "Right lung:" in by_name["right lung"].description
    assert "mL" in by_name["right lung"].description
    assert "right lung" in out.summary


def test_one_definition_per_structure(chest: SynthCase) -> None:
    """Issue 12 item 11: a structure's numbers count exactly the voxels its SEG segment holds —
    its own label and those of the structures inside it (the body with its lungs and bone)."""
    pipeline = get_pipeline("ct-anatomy-basic")
    volume = VolumeInput(chest.hu, chest.affine_lps)
    names = ["body", "lungs", "left lung", "right lung", "airway", "bone"]
    out = pipeline.run(volume, [Request(Task.SEG, n) for n in names])
    by_name = {s.name: s for s in out.segments}
    body, lungs = by_name["body"], by_name["lungs"]
    others = {by_name[n].label_value for n in names if n != "body"}
    # everything painted lies inside the body ("lungs" has no voxel of its own: left and right
    # are painted over it, and it holds them)
    assert set(body.contains) == others - {lungs.label_value}
    assert set(lungs.contains) == {by_name["left lung"].label_value, by_name["right lung"].label_value}
    for segment in out.segments:
        values = {segment.label_value, *segment.contains}
        voxels = np.isin(out.labelmap, sorted(values))
        assert segment.measurements.voxel_count == int(voxels.sum()), segment.name
        assert segment.measurements.mean_hu == pytest.approx(float(chest.hu[voxels].mean()), abs=1e-3)
    whole = out.labelmap > 0
    assert body.measurements.voxel_count == int(whole.sum())  # no hole at the bone
    bone_hu = float(chest.hu[out.labelmap == by_name["bone"].label_value].mean())
    assert bone_hu > 200 and body.measurements.mean_hu < bone_hu


def test_not_a_ct_volume_is_reported_not_raised() -> None:
    air = np.full((12, 64, 64), -1000.0, dtype=np.float32)
    out = AnatomyBasicPipeline().run(VolumeInput(air, np.diag([5.0, 2.0, 2.0, 1.0])), [])
    assert out.segments == []
    assert not out.labelmap.any()
    reasons = {u.prompt: u.reason for u in out.unmatched}
    assert set(reasons) == set(AnatomyBasicPipeline.default_prompts)
    assert all("no body found" in r for r in reasons.values())


def test_orientation_does_not_change_the_answer(chest: SynthCase) -> None:
    """The same voxels with the columns reversed (a feet-first or mirrored acquisition): the same
    masks, mirrored, and left stays the patient's left."""
    affine = chest.affine_lps.copy()
    n_cols = chest.hu.shape[2]
    affine[:3, 3] += affine[:3, 2] * (n_cols - 1)
    affine[:3, 2] *= -1.0
    flipped = np.ascontiguousarray(chest.hu[:, :, ::-1])
    found = segment_anatomy(VolumeInput(flipped, affine), ["left lung", "right lung"])
    assert dice(found.masks["left lung"][:, :, ::-1], chest.mask("left lung")) > 0.97
    assert dice(found.masks["right lung"][:, :, ::-1], chest.mask("right lung")) > 0.97
