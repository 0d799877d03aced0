"""The body plan of one phantom: size, cross-section along z, and the z of landmarks.

Coordinates are LPS mm with the body axis at x = y = 0 and z = 0 at the pubic symphysis.
Landmark heights are those of an average adult (vertebral levels, diaphragm at T9/T10, carina
at T5, renal hila at L1/L2, aortic bifurcation at L4) scaled by a random height factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# vertebra -> (body height mm, disc height mm below it), from caudal to cranial
_LEVELS: tuple[tuple[str, float, float], ...] = (
    ("L5", 27, 9),
    ("L4", 27, 9),
    ("L3", 27, 9),
    ("L2", 27, 9),
    ("L1", 26, 7),
    ("T12", 24, 6),
    ("T11", 23, 6),
    ("T10", 22, 6),
    ("T9", 21, 5),
    ("T8", 20, 5),
    ("T7", 19, 5),
    ("T6", 19, 5),
    ("T5", 18, 5),
    ("T4", 18, 5),
    ("T3", 17, 5),
    ("T2", 17, 5),
    ("T1", 16, 5),
    ("C7", 14, 5),
    ("C6", 13, 5),
    ("C5", 13, 5),
    ("C4", 13, 5),
    ("C3", 13, 5),
)
_L5_BOTTOM_MM = 175.0

# (z mm before height scaling, half-width factor of w, half-depth factor of d)
_SECTION = np.array(
    [
        (-400, 0.95, 0.85),
        (0, 1.0, 0.9),
        (150, 1.03, 0.95),
        (250, 0.96, 1.0),
        (350, 0.97, 1.0),
        (450, 1.0, 0.97),
        (600, 1.02, 0.92),
        (655, 1.0, 0.88),
        (690, 0.62, 0.66),
        (720, 0.45, 0.6),
        (900, 0.42, 0.6),
    ]
)


@dataclass(frozen=True)
class Vertebra:
    name: str
    z0: float  # inferior end plate
    z1: float  # superior end plate
    disc_below: float

    @property
    def z_mid(self) -> float:
        return 0.5 * (self.z0 + self.z1)

    @property
    def region(self) -> str:
        return self.name[0]


@dataclass(frozen=True)
class BodyPlan:
    w: float  # half-width (left-right) of the abdomen, mm
    d: float  # half-depth (antero-posterior) of the abdomen, mm
    h: float  # height scale
    fat_mm: float  # subcutaneous fat
    muscle_mm: float  # body wall muscle
    vertebrae: tuple[Vertebra, ...]
    dome_right_z: float
    dome_left_z: float
    heart_z: float
    carina_z: float
    apex_z: float
    kidney_right_z: float
    kidney_left_z: float
    pancreas_z: float
    bifurcation_z: float
    organ_scale: float

    # -- cross-section ----------------------------------------------------------------------
    def half_width(self, z: np.ndarray | float) -> np.ndarray:
        out: np.ndarray = np.interp(np.asarray(z) / self.h, _SECTION[:, 0], _SECTION[:, 1]) * self.w
        return out

    def half_depth(self, z: np.ndarray | float) -> np.ndarray:
        out: np.ndarray = np.interp(np.asarray(z) / self.h, _SECTION[:, 0], _SECTION[:, 2]) * self.d
        return out

    def wall_fraction(self, z: np.ndarray | float) -> np.ndarray:
        """Fraction of the (normalised) radius taken by subcutaneous fat and wall muscle."""
        rbar = np.sqrt(self.half_width(z) * self.half_depth(z))
        out: np.ndarray = np.clip((self.fat_mm + self.muscle_mm) / rbar, 0.05, 0.6)
        return out

    def fat_fraction(self, z: np.ndarray | float) -> np.ndarray:
        rbar = np.sqrt(self.half_width(z) * self.half_depth(z))
        out: np.ndarray = np.clip(self.fat_mm / rbar, 0.02, 0.5)
        return out

    def inside_cavity(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """True inside the trunk cavity (inside the body-wall muscle)."""
        zz = np.asarray(z, dtype=np.float32)
        a = self.half_width(zz).astype(np.float32)
        b = self.half_depth(zz).astype(np.float32)
        lim = (1.0 - self.wall_fraction(zz)).astype(np.float32) ** 2
        return (x / a) ** 2 + (y / b) ** 2 < lim

    def chest_wall(self, z: float) -> tuple[float, float]:
        """Half-axes (x, y) of the inner chest wall at ``z`` (where the ribs run)."""
        f = 1.0 - float(self.wall_fraction(z))
        return float(self.half_width(z)) * f, float(self.half_depth(z)) * f

    def rib_cage(self, z: float) -> tuple[float, float, float]:
        """(half-width, half-depth, centre y) of the rib-cage ellipse at ``z``: laterally and in
        front it follows the inner chest wall, at the back it meets the spine just behind the
        vertebral bodies (the costovertebral gutters), so the paraspinal muscles stay outside."""
        a, b = self.chest_wall(z)
        _, ry = self.spine_radii(z)
        back = float(self.spine_y(z)) + ry + 22.0
        back = min(back, b)
        return a, 0.5 * (back + b), 0.5 * (back - b)

    # -- diaphragm and lung apices -------------------------------------------------------------
    def diaphragm_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """z of the diaphragm surface above (x, y): domes with deep posterior/lateral recesses."""
        a = self.w * 0.85
        b = self.d * 0.85
        right = self.dome_right_z - 110.0 * self.h * (((x + 0.35 * a) / a) ** 2 + ((y + 0.1 * b) / b) ** 2)
        left = self.dome_left_z - 110.0 * self.h * (((x - 0.35 * a) / a) ** 2 + ((y + 0.1 * b) / b) ** 2)
        return np.where(x < 0, right, left)

    def apex_surface_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        a = self.w * 0.8
        b = self.d * 0.8
        out: np.ndarray = self.apex_z - 160.0 * (((np.abs(x) - 0.4 * a) / a) ** 2 + ((y - 0.1 * b) / b) ** 2)
        return out

    # -- spine -----------------------------------------------------------------------------------
    def spine_y(self, z: np.ndarray | float) -> np.ndarray:
        """y of the vertebral body centre: a fixed distance in front of the back skin, less in
        the neck, with the lumbar lordosis bringing L3–L4 forward."""
        zz = np.asarray(z) / self.h
        size = float(np.clip(self.w / 160.0, 0.85, 1.15))
        back = (
            np.interp(zz, [0, 150, 260, 360, 500, 650, 720, 760], [95, 100, 110, 102, 95, 90, 70, 60]) * size
        )
        return np.minimum(self.half_depth(z) - back, 0.5 * self.half_depth(z))

    def spine_radii(self, z: float) -> tuple[float, float]:
        zz = z / self.h
        rx = float(np.interp(zz, [175, 340, 400, 650, 700], [25, 23, 19, 14, 10]))
        ry = float(np.interp(zz, [175, 340, 400, 650, 700], [18, 17, 16, 13, 8]))
        s = float(np.clip(self.w / 160.0, 0.85, 1.15))
        return rx * s, ry * s

    def vertebra(self, name: str) -> Vertebra:
        for v in self.vertebrae:
            if v.name == name:
                return v
        raise KeyError(name)


def draw_body_plan(rng: np.random.Generator) -> BodyPlan:
    h = float(rng.uniform(0.9, 1.1))
    w = float(rng.uniform(135, 185))
    d = float(rng.uniform(0.62, 0.8) * w)
    fat = float(rng.uniform(6, 35))
    muscle = float(rng.uniform(8, 16))
    verts = []
    z = _L5_BOTTOM_MM * h
    for name, body, disc in _LEVELS:
        z0 = z
        z1 = z0 + body * h
        verts.append(Vertebra(name=name, z0=z0, z1=z1, disc_below=disc * h))
        z = z1 + disc * h
    by = {v.name: v for v in verts}
    dome_r = by["T10"].z1 + float(rng.uniform(-10, 15)) * h
    return BodyPlan(
        w=w,
        d=d,
        h=h,
        fat_mm=fat,
        muscle_mm=muscle,
        vertebrae=tuple(verts),
        dome_right_z=dome_r,
        dome_left_z=dome_r - float(rng.uniform(5, 25)) * h,
        heart_z=by["T8"].z_mid + float(rng.uniform(-10, 10)) * h,
        carina_z=by["T5"].z_mid + float(rng.uniform(-8, 8)) * h,
        apex_z=by["T1"].z1 + float(rng.uniform(15, 35)) * h,
        kidney_right_z=by["L2"].z_mid + float(rng.uniform(-15, 10)) * h,
        kidney_left_z=by["L1"].z0 + float(rng.uniform(-15, 10)) * h,
        pancreas_z=by["L1"].z_mid + float(rng.uniform(-10, 10)) * h,
        bifurcation_z=by["L4"].z_mid,
        organ_scale=float(rng.uniform(0.85, 1.15)),
    )
