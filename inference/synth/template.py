"""SynthSeg-style label-to-image synthesis from a real label map (TotalSegmentator v1 classes).

Only the *labels* of the template are used (``labels.nii.gz`` + ``classes.json``); the real CT
intensities next to them are never read: subject_a's CT is the real-image test set. Per case:

1. the template's classes are mapped to our label map values and tissue classes (table below);
   kidneys get a cortex and medulla, bones a shell and a trabecular core, the stomach a wall;
2. a body outline is built from the labels (per-slice convex hull of every labelled voxel, grown
   by a random body-wall muscle and subcutaneous fat thickness), since TotalSegmentator v1 has no
   body class; unlabelled space inside it is fat;
3. the map is resampled onto a random grid (spacing, field of view, coverage crop, head- or
   feet-first) through a random affine (scale ±10 %, rotation) and a smooth elastic displacement
   (nearest neighbour, so label edges follow the template's 3 mm voxels at fine output spacings);
4. lesions, HU per tissue for a random contrast phase, texture, blur and noise are drawn exactly
   as for the phantom.

Mapping (TotalSegmentator v1 class → our label, tissue):

=====================================  ========================  ===========================
spleen                                 spleen                    spleen
kidney_left / kidney_right             left / right kidney       cortex over medulla
gallbladder                            gallbladder               fluid
liver                                  liver                     liver
stomach                                stomach                   wall over fluid
aorta                                  aorta                     arterial blood
inferior_vena_cava                     inferior vena cava        venous blood
portal_vein_and_splenic_vein           portal vein               portal blood
pancreas                               pancreas                  pancreas
lung_*_lobe_left / _right              left / right lung         lung
trachea                                airway                    air
esophagus                              esophagus                 wall
heart_* (myocardium, chambers)         heart                     myocardium / blood
vertebrae_*                            vertebrae                 bone shell + trabecular
rib_left_* / rib_right_*               ribs                      rib bone
sacrum, hip_*, femur_*                 sacrum, hip, femur        bone shell + trabecular
humerus_*, scapula_*, clavicula_*      humerus, scapula, clav.   bone shell + trabecular
urinary_bladder                        urinary bladder           fluid (wall)
adrenal glands, pulmonary artery,      soft tissue               adrenal / blood / bowel /
iliac vessels, bowel, muscles, face,                             muscle / soft
brain
=====================================  ========================  ===========================
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from inference.synth.appearance import Appearance, Phase, T, draw_appearance
from inference.synth.canvas import Canvas
from inference.synth.grid import PatientPosition, make_grid
from inference.synth.labels import STRUCTURE_LABELS as SL
from inference.synth.phantom import paint_table

DEFAULT_TEMPLATE_DIR = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "totalseg-examples" / "subject_a"
)

SOFT = SL["soft tissue"]

# TotalSegmentator v1 class name -> (our label name, tissue class); see the module docstring.
_DIRECT: dict[str, tuple[str, int]] = {
    "spleen": ("spleen", T.SPLEEN),
    "kidney_right": ("right kidney", T.KIDNEY_CORTEX),
    "kidney_left": ("left kidney", T.KIDNEY_CORTEX),
    "gallbladder": ("gallbladder", T.FLUID),
    "liver": ("liver", T.LIVER),
    "stomach": ("stomach", T.GASTRIC_WALL),
    "aorta": ("aorta", T.BLOOD_ARTERIAL),
    "inferior_vena_cava": ("inferior vena cava", T.BLOOD_VENOUS),
    "portal_vein_and_splenic_vein": ("portal vein", T.BLOOD_PORTAL),
    "pancreas": ("pancreas", T.PANCREAS),
    "adrenal_gland_right": ("soft tissue", T.ADRENAL),
    "adrenal_gland_left": ("soft tissue", T.ADRENAL),
    "esophagus": ("esophagus", T.GASTRIC_WALL),
    "trachea": ("airway", T.AIR),
    "heart_myocardium": ("heart", T.MYOCARDIUM),
    "heart_atrium_left": ("heart", T.BLOOD_ARTERIAL),
    "heart_ventricle_left": ("heart", T.BLOOD_ARTERIAL),
    "heart_atrium_right": ("heart", T.BLOOD_VENOUS),
    "heart_ventricle_right": ("heart", T.BLOOD_VENOUS),
    "pulmonary_artery": ("soft tissue", T.BLOOD_PULMONARY),
    "brain": ("soft tissue", T.SOFT),
    "iliac_artery_left": ("soft tissue", T.BLOOD_ARTERIAL),
    "iliac_artery_right": ("soft tissue", T.BLOOD_ARTERIAL),
    "iliac_vena_left": ("soft tissue", T.BLOOD_VENOUS),
    "iliac_vena_right": ("soft tissue", T.BLOOD_VENOUS),
    "small_bowel": ("soft tissue", T.BOWEL),
    "duodenum": ("soft tissue", T.BOWEL),
    "colon": ("soft tissue", T.BOWEL),
    "sacrum": ("sacrum", T.RIB_BONE),
    "face": ("soft tissue", T.SOFT),
    "urinary_bladder": ("urinary bladder", T.FLUID),
}
_PREFIX: tuple[tuple[str, str, int], ...] = (
    ("lung_", "", T.LUNG),  # side from the suffix
    ("vertebrae_", "vertebrae", T.RIB_BONE),
    ("rib_", "ribs", T.RIB_BONE),
    ("hip_", "hip", T.RIB_BONE),
    ("femur_", "femur", T.RIB_BONE),
    ("humerus_", "humerus", T.RIB_BONE),
    ("scapula_", "scapula", T.RIB_BONE),
    ("clavicula_", "clavicle", T.RIB_BONE),
    ("gluteus_", "soft tissue", T.MUSCLE),
    ("autochthon_", "soft tissue", T.MUSCLE),
    ("iliopsoas_", "soft tissue", T.MUSCLE),
)
# labels whose interior gets another tissue (template voxels of erosion, tissue)
_CORES: dict[str, tuple[int, int]] = {
    "left kidney": (2, T.KIDNEY_MEDULLA),
    "right kidney": (2, T.KIDNEY_MEDULLA),
    "stomach": (1, T.FLUID),
    "vertebrae": (1, T.TRABECULAR_BONE),
    "sacrum": (1, T.TRABECULAR_BONE),
    "hip": (1, T.TRABECULAR_BONE),
    "femur": (1, T.TRABECULAR_BONE),
    "humerus": (1, T.TRABECULAR_BONE),
    "scapula": (1, T.TRABECULAR_BONE),
    "clavicle": (1, T.TRABECULAR_BONE),
}


def map_class(name: str) -> tuple[str, int] | None:
    """Our (label name, tissue class) for a TotalSegmentator v1 class name, or None."""
    if name in _DIRECT:
        return _DIRECT[name]
    for prefix, label, tissue in _PREFIX:
        if name.startswith(prefix):
            if prefix == "lung_":
                return ("left lung" if name.endswith("_left") else "right lung", tissue)
            return (label, tissue)
    return None


@dataclass(frozen=True)
class Template:
    """A template on its own grid, in our terms: codes = label * 256 + tissue (uint16)."""

    name: str
    codes: np.ndarray  # uint16 [slice,row,column] sorted like our volumes
    affine_lps: np.ndarray
    hull_distance_mm: np.ndarray  # float32, per-slice distance outside the labelled hull (0 inside)
    body_extent_lps: tuple[np.ndarray, np.ndarray]  # min/max LPS of labelled voxels


def _to_slice_row_column(data: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder a NIfTI array to our [slice,row,column] (slice ~ z, row ~ y, column ~ x) with the
    LPS affine (NIfTI affines are RAS: flip x and y)."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    axes = [int(np.argmax(np.abs(lps[:3, k]))) for k in range(3)]  # world axis of each array axis
    order = [axes.index(2), axes.index(1), axes.index(0)]
    data = np.transpose(data, order)
    a = np.eye(4)
    a[:3, :3] = lps[:3, :3][:, order]
    a[:3, 3] = lps[:3, 3]
    # flip axes so that slice, row and column run along +z, +y, +x (head-first supine layout)
    for k, world in enumerate((2, 1, 0)):
        if a[world, k] < 0:
            n = data.shape[k]
            data = np.flip(data, axis=k)
            a[:3, 3] = a[:3, 3] + a[:3, k] * (n - 1)
            a[:3, k] = -a[:3, k]
    return np.ascontiguousarray(data), a


@functools.lru_cache(maxsize=4)
def load_template(template_dir: Path) -> Template:
    import nibabel as nib  # lazy: only template mode needs it

    image: Any = nib.load(str(template_dir / "labels.nii.gz"))
    classes = {int(k): v for k, v in json.loads((template_dir / "classes.json").read_text()).items()}
    raw = np.asarray(image.dataobj).astype(np.int32)
    data, affine = _to_slice_row_column(raw, np.asarray(image.affine, dtype=np.float64))
    # Pad in-plane so the grown body outline (wall muscle + fat) may reach past the template's
    # own field of view, which is cut close to the labelled anatomy.
    pad_mm = 120.0
    pad = [int(np.ceil(pad_mm / float(np.linalg.norm(affine[:3, k])))) for k in (1, 2)]
    data = np.pad(data, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    affine = affine.copy()
    affine[:3, 3] -= affine[:3, 1] * pad[0] + affine[:3, 2] * pad[1]
    label_lut = np.zeros(max(classes) + 1, dtype=np.uint16)
    tissue_lut = np.full(max(classes) + 1, T.FAT, dtype=np.uint16)
    for value, name in classes.items():
        mapped = map_class(name)
        if mapped is None:
            label_lut[value], tissue_lut[value] = SOFT, T.SOFT
        else:
            label_lut[value], tissue_lut[value] = SL[mapped[0]], mapped[1]
    labels = label_lut[data]
    tissue = np.where(data > 0, tissue_lut[data], 0).astype(np.uint16)
    for name, (iterations, core_tissue) in _CORES.items():
        mask = labels == SL[name]
        if mask.any():
            core = ndi.binary_erosion(mask, iterations=iterations)
            tissue[core] = core_tissue
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    hull_distance = np.zeros(data.shape, dtype=np.float32)
    labelled = data > 0
    for s in range(data.shape[0]):
        hull = _convex_hull_mask(labelled[s])
        if hull.any():
            hull_distance[s] = ndi.distance_transform_edt(~hull, sampling=spacing[1:]).astype(np.float32)
        else:
            hull_distance[s] = 1e4  # no labels on this slice: far outside any body
    idx = np.argwhere(labelled)
    corners = (affine @ np.c_[idx, np.ones(len(idx))].T).T[:, :3]
    return Template(
        name=template_dir.name,
        codes=(labels.astype(np.uint16) << 8) | tissue,
        affine_lps=affine,
        hull_distance_mm=hull_distance,
        body_extent_lps=(corners.min(axis=0), corners.max(axis=0)),
    )


def _convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of a 2-D mask (half-plane test against the hull's edges)."""
    pts = np.argwhere(mask)
    if len(pts) < 3:
        return mask.copy()
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(pts)
    except QhullError:
        return mask.copy()
    r0, c0 = pts.min(axis=0)
    r1, c1 = pts.max(axis=0) + 1
    rows, cols = np.mgrid[r0:r1, c0:c1]
    grid = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
    inside = np.zeros(mask.shape, dtype=bool)
    inside[r0:r1, c0:c1] = np.all(
        grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 0.5, axis=1
    ).reshape(rows.shape)
    out: np.ndarray = inside | mask
    return out


