"""Procedural torso phantom: body wall, lungs with airways and vessels, abdominal organs, vessels.

Everything is drawn in LPS mm from a random :class:`~inference.synth.anatomy.BodyPlan`, so the
same anatomy comes out right whatever the grid (spacing, field of view, head- or feet-first,
small rotation). Bones are drawn by :mod:`inference.synth.skeleton`; lesions by
:mod:`inference.synth.lesions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.synth.anatomy import BodyPlan, draw_body_plan
from inference.synth.appearance import T
from inference.synth.canvas import Canvas, rotation, smooth_path
from inference.synth.grid import Grid, PatientPosition, make_grid
from inference.synth.labels import STRUCTURE_LABELS as SL
from inference.synth.skeleton import paint_skeleton

SOFT = SL["soft tissue"]
LUNG_L, LUNG_R = SL["left lung"], SL["right lung"]
LUNGS = (LUNG_L, LUNG_R)

# Tissues that organs and vessels may displace: what fills the cavities.
CAVITY = (T.FAT, T.BOWEL, T.FLUID, T.AIR)
LOOSE = (T.FAT, T.BOWEL, T.FLUID, T.AIR, T.SOFT, T.LUNG)

Protocol = tuple[str, float, float]  # name, z low (mm, before height scale), z high


PROTOCOLS: tuple[Protocol, ...] = (
    ("chest", 330.0, 740.0),
    ("abdomen", 120.0, 470.0),
    ("abdomen-pelvis", -30.0, 470.0),
    ("chest-abdomen-pelvis", -30.0, 740.0),
)


@dataclass(frozen=True)
class PhantomGeometry:
    grid: Grid
    protocol: str
    position: PatientPosition


def choose_geometry(
    rng: np.random.Generator,
    plan: BodyPlan,
    *,
    shape: tuple[int, int, int] | None,
    spacing_mm: tuple[float, float, float] | None,
    position: PatientPosition | None = None,
) -> PhantomGeometry:
    """Random but realistic field of view, spacing, coverage and patient position."""
    name, z_lo, z_hi = PROTOCOLS[int(rng.integers(len(PROTOCOLS)))]
    z_lo, z_hi = z_lo * plan.h, z_hi * plan.h
    width = 2.0 * float(np.max(plan.half_width(np.linspace(z_lo, z_hi, 64))))
    depth = 2.0 * float(np.max(plan.half_depth(np.linspace(z_lo, z_hi, 64))))
    n_rows, n_cols = (512, 512) if shape is None else (shape[1], shape[2])
    if spacing_mm is None:
        # The reconstruction field of view covers the body with a margin (sometimes a tight one).
        fov = max(width, depth) * float(rng.uniform(1.04, 1.35))
        inplane = fov / max(n_rows, n_cols)
        if shape is None:
            inplane = float(np.clip(max(inplane, rng.uniform(0.6, 1.0)), 0.55, 1.0))
        dz = float(rng.choice([0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0]))
        if shape is not None:
            dz = float(np.clip((z_hi - z_lo) / shape[0], 0.625, 5.0))
        spacing = (dz, inplane, inplane)
    else:
        spacing = (float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2]))
    n_slices = int(np.clip(round((z_hi - z_lo) / spacing[0]), 16, 400)) if shape is None else shape[0]
    coverage = n_slices * spacing[0]
    centre = 0.5 * (z_lo + z_hi) + float(rng.uniform(-0.15, 0.15)) * max(z_hi - z_lo - coverage, 0.0)
    centre += float(rng.uniform(-20, 20))
    z_range = (centre - coverage / 2.0 + spacing[0] / 2.0, centre + coverage / 2.0 - spacing[0] / 2.0)
    drawn: PatientPosition = "HFS" if rng.random() < 0.8 else "FFS"
    position = position or drawn
    rot = float(rng.normal(0.0, 2.5)) if rng.random() < 0.5 else 0.0
    centre_xy = (float(rng.uniform(-15, 15)), float(rng.uniform(-5, 25)))
    grid = make_grid(
        shape=(n_slices, n_rows, n_cols),
        spacing_mm=spacing,
        position=position,
        rotation_deg=rot,
        center_xy_mm=centre_xy,
        z_range_mm=z_range,
    )
    return PhantomGeometry(grid=grid, protocol=name, position=position)


# ---------------------------------------------------------------------------------------------
# Body wall, table, muscles, bowel
# ---------------------------------------------------------------------------------------------


def _paint_body(canvas: Canvas, plan: BodyPlan, rng: np.random.Generator) -> list[np.ndarray]:
    """Skin, subcutaneous fat, wall muscle and the (fat-filled) cavity, slice by slice.

    The cross-section changes slowly along z, so slices whose half-axes agree to 1 mm share one
    2-D layer image (most of a 300-slice volume reuses a few dozen).
    """
    z = canvas.z1d
    a = plan.half_width(z)
    b = plan.half_depth(z)
    wall = plan.wall_fraction(z)
    fat = plan.fat_fraction(z)
    xx = canvas.x2d * canvas.x2d
    yy = canvas.y2d * canvas.y2d
    # layer codes: 0 outside, 1 skin, 2 subcutaneous fat, 3 wall muscle, 4 cavity
    tissue_of = np.array([T.OUTSIDE, T.SKIN, T.FAT, T.MUSCLE, T.FAT], dtype=np.uint8)
    label_of = np.array([0, SOFT, SOFT, SOFT, SOFT], dtype=np.uint8)
    cache: dict[tuple[int, int, int, int], np.ndarray] = {}
    codes: list[np.ndarray] = []
    for s in range(canvas.grid.shape[0]):
        key = (round(a[s]), round(b[s]), round(wall[s] * 200), round(fat[s] * 200))
        code = cache.get(key)
        if code is None:
            aa, bb = float(key[0]), float(key[1])
            q = xx * np.float32(1.0 / aa**2) + yy * np.float32(1.0 / bb**2)
            skin = 1.0 - 2.5 / np.sqrt(aa * bb)
            code = (q < 1.0).astype(np.uint8)
            code += q < skin**2
            code += q < (1.0 - key[3] / 200.0) ** 2
            code += q < (1.0 - key[2] / 200.0) ** 2
            cache[key] = code
        codes.append(code)
        canvas.tissue[s] = tissue_of[code]
        canvas.labels[s] = label_of[code]
    paint_table(canvas, 0.97 * float(np.max(b)) + float(rng.uniform(2, 12)))
    return codes


def paint_table(canvas: Canvas, y_top: float) -> None:
    """The patient table under the back at LPS y = ``y_top``: a curved shell over foam, outside
    the body (label 0), on every slice."""
    z = canvas.z1d
    box = canvas.box_around((-260, y_top - 40, float(z.min()) - 1), (260, y_top + 30, float(z.max()) + 1))
    if box is None:
        return
    x, y, _ = canvas.coords(box)
    surface = y_top - 0.0006 * x * x
    shell = ((y >= surface) & (y < surface + 3.0) & (np.abs(x) < 230))[0]
    foam = ((y >= surface + 3.0) & (y < surface + 25.0) & (np.abs(x) < 225))[0]
    for s in range(box[0].start, box[0].stop):
        t = canvas.tissue[s][box[1], box[2]]
        outside = canvas.labels[s][box[1], box[2]] == 0
        np.copyto(t, np.uint8(T.TABLE_FOAM), where=foam & outside)
        np.copyto(t, np.uint8(T.TABLE), where=shell & outside)


def _paint_muscles(canvas: Canvas, plan: BodyPlan) -> None:
    zs = np.linspace(plan.vertebra("L5").z0 - 60 * plan.h, plan.vertebra("C6").z1, 14)
    for side in (-1.0, 1.0):
        pts = []
        for zz in zs:
            rx, ry = plan.spine_radii(float(zz))
            pts.append((side * (rx * 0.55 + 16), float(plan.spine_y(zz)) + ry + 32, zz))
        canvas.tube(pts, 0.12 * plan.w + 10, tissue=T.MUSCLE, where=(SOFT,), where_tissue=(T.FAT,))
        # psoas: from L1 down along the spine into the pelvis
        l1 = plan.vertebra("L1").z_mid
        rx, _ = plan.spine_radii(l1)
        psoas = [
            (side * (rx + 4), float(plan.spine_y(l1)), l1),
            (side * (rx + 16), float(plan.spine_y(l1 - 90 * plan.h)) - 4, l1 - 90 * plan.h),
            (side * (0.36 * plan.w), float(plan.spine_y(l1 - 170 * plan.h)) - 20, l1 - 170 * plan.h),
            (side * (0.5 * plan.w), -0.15 * plan.d, 40 * plan.h),
        ]
        canvas.tube(
            smooth_path(np.array(psoas), 16),
            np.linspace(7, 20, 16),
            tissue=T.MUSCLE,
            where=(SOFT,),
            where_tissue=(T.FAT,),
        )
        canvas.ellipsoid(
            (side * 0.55 * plan.w, 0.62 * plan.d, 60 * plan.h),
            (0.32 * plan.w, 0.3 * plan.d, 80 * plan.h),
            tissue=T.MUSCLE,
            where=(SOFT,),
            where_tissue=(T.FAT,),
        )


def _paint_bowel(canvas: Canvas, plan: BodyPlan, rng: np.random.Generator) -> None:
    w, d, h = plan.w, plan.d, plan.h
    colon = np.array(
        [
            (-0.5 * w, -0.05 * d, 170 * h),
            (-0.58 * w, 0.1 * d, 280 * h),
            (-0.5 * w, -0.25 * d, 345 * h),
            (-0.1 * w, -0.6 * d, 320 * h),
            (0.3 * w, -0.45 * d, 340 * h),
            (0.55 * w, 0.05 * d, 375 * h),
            (0.6 * w, 0.2 * d, 260 * h),
            (0.45 * w, -0.15 * d, 150 * h),
            (0.1 * w, -0.05 * d, 110 * h),
            (0.0, 0.5 * d, 70 * h),
            (0.0, 0.6 * d, -20 * h),
        ]
    )
    colon[:, :2] += rng.normal(0, 0.04, size=(len(colon), 2)) * np.array([w, d])
    path = smooth_path(colon, 90)
    radii = rng.uniform(15, 22) + rng.normal(0, 2.0, size=len(path)).cumsum() * 0.2
    radii = np.clip(radii, 10, 28)
    canvas.tube(path, radii, tissue=T.BOWEL, where=(SOFT,), where_tissue=(T.FAT,))
    # gas rises to the front in a supine patient
    gas = path.copy()
    gas[:, 1] -= radii * 0.35
    keep = rng.random(len(path)) < 0.5
    for i in np.flatnonzero(keep[:-1]):
        canvas.tube(gas[i : i + 2], radii[i : i + 2] * 0.55, tissue=T.AIR, where_tissue=(T.BOWEL,))
    for _ in range(int(rng.integers(3, 7))):
        start = np.array([rng.uniform(-0.4, 0.4) * w, rng.uniform(-0.55, 0.1) * d, rng.uniform(130, 290) * h])
        steps = rng.normal(0, 1, size=(8, 3)) * np.array([0.15 * w, 0.12 * d, 30 * h])
        ctrl = start + np.cumsum(steps, axis=0)
        ctrl[:, 0] = np.clip(ctrl[:, 0], -0.45 * w, 0.45 * w)
        ctrl[:, 1] = np.clip(ctrl[:, 1], -0.6 * d, 0.15 * d)
        contents = T.FLUID if rng.random() < 0.4 else T.BOWEL
        canvas.tube(
            smooth_path(ctrl, 40),
            float(rng.uniform(8, 13)),
            tissue=contents,
            where=(SOFT,),
            where_tissue=(T.FAT,),
        )


# ---------------------------------------------------------------------------------------------
# Lungs
# ---------------------------------------------------------------------------------------------


def _paint_lungs(canvas: Canvas, plan: BodyPlan, layers: list[np.ndarray]) -> None:
    x, y = canvas.x2d, canvas.y2d
    zd = plan.diaphragm_z(x, y).astype(np.float32)
    za = plan.apex_surface_z(x, y).astype(np.float32)
    z_lo = float(zd.min())
    x_mid = np.float32(0.05 * plan.w)
    abs_x = np.abs(x)
    # mediastinum: a central band from the sternum back to the spine, narrower in front
    med_metric = np.abs(x - x_mid) / (1.0 - 0.5 * np.clip(-y / np.float32(plan.d), 0, 1))
    left = x > x_mid
    for s, z in enumerate(canvas.z1d):
        if z < z_lo or z > plan.apex_z:
            continue
        cavity = layers[s] == 4
        rows = np.flatnonzero(cavity.any(axis=1))
        cols = np.flatnonzero(cavity.any(axis=0))
        if rows.size == 0:
            continue
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        rx, ry = plan.spine_radii(float(z))
        sy = float(plan.spine_y(z))
        half = plan.w * (0.13 + 0.08 * np.exp(-(((z - plan.heart_z) / (70 * plan.h)) ** 2)))
        yb = y[box]
        ca, cb, cy = plan.rib_cage(float(z))
        cage = (x[box] / np.float32(ca - 4.0)) ** 2 + (
            (yb - np.float32(cy)) / np.float32(cb - 4.0)
        ) ** 2 < 1.0
        lung = cavity[box] & cage & (zd[box] < z) & (za[box] > z)
        lung &= ~((med_metric[box] < half) & (yb < sy))
        lung &= ~((abs_x[box] < rx + 14) & (yb > sy - ry - 8))
        tis = canvas.tissue[s][box]
        lung &= tis == T.FAT
        lab = canvas.labels[s][box]
        np.copyto(lab, np.uint8(LUNG_L), where=lung & left[box])
        np.copyto(lab, np.uint8(LUNG_R), where=lung & ~left[box])
        np.copyto(tis, np.uint8(T.LUNG), where=lung)


def _branch_segments(
    rng: np.random.Generator,
    root: np.ndarray,
    direction: np.ndarray,
    *,
    length: float,
    radius: float,
    depth: int,
    bias: np.ndarray,
    min_radius: float = 0.9,
) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Segments (a, b, radius_a, radius_b) of a random dichotomous tree."""
    out: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    stack = [(root, direction / np.linalg.norm(direction), length, radius, depth)]
    while stack:
        a, u, ln, r, k = stack.pop()
        b = a + u * ln
        out.append((a, b, r, r * 0.85))
        if k == 0 or r * 0.75 < min_radius:
            continue
        for sign in (-1.0, 1.0):
            perp = np.cross(u, rng.normal(size=3))
            perp /= np.linalg.norm(perp) + 1e-9
            ang = np.deg2rad(rng.uniform(20, 40)) * sign
            v = u * np.cos(ang) + perp * np.sin(ang) + bias * 0.25
            v /= np.linalg.norm(v)
            stack.append((b, v, ln * rng.uniform(0.72, 0.88), r * rng.uniform(0.68, 0.8), k - 1))
    return out


