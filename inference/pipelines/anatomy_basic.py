"""``ct-anatomy-basic``: the fast CPU fallback. HU thresholds and morphology, no model.

It segments the body outline, the lungs (left and right), the central airway (trachea and main
bronchi, by region growing from the trachea) and bone, measures each and describes it. Anything
else it is asked for comes back as ``Unmatched`` with the reason.

Method (thresholds are midpoints between the tissues they separate):

* body: HU > −500 (fat vs air), opened in-plane to cut the patient table off, largest
  component, holes filled slice by slice (lungs and bowel gas are inside the body);
* airway: a round air region (HU < −900) near the midline on the most cranial slices, with soft
  tissue around it, is the trachea; its lumen is followed slice by slice up and down (a region
  much larger than the lumen it continues is a leak and ends that branch), and below the carina
  each main bronchus is kept for its length (right 25 mm, left 42 mm along the body axis). A
  tube surrounded by lung, or one with no lung on any of its slices (rectal gas), is not a
  trachea;
* lungs: air inside the body (HU < −400) in components of at least 10 mL whose HU is that of
  lung parenchyma (median −950…−650, 10th percentile above −965: not gas at ≈ −1000), minus
  the airway, closed and hole-filled in-plane (vessels and nodules belong to the lung); left
  and right by LPS x of the components, split at the trachea where one crosses the midline;
* bone: candidates above 350 HU (250 on a ≥ 2.5 mm grid) whose component reaches cortical
  density, and which lie within 4 mm of cortex (block maximum ≥ 520 HU; 9 mm of ≥ 300 HU on a
  coarse grid), so contrast-filled blood touching a vertebra is cut off; edges at half the
  local maximum (a full-width-at-half-maximum edge, so partial-volume neighbours are not
  bone); marrow filled slice by slice from holes of the cortex that are dense (≥ 100 HU) and
  under 40 cm² (not the spinal canal, not what the ribs encircle).

Limits (measured, bench/RESULTS.md): fatty marrow (≈ 0–100 HU, elderly patients) with a faint
cortex at 3 mm is not recovered, so bone is under-segmented on such real CT (Dice 0.73 against
TotalSegmentator's whole-bone labels on subject_a); arterial contrast above ≈ 500 HU (real
CTA) next to bone is partly taken as bone; a field of view that cuts through the lungs puts
them outside the body.

Topology is decided on a grid reduced ~1.5 mm in-plane; edges are re-decided at full resolution
(:mod:`inference.pipelines.morphology`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from inference.contracts import ModelOutputs, Request, SegmentOut, Task, Unmatched, VolumeInput
from inference.describe import describe_segment, describe_summary
from inference.measure import measure, paint
from inference.measure import region as segment_region
from inference.pipelines.morphology import (
    Reduced,
    coarsen,
    fill_holes_per_slice,
    holes_per_slice,
    per_slice,
    reduce,
    refine,
)
from inference.vocabulary import STRUCTURES, lookup

VERSION = "1.0.0"
NAME = "ct-anatomy-basic"
SERVED: tuple[str, ...] = ("body", "lungs", "left lung", "right lung", "airway", "bone")

logger = logging.getLogger(__name__)

BODY_HU = -500.0
LUNG_HU = -400.0
AIRWAY_HU = -500.0
LUMEN_HU = -900.0  # airway lumen on the ~1.5 mm grid: air, darker than any lung parenchyma's mean
MAX_LUMEN_MM2 = 700.0  # a trachea is at most ≈ 28 mm across
# How far below the carina (along the body axis) each main bronchus is followed: the right one
# is short and steep (≈ 25 mm), the left one long (≈ 45 mm) and oblique.
RIGHT_MAIN_BRONCHUS_MM = 25.0
LEFT_MAIN_BRONCHUS_MM = 42.0
MAX_RING_AIR = 0.3  # median share of air around a trachea (≤ 0.16 measured; a lung bronchus ≥ 0.4)


@dataclass(frozen=True)
class BoneThresholds:
    """HU thresholds of the bone step. On a coarse grid (≥ 2.5 mm in-plane) partial volume
    makes real cortex and marrow look fainter, so the coarse set is lower."""

    candidate: float  # block maximum for a candidate voxel
    cortex_p95: float  # 95th percentile a component needs to count as bone
    edge_min: float  # floor of the half-maximum edge
    marrow_min: float  # density of a hole to count as marrow
    grow: bool  # grow marrow from the cortex through dense voxels
    cortex_hu: float  # block maximum that only cortex reaches (not contrast-filled blood)
    near_cortex_mm: float  # a candidate voxel must be this close to cortex (marrow comes from holes)


FINE_BONE = BoneThresholds(
    candidate=350.0,
    cortex_p95=450.0,
    edge_min=250.0,
    marrow_min=100.0,
    grow=False,
    cortex_hu=520.0,
    near_cortex_mm=4.0,
)
COARSE_BONE = BoneThresholds(
    candidate=250.0,
    cortex_p95=350.0,
    edge_min=200.0,
    marrow_min=60.0,
    grow=True,
    cortex_hu=300.0,
    near_cortex_mm=9.0,
)
SMALL_HOLE_CM2 = 20.0
GROW_HU = 120.0
GROW_MM = 9.0
COARSE_GRID_MM = 2.5
MAX_MARROW_HOLE_CM2 = 40.0


@dataclass
class Anatomy:
    """Masks on the input grid (bool) for what was asked and found, plus notes for what was not."""

    masks: dict[str, np.ndarray] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


def _world_x(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """LPS x (mm) of every voxel centre, broadcastable to ``shape``."""
    s = np.arange(shape[0])[:, None, None]
    r = np.arange(shape[1])[None, :, None]
    c = np.arange(shape[2])[None, None, :]
    out: np.ndarray = (affine[0, 3] + s * affine[0, 0] + r * affine[0, 1] + c * affine[0, 2]).astype(
        np.float32
    )
    return np.broadcast_to(out, shape)


def _coarse_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    """Affine of the reduced grid: block (r, c) covers full voxels factor·r … factor·r + factor − 1."""
    a = affine.copy()
    a[:3, 1] *= factor
    a[:3, 2] *= factor
    a[:3, 3] += (affine[:3, 1] + affine[:3, 2]) * (factor - 1) / 2.0
    return a


def segment_body(red: Reduced, spacing: tuple[float, float, float]) -> np.ndarray:
    """Coarse body mask (holes filled).

    The opening that cuts a table shell off can also break thin tissue (in front of the trachea in
    the neck), so what it removed is given back next to the body before the holes are filled.
    """
    tissue = red.mean_hu > BODY_HU
    step = spacing[1] * red.factor
    radius = max(1, round(4.0 / step))
    opened = per_slice("open", tissue, radius)
    labelled, n = ndi.label(opened)
    if n == 0:
        return opened
    counts = np.bincount(labelled.ravel())
    counts[0] = 0
    body = fill_holes_per_slice(labelled == int(np.argmax(counts)))
    body |= tissue & per_slice("dilate", body, radius + 1)
    # holes closed only by what was given back: small ones are the body's own (the trachea
    # behind a thin neck wall); large ones are air between the body and a table touching it
    background, is_hole = holes_per_slice(body)
    if is_hole.any():
        area_cm2 = np.bincount(background.ravel()) * step * step / 100.0
        small = is_hole & (area_cm2 <= SMALL_HOLE_CM2)
        body |= small[background]
    return body


def _slice_z_order(affine: np.ndarray, n_slices: int) -> np.ndarray:
    """Slice indices from the most cranial (largest LPS z) to the most caudal."""
    z = affine[2, 3] + np.arange(n_slices) * affine[2, 0]
    return np.argsort(-z, kind="stable")


def segment_airway(
    red: Reduced, body: np.ndarray, affine_c: np.ndarray, spacing_c: tuple[float, float, float]
) -> np.ndarray | None:
    """Coarse mask of the trachea and main bronchi, or None if no trachea is in the volume.

    The lumen is followed slice by slice from a trachea seed, up and down: on each slice the air
    regions that overlap the lumen of the slice before are kept, unless one is much larger than
    what it continues (a leak into lung parenchyma, emphysema or a gas bubble), which ends that
    branch. Below the carina (the first slice where the lumen is two regions) each side is kept
    down to the length of its main bronchus.
    """
    seed = _find_trachea(red.mean_hu, body, affine_c, spacing_c)
    if seed is None:
        return None
    air = (red.mean_hu < LUMEN_HU) & body
    order = _slice_z_order(affine_c, air.shape[0])  # cranial first
    z = affine_c[2, 3] + np.arange(air.shape[0]) * affine_c[2, 0]
    x = _world_x(affine_c, (1, *air.shape[1:]))[0]
    pixel_mm2 = spacing_c[1] * spacing_c[2]
    out = np.zeros(air.shape, dtype=bool)
    labelled, _ = ndi.label(air[seed[0]])
    start = labelled == labelled[seed[1:]]
    out[seed[0]] = start
    position = int(np.flatnonzero(order == seed[0])[0])
    trachea_x = float(x[start].mean())
    _track(air, out, start, order[position - 1 :: -1] if position else order[:0], pixel_mm2)
    carina_z = _track(air, out, start, order[position + 1 :], pixel_mm2, x=x, z=z, trachea_x=trachea_x)
    slices = np.flatnonzero(out.any(axis=(1, 2)))
    # a trachea runs some way along the body axis; a bronchus cut across does not
    if (slices[-1] - slices[0] + 1) * spacing_c[0] < 25.0:
        return None
    # ... through the mediastinum and neck: on most of its slices what surrounds it is soft
    # tissue, where a bronchus inside a lung is surrounded by parenchyma
    if _median_ring_air(red.mean_hu, out, slices, spacing_c) > MAX_RING_AIR:
        return None
    if carina_z is None:
        logger.debug("airway: no carina in the scanned range (trachea only)")
    return out


def _median_ring_air(
    hu: np.ndarray, tube: np.ndarray, slices: np.ndarray, spacing: tuple[float, float, float]
) -> float:
    """Median over ``slices`` of the fraction of air (< −500 HU) in a ring 3–9 mm around ``tube``."""
    inner = max(1, round(3.0 / spacing[1]))
    outer = max(1, round(6.0 / spacing[1]))
    fractions = []
    for s in slices:
        rows, cols = np.nonzero(tube[s])
        pad = inner + outer + 1
        box = (
            slice(max(0, int(rows.min()) - pad), int(rows.max()) + pad + 1),
            slice(max(0, int(cols.min()) - pad), int(cols.max()) + pad + 1),
        )
        near = ndi.binary_dilation(tube[s][box], iterations=inner)
        ring = ndi.binary_dilation(near, iterations=outer) & ~near
        if ring.any():
            fractions.append(float(np.mean(hu[s][box][ring] < -500.0)))
    return float(np.median(fractions)) if fractions else 1.0


def _track(
    air: np.ndarray,
    out: np.ndarray,
    start: np.ndarray,
    slices: np.ndarray,
    pixel_mm2: float,
    *,
    x: np.ndarray | None = None,
    z: np.ndarray | None = None,
    trachea_x: float = 0.0,
) -> float | None:
    """Follow the lumen from ``start`` through ``slices`` (in that order), writing into ``out``.

    With ``x``/``z`` (going caudally) the carina is looked for and each main bronchus is kept to
    its length below it; returns the carina's z (mm) or None.
    """
    previous = start
    carina_z: float | None = None
    for s in slices:
        near = ndi.binary_dilation(previous, iterations=1)
        rows, cols = np.nonzero(near)
        if rows.size == 0:
            break
        margin = 20
        box = (
            slice(max(0, int(rows.min()) - margin), int(rows.max()) + margin + 1),
            slice(max(0, int(cols.min()) - margin), int(cols.max()) + margin + 1),
        )
        labelled, n = ndi.label(air[s][box])
        if n == 0:
            break
        hit = np.unique(labelled[near[box] & (labelled > 0)])
        if hit.size == 0:
            break
        areas = np.bincount(labelled.ravel(), minlength=n + 1)
        prev_area = float(previous[box].sum())
        current = np.zeros(air.shape[1:], dtype=bool)
        for value in hit:
            # what this region continues: the previous lumen it overlaps
            overlap = float((previous[box] & ndi.binary_dilation(labelled == value, iterations=1)).sum())
            area = float(areas[value])
            if (
                area * pixel_mm2 > MAX_LUMEN_MM2
                or area > 2.5 * max(overlap, prev_area / 2.0) + 20.0 / pixel_mm2
            ):
                continue  # a leak: much larger than the lumen it continues
            current[box] |= labelled == value
        if not current.any():
            break
        if x is not None and z is not None:
            parts, m = ndi.label(current)
            big = [v for v in range(1, m + 1) if (parts == v).sum() * pixel_mm2 >= 20.0]
            if carina_z is None and len(big) >= 2:
                carina_z = float(z[s])
            if carina_z is not None:
                keep = np.zeros_like(current)
                for v in range(1, m + 1):
                    part = parts == v
                    side_left = float(x[part].mean()) > trachea_x  # LPS +x is the patient's left
                    length = LEFT_MAIN_BRONCHUS_MM if side_left else RIGHT_MAIN_BRONCHUS_MM
                    if float(z[s]) >= carina_z - length:
                        keep |= part
                current = keep
                if not current.any():
                    break
        out[s] = current
        previous = current
    return carina_z


def _find_trachea(
    hu: np.ndarray, body: np.ndarray, affine: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[int, int, int] | None:
    """A voxel in the trachea: on the most cranial slices, a round air region of trachea size
    (radius ≈ 5–14 mm) close to the body's midline."""
    area_px = spacing[1] * spacing[2]
    order = _slice_z_order(affine, hu.shape[0])
    x = _world_x(affine, (1, *hu.shape[1:]))[0]
    for s in order[: max(3, len(order) // 3)]:
        if not body[s].any():
            continue
        mid_x = float(np.median(x[body[s]]))
        labelled, _n = ndi.label((hu[s] < -900.0) & body[s])
        for region_index, region in enumerate(ndi.find_objects(labelled), start=1):
            if region is None:
                continue
            local = labelled[region] == region_index
            area = float(local.sum()) * area_px
            if not 70.0 <= area <= 650.0:
                continue
            h = (region[0].stop - region[0].start) * spacing[1]
            w = (region[1].stop - region[1].start) * spacing[2]
            if local.sum() / local.size < 0.5 or max(h, w) > 2.2 * min(h, w):
                continue
            centre = np.argwhere(local).mean(axis=0) + np.array([region[0].start, region[1].start])
            rr, cc = float(centre[0]), float(centre[1])
            if abs(float(x[int(rr), int(cc)]) - mid_x) > 25.0:
                continue
            # the trachea runs through soft tissue (neck, mediastinum); a bronchus inside a lung
            # or a gas bubble against a lung is surrounded by air instead
            whole = labelled == region_index
            near = ndi.binary_dilation(whole, iterations=max(1, round(4.0 / spacing[1])))
            ring = ndi.binary_dilation(near, iterations=max(1, round(6.0 / spacing[1]))) & ~near
            if float(np.mean(hu[s][ring] < -500.0)) > 0.4:
                continue
            # the darkest voxel: still inside the lumen at the strictest growing threshold
            values = np.where(local, hu[s][region], np.inf)
            r, c = np.unravel_index(int(np.argmin(values)), local.shape)
            return (int(s), int(r) + region[0].start, int(c) + region[1].start)
    return None


def segment_lungs(
    red: Reduced,
    body: np.ndarray,
    airway: np.ndarray | None,
    affine_c: np.ndarray,
    spacing_c: tuple[float, float, float],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Coarse (left, right) lung masks, or None when no lung is in the volume."""
    air = (red.mean_hu < LUNG_HU) & body
    if airway is not None:
        air &= ~per_slice("dilate", airway, 1)
    labelled, n = ndi.label(air)
    if n == 0:
        return None
    voxel_ml = float(np.prod(spacing_c)) / 1000.0
    counts = np.bincount(labelled.ravel())
    regions = ndi.find_objects(labelled)
    keep = []
    for value in np.flatnonzero(counts * voxel_ml >= 10.0):
        region = regions[value - 1] if value else None
        if region is None:
            continue
        p10, p50 = np.percentile(red.mean_hu[region][labelled[region] == value], [10, 50])
        # lung parenchyma (≈ −850), not gas (≈ −1000: bowel, stomach, the airway lumen)
        if -950.0 <= p50 <= -650.0 and p10 > -965.0:
            keep.append(int(value))
    if not keep:
        return None
    lungs = np.isin(labelled, keep)
    step = spacing_c[1]
    lungs = per_slice("close", lungs, max(1, round(6.0 / step)))
    lungs = fill_holes_per_slice(lungs)
    x = _world_x(affine_c, lungs.shape)
    split_x = float(x[airway].mean()) if airway is not None and airway.any() else float(x[body].mean())
    left = np.zeros_like(lungs)
    right = np.zeros_like(lungs)
    labelled, n = ndi.label(lungs)
    for region_index, region in enumerate(ndi.find_objects(labelled), start=1):
        if region is None:
            continue
        local = labelled[region] == region_index
        on_left = x[region] > split_x
        share = float((local & on_left).sum()) / float(local.sum())
        if share > 0.8:
            left[region] |= local
        elif share < 0.2:
            right[region] |= local
        else:  # one component across the midline: split it at the trachea
            left[region] |= local & on_left
            right[region] |= local & ~on_left
    return left, right


def segment_bone(
    hu: np.ndarray, red: Reduced, body_c: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Full-resolution bone mask; components, holes and local maxima are found on the reduced
    grid (block maxima keep thin cortex and ribs), the edge is decided at each full voxel."""
    th = COARSE_BONE if spacing[1] >= COARSE_GRID_MM else FINE_BONE
    cand = (red.max_hu > th.candidate) & body_c
    labelled, n = ndi.label(cand, structure=ndi.generate_binary_structure(3, 3))
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    keep = []
    for value, region in enumerate(ndi.find_objects(labelled), start=1):
        if region is None:
            continue
        values = red.max_hu[region][labelled[region] == value]
        if values.size >= 2 and float(np.percentile(values, 95)) >= th.cortex_p95:
            keep.append(value)
    if not keep:
        return np.zeros(hu.shape, dtype=bool)
    kept = np.isin(labelled, keep)
    # Contrast-filled blood (aorta, heart: 250–550 HU) touching a vertebra or rib joins its
    # component; cut it off voxel by voxel: bone candidates lie within a few mm of cortex.
    step = spacing[1] * red.factor
    reach = max(1, round(th.near_cortex_mm / step))
    near_cortex = ndi.maximum_filter(red.max_hu, size=(1, 2 * reach + 1, 2 * reach + 1)) >= th.cortex_hu
    kept &= near_cortex
    local_max = ndi.maximum_filter(red.mean_hu, size=(1, 3, 3))
    # Full resolution, only near kept bone: an edge at half the local maximum (full width at
    # half maximum, so partial-volume neighbours of dense cortex are not bone).
    near_full = red.up(per_slice("dilate", kept, 1))
    s_idx, r_idx, c_idx = np.nonzero(near_full)
    f = red.factor
    threshold = np.maximum(np.float32(th.edge_min), 0.5 * (local_max[s_idx, r_idx // f, c_idx // f] + 40.0))
    on = hu[s_idx, r_idx, c_idx] > threshold
    bone = np.zeros(hu.shape, dtype=bool)
    bone[s_idx[on], r_idx[on], c_idx[on]] = True
    if th.grow:
        # On a coarse grid (≥ 2.5 mm) the cortex of a real pelvis or vertebra is too faint to
        # enclose its marrow: grow a few mm from it through dense voxels instead.
        dense = (red.mean_hu >= GROW_HU) & body_c
        grown = kept.copy()
        for _ in range(max(1, round(GROW_MM / (spacing[1] * f)))):
            grown = ndi.binary_dilation(grown) & (dense | kept)
        s_idx, r_idx, c_idx = np.nonzero(red.up(grown & ~kept))
        on = hu[s_idx, r_idx, c_idx] >= GROW_HU
        bone[s_idx[on], r_idx[on], c_idx[on]] = True
    # Marrow: holes of the cortex on each slice that are small and dense (not the spinal canal,
    # not whatever the ribs happen to encircle), judged on the hole minus its rim. Done in the
    # box around the bone only.
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in (s_idx, r_idx, c_idx))
    sub = bone[box]
    # a thin cortex blurred to below the edge threshold leaves gaps; close them before
    # looking for holes (the closing voxels count as bone only if dense)
    closed = per_slice("close", sub, 2)
    sub |= closed & (hu[box] > th.edge_min)
    background, is_hole = holes_per_slice(closed)
    if is_hole.any():
        sub_hu = hu[box]
        holes = is_hole[background]
        core = holes & per_slice("erode", holes, 1)
        size = int(background.max()) + 1
        area_cm2 = np.bincount(background[holes], minlength=size) * spacing[1] * spacing[2] / 100.0
        core_n = np.bincount(background[core], minlength=size)
        core_sum = np.bincount(background[core], weights=sub_hu[core], minlength=size)
        all_n = np.maximum(np.bincount(background[holes], minlength=size), 1)
        all_sum = np.bincount(background[holes], weights=sub_hu[holes], minlength=size)
        density = np.where(core_n > 0, core_sum / np.maximum(core_n, 1), all_sum / all_n)
        ok = is_hole & (area_cm2 <= MAX_MARROW_HOLE_CM2) & (density >= th.marrow_min)
        sub |= ok[background]
    return bone


def _coarse_of(mask_full: np.ndarray, factor: int) -> np.ndarray:
    """A full-resolution mask on a grid reduced in-plane by ``factor`` (any voxel of the block)."""
    if factor == 1:
        return mask_full
    _s, r, c = mask_full.shape
    rr, cc = -(-r // factor) * factor, -(-c // factor) * factor
    if (rr, cc) != (r, c):
        mask_full = np.pad(mask_full, ((0, 0), (0, rr - r), (0, cc - c)))
    out = mask_full[:, 0::factor, 0::factor].copy()
    for i in range(factor):
        for j in range(factor):
            out |= mask_full[:, i::factor, j::factor]
    return out


def _is_central_airway(airway: np.ndarray | None, lungs: tuple[np.ndarray, np.ndarray] | None) -> bool:
    """Whether a tracked air tube can be the trachea: it runs between the lungs, so lungs appear on
    some of its slices (rectal or colonic gas in a pelvis scan is followed just as well)."""
    if airway is None or lungs is None:
        return False
    lung_slices = lungs[0].any(axis=(1, 2)) | lungs[1].any(axis=(1, 2))
    return bool(np.any(airway.any(axis=(1, 2)) & lung_slices))


def segment_anatomy(volume: VolumeInput, wanted: Sequence[str]) -> Anatomy:
    """Masks on the input grid for the wanted names (a subset of :data:`SERVED`)."""
    hu = volume.hu.astype(np.float32, copy=False)
    spacing = volume.spacing_mm
    out = Anatomy()
    t0 = time.perf_counter()
    inplane = max(min(spacing[1], spacing[2]), 1e-3)
    f_fine = max(1, round(1.5 / inplane))  # ≈1.5 mm: airway and bone
    f_topo = max(1, round(3.0 / (inplane * f_fine)))  # ≈3 mm more: body and lung topology
    fine = reduce(hu, f_fine)
    topo = coarsen(fine, f_topo)
    spacing_fine = (spacing[0], spacing[1] * f_fine, spacing[2] * f_fine)
    spacing_topo = (spacing[0], spacing_fine[1] * f_topo, spacing_fine[2] * f_topo)
    affine_fine = _coarse_affine(volume.affine_lps, f_fine)
    affine_topo = _coarse_affine(volume.affine_lps, f_fine * f_topo)
    out.timings_s["reduce"] = time.perf_counter() - t0

    t = time.perf_counter()
    body_topo = segment_body(topo, spacing)
    body = refine(body_topo, topo, hu > BODY_HU)
    out.timings_s["body"] = time.perf_counter() - t
    if not body.any():
        for name in wanted:
            out.missing[name] = "no body found (is this a CT volume in HU?)"
        return out
    if "body" in wanted:
        out.masks["body"] = body
    body_fine = _coarse_of(body, f_fine)

    lung_names = ("lungs", "left lung", "right lung")
    airway_fine: np.ndarray | None = None
    if "airway" in wanted or any(n in wanted for n in lung_names):
        t = time.perf_counter()
        airway_fine = segment_airway(fine, body_fine, affine_fine, spacing_fine)
        out.timings_s["airway"] = time.perf_counter() - t
        t = time.perf_counter()
        airway_topo = None if airway_fine is None else _coarse_of(airway_fine, f_topo)
        found = segment_lungs(topo, body_topo, airway_topo, affine_topo, spacing_topo)
        if airway_fine is not None and not _is_central_airway(airway_topo, found):
            airway_fine = None
        airway_full = None if airway_fine is None else refine(airway_fine, fine, hu < AIRWAY_HU)
        if "airway" in wanted:
            if airway_full is None or not airway_full.any():
                out.missing["airway"] = "no trachea found in the scanned range"
            else:
                out.masks["airway"] = airway_full
        if found is None:
            for name in lung_names:
                if name in wanted:
                    out.missing[name] = "no lung found in the scanned range"
        elif any(n in wanted for n in lung_names):
            below = hu < LUNG_HU
            left = refine(found[0], topo, below)
            right = refine(found[1], topo, below) & ~left
            if airway_full is not None:
                left &= ~airway_full
                right &= ~airway_full
            for name, mask in (("left lung", left), ("right lung", right), ("lungs", left | right)):
                if name not in wanted:
                    continue
                if mask.any():
                    out.masks[name] = mask
                else:
                    out.missing[name] = f"no {name} found in the scanned range"
        out.timings_s["lungs"] = time.perf_counter() - t
    if "bone" in wanted:
        t = time.perf_counter()
        bone = segment_bone(hu, fine, body_fine, spacing)
        if bone.any():
            out.masks["bone"] = bone
        else:
            out.missing["bone"] = "no bone found in the scanned range"
        out.timings_s["bone"] = time.perf_counter() - t
    return out


class AnatomyBasicPipeline:
    """Classical HU + morphology pipeline (``inference.contracts.Pipeline``)."""

    name = NAME
    version = VERSION
    default_prompts: tuple[str, ...] = ("body", "left lung", "right lung", "airway", "bone")

    def run(self, volume: VolumeInput, requests: Sequence[Request]) -> ModelOutputs:
        t0 = time.perf_counter()
        if not requests:
            requests = [Request(Task.SEG, text) for text in self.default_prompts]
        unmatched: list[Unmatched] = []
        wanted: dict[str, str] = {}  # canonical name -> prompt that asked for it
        for request in requests:
            if request.task != Task.SEG:
                unmatched.append(
                    Unmatched(request.text, f"{NAME} only segments; it does no {request.task.value}")
                )
                continue
            structure = lookup(request.text)
            if structure is None:
                unmatched.append(Unmatched(request.text, f"no match: {NAME} knows {', '.join(SERVED)}"))
            elif structure.name not in SERVED:
                unmatched.append(
                    Unmatched(
                        request.text,
                        f"{NAME} cannot segment {structure.name} (HU thresholds only: {', '.join(SERVED)})",
                    )
                )
            else:
                wanted.setdefault(structure.name, request.text)
        anatomy = segment_anatomy(volume, list(wanted))
        for name, reason in anatomy.missing.items():
            unmatched.append(Unmatched(wanted[name], reason))
        t = time.perf_counter()
        # One label per voxel, largest first, so that a structure inside another (a lung inside
        # the body) keeps its own label; each structure is then measured on its SEG segment's
        # voxels: its own label and those of the structures inside it (the body with its lungs
        # and bone, not the body with holes, nor a mask no object holds).
        found = sorted(
            (
                (name, mask, int(np.count_nonzero(mask)))
                for name in wanted
                if (mask := anatomy.masks.get(name)) is not None
            ),
            key=lambda item: -item[2],
        )
        segments: list[SegmentOut] = []
        if found:
            labelmap, contains = paint([mask for _, mask, _ in found])
        else:
            labelmap, contains = np.zeros(volume.hu.shape, dtype=np.uint16), []
        for value, (name, _mask, _count) in enumerate(found, start=1):
            m = measure(segment_region(labelmap, value, contains), volume.hu, volume.spacing_mm)
            structure = STRUCTURES[name]
            segments.append(
                SegmentOut(
                    label_value=value,
                    name=name,
                    prompt=wanted[name],
                    category=structure.category,
                    type=structure.type,
                    score=1.0,
                    measurements=m,
                    description=describe_segment(name, m),
                    contains=contains[value - 1],
                )
            )
        timings = dict(anatomy.timings_s)
        timings["measure"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        logger.info(
            "ct-anatomy-basic done", extra={"segments": len(segments), "seconds": round(timings["total"], 2)}
        )
        return ModelOutputs(
            model_name=NAME,
            model_version=VERSION,
            labelmap=labelmap,
            segments=segments,
            unmatched=unmatched,
            summary=describe_summary([(s.name, s.measurements) for s in segments]),
            timings_s=timings,
        )
