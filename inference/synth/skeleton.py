"""Bones of the phantom: vertebrae (bodies, arches, processes, discs), ribs with costal
cartilage, sternum, clavicles, scapulae, pelvis, sacrum and femora.

Large bones have a cortical shell over trabecular bone, which is what a classical threshold +
hole-filling bone segmentation has to cope with on real CT too.
"""

from __future__ import annotations

import numpy as np

from inference.synth.anatomy import BodyPlan
from inference.synth.appearance import T
from inference.synth.canvas import Canvas, paint_elliptic_cylinder, rotation, smooth_path
from inference.synth.labels import STRUCTURE_LABELS as SL

SOFT = SL["soft tissue"]
# Bones may overwrite soft tissue, lungs and loose tissue, never organs or vessels.
_BONE_OK = (
    T.FAT,
    T.MUSCLE,
    T.LUNG,
    T.BOWEL,
    T.SOFT,
    T.SKIN,
    T.CSF,
    T.AIRWAY_WALL,
    T.BRONCHUS_LUMEN,
    T.BLOOD_PULMONARY,
)


def _shell(canvas: Canvas, mm: float) -> float:
    """Cortex thickness as drawn: at least about one voxel, so a shell sampled at voxel centres
    never vanishes on a coarse grid (partial volume keeps thin cortex visible on real CT too)."""
    return max(mm, 1.05 * max(canvas.grid.spacing_mm[1:]))


def _vertebrae(canvas: Canvas, plan: BodyPlan) -> None:
    lab = SL["vertebrae"]
    for v in plan.vertebrae:
        rx, ry = plan.spine_radii(v.z_mid)
        sy = float(plan.spine_y(v.z_mid))
        # disc below the body
        paint_elliptic_cylinder(
            canvas,
            (0.0, sy),
            (rx, ry),
            (v.z0 - v.disc_below, v.z0),
            label=SOFT,
            tissue=T.CARTILAGE,
            where_tissue=None,
        )
        paint_elliptic_cylinder(
            canvas,
            (0.0, sy),
            (rx, ry),
            (v.z0, v.z1),
            label=lab,
            tissue=T.CORTICAL_BONE,
            where_tissue=None,
            shell_mm=_shell(canvas, 1.8),
            inner_tissue=T.TRABECULAR_BONE,
        )
        canal_r = 9.0 if v.region == "L" else 7.5 if v.region == "T" else 7.0
        cy = sy + ry + canal_r + 1.0
        ring = canal_r + 5.5
        zr = (v.z0 - 2, v.z1 + 2)
        # neural arch: a bony ring around the canal (pedicles + laminae), then the canal itself
        paint_elliptic_cylinder(
            canvas, (0.0, cy), (ring, ring), zr, label=lab, tissue=T.CORTICAL_BONE, where_tissue=None
        )
        # spinous process (slanting down in the thoracic spine) and transverse processes
        drop = 12.0 if v.region == "T" else 3.0
        length = 32.0 if v.region == "L" else 28.0 if v.region == "T" else 18.0
        canvas.tube(
            [(0.0, cy + ring - 2, v.z_mid), (0.0, cy + ring + length, v.z_mid - drop)],
            4.0,
            label=lab,
            tissue=T.CORTICAL_BONE,
            where_tissue=None,
        )
        span = 45.0 if v.region == "L" else 32.0 if v.region == "T" else 22.0
        for side in (-1.0, 1.0):
            back = 6.0 if v.region == "L" else 14.0
            canvas.tube(
                [(side * ring * 0.7, cy, v.z_mid), (side * span, cy + back, v.z_mid)],
                4.5,
                label=lab,
                tissue=T.CORTICAL_BONE,
                where_tissue=None,
            )
        paint_elliptic_cylinder(
            canvas,
            (0.0, cy),
            (canal_r, canal_r),
            (v.z0 - v.disc_below - 1, v.z1 + 3),
            label=SOFT,
            tissue=T.CSF,
            where=(lab, SOFT),
        )


