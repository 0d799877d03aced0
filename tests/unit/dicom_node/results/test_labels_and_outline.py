from __future__ import annotations

import itertools

import numpy as np
import pytest

from dicom_node.results.labels import label_stats
from dicom_node.results.outline import drop_collinear, largest_part, trace_outline


def _random_labelmap(seed: int, n_labels: int, shape: tuple[int, int, int] = (9, 23, 37)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labelmap = np.zeros(shape, dtype=np.uint8)
    for label in range(1, n_labels + 1):
        if label % 5 == 0:
            continue  # some labels absent
        s0, r0, c0 = (int(rng.integers(0, n - 2)) for n in shape)
        s1, r1, c1 = (int(rng.integers(a + 1, n + 1)) for a, n in zip((s0, r0, c0), shape, strict=True))
        region = labelmap[s0:s1, r0:r1, c0:c1]
        region[rng.random(region.shape) < 0.6] = label
    return labelmap


@pytest.mark.parametrize("n_labels", [3, 12, 40, 70], ids=["few", "uint32", "uint64", "find_objects"])
def test_label_stats_match_a_naive_count(n_labels: int) -> None:
    labelmap = _random_labelmap(n_labels, n_labels).astype(np.uint8)
    stats = label_stats(labelmap, n_labels)
    for label in range(1, n_labels + 1):
        mask = labelmap == label
        box = stats.box(label)
        if not mask.any():
            assert box is None and stats.voxel_count(label) == 0 and stats.key_slice(label) is None
            continue
        where = np.argwhere(mask)
        assert box is not None
        assert box.as_tuple() == (*where.min(axis=0), *where.max(axis=0))
        assert stats.voxel_count(label) == int(mask.sum())
        per_slice = mask.sum(axis=(1, 2))
        np.testing.assert_array_equal(stats.slices_with(label), np.flatnonzero(per_slice))
        assert stats.key_slice(label) == int(np.argmax(per_slice))
        k = int(np.flatnonzero(per_slice)[-1])
        rows, columns = np.nonzero(mask[k])
        assert stats.footprint(label, k) == (rows.min(), columns.min(), rows.max(), columns.max())


def test_label_stats_reject_labels_beyond_the_segments() -> None:
    labelmap = np.zeros((2, 4, 4), dtype=np.uint8)
    labelmap[0, 0, 0] = 5
    with pytest.raises(ValueError, match="outside"):
        label_stats(labelmap, 4)


def _inside(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Even-odd test of every pixel centre against the polygon (independent of the tracer)."""
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = columns + 0.5, rows + 0.5
    inside = np.zeros(shape, dtype=bool)
    for (x0, y0), (x1, y1) in itertools.pairwise(polygon):
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_at)
    return inside


def _shapes() -> dict[str, np.ndarray]:
    shapes = {}
    block = np.zeros((12, 15), dtype=bool)
    block[2:7, 3:11] = True
    shapes["block"] = block
    ell = block.copy()
    ell[2:5, 6:11] = False
    shapes["L"] = ell
    pinch = np.zeros((8, 8), dtype=bool)
    pinch[1:4, 1:4] = True
    pinch[4:7, 4:7] = True  # touches the first square only at a corner
    shapes["pinch"] = pinch
    ring = np.zeros((10, 10), dtype=bool)
    ring[1:9, 1:9] = True
    ring[3:7, 3:7] = False
    shapes["ring"] = ring
    two = np.zeros((10, 20), dtype=bool)
    two[1:3, 1:3] = True
    two[4:9, 8:18] = True
    shapes["two-blobs"] = two
    rng = np.random.default_rng(4)
    shapes["noise"] = rng.random((30, 40)) < 0.55
    return shapes


@pytest.mark.parametrize("name", sorted(_shapes()))
def test_outline_encloses_exactly_the_largest_part(name: str) -> None:
    mask = _shapes()[name]
    polygon = trace_outline(mask)
    assert np.array_equal(polygon[0], polygon[-1])
    expected = largest_part(mask)
    np.testing.assert_array_equal(_inside(polygon, mask.shape), expected)
    # Shoelace area equals the pixel count (the outline runs along pixel edges).
    x, y = polygon[:, 0], polygon[:, 1]
    assert abs(0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))) == pytest.approx(expected.sum())


def test_outline_of_a_rectangle_is_its_four_corners() -> None:
    mask = np.zeros((6, 9), dtype=bool)
    mask[1:4, 2:8] = True
    polygon = trace_outline(mask)
    assert polygon.tolist() == [[2, 1], [8, 1], [8, 4], [2, 4], [2, 1]]  # (column, row), clockwise
    assert trace_outline(np.zeros((3, 3), dtype=bool)).shape == (0, 2)
    assert drop_collinear(np.array([[0, 0], [1, 0], [2, 0], [2, 1], [0, 1], [0, 0]], float)).shape == (5, 2)