def render_template(
    rng: np.random.Generator,
    *,
    shape: tuple[int, int, int] | None,
    spacing_mm: tuple[float, float, float] | None,
    template_dir: Path | None,
    position: PatientPosition | None = None,
    phase: Phase | None = None,
) -> tuple[Canvas, Appearance, str, str, PatientPosition]:
    """A deformed, resampled copy of the template on a random grid, ready for lesions and
    rendering. Returns (canvas, appearance, template name, protocol, patient position)."""
    directory = Path(template_dir) if template_dir is not None else DEFAULT_TEMPLATE_DIR
    if not (directory / "labels.nii.gz").is_file():
        raise FileNotFoundError(f"template label map not found: {directory / 'labels.nii.gz'}")
    tpl = load_template(directory.resolve())
    lo, hi = tpl.body_extent_lps
    muscle = float(rng.uniform(6, 14))
    fat = float(rng.uniform(8, 35))
    margin = muscle + fat
    width = float(hi[0] - lo[0]) + 2 * margin
    depth = float(hi[1] - lo[1]) + 2 * margin
    centre = 0.5 * (lo + hi)
    n_rows, n_cols = (512, 512) if shape is None else (shape[1], shape[2])
    if spacing_mm is None:
        fov = max(width, depth) * float(rng.uniform(1.04, 1.3))
        inplane = fov / max(n_rows, n_cols)
        dz = float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0])) if shape is None else 0.0
        if shape is not None:
            dz = float(np.clip(float(hi[2] - lo[2]) / shape[0], 0.625, 5.0))
        spacing = (dz, inplane, inplane)
    else:
        spacing = (float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2]))
    extent_z = float(hi[2] - lo[2])
    if shape is None:
        coverage = extent_z * float(rng.uniform(0.6, 1.0))
        n_slices = int(np.clip(round(coverage / spacing[0]), 16, 400))
    else:
        n_slices = shape[0]
    coverage = n_slices * spacing[0]
    z_mid = float(lo[2]) + extent_z / 2 + float(rng.uniform(-0.5, 0.5)) * max(extent_z - coverage, 0.0)
    drawn: PatientPosition = "HFS" if rng.random() < 0.8 else "FFS"
    position = position or drawn
    grid = make_grid(
        shape=(n_slices, n_rows, n_cols),
        spacing_mm=spacing,
        position=position,
        rotation_deg=float(rng.normal(0.0, 2.5)),
        center_xy_mm=(float(centre[0] + rng.uniform(-15, 15)), float(centre[1] + rng.uniform(-10, 10))),
        z_range_mm=(z_mid - coverage / 2 + spacing[0] / 2, z_mid + coverage / 2 - spacing[0] / 2),
    )
    warp = _draw_warp(rng, tpl, centre)
    canvas = Canvas(grid)
    _resample_into(canvas, tpl, warp, muscle_mm=muscle, fat_mm=fat)
    body = canvas.labels > 0
    if body.any():
        ys = canvas.y2d[body.any(axis=0)]
        paint_table(canvas, float(ys.max()) + float(rng.uniform(2, 12)))
    appearance = draw_appearance(rng, phase=phase)
    return canvas, appearance, tpl.name, "abdomen-pelvis", position