def _ribs(canvas: Canvas, plan: BodyPlan, rng: np.random.Generator) -> list[np.ndarray]:
    """Twelve pairs; returns the anterior end points of ribs 1–7 (for the sternum)."""
    lab = SL["ribs"]
    ends: list[np.ndarray] = []
    for i in range(1, 13):
        v = plan.vertebra(f"T{i}")
        z0 = v.z_mid + 0.2 * (v.z1 - v.z0)
        rx, ry = plan.spine_radii(z0)
        sy = float(plan.spine_y(z0))
        drop = (45.0 + 5.0 * i) * plan.h * float(rng.uniform(0.85, 1.15))
        phi_end = np.deg2rad(155 if i <= 7 else 135 if i <= 10 else 100)
        if i == 1:
            phi_end = np.deg2rad(120)
        for side in (-1.0, 1.0):
            pts = [(side * (rx + 2), sy, z0), (side * (rx + 20), sy + ry + 6, z0 - 2)]
            phis = np.linspace(np.deg2rad(15), phi_end, 16)
            for k, phi in enumerate(phis):
                frac = k / (len(phis) - 1)
                z = z0 - 4 - drop * frac**1.3
                a, b, cy = plan.rib_cage(z)
                scale = 0.72 if i == 1 else 0.85 if i == 2 else 1.0
                pts.append(
                    (side * a * scale * np.sin(phi), cy + b * np.cos(phi) * (0.95 if i > 2 else 0.8), z)
                )
            path = smooth_path(np.array(pts), 40)
            radius = 4.0 if i in (1, 11, 12) else 4.6
            canvas.tube(path, radius, label=lab, tissue=T.RIB_BONE, where_tissue=None)
            if i <= 10:
                tip = path[-1]
                _, b = plan.chest_wall(float(tip[2]))
                if i <= 7:
                    target = np.array((side * 16.0, -b + 8.0, tip[2] + 5.0 * (7 - i) * 0.3))
                    ends.append(target)
                else:
                    target = np.array((side * (abs(tip[0]) * 0.6), -b * 0.95, tip[2] + 20.0))
                canvas.tube(
                    [tip, (tip + target) / 2 + (0, -6.0, 0), target],
                    4.0,
                    label=SOFT,
                    tissue=T.CARTILAGE,
                    where_tissue=(T.FAT, T.MUSCLE, T.LUNG, T.SOFT),
                )
    return ends


def _sternum_and_shoulders(canvas: Canvas, plan: BodyPlan, rib_ends: list[np.ndarray]) -> None:
    if rib_ends:
        z_top = plan.vertebra("T2").z1 + 5 * plan.h
        z_bot = min(float(e[2]) for e in rib_ends) - 25 * plan.h
        for z0 in np.arange(z_bot, z_top, 8.0):
            _, b = plan.chest_wall(float(z0) + 4.0)
            half = 17.0 if z0 > z_top - 45 * plan.h else 13.0
            paint_elliptic_cylinder(
                canvas,
                (0.0, -b + 6.0),
                (half, 6.5),
                (float(z0), float(z0) + 8.0),
                label=SL["sternum"],
                tissue=T.CORTICAL_BONE,
                where_tissue=(T.FAT, T.MUSCLE, T.LUNG, T.SOFT, T.CARTILAGE),
                shell_mm=_shell(canvas, 1.5),
                inner_tissue=T.TRABECULAR_BONE,
            )
    t1 = plan.vertebra("T1")
    for side in (-1.0, 1.0):
        _, b = plan.chest_wall(t1.z1)
        clav = np.array(
            [
                (side * 22.0, -b + 4.0, t1.z1 - 5.0),
                (side * 0.45 * plan.w, -b * 0.95, t1.z1 + 15.0),
                (side * 0.85 * plan.w, -b * 0.4, t1.z1 + 25.0),
            ]
        )
        canvas.tube(
            smooth_path(clav, 16),
            6.0,
            label=SL["clavicle"],
            tissue=T.CORTICAL_BONE,
            where=(SOFT,),
            where_tissue=(T.FAT, T.MUSCLE, T.SKIN),
        )
        zc = plan.vertebra("T4").z_mid
        canvas.ellipsoid(
            (side * 0.62 * plan.w, 0.62 * plan.d, zc),
            (6.0, 0.28 * plan.w, 70 * plan.h),
            rotation(yaw_deg=side * -35),
            label=SL["scapula"],
            tissue=T.CORTICAL_BONE,
            where=(SOFT,),
            where_tissue=(T.FAT, T.MUSCLE),
        )


