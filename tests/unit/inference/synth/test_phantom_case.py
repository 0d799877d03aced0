"""Synthetic phantom cases: determinism, geometry conventions, truth, lesions, snippets, HU."""

from __future__ import annotations

import re

import numpy as np
import pytest

from inference.synth import STRUCTURE_LABELS, SynthCase, make_case, structure_mask
from inference.synth.labels import atomic_parts

SHAPE = (48, 96, 96)
SPACING = (5.0, 4.5, 4.5)


@pytest.fixture(scope="module")
def case_hfs() -> SynthCase:
    return make_case(11, shape=SHAPE, spacing_mm=SPACING, patient_position="HFS", phase="portal venous")


@pytest.fixture(scope="module")
def case_ffs() -> SynthCase:
    return make_case(11, shape=SHAPE, spacing_mm=SPACING, patient_position="FFS", phase="portal venous")


def _world(case: SynthCase, mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask).astype(np.float64)
    homog = np.c_[idx, np.ones(len(idx))]
    return (case.affine_lps @ homog.T).T[:, :3]


def test_same_seed_same_case_different_seed_different_case(case_hfs: SynthCase) -> None:
    again = make_case(11, shape=SHAPE, spacing_mm=SPACING, patient_position="HFS", phase="portal venous")
    assert np.array_equal(case_hfs.hu, again.hu)
    assert np.array_equal(case_hfs.labels, again.labels)
    assert np.array_equal(case_hfs.lesion_labels, again.lesion_labels)
    assert case_hfs.report == again.report
    assert case_hfs.snippets == again.snippets
    assert case_hfs.captions == again.captions
    other = make_case(12, shape=SHAPE, spacing_mm=SPACING, patient_position="HFS", phase="portal venous")
    assert not np.array_equal(case_hfs.hu, other.hu)
    assert not np.array_equal(case_hfs.labels, other.labels)


def test_arrays_shapes_types_and_spacing(case_hfs: SynthCase) -> None:
    assert case_hfs.hu.shape == SHAPE
    assert case_hfs.hu.dtype == np.float32
    assert case_hfs.labels.dtype == np.uint8
    assert case_hfs.lesion_labels.dtype == np.uint8
    assert case_hfs.labels.shape == case_hfs.lesion_labels.shape == SHAPE
    assert case_hfs.affine_lps.shape == (4, 4)
    assert np.allclose(case_hfs.spacing_mm, SPACING)
    assert case_hfs.source == "phantom"
    assert set(case_hfs.label_names.values()) <= set(STRUCTURE_LABELS)
    for value, name in case_hfs.label_names.items():
        assert STRUCTURE_LABELS[name] == value
        assert (case_hfs.labels == value).any()


def test_slice_order_follows_the_normal_head_first_and_feet_first(
    case_hfs: SynthCase, case_ffs: SynthCase
) -> None:
    # DICOM: n = row cosine × column cosine; the column index runs along the row cosine.
    for case, z_sign in ((case_hfs, 1.0), (case_ffs, -1.0)):
        a = case.affine_lps
        row_cosine = a[:3, 2] / np.linalg.norm(a[:3, 2])
        col_cosine = a[:3, 1] / np.linalg.norm(a[:3, 1])
        normal = np.cross(row_cosine, col_cosine)
        slice_step = a[:3, 0] / np.linalg.norm(a[:3, 0])
        assert np.allclose(slice_step, normal, atol=1e-9)
        assert np.sign(slice_step[2]) == z_sign  # HFS: slice 0 inferior; FFS: slice 0 superior
        assert case.patient_position == ("HFS" if z_sign > 0 else "FFS")


@pytest.mark.parametrize("which", ["case_hfs", "case_ffs"])
def test_anatomy_lands_on_the_right_side_in_lps(which: str, request: pytest.FixtureRequest) -> None:
    case: SynthCase = request.getfixturevalue(which)
    liver = _world(case, case.mask("liver"))
    spleen = _world(case, case.mask("spleen"))
    # LPS: +x is the patient's left, +y posterior, +z superior
    assert liver[:, 0].mean() < spleen[:, 0].mean()
    if case.mask("left lung").any() and case.mask("right lung").any():
        assert (
            _world(case, case.mask("left lung"))[:, 0].mean()
            > _world(case, case.mask("right lung"))[:, 0].mean()
        )
    vertebrae = _world(case, case.mask("vertebrae"))
    body = _world(case, case.mask("body"))
    assert vertebrae[:, 1].mean() > body[:, 1].mean()  # the spine is at the back
    if case.mask("lungs").any():
        assert _world(case, case.mask("lungs"))[:, 2].mean() > liver[:, 2].mean()


def test_the_same_seed_feet_first_is_the_same_body(case_hfs: SynthCase, case_ffs: SynthCase) -> None:
    # The patient position only changes the grid: organ volumes agree to within sampling error.
    for name in ("liver", "spleen", "vertebrae"):
        v_hfs = case_hfs.mask(name).sum()
        v_ffs = case_ffs.mask(name).sum()
        assert abs(int(v_hfs) - int(v_ffs)) <= 0.1 * max(v_hfs, v_ffs), name


