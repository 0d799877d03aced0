"""measure() and components() on hand-made masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from inference.measure import bbox, components, largest_component, measure, paint, region


def test_cube_volume_bbox_extent_and_hu() -> None:
    mask = np.zeros((20, 30, 40), dtype=bool)
    mask[2:12, 5:15, 10:20] = True  # 10×10×10 voxels
    hu = np.full(mask.shape, -1000.0, dtype=np.float32)
    hu[2:12, 5:15, 10:20] = 40.0
    hu[2:7, 5:15, 10:20] = 60.0  # half at 60, half at 40 -> mean 50, SD 10
    m = measure(mask, hu, (2.0, 1.0, 0.5))
    assert m.voxel_count == 1000
    assert m.volume_ml == pytest.approx(1.0)  # 1000 voxels × 1 mm³
    assert m.mean_hu == pytest.approx(50.0)
    assert m.std_hu == pytest.approx(10.0)
    assert m.bbox_voxels == (2, 5, 10, 11, 14, 19)
    assert m.extent_mm == pytest.approx((20.0, 10.0, 5.0))


def test_sphere_volume_in_ml() -> None:
    n = 64
    z, y, x = np.mgrid[:n, :n, :n].astype(np.float64)
    radius_mm = 20.0
    mask = (z - 31.5) ** 2 + (y - 31.5) ** 2 + (x - 31.5) ** 2 <= radius_mm**2
    m = measure(mask, np.zeros(mask.shape, dtype=np.float32), (1.0, 1.0, 1.0))
    assert m.volume_ml == pytest.approx(4.0 / 3.0 * np.pi * radius_mm**3 / 1000.0, rel=0.02)
    assert m.extent_mm[0] == pytest.approx(2 * radius_mm, abs=1.0)


def test_empty_mask_and_shape_mismatch_are_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        measure(np.zeros((3, 3, 3), dtype=bool), np.zeros((3, 3, 3)), (1, 1, 1))
    with pytest.raises(ValueError, match="shape"):
        measure(np.ones((3, 3, 3), dtype=bool), np.zeros((3, 3, 4)), (1, 1, 1))
    assert bbox(np.zeros((2, 2, 2), dtype=bool)) is None


def test_components_largest_first_with_min_volume() -> None:
    mask = np.zeros((10, 20, 20), dtype=bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    mask[5:9, 10:15, 10:15] = True  # 100 voxels
    mask[0, 19, 19] = True  # 1 voxel
    hu = np.arange(mask.size, dtype=np.float32).reshape(mask.shape)
    labelled, found = components(mask, hu, (1.0, 1.0, 1.0), min_volume_ml=0.005)
    assert [c.measurements.voxel_count for c in found] == [100, 8]
    assert found[0].measurements.bbox_voxels == (5, 10, 10, 8, 14, 14)
    assert found[1].measurements.bbox_voxels == (1, 1, 1, 2, 2, 2)
    assert found[0].center_index == pytest.approx((6.5, 12.0, 12.0))
    assert found[0].measurements.mean_hu == pytest.approx(float(hu[5:9, 10:15, 10:15].mean()))
    assert set(np.unique(labelled)) == {0, 1, 2}
    assert (labelled == 1).sum() == 100 and labelled[0, 19, 19] == 0


def test_largest_component() -> None:
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[0, 0, 0] = True
    mask[2:5, 2:5, 2:5] = True
    out = largest_component(mask)
    assert out.sum() == 27 and not out[0, 0, 0]
    assert not largest_component(np.zeros((2, 2, 2), dtype=bool)).any()


def test_paint_nests_structures_and_region_adds_them_back() -> None:
    shape = (4, 20, 20)
    body = np.zeros(shape, bool)
    body[:, 2:18, 2:18] = True
    bone = np.zeros(shape, bool)
    bone[:, 8:12, 1:12] = True  # pokes one column of 11 out of the body: still inside it (>= 90%)
    lung = np.zeros(shape, bool)
    lung[:, 4:8, 10:16] = True
    outside = np.zeros(shape, bool)
    outside[:, 0:2, 0:20] = True  # a strip along the edge, mostly outside the body
    labelmap, contains = paint([body, outside, lung, bone])
    assert contains[0] == (3, 4)  # body contains lung and bone, not the strip
    assert contains[1:] == [(), (), ()]
    whole = region(labelmap, 1, contains)
    assert int(whole.sum()) == int((labelmap == 1).sum() + (labelmap == 3).sum() + (labelmap == 4).sum())
    assert whole[:, 8:12, 1].all()  # the bone voxel outside the body mask belongs to the body now
    assert np.array_equal(region(labelmap, 3, contains), lung)
