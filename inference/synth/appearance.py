"""How tissues look on CT: HU by contrast phase, texture, noise, blur; and the renderer.

Ranges are typical adult values (non-contrast, late arterial ≈ 35 s, portal venous ≈ 70 s);
each case draws one value per tissue from its range, so the model never learns a fixed number.
The renderer works slab by slab and takes its noise and texture from small pre-filtered 2-D
pools (random windows per slice, texture windows drifting slowly along z), which keeps a
512×512×300 volume within seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

Phase = Literal["non-contrast", "arterial", "portal venous"]
PHASES: tuple[Phase, ...] = ("non-contrast", "arterial", "portal venous")


class T(IntEnum):
    """Tissue (appearance) classes; independent of the anatomical labels."""

    OUTSIDE = 0
    AIR = 1  # gas inside the body: airway lumen, bowel and stomach gas
    LUNG = 2
    FAT = 3
    MUSCLE = 4
    SKIN = 5
    SOFT = 6  # walls, lymphatic/connective tissue, mediastinal soft tissue
    CSF = 7
    BOWEL = 8  # bowel contents
    FLUID = 9  # urine, bile, gastric fluid
    LIVER = 10
    SPLEEN = 11
    KIDNEY_CORTEX = 12
    KIDNEY_MEDULLA = 13
    PANCREAS = 14
    BLOOD_ARTERIAL = 15
    BLOOD_VENOUS = 16
    BLOOD_PORTAL = 17
    BLOOD_PULMONARY = 18
    MYOCARDIUM = 19
    CORTICAL_BONE = 20
    TRABECULAR_BONE = 21
    RIB_BONE = 22
    CARTILAGE = 23
    GASTRIC_WALL = 24
    AIRWAY_WALL = 25
    BRONCHUS_LUMEN = 26  # small intrapulmonary airways (labelled lung)
    ADRENAL = 27
    TABLE = 28  # patient table shell (outside the body)
    TABLE_FOAM = 29


# Lesion instance i gets tissue class LESION_BASE + i (its own HU and texture).
LESION_BASE = 64

_NC, _AR, _PV = PHASES
# tissue -> phase -> (low, high) HU
HU_RANGES: dict[T, dict[Phase, tuple[float, float]]] = {}


def _set(
    t: T,
    nc: tuple[float, float],
    ar: tuple[float, float] | None = None,
    pv: tuple[float, float] | None = None,
) -> None:
    HU_RANGES[t] = {_NC: nc, _AR: ar or nc, _PV: pv or ar or nc}


_set(T.OUTSIDE, (-1000, -995))
_set(T.AIR, (-1000, -960))
_set(T.LUNG, (-890, -820))
_set(T.FAT, (-115, -85))
_set(T.MUSCLE, (40, 60), (45, 65), (50, 70))
_set(T.SKIN, (20, 50))
_set(T.SOFT, (25, 50), (40, 70), (50, 80))
_set(T.CSF, (5, 20))
_set(T.BOWEL, (-20, 40))
_set(T.FLUID, (0, 18))
_set(T.LIVER, (50, 68), (65, 90), (100, 130))
_set(T.SPLEEN, (40, 55), (90, 130), (105, 135))
_set(T.KIDNEY_CORTEX, (25, 40), (150, 220), (140, 190))
_set(T.KIDNEY_MEDULLA, (25, 40), (60, 100), (125, 180))
_set(T.PANCREAS, (35, 50), (100, 135), (80, 110))
_set(T.BLOOD_ARTERIAL, (35, 50), (250, 380), (150, 210))
_set(T.BLOOD_VENOUS, (35, 50), (60, 140), (130, 175))
_set(T.BLOOD_PORTAL, (35, 50), (80, 130), (150, 200))
_set(T.BLOOD_PULMONARY, (35, 50), (180, 320), (140, 190))
_set(T.MYOCARDIUM, (35, 50), (100, 150), (90, 125))
_set(T.CORTICAL_BONE, (700, 1200))
_set(T.TRABECULAR_BONE, (140, 280))
_set(T.RIB_BONE, (500, 900))
_set(T.CARTILAGE, (80, 150))
_set(T.GASTRIC_WALL, (35, 50), (70, 110), (80, 110))
_set(T.AIRWAY_WALL, (20, 60))
_set(T.BRONCHUS_LUMEN, (-990, -930))
_set(T.ADRENAL, (20, 35), (60, 90), (60, 90))
_set(T.TABLE, (150, 450))
_set(T.TABLE_FOAM, (-900, -750))

# Standard deviation (HU) of the smooth texture of each tissue (parenchymal heterogeneity).
TEXTURE_HU: dict[T, float] = {
    T.LUNG: 25,
    T.FAT: 8,
    T.MUSCLE: 7,
    T.LIVER: 6,
    T.SPLEEN: 7,
    T.PANCREAS: 12,
    T.BOWEL: 25,
    T.TRABECULAR_BONE: 40,
    T.CORTICAL_BONE: 90,
    T.RIB_BONE: 60,
    T.KIDNEY_CORTEX: 8,
    T.KIDNEY_MEDULLA: 8,
    T.SOFT: 8,
    T.MYOCARDIUM: 6,
    T.CARTILAGE: 15,
    T.GASTRIC_WALL: 6,
}


@dataclass(frozen=True)
class Appearance:
    """One case's draw: HU and texture amplitude per tissue class, noise and blur."""

    phase: Phase
    hu_lut: np.ndarray  # float32[256]
    texture_lut: np.ndarray  # float32[256]
    noise_hu: float
    blur_inplane: float  # weight of each neighbour in the in-plane 3-tap kernel (0..0.25)
    blur_slice: float  # the same along the slice axis