def _pelvis(canvas: Canvas, plan: BodyPlan) -> None:
    w, d, h = plan.w, plan.d, plan.h
    s5 = plan.vertebra("L5")
    sy = float(plan.spine_y(s5.z0))
    canvas.ellipsoid(
        (0.0, sy + 22.0, s5.z0 - 60 * h),
        (0.3 * w, 20.0, 58 * h),
        rotation(roll_deg=28),
        label=SL["sacrum"],
        tissue=T.CORTICAL_BONE,
        where_tissue=None,
        shell_mm=_shell(canvas, 2.0),
        inner_tissue=T.TRABECULAR_BONE,
    )
    for side in (-1.0, 1.0):
        canvas.ellipsoid(
            (side * 0.56 * w, 0.15 * d, 165 * h),
            (7.0, 0.42 * d, 60 * h),
            rotation(yaw_deg=side * 35),
            label=SL["hip"],
            tissue=T.CORTICAL_BONE,
            where_tissue=None,
            shell_mm=_shell(canvas, 2.0),
            inner_tissue=T.TRABECULAR_BONE,
        )
        canvas.ellipsoid(
            (side * 0.52 * w, 0.02 * d, 72 * h),
            (24.0, 36.0, 44 * h),
            None,
            label=SL["hip"],
            tissue=T.CORTICAL_BONE,
            where_tissue=None,
            shell_mm=_shell(canvas, 2.5),
            inner_tissue=T.TRABECULAR_BONE,
        )
        canvas.tube(
            [(side * 0.48 * w, -0.1 * d, 60 * h), (side * 16.0, -0.55 * d, 12 * h)],
            9.0,
            label=SL["hip"],
            tissue=T.CORTICAL_BONE,
            where_tissue=None,
        )
        canvas.tube(
            [(side * 18.0, -0.5 * d, 0.0), (side * 0.45 * w, 0.2 * d, 15 * h)],
            7.5,
            label=SL["hip"],
            tissue=T.CORTICAL_BONE,
            where_tissue=None,
        )
        head = (side * 0.6 * w, -0.04 * d, 68 * h)
        troch = (side * 0.82 * w, 0.02 * d, 42 * h)
        canvas.ellipsoid(
            head,
            (23.0, 23.0, 23.0),
            None,
            label=SL["femur"],
            tissue=T.CORTICAL_BONE,
            where_tissue=(*_BONE_OK, T.TRABECULAR_BONE, T.CORTICAL_BONE),
            shell_mm=_shell(canvas, 2.0),
            inner_tissue=T.TRABECULAR_BONE,
        )
        canvas.tube(
            [head, troch, (side * 0.62 * w, -0.06 * d, -300 * h)],
            13.0,
            label=SL["femur"],
            tissue=T.CORTICAL_BONE,
            where_tissue=None,
        )
        canvas.tube(
            [head, troch, (side * 0.62 * w, -0.06 * d, -300 * h)],
            9.0,
            tissue=T.TRABECULAR_BONE,
            where=(SL["femur"],),
        )


def paint_skeleton(canvas: Canvas, plan: BodyPlan, rng: np.random.Generator) -> None:
    _vertebrae(canvas, plan)
    ends = _ribs(canvas, plan, rng)
    _sternum_and_shoulders(canvas, plan, ends)
    _pelvis(canvas, plan)
