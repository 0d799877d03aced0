"""Lesions placed inside their organ: hypodense liver lesions, lung nodules (solid or
ground-glass) and kidney cysts, each its own instance in a lesion map with a tight box.

A lesion is one ellipsoid, or for liver lesions and solid nodules a main ellipsoid with up to two
overlapping lobules. Its centre is snapped to a voxel centre so that even a 4 mm nodule on 5 mm
slices covers at least one voxel; every voxel of it lies inside the organ and outside other
lesions (placement is retried, shrinking the lesion, until that holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from inference.synth.appearance import Appearance, T, set_lesion_tissue
from inference.synth.canvas import Canvas, rotation
from inference.synth.labels import STRUCTURE_LABELS as SL

LESION_KINDS: tuple[str, ...] = ("liver lesion", "lung nodule", "kidney cyst")


@dataclass(frozen=True)
class LesionSpec:
    kind: str
    organs: tuple[str, ...]  # canonical label names it may sit in
    max_count: int
    diameter_mm: tuple[float, float]


SPECS: dict[str, LesionSpec] = {
    "liver lesion": LesionSpec("liver lesion", ("liver",), 3, (5.0, 40.0)),
    "lung nodule": LesionSpec("lung nodule", ("left lung", "right lung"), 4, (4.0, 30.0)),
    "kidney cyst": LesionSpec("kidney cyst", ("left kidney", "right kidney"), 2, (5.0, 40.0)),
}


@dataclass(frozen=True)
class PlacedLesion:
    """A painted lesion before rendering (mean HU is measured on the rendered volume later)."""

    kind: str
    organ: str
    label_value: int
    box_voxels: tuple[int, int, int, int, int, int]
    center_index: tuple[float, float, float]  # voxel centroid [slice, row, column]
    diameter_mm: float  # nominal longest diameter of the main ellipsoid
    subtype: str  # "solid" | "ground-glass" | "hypodense" | "simple"


def _ellipsoid_mask(
    coords: tuple[np.ndarray, np.ndarray, np.ndarray], center: np.ndarray, radii: np.ndarray, rot: np.ndarray
) -> np.ndarray:
    x, y, z = coords
    d = (x - np.float32(center[0]), y - np.float32(center[1]), z - np.float32(center[2]))
    q = np.zeros(np.broadcast_shapes(d[0].shape, d[1].shape, d[2].shape), dtype=np.float32)
    for i in range(3):
        u = d[0] * np.float32(rot[0, i]) + d[1] * np.float32(rot[1, i]) + d[2] * np.float32(rot[2, i])
        q += (u / np.float32(radii[i])) ** 2
    return q < 1.0


def _lesion_hu(
    kind: str, subtype: str, appearance: Appearance, rng: np.random.Generator
) -> tuple[float, float]:
    """(mean HU, texture HU) of a lesion, relative to its organ where that matters."""
    if kind == "liver lesion":
        liver = float(appearance.hu_lut[T.LIVER])
        return float(np.clip(liver - rng.uniform(25, 75), -5.0, liver - 15.0)), float(rng.uniform(3, 10))
    if kind == "lung nodule":
        if subtype == "ground-glass":
            return float(rng.uniform(-750, -450)), float(rng.uniform(20, 50))
        return float(rng.uniform(-10, 60)), float(rng.uniform(5, 15))
    return float(rng.uniform(0, 18)), float(rng.uniform(1, 4))


def place_lesions(
    canvas: Canvas,
    appearance: Appearance,
    rng: np.random.Generator,
    *,
    counts: dict[str, int] | None = None,
) -> tuple[np.ndarray, list[PlacedLesion]]:
    """Draw lesions into ``canvas`` (tissue only; labels keep the organ). Returns the lesion
    instance map (uint8, 0 = none) and the lesions, numbered 1..n in placement order."""
    lesion_map = np.zeros(canvas.grid.shape, dtype=np.uint8)
    placed: list[PlacedLesion] = []
    objects = ndi.find_objects(canvas.labels)
    for kind in LESION_KINDS:
        spec = SPECS[kind]
        n = counts.get(kind, 0) if counts is not None else int(rng.integers(0, spec.max_count + 1))
        organ_values = [SL[o] for o in spec.organs]
        boxes = [objects[v - 1] for v in organ_values if v - 1 < len(objects) and objects[v - 1] is not None]
        if not boxes or n == 0:
            continue
        candidates = []
        for box in boxes:
            flat = np.flatnonzero(np.isin(canvas.labels[box], organ_values))
            if flat.size:
                candidates.append((box, flat))
        if not candidates:
            continue
        for _ in range(n):
            if len(placed) >= 255:
                break
            lesion = _place_one(
                canvas, lesion_map, rng, spec, organ_values, candidates, len(placed) + 1, appearance
            )
            if lesion is not None:
                placed.append(lesion)
    return lesion_map, placed


def _place_one(
    canvas: Canvas,
    lesion_map: np.ndarray,
    rng: np.random.Generator,
    spec: LesionSpec,
    organ_values: Sequence[int],
    candidates: Sequence[tuple[tuple[slice, slice, slice], np.ndarray]],
    value: int,
    appearance: Appearance,
) -> PlacedLesion | None:
    lo, hi = spec.diameter_mm
    # small lesions are commoner than large ones
    diameter = float(lo + (hi - lo) * rng.beta(1.2, 2.5))
    if spec.kind == "lung nodule":
        subtype = "ground-glass" if rng.random() < 0.3 else "solid"
        if subtype == "solid":
            diameter = min(diameter, 25.0)
    else:
        subtype = "hypodense" if spec.kind == "liver lesion" else "simple"
    for attempt in range(60):
        if attempt and attempt % 15 == 0:
            diameter = max(lo, diameter * 0.6)
        box, flat = candidates[int(rng.integers(len(candidates)))]
        shape = tuple(s.stop - s.start for s in box)
        idx = np.array(np.unravel_index(int(flat[int(rng.integers(flat.size))]), shape))
        idx += np.array([b.start for b in box])
        center = np.array(canvas.grid.index_to_lps((float(idx[0]), float(idx[1]), float(idx[2]))))
        r_main = diameter / 2.0 * np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)])
        rot = rotation(*rng.uniform(0, 180, size=3))
        parts = [(center, r_main, rot)]
        if spec.kind != "kidney cyst" and subtype != "ground-glass" and diameter > 10 and rng.random() < 0.5:
            for _ in range(int(rng.integers(1, 3))):
                offset = rng.normal(size=3)
                offset *= 0.55 * r_main.min() / (np.linalg.norm(offset) + 1e-9)
                parts.append(
                    (
                        center + offset,
                        r_main * rng.uniform(0.45, 0.65),
                        rotation(*rng.uniform(0, 180, size=3)),
                    )
                )
        reach = max(float(np.linalg.norm(p[0] - center)) + float(p[1].max()) for p in parts)
        sbox = canvas.box_around(center - reach, center + reach)
        if sbox is None:
            continue
        coords = canvas.coords(sbox)
        mask = np.zeros(tuple(s.stop - s.start for s in sbox), dtype=bool)
        for c, r, rr in parts:
            mask |= _ellipsoid_mask(coords, c, r, rr)
        # the centre voxel always belongs to the lesion (tiny lesions on thick slices)
        local = tuple(int(idx[k] - sbox[k].start) for k in range(3))
        mask[local] = True
        labels_here = canvas.labels[sbox][mask]
        if not np.isin(labels_here, organ_values).all() or lesion_map[sbox][mask].any():
            continue
        organ_value = int(np.bincount(labels_here).argmax())
        hu, texture = _lesion_hu(spec.kind, subtype, appearance, rng)
        tissue_class = set_lesion_tissue(appearance, value - 1, hu, texture)
        np.copyto(canvas.tissue[sbox], np.uint8(tissue_class), where=mask)
        np.copyto(lesion_map[sbox], np.uint8(value), where=mask)
        where = np.argwhere(mask)
        lo_idx = where.min(axis=0) + [s.start for s in sbox]
        hi_idx = where.max(axis=0) + [s.start for s in sbox]
        centroid = where.mean(axis=0) + [s.start for s in sbox]
        organ_name = next(k for k, v in SL.items() if v == organ_value)
        return PlacedLesion(
            kind=spec.kind,
            organ=organ_name,
            label_value=value,
            box_voxels=(
                int(lo_idx[0]),
                int(lo_idx[1]),
                int(lo_idx[2]),
                int(hi_idx[0]),
                int(hi_idx[1]),
                int(hi_idx[2]),
            ),
            center_index=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
            diameter_mm=round(float(2.0 * r_main.max()), 1),
            subtype=subtype,
        )
    return None