@dataclass(frozen=True)
class _Warp:
    """Output LPS point p ↦ template LPS point: centre + M·(p − centre) + displacement(p)."""

    centre: np.ndarray
    matrix: np.ndarray
    shift: np.ndarray
    field: np.ndarray  # [3, nz, ny, nx] displacement (mm) on a coarse lattice over the template box
    field_origin: np.ndarray
    field_step: np.ndarray


def _draw_warp(rng: np.random.Generator, tpl: Template, centre: np.ndarray) -> _Warp:
    scale = rng.uniform(0.9, 1.1, size=3)
    yaw, pitch, roll = np.deg2rad(rng.normal(0, [6.0, 2.0, 2.0]))
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    ry = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]])
    rx = np.array([[1, 0, 0], [0, np.cos(roll), -np.sin(roll)], [0, np.sin(roll), np.cos(roll)]])
    matrix = np.diag(1.0 / scale) @ (rz @ ry @ rx)
    lo, hi = tpl.body_extent_lps
    lo = lo - 60.0
    hi = hi + 60.0
    n = 7
    step = (hi - lo) / (n - 1)
    amplitude = float(rng.uniform(2.0, 8.0))
    field = rng.normal(0.0, amplitude, size=(3, n, n, n))
    field = ndi.gaussian_filter(field, sigma=(0, 0.8, 0.8, 0.8))
    return _Warp(
        centre=centre,
        matrix=matrix,
        shift=rng.normal(0, 5.0, size=3),
        field=field,
        field_origin=lo,
        field_step=step,
    )


