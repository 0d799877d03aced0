"""Measurements of a mask on a CT volume: volume (mL), HU statistics, bounding box, extent.

Pure numpy/scipy; ``spacing_mm`` is the voxel size along (slice, row, column), as
``VolumeInput.spacing_mm`` gives it. Every number a description states comes from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from inference.contracts import Measurements

__all__ = ["Component", "bbox", "components", "largest_component", "measure", "paint", "region"]

Box = tuple[int, int, int, int, int, int]


def bbox(mask: np.ndarray) -> Box | None:
    """Inclusive voxel bounds (slice0, row0, col0, slice1, row1, col1) of a mask, None if empty."""
    ranges = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        ranges.append((int(hit[0]), int(hit[-1])))
    return (ranges[0][0], ranges[1][0], ranges[2][0], ranges[0][1], ranges[1][1], ranges[2][1])


def measure(mask: np.ndarray, hu: np.ndarray, spacing_mm: Sequence[float]) -> Measurements:
    """Volume (mL), mean and SD (population) of HU, inclusive bbox and extent (mm) of ``mask``.

    Raises ValueError for an empty mask or mismatched shapes: an empty structure has no
    measurements, and callers say so (e.g. an ``Unmatched`` with a reason) instead of writing zeros.
    """
    if mask.shape != hu.shape:
        raise ValueError(f"mask shape {mask.shape} differs from volume shape {hu.shape}")
    box = bbox(mask)
    if box is None:
        raise ValueError("cannot measure an empty mask")
    s0, r0, c0, s1, r1, c1 = box
    sub = mask[s0 : s1 + 1, r0 : r1 + 1, c0 : c1 + 1].astype(bool, copy=False)
    values = hu[s0 : s1 + 1, r0 : r1 + 1, c0 : c1 + 1][sub].astype(np.float64)
    count = int(values.size)
    spacing = tuple(float(s) for s in spacing_mm)
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    extent = ((s1 - s0 + 1) * spacing[0], (r1 - r0 + 1) * spacing[1], (c1 - c0 + 1) * spacing[2])
    return Measurements(
        voxel_count=count,
        volume_ml=count * voxel_ml,
        mean_hu=float(values.mean()),
        std_hu=float(values.std()),
        bbox_voxels=box,
        extent_mm=extent,
    )


@dataclass(frozen=True)
class Component:
    """One connected component: its value in the label array ``components`` returns."""

    index: int
    measurements: Measurements
    center_index: tuple[float, float, float]  # voxel centroid [slice, row, column]


def components(
    mask: np.ndarray,
    hu: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    min_volume_ml: float = 0.0,
    connectivity: int = 1,
) -> tuple[np.ndarray, list[Component]]:
    """Connected components of ``mask`` (face connectivity 1, up to 3 = 26-neighbourhood), largest
    first, dropping those under ``min_volume_ml``. Returns (int32 label array, components); the
    label array holds each kept component's ``index`` and 0 elsewhere."""
    structure = ndi.generate_binary_structure(3, connectivity)
    labelled, n = ndi.label(mask, structure=structure)
    if n == 0:
        return labelled.astype(np.int32), []
    spacing = tuple(float(s) for s in spacing_mm)
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    counts = np.bincount(labelled.ravel(), minlength=n + 1)
    order = [
        int(i) for i in np.argsort(-counts[1:], kind="stable") + 1 if counts[i] * voxel_ml >= min_volume_ml
    ]
    slices = ndi.find_objects(labelled)
    out: list[Component] = []
    relabel = np.zeros(n + 1, dtype=np.int32)
    for new_index, old in enumerate(order, start=1):
        relabel[old] = new_index
        region = slices[old - 1]
        assert region is not None
        local = labelled[region] == old
        offset = [sl.start for sl in region]
        m = measure(local, hu[region], spacing)
        b = m.bbox_voxels
        shifted = (
            b[0] + offset[0],
            b[1] + offset[1],
            b[2] + offset[2],
            b[3] + offset[0],
            b[4] + offset[1],
            b[5] + offset[2],
        )
        m = Measurements(
            voxel_count=m.voxel_count,
            volume_ml=m.volume_ml,
            mean_hu=m.mean_hu,
            std_hu=m.std_hu,
            bbox_voxels=shifted,
            extent_mm=m.extent_mm,
        )
        centre = np.argwhere(local).mean(axis=0) + offset
        out.append(
            Component(
                index=new_index,
                measurements=m,
                center_index=(float(centre[0]), float(centre[1]), float(centre[2])),
            )
        )
    return relabel[labelled], out


def largest_component(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """The largest connected component of ``mask`` (all False if empty)."""
    labelled, n = ndi.label(mask, structure=ndi.generate_binary_structure(3, connectivity))
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    counts = np.bincount(labelled.ravel())
    counts[0] = 0
    out: np.ndarray = labelled == int(np.argmax(counts))
    return out


def paint(
    masks: Sequence[np.ndarray], *, inside_share: float = 0.9
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """One label per voxel for ``masks`` given largest first: label ``i + 1`` for ``masks[i]``,
    a later (smaller) mask painted over an earlier one, so a lung inside the body keeps its label.

    Returns the uint16 label map and, per label, the labels painted after it that lie inside it
    (at least ``inside_share`` of their painted voxels within its mask): the structures whose
    voxels belong to it too. Measure a structure on :func:`region`, which adds them back, so its
    numbers count the voxels its SEG segment holds (one definition per structure).
    """
    if not masks:
        raise ValueError("nothing to paint")
    labelmap = np.zeros(masks[0].shape, dtype=np.uint16)
    for value, mask in enumerate(masks, start=1):
        labelmap[mask] = value
    n = len(masks)
    painted = np.bincount(labelmap.ravel(), minlength=n + 1)
    contains: list[tuple[int, ...]] = []
    for index, mask in enumerate(masks):
        box = bbox(mask)
        if box is None:
            contains.append(())
            continue
        s0, r0, c0, s1, r1, c1 = box
        region_ = (slice(s0, s1 + 1), slice(r0, r1 + 1), slice(c0, c1 + 1))
        inside = np.bincount(labelmap[region_][mask[region_]].ravel(), minlength=n + 1)
        contains.append(
            tuple(
                later
                for later in range(index + 2, n + 1)
                if painted[later] and inside[later] >= inside_share * painted[later]
            )
        )
    return labelmap, contains


def region(labelmap: np.ndarray, label: int, contains: Sequence[Sequence[int]]) -> np.ndarray:
    """The voxels of ``label`` with those of every label inside it (``contains`` from :func:`paint`,
    indexed by label - 1, followed transitively)."""
    seen, todo = {label}, list(contains[label - 1])
    while todo:
        inner = todo.pop()
        if inner not in seen:
            seen.add(inner)
            todo.extend(contains[inner - 1])
    if len(seen) == 1:
        out: np.ndarray = labelmap == label
        return out
    return np.isin(labelmap, sorted(seen))