def _paint_tree(
    canvas: Canvas,
    segments: list[tuple[np.ndarray, np.ndarray, float, float]],
    *,
    tissue: int,
    wall_mm: float = 0.0,
    wall_tissue: int | None = None,
) -> None:
    if wall_mm > 0 and wall_tissue is not None:
        for a, b, ra, rb in segments:
            canvas.tube([a, b], [ra + wall_mm, rb + wall_mm], tissue=wall_tissue, where=LUNGS)
    for a, b, ra, rb in segments:
        canvas.tube([a, b], [ra, rb], tissue=tissue, where=LUNGS)


# ---------------------------------------------------------------------------------------------
# Organs
# ---------------------------------------------------------------------------------------------


def _organ(
    canvas: Canvas,
    plan: BodyPlan,
    center: tuple[float, float, float],
    radii: tuple[float, float, float],
    rot: np.ndarray | None,
    *,
    label: int,
    tissue: int,
    below_diaphragm: bool = True,
    where_tissue: tuple[int, ...] = CAVITY,
    shell_mm: float = 0.0,
    inner_tissue: int | None = None,
) -> None:
    def extra(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        m = plan.inside_cavity(x, y, z)
        if below_diaphragm:
            m = m & (z < plan.diaphragm_z(x, y) - 5.0)
        return m

    canvas.ellipsoid(
        center,
        radii,
        rot,
        label=label,
        tissue=tissue,
        where_tissue=where_tissue,
        extra=extra,
        shell_mm=shell_mm,
        inner_tissue=inner_tissue,
    )


def _paint_organs(canvas: Canvas, plan: BodyPlan, rng: np.random.Generator) -> None:
    w, d, h, s = plan.w, plan.d, plan.h, plan.organ_scale

    def j() -> float:
        """A short jitter factor."""
        return float(rng.uniform(0.9, 1.1))

    dr, dl = plan.dome_right_z, plan.dome_left_z
    # liver: right lobe + left lobe, under the right dome
    _organ(
        canvas,
        plan,
        (-0.42 * w, 0.02 * d, dr - 80 * h),
        (0.4 * w * s * j(), 0.62 * d * s, 85 * h * s * j()),
        rotation(yaw_deg=float(rng.uniform(-10, 10))),
        label=SL["liver"],
        tissue=T.LIVER,
    )
    _organ(
        canvas,
        plan,
        (0.0, -0.42 * d, dr - 50 * h),
        (0.36 * w * s * j(), 0.3 * d * s, 48 * h * s),
        rotation(yaw_deg=-10),
        label=SL["liver"],
        tissue=T.LIVER,
    )
    _organ(
        canvas,
        plan,
        (-0.24 * w, -0.5 * d, dr - 115 * h),
        (13 * s, 15 * s, 33 * s * j()),
        rotation(pitch_deg=25),
        label=SL["gallbladder"],
        tissue=T.FLUID,
        where_tissue=(*CAVITY, T.LIVER),
    )
    _organ(
        canvas,
        plan,
        (0.58 * w, 0.4 * d, dl - 65 * h),
        (0.13 * w * s, 0.36 * d * s * j(), 52 * h * s * j()),
        rotation(yaw_deg=45),
        label=SL["spleen"],
        tissue=T.SPLEEN,
    )
    st_c = (0.3 * w, -0.22 * d, dl - 62 * h)
    st_r = (0.24 * w * s * j(), 0.32 * d * s, 58 * h * s)
    _organ(
        canvas,
        plan,
        st_c,
        st_r,
        rotation(yaw_deg=-25, pitch_deg=15),
        label=SL["stomach"],
        tissue=T.GASTRIC_WALL,
        shell_mm=4.0,
        inner_tissue=T.FLUID,
    )
    if rng.random() < 0.75:  # gastric air anteriorly
        gy = st_c[1] - 0.35 * st_r[1]
        canvas.ellipsoid(
            st_c,
            st_r,
            rotation(yaw_deg=-25, pitch_deg=15),
            tissue=T.AIR,
            where=(SL["stomach"],),
            where_tissue=(T.FLUID,),
            extra=lambda x, y, z: y < gy,
        )
    # pancreas: head by the duodenum, tail at the splenic hilum
    pz = plan.pancreas_z
    # in front of the spine and the aorta, the tail rising to the splenic hilum
    front = float(plan.spine_y(pz)) - plan.spine_radii(pz)[1]
    pan = np.array(
        [
            (-0.16 * w, front - 30, pz - 10 * h),
            (0.0, front - 45, pz + 5 * h),
            (0.25 * w, front - 30, pz + 18 * h),
            (0.5 * w, 0.25 * d, pz + 30 * h),
        ]
    )
    canvas.tube(
        smooth_path(pan, 24),
        np.linspace(15, 9, 24) * s,
        label=SL["pancreas"],
        tissue=T.PANCREAS,
        where_tissue=CAVITY,
    )
    # kidneys with cortex and medulla, and sinus fat at the hilum
    for side, zc, name in (
        (-1.0, plan.kidney_right_z, "right kidney"),
        (1.0, plan.kidney_left_z, "left kidney"),
    ):
        rx, _ = plan.spine_radii(zc)
        c = (side * (rx + 44 * s), float(plan.spine_y(zc)) + 0.02 * d, zc)
        r = (24 * s * j(), 19 * s, 52 * s * j())
        rot = rotation(yaw_deg=side * -25, pitch_deg=side * 12)
        _organ(
            canvas,
            plan,
            c,
            r,
            rot,
            label=SL[name],
            tissue=T.KIDNEY_CORTEX,
            shell_mm=6.5,
            inner_tissue=T.KIDNEY_MEDULLA,
            where_tissue=CAVITY,
        )
        sinus = (c[0] - side * 0.45 * r[0], c[1] - 0.2 * r[1], c[2])
        canvas.ellipsoid(sinus, (7 * s, 7 * s, 22 * s), rot, tissue=T.FAT, where=(SL[name],))
    # bladder
    rz = float(rng.uniform(25, 50))
    _organ(
        canvas,
        plan,
        (0.0, -0.32 * d, 30 * h + rz),
        (float(rng.uniform(35, 60)), float(rng.uniform(25, 45)), rz),
        None,
        label=SL["urinary bladder"],
        tissue=T.SOFT,
        shell_mm=2.5,
        inner_tissue=T.FLUID,
    )


def _paint_heart_and_vessels(canvas: Canvas, plan: BodyPlan, rng: np.random.Generator) -> None:
    w, d, h, s = plan.w, plan.d, plan.h, plan.organ_scale
    hc = (0.1 * w, -0.28 * d, plan.heart_z)
    hr = (0.36 * w * s, 0.42 * d * s, 58 * h * s)
    hrot = rotation(yaw_deg=-40, pitch_deg=25)
    canvas.ellipsoid(hc, hr, hrot, label=SL["heart"], tissue=T.MYOCARDIUM, where_tissue=(T.FAT, T.LUNG))
    inner = tuple(r - 9.0 for r in hr)
    canvas.ellipsoid(hc, inner, hrot, tissue=T.BLOOD_VENOUS, where=(SL["heart"],))
    canvas.ellipsoid(
        hc,
        inner,
        hrot,
        tissue=T.BLOOD_ARTERIAL,
        where=(SL["heart"],),
        extra=lambda x, y, z: (x - hc[0]) * 0.6 + (y - hc[1]) * 0.8 > 0,
    )

    def spine_front(z: float, gap: float) -> float:
        return float(plan.spine_y(z)) - plan.spine_radii(z)[1] - gap

    car = plan.carina_z
    vessel_ok = (*LOOSE, T.MYOCARDIUM, T.BLOOD_VENOUS, T.BLOOD_ARTERIAL)
    rx_c = plan.spine_radii(car)[0]
    aorta = np.array(
        [
            (0.05 * w, -0.22 * d, plan.heart_z + 25 * h),
            (-0.02 * w, -0.3 * d, plan.heart_z + 70 * h),
            (0.02 * w, -0.14 * d, car + 42 * h),
            (0.6 * rx_c + 8, spine_front(car + 25 * h, 18), car + 28 * h),
            (0.7 * rx_c + 10, spine_front(car - 15 * h, 18), car - 15 * h),
            (0.08 * w, spine_front(plan.heart_z - 40 * h, 18), plan.heart_z - 40 * h),
            (0.06 * w, spine_front(plan.dome_left_z - 40 * h, 18), plan.dome_left_z - 40 * h),
            (0.05 * w, spine_front(plan.kidney_left_z, 17), plan.kidney_left_z),
            (0.03 * w, spine_front(plan.bifurcation_z, 15), plan.bifurcation_z),
        ]
    )
    path = smooth_path(aorta, 80)
    dil = float(rng.uniform(0.9, 1.15))
    canvas.tube(
        path,
        np.interp(np.linspace(0, 1, 80), [0, 0.3, 0.55, 1], [15, 13, 12, 9.5]) * dil,
        label=SL["aorta"],
        tissue=T.BLOOD_ARTERIAL,
        where_tissue=vessel_ok,
    )
    bif = path[-1]
    for side in (-1.0, 1.0):
        il = np.array(
            [
                bif,
                (side * 0.25 * w, spine_front(150 * h, 12), 150 * h),
                (side * 0.42 * w, -0.1 * d, 60 * h),
                (side * 0.5 * w, -0.2 * d, -40 * h),
            ]
        )
        canvas.tube(smooth_path(il, 20), 6.5, tissue=T.BLOOD_ARTERIAL, where_tissue=LOOSE)
    # IVC (through the liver into the right atrium), iliac and renal veins
    ivc = np.array(
        [
            (-0.1 * w, spine_front(plan.bifurcation_z - 10 * h, 15), plan.bifurcation_z - 10 * h),
            (-0.16 * w, spine_front(plan.kidney_right_z, 16), plan.kidney_right_z),
            (-0.16 * w, -0.02 * d, plan.dome_right_z - 60 * h),
            (-0.12 * w, -0.14 * d, plan.dome_right_z + 15 * h),
        ]
    )
    ivc_path = smooth_path(ivc, 40)
    canvas.tube(
        ivc_path,
        11.0 * dil,
        label=SL["inferior vena cava"],
        tissue=T.BLOOD_VENOUS,
        where_tissue=(*vessel_ok, T.LIVER),
    )
    for side in (-1.0, 1.0):
        iv = np.array(
            [
                ivc_path[0],
                (side * 0.25 * w, spine_front(140 * h, 10), 140 * h),
                (side * 0.4 * w, -0.05 * d, 60 * h),
                (side * 0.48 * w, -0.15 * d, -40 * h),
            ]
        )
        canvas.tube(smooth_path(iv, 20), 7.5, tissue=T.BLOOD_VENOUS, where_tissue=LOOSE)
    for side, zk in ((-1.0, plan.kidney_right_z), (1.0, plan.kidney_left_z)):
        rx, _ = plan.spine_radii(zk)
        hilum = (side * (rx + 30), float(plan.spine_y(zk)) - 8, zk)
        ivc_pt = ivc_path[np.argmin(np.abs(ivc_path[:, 2] - zk))]
        canvas.tube([hilum, ivc_pt], 5.0, tissue=T.BLOOD_VENOUS, where_tissue=LOOSE)
        ao_pt = path[np.argmin(np.abs(path[:, 2] - zk))]
        canvas.tube([ao_pt, hilum], 3.0, tissue=T.BLOOD_ARTERIAL, where_tissue=LOOSE)
    # superior mesenteric artery
    pz = plan.pancreas_z
    canvas.tube(
        smooth_path(
            np.array(
                [
                    path[np.argmin(np.abs(path[:, 2] - pz))],
                    (0.02 * w, -0.25 * d, pz - 40 * h),
                    (0.0, -0.3 * d, pz - 110 * h),
                ]
            ),
            12,
        ),
        4.0,
        tissue=T.BLOOD_ARTERIAL,
        where_tissue=LOOSE,
    )
    # portal vein with the splenic vein (one label, like TotalSegmentator), intrahepatic branches
    front = float(plan.spine_y(pz)) - plan.spine_radii(pz)[1]
    portal = np.array(
        [(0.0, front - 32, pz), (-0.12 * w, front - 38, pz + 25 * h), (-0.28 * w, -0.12 * d, pz + 48 * h)]
    )
    canvas.tube(
        smooth_path(portal, 12),
        7.5,
        label=SL["portal vein"],
        tissue=T.BLOOD_PORTAL,
        where_tissue=(*CAVITY, T.PANCREAS, T.LIVER),
    )
    splenic = np.array(
        [(0.0, front - 32, pz), (0.25 * w, front - 20, pz + 15 * h), (0.5 * w, 0.3 * d, pz + 32 * h)]
    )
    canvas.tube(
        smooth_path(splenic, 16),
        5.0,
        label=SL["portal vein"],
        tissue=T.BLOOD_PORTAL,
        where_tissue=(*CAVITY, T.PANCREAS),
    )
    hil = np.array(portal[-1])
    for target in (
        (-0.65 * w, 0.1 * d, plan.dome_right_z - 70 * h),
        (-0.45 * w, -0.35 * d, plan.dome_right_z - 40 * h),
        (0.1 * w, -0.4 * d, plan.dome_right_z - 45 * h),
        (-0.5 * w, 0.3 * d, plan.dome_right_z - 110 * h),
    ):
        canvas.tube([hil, target], [5.5, 1.5], tissue=T.BLOOD_PORTAL, where=(SL["liver"],))
    hv_root = ivc_path[np.argmin(np.abs(ivc_path[:, 2] - (plan.dome_right_z - 25 * h)))]
    for target in (
        (-0.65 * w, 0.0, plan.dome_right_z - 60 * h),
        (-0.25 * w, -0.45 * d, plan.dome_right_z - 45 * h),
        (0.2 * w, -0.42 * d, plan.dome_right_z - 40 * h),
    ):
        canvas.tube([hv_root, target], [6.0, 1.5], tissue=T.BLOOD_VENOUS, where=(SL["liver"],))

    # superior vena cava and the central pulmonary arteries: mediastinal soft tissue only (they
    # stop at the lung; the intrapulmonary trees carry on inside it)
    def vessel(
        points: list[np.ndarray] | list[tuple[float, float, float]], radius: float, tissue: int
    ) -> None:
        canvas.tube(points, radius, label=SOFT, tissue=tissue, where_tissue=(T.FAT, T.MYOCARDIUM))

    vessel(
        [(-0.14 * w, -0.26 * d, plan.apex_z + 30 * h), (-0.12 * w, -0.22 * d, plan.heart_z + 45 * h)],
        9.0,
        T.BLOOD_VENOUS,
    )
    pa_split = np.array((0.06 * w, -0.2 * d, car - 15 * h))
    vessel([np.array((0.08 * w, -0.42 * d, plan.heart_z + 40 * h)), pa_split], 13.0, T.BLOOD_PULMONARY)
    for end in ((0.22 * w, -0.02 * d, car - 20 * h), (-0.2 * w, -0.08 * d, car - 25 * h)):
        vessel([pa_split, np.array(end)], 10.0, T.BLOOD_PULMONARY)


def _paint_airways(canvas: Canvas, plan: BodyPlan, rng: np.random.Generator) -> None:
    w, h = plan.w, plan.h
    car = plan.carina_z
    top = plan.apex_z + 120 * h

    def front(z: float, gap: float) -> float:
        return float(plan.spine_y(z)) - plan.spine_radii(z)[1] - gap

    # esophagus just in front of the spine, behind the trachea, down to the stomach
    eso_gap_top, eso_gap_car, r_eso = 4.0, 9.0, 7.0
    eso = np.array(
        [
            (0.02 * w, front(top, eso_gap_top), top),
            (0.03 * w, front(car, eso_gap_car), car),
            (0.06 * w, front(plan.heart_z, 10), plan.heart_z),
            (0.2 * w, -0.12 * plan.d, plan.dome_left_z - 25 * h),
        ]
    )
    eso_path = smooth_path(eso, 40)
    canvas.tube(
        eso_path, r_eso, label=SL["esophagus"], tissue=T.GASTRIC_WALL, where_tissue=(T.FAT, T.LUNG, T.SOFT)
    )
    if rng.random() < 0.5:
        canvas.tube(eso_path[:30], 2.5, tissue=T.AIR, where=(SL["esophagus"],))
    r_tr = float(rng.uniform(8, 11))
    # the trachea in front of the esophagus (wall to wall, with a few mm between)
    gap_top = eso_gap_top + r_eso + r_tr + 4.0
    gap_car = eso_gap_car + r_eso + r_tr + 4.0
    carina = np.array((0.02 * w, front(car, gap_car), car))
    trachea = smooth_path(
        np.array(
            [(0.0, front(top, gap_top), top), (0.01 * w, front(car + 60 * h, gap_car), car + 60 * h), carina]
        ),
        20,
    )
    right = np.array(
        [carina, carina + np.array((-0.09 * w, 6, -12 * h)), carina + np.array((-0.16 * w, 10, -28 * h))]
    )
    left = np.array(
        [carina, carina + np.array((0.1 * w, 6, -18 * h)), carina + np.array((0.2 * w, 12, -45 * h))]
    )
    pieces = [
        (trachea, np.full(len(trachea), r_tr)),
        (smooth_path(right, 8), np.linspace(0.75 * r_tr, 0.65 * r_tr, 8)),
        (smooth_path(left, 10), np.linspace(0.68 * r_tr, 0.58 * r_tr, 10)),
    ]
    for pts, rad in pieces:
        canvas.tube(
            pts,
            rad + 1.8,
            tissue=T.AIRWAY_WALL,
            where_tissue=(T.FAT, T.LUNG, T.SOFT, T.BLOOD_PULMONARY, T.BLOOD_VENOUS, T.BLOOD_ARTERIAL),
        )
    for pts, rad in pieces:
        canvas.tube(pts, rad, label=SL["airway"], tissue=T.AIR, where_tissue=(T.AIRWAY_WALL,))
    # intrapulmonary bronchi and vessels: random trees from the hila, kept inside the lungs;
    # branches thinner than ~a third of a voxel would not show, so they are not drawn
    min_r = 0.35 * min(canvas.grid.spacing_mm[1:])
    for pts, rad, side in ((pieces[1][0], pieces[1][1], -1.0), (pieces[2][0], pieces[2][1], 1.0)):
        end = pts[-1]
        for direction in ((side * 0.6, 0.1, 0.8), (side * 0.7, 0.2, -0.7), (side * 0.6, -0.6, -0.2)):
            segs = _branch_segments(
                rng,
                end,
                np.array(direction),
                length=30 * h,
                radius=float(rad[-1]) * 0.7,
                depth=3,
                bias=np.array((side, 0.0, 0.0)),
                min_radius=min_r,
            )
            _paint_tree(canvas, segs, tissue=T.BRONCHUS_LUMEN, wall_mm=1.0, wall_tissue=T.AIRWAY_WALL)
        for root_dz, tissue in ((-20.0, T.BLOOD_PULMONARY), (-45.0, T.BLOOD_ARTERIAL)):
            root = np.array((side * 0.2 * w, -0.05 * plan.d, car + root_dz * h))
            for direction in (
                (side * 0.5, -0.3, 0.8),
                (side * 0.8, 0.3, -0.6),
                (side * 0.6, -0.6, -0.4),
                (side * 0.4, 0.8, 0.1),
            ):
                # start a little inside the lung and taper: hilar vessels do not reach the pleura
                u = np.array(direction) / np.linalg.norm(direction)
                segs = _branch_segments(
                    rng,
                    root + 12.0 * u,
                    u,
                    length=28 * h,
                    radius=4.5,
                    depth=4,
                    bias=np.array((side, 0.0, 0.0)),
                    min_radius=min_r,
                )
                _paint_tree(canvas, segs, tissue=tissue)


def paint_phantom(canvas: Canvas, plan: BodyPlan, rng: np.random.Generator) -> None:
    """Draw the whole torso (without lesions) into ``canvas``."""
    layers = _paint_body(canvas, plan, rng)
    _paint_muscles(canvas, plan)
    _paint_bowel(canvas, plan, rng)
    _paint_lungs(canvas, plan, layers)
    _paint_organs(canvas, plan, rng)
    _paint_heart_and_vessels(canvas, plan, rng)
    _paint_airways(canvas, plan, rng)
    paint_skeleton(canvas, plan, rng)


__all__ = ["PROTOCOLS", "PhantomGeometry", "choose_geometry", "draw_body_plan", "paint_phantom"]