def draw_appearance(rng: np.random.Generator, *, phase: Phase | None = None) -> Appearance:
    drawn = PHASES[int(rng.integers(len(PHASES)))]
    chosen: Phase = phase or drawn
    hu = np.zeros(256, dtype=np.float32)
    tex = np.zeros(256, dtype=np.float32)
    hu[:] = -1000.0
    for t, ranges in HU_RANGES.items():
        lo, hi = ranges[chosen]
        hu[t] = rng.uniform(lo, hi)
        tex[t] = TEXTURE_HU.get(t, 3.0) * rng.uniform(0.6, 1.4)
    # Arterial spleen is heterogeneous ("zebra" enhancement).
    if chosen == "arterial":
        tex[T.SPLEEN] *= 3.0
    return Appearance(
        phase=chosen,
        hu_lut=hu,
        texture_lut=tex,
        noise_hu=float(rng.uniform(6.0, 22.0)),
        blur_inplane=float(rng.uniform(0.08, 0.24)),
        blur_slice=float(rng.uniform(0.03, 0.2)),
    )


def set_lesion_tissue(appearance: Appearance, index: int, hu: float, texture_hu: float) -> int:
    """Register lesion ``index`` (0-based) as its own tissue class; return the class."""
    cls = LESION_BASE + index
    appearance.hu_lut[cls] = hu
    appearance.texture_lut[cls] = texture_hu
    return cls


def _pool(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px, mode="wrap")
    field /= max(float(field.std()), 1e-6)
    out: np.ndarray = field
    return out


def render(
    tissue: np.ndarray,
    appearance: Appearance,
    rng: np.random.Generator,
    *,
    spacing_mm: tuple[float, float, float],
) -> np.ndarray:
    """HU volume (float32) from a tissue-class volume: LUT + texture, blur, correlated noise."""
    n_slices, n_rows, n_cols = tissue.shape
    pad = 96
    pool_shape = (n_rows + pad, n_cols + pad)
    # CT noise is correlated in-plane (reconstruction kernel); texture is low-frequency.
    noise_pools = [_pool(rng, pool_shape, float(rng.uniform(0.5, 1.0))) for _ in range(2)]
    tex_sigma_px = max(1.0, 4.0 / max(spacing_mm[1], 1e-3))
    tex_pool = _pool(rng, (n_rows + 4 * pad, n_cols + 4 * pad), tex_sigma_px)
    tex_drift = rng.uniform(-1.0, 1.0, size=2) * spacing_mm[0] / max(spacing_mm[1], 1e-3) * 0.7
    tex_origin = rng.uniform(0, pad, size=2) + 1.5 * pad
    offsets = [(int(a), int(b)) for a, b in rng.integers(0, pad, size=(n_slices, 2))]
    flips = [int(v) for v in rng.integers(0, 4, size=(n_slices,))]
    pool_pick = [int(v) for v in rng.integers(0, 2, size=(n_slices,))]

    hu = np.empty(tissue.shape, dtype=np.float32)
    w_in = np.float32(appearance.blur_inplane)
    w_z = np.float32(appearance.blur_slice)
    noise = np.float32(appearance.noise_hu)
    slab = 16
    for s0 in range(0, n_slices, slab):
        s1 = min(n_slices, s0 + slab)
        # one slice of context each side for the slice-direction blur
        c0, c1 = max(0, s0 - 1), min(n_slices, s1 + 1)
        block = appearance.hu_lut[tissue[c0:c1]]
        amp = appearance.texture_lut[tissue[c0:c1]]
        for k in range(c1 - c0):
            s = c0 + k
            oy = round(tex_origin[0] + s * tex_drift[0]) % (3 * pad)
            ox = round(tex_origin[1] + s * tex_drift[1]) % (3 * pad)
            amp[k] *= tex_pool[oy : oy + n_rows, ox : ox + n_cols]
        block += amp
        del amp
        _blur3(block, 1, w_in)
        _blur3(block, 2, w_in)
        if c1 - c0 > 1:
            _blur3(block, 0, w_z)
        for k in range(s0 - c0, s0 - c0 + (s1 - s0)):
            s = c0 + k
            pool = noise_pools[pool_pick[s]]
            oy, ox = offsets[s]
            win = pool[oy : oy + n_rows, ox : ox + n_cols]
            flip = flips[s]
            if flip & 1:
                win = win[::-1]
            if flip & 2:
                win = win[:, ::-1]
            block[k] += noise * win
        hu[s0:s1] = block[s0 - c0 : s0 - c0 + (s1 - s0)]
    np.clip(hu, -1024.0, 3071.0, out=hu)
    return hu


def _blur3(a: np.ndarray, axis: int, w: np.float32) -> None:
    """In place: a ← (1−2w)·a + w·(a[i−1] + a[i+1]) along ``axis`` (edges keep their value)."""
    if a.shape[axis] < 3 or w <= 0:
        return
    lo = [slice(None)] * 3
    mid = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis], mid[axis], hi[axis] = slice(0, -2), slice(1, -1), slice(2, None)
    neighbours = a[tuple(lo)] + a[tuple(hi)]
    a[tuple(mid)] *= np.float32(1.0) - 2 * w
    neighbours *= w
    a[tuple(mid)] += neighbours