def _linear_weights(n_out: int, step: int) -> np.ndarray:
    """Weights (n_out × n_coarse) interpolating samples taken every ``step`` outputs."""
    n_coarse = (n_out - 1) // step + 2
    pos = np.arange(n_out) / step
    i0 = np.minimum(np.floor(pos).astype(int), n_coarse - 2)
    frac = pos - i0
    w = np.zeros((n_out, n_coarse))
    w[np.arange(n_out), i0] = 1.0 - frac
    w[np.arange(n_out), i0 + 1] = frac
    return w


def _resample_into(canvas: Canvas, tpl: Template, warp: _Warp, *, muscle_mm: float, fat_mm: float) -> None:
    """Nearest-neighbour pull of the template codes through the warp, slice by slice.

    The smooth parts (elastic displacement, distance to the body hull) are evaluated every 8th
    row and column and interpolated (two small matrix products), the label codes at every voxel.
    """
    inv = np.linalg.inv(tpl.affine_lps)
    n_rows, n_cols = canvas.grid.shape[1:]
    step = 8
    wr, wc = _linear_weights(n_rows, step), _linear_weights(n_cols, step)
    a = canvas.grid.affine_lps
    rc = np.arange(wr.shape[1]) * step
    cc = np.arange(wc.shape[1]) * step
    xc = a[0, 3] + rc[:, None] * a[0, 1] + cc[None, :] * a[0, 2]
    yc = a[1, 3] + rc[:, None] * a[1, 1] + cc[None, :] * a[1, 2]
    x2, y2 = canvas.x2d.astype(np.float64), canvas.y2d.astype(np.float64)
    centre = warp.centre[:, None]
    max_index = np.array(tpl.codes.shape, dtype=np.float64)[:, None] - 1
    for s, z in enumerate(canvas.z1d):
        # coarse: displacement and template position -> hull distance
        pc = np.stack([xc, yc, np.full_like(xc, float(z))], axis=0).reshape(3, -1)
        qc = centre + warp.matrix @ (pc - centre) + warp.shift[:, None]
        lattice = (qc - warp.field_origin[:, None]) / warp.field_step[:, None]
        disp_c = np.stack(
            [ndi.map_coordinates(warp.field[k], lattice, order=1, mode="nearest") for k in range(3)]
        )
        idx_c = inv[:3, :3] @ (qc + disp_c) + inv[:3, 3:4]
        dist_c = ndi.map_coordinates(tpl.hull_distance_mm, idx_c, order=1, mode="nearest")
        beyond = ((idx_c[1:] < 0) | (idx_c[1:] > max_index[1:])).any(axis=0)
        dist_c[beyond] = 1e4  # beyond the padded template in-plane there is no body
        coarse = np.concatenate([disp_c, dist_c[None]]).reshape(4, len(rc), len(cc))
        fine = np.stack([wr @ coarse[k] @ wc.T for k in range(4)])
        # fine: template index of every voxel, nearest code
        p = np.stack([x2, y2, np.full_like(x2, float(z))], axis=0).reshape(3, -1)
        q = centre + warp.matrix @ (p - centre) + warp.shift[:, None] + fine[:3].reshape(3, -1)
        idx = inv[:3, :3] @ q + inv[:3, 3:4]
        code = ndi.map_coordinates(tpl.codes, idx, order=0, mode="constant", cval=0).reshape(x2.shape)
        dist = fine[3]
        lab = (code >> 8).astype(np.uint8)
        tis = (code & 0xFF).astype(np.uint8)
        # inside the hull but unlabelled: visceral fat; outside it: wall muscle, fat, skin
        unlabelled = (lab == 0) & (dist <= muscle_mm + fat_mm)
        tis[unlabelled] = T.FAT
        lab[unlabelled] = SOFT
        tis[unlabelled & (dist > 0) & (dist <= muscle_mm)] = T.MUSCLE
        tis[unlabelled & (dist > muscle_mm + fat_mm - 2.5)] = T.SKIN
        canvas.labels[s] = lab
        canvas.tissue[s] = tis
