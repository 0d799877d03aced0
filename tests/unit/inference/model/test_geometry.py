"""The canonical grid: the patient's left is always the high column side, whatever the scan."""

from __future__ import annotations

import numpy as np
import pytest

from inference.model.geometry import (
    canonical_grid_for,
    resample,
    resample_to_box,
)

pytestmark = pytest.mark.model


def _affine(position: str, spacing: tuple[float, float, float]) -> np.ndarray:
    """(slice,row,column) → LPS for head-first (columns → +x) or feet-first (columns → −x, slices −z)."""
    a = np.eye(4)
    sign = 1.0 if position == "HFS" else -1.0
    a[:3, 0] = [0, 0, sign * spacing[0]]
    a[:3, 1] = [0, spacing[1], 0]
    a[:3, 2] = [sign * spacing[2], 0, 0]
    a[:3, 3] = [-50.0 * sign, -40.0, 100.0]
    return a


@pytest.mark.parametrize("position", ["HFS", "FFS"])
def test_marker_on_patient_left_lands_on_high_columns(position: str) -> None:
    affine = _affine(position, (2.0, 1.0, 1.0))
    vol = np.full((20, 60, 100), -1000.0, dtype=np.float32)
    # Put a bright block on the patient's left (largest LPS x) and superior (largest z) end.
    idx = np.indices(vol.shape).reshape(3, -1).T
    lps = idx @ affine[:3, :3].T + affine[:3, 3]
    left = lps[:, 0] > lps[:, 0].max() - 20
    superior = lps[:, 2] > lps[:, 2].max() - 10
    vol.reshape(-1)[left & superior] = 500.0
    grid = canonical_grid_for(vol.shape, affine, 3.0, multiple_of=4)
    assert all(n % 4 == 0 for n in grid.shape)
    out = resample(vol, affine, grid.shape, grid.affine_lps)
    bright = np.argwhere(out > 0)
    assert bright.size
    assert bright[:, 2].min() > grid.shape[2] * 0.6  # columns: patient left
    assert bright[:, 0].min() > grid.shape[0] * 0.4  # slices: superior


def test_resample_to_box_matches_full_resample() -> None:
    rng = np.random.default_rng(0)
    src_affine = np.eye(4)
    src_affine[:3, :3] = [[0, 0, 3.0], [0, 3.0, 0], [3.0, 0, 0]]
    src_affine[:3, 3] = [10.0, 20.0, 30.0]
    prob = rng.random((8, 10, 12)).astype(np.float32)
    dst_affine = np.eye(4)
    dst_affine[:3, :3] = [[0, 0, 1.0], [0, 1.0, 0], [2.0, 0, 0]]
    dst_shape = (40, 60, 60)
    full = resample(prob, src_affine, dst_shape, dst_affine, cval=0.0, antialias=False)
    hit = resample_to_box(prob, src_affine, dst_shape, dst_affine)
    assert hit is not None
    box, part = hit
    np.testing.assert_allclose(part, full[box], atol=1e-5)
    outside = full.copy()
    outside[box] = 0
    assert np.count_nonzero(outside) == 0  # nothing of the source lies outside the box


def test_label_resampling_is_nearest_and_keeps_dtype() -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[2:8, 2:8, 2:8] = 7
    affine = np.eye(4)[[2, 1, 0, 3]]
    grid = canonical_grid_for(labels.shape, affine, 0.5)
    out = resample(labels, affine, grid.shape, grid.affine_lps, order=0, cval=0)
    assert out.dtype == np.uint8
    assert set(np.unique(out).tolist()) == {0, 7}


@pytest.mark.parametrize("position", ["HFS", "FFS"])
def test_mask_on_input_grid_is_the_same_when_only_the_part_above_threshold_is_resampled(
    position: str,
) -> None:
    from inference.contracts import VolumeInput
    from inference.model.pipeline import to_input_grid
    from inference.model.predictor import ProbMap

    affine = _affine(position, (2.5, 0.8, 0.8))
    volume = VolumeInput(np.zeros((40, 96, 96), dtype=np.float32), affine)
    grid = canonical_grid_for(volume.hu.shape, affine, 3.0)
    rng = np.random.default_rng(0)
    prob = (rng.random(grid.shape) * 0.45).astype(np.float32)  # everywhere below 0.5 ...
    prob[10:16, 8:14, 20:25] = 0.9  # ... but one block
    m = to_input_grid(ProbMap(grid, prob), volume, threshold=0.5)
    assert m is not None
    full = resample(prob, grid.affine_lps, volume.hu.shape, affine, antialias=False) >= 0.5
    got = np.zeros(volume.hu.shape, dtype=bool)
    got[m.box] = m.mask
    np.testing.assert_array_equal(got, full)
    assert full.any() and m.mask.size < full.size / 4
    assert to_input_grid(ProbMap(grid, prob * 0.1), volume, threshold=0.5) is None