def test_composite_masks_are_unions(case_hfs: SynthCase) -> None:
    lungs = case_hfs.mask("lungs")
    assert np.array_equal(lungs, case_hfs.mask("left lung") | case_hfs.mask("right lung"))
    assert np.array_equal(case_hfs.mask("body"), case_hfs.labels > 0)
    bone = structure_mask(case_hfs.labels, "bone")
    expected = np.zeros_like(bone)
    for part in atomic_parts("bone"):
        expected |= case_hfs.labels == STRUCTURE_LABELS[part]
    assert np.array_equal(bone, expected)
    assert case_hfs.mask("vertebrae").sum() < bone.sum()


def test_hu_is_plausible_per_tissue(case_hfs: SynthCase) -> None:
    hu = case_hfs.hu
    outside = case_hfs.labels == 0
    assert np.median(hu[outside]) < -900
    if case_hfs.mask("lungs").sum() > 100:
        assert -950 < np.median(hu[case_hfs.mask("lungs")]) < -600
    liver = np.median(hu[case_hfs.mask("liver")])
    assert 60 < liver < 160  # portal venous phase
    assert np.median(hu[case_hfs.mask("vertebrae")]) > 150
    assert np.median(hu[case_hfs.mask("aorta")]) > 100  # contrast-enhanced blood
    assert hu.min() >= -1024 and hu.max() <= 3071


@pytest.fixture(scope="module")
def lesion_cases() -> list[SynthCase]:
    return [make_case(seed, shape=(64, 112, 112), spacing_mm=(4.0, 3.5, 3.5)) for seed in (21, 22, 23)]


def test_lesions_inside_their_organ_with_tight_boxes(lesion_cases: list[SynthCase]) -> None:
    seen = 0
    for case in lesion_cases:
        values = sorted(v for v in np.unique(case.lesion_labels) if v)
        assert values == [lesion.label_value for lesion in case.lesions]
        for lesion in case.lesions:
            seen += 1
            mask = case.lesion_labels == lesion.label_value
            organ_values = {STRUCTURE_LABELS[p] for p in atomic_parts(lesion.organ)}
            assert set(np.unique(case.labels[mask])) <= organ_values, lesion
            idx = np.argwhere(mask)
            assert tuple(idx.min(axis=0)) == lesion.box_voxels[:3]
            assert tuple(idx.max(axis=0)) == lesion.box_voxels[3:]
            assert lesion.box_voxels[0] <= lesion.slice_index <= lesion.box_voxels[3]
            assert np.isclose(case.hu[mask].mean(), lesion.mean_hu, atol=0.06)
            assert 4.0 <= lesion.diameter_mm <= 40.0
            centroid = _world(case, mask).mean(axis=0)
            assert np.allclose(centroid, lesion.center_lps_mm, atol=1e-6)
    assert seen > 0


def test_lesion_appearance_by_kind(lesion_cases: list[SynthCase]) -> None:
    for case in lesion_cases:
        for lesion in case.lesions:
            mask = case.lesion_labels == lesion.label_value
            # a cyst of a few voxels reads partly as the enhancing cortex around it (partial
            # volume, as on real CT: "too small to characterise"); fluid density needs some size
            if lesion.kind == "kidney cyst" and mask.sum() > 20:
                assert lesion.mean_hu < 60
            if lesion.kind == "liver lesion":
                # hypodense against the liver around it
                assert lesion.mean_hu < np.median(case.hu[case.mask("liver") & ~mask])
            if lesion.kind == "lung nodule" and lesion.subtype == "solid" and mask.sum() > 20:
                assert lesion.mean_hu > np.median(case.hu[case.mask("lungs")]) + 200


def test_snippets_point_at_their_lesion_slice(lesion_cases: list[SynthCase]) -> None:
    for case in lesion_cases:
        lesion_snippets = [
            s for s in case.snippets if s.target in ("liver lesion", "lung nodule", "kidney cyst")
        ]
        assert len(lesion_snippets) == len(case.lesions)
        z = case.affine_lps[2, 3] + np.arange(case.hu.shape[0]) * case.affine_lps[2, 0]
        for snippet, lesion in zip(lesion_snippets, case.lesions, strict=True):
            assert snippet.target == lesion.kind
            assert snippet.slice_index == lesion.slice_index
            assert f"image {snippet.slice_index + 1}" in snippet.text
            assert re.search(rf"[Ss]eries {case.series_number}\b", snippet.text)
            assert np.isclose(snippet.z_mm, z[snippet.slice_index])
            assert (case.lesion_labels[snippet.slice_index] == lesion.label_value).any()
            cite = f"series {case.series_number}, image {lesion.slice_index + 1}"
            assert cite in case.report
        for snippet in case.snippets:
            assert 0 <= snippet.slice_index < case.hu.shape[0]


def test_report_and_captions(lesion_cases: list[SynthCase]) -> None:
    for case in lesion_cases:
        assert "FINDINGS:" in case.report and "IMPRESSION:" in case.report
        assert "liver" in case.captions
        for name, texts in case.captions.items():
            assert texts and all(isinstance(t, str) and t for t in texts), name


def test_no_lesions_when_asked() -> None:
    case = make_case(21, shape=(32, 64, 64), spacing_mm=(6.0, 6.0, 6.0), lesions=False)
    assert case.lesions == ()
    assert not case.lesion_labels.any()
    assert "No focal lesion" in case.report


def test_series_number_is_used_in_the_words() -> None:
    case = make_case(22, shape=(48, 80, 80), spacing_mm=(5.0, 5.0, 5.0), series_number=7)
    for snippet in case.snippets:
        assert re.search(r"[Ss]eries 7\b", snippet.text)
