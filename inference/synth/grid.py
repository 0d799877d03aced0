"""The voxel grid of a synthetic scan: shape, spacing, patient position and the LPS affine.

Conventions (the project's, see dicom_node.contracts): arrays are ``[slice, row, column]``; the
affine maps ``(slice, row, column, 1)`` to LPS mm; slices are ordered by increasing position
along the slice normal ``n = row_cosine × column_cosine`` (PS3.3 C.7.6.2.1.1), where the DICOM
"row cosine" is the direction of increasing column index. So head-first supine
(IOP = [1,0,0, 0,1,0]) has n = +z and slice 0 is the most inferior, while feet-first supine
(IOP = [-1,0,0, 0,1,0]) has n = −z and slice 0 is the most superior. A small rotation about the
table axis (patient not straight on the table) rotates both in-plane cosines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

PatientPosition = Literal["HFS", "FFS"]


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]
    affine_lps: np.ndarray  # 4×4 float64

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        cols = np.linalg.norm(self.affine_lps[:3, :3], axis=0)
        return (float(cols[0]), float(cols[1]), float(cols[2]))

    @property
    def slice_z_mm(self) -> np.ndarray:
        """LPS z of each slice centre (the slice axis is ±z: no gantry tilt)."""
        s = np.arange(self.shape[0], dtype=np.float64)
        z: np.ndarray = self.affine_lps[2, 3] + s * self.affine_lps[2, 0]
        return z

    def plane_xy(self, rows: slice = slice(None), cols: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """LPS x and y (float32, [row, column]) of the in-plane voxel centres (same on every slice)."""
        r = np.arange(self.shape[1], dtype=np.float64)[rows][:, None]
        c = np.arange(self.shape[2], dtype=np.float64)[cols][None, :]
        a = self.affine_lps
        x = a[0, 3] + r * a[0, 1] + c * a[0, 2]
        y = a[1, 3] + r * a[1, 1] + c * a[1, 2]
        return x.astype(np.float32), y.astype(np.float32)

    def index_box(self, lo_lps: np.ndarray, hi_lps: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices covering the LPS box [lo, hi] (inclusive, clipped); None if outside."""
        corners = np.array(
            [
                [x, y, z, 1.0]
                for x in (lo_lps[0], hi_lps[0])
                for y in (lo_lps[1], hi_lps[1])
                for z in (lo_lps[2], hi_lps[2])
            ]
        )
        idx = (np.linalg.inv(self.affine_lps) @ corners.T)[:3]
        lo = np.floor(idx.min(axis=1)).astype(int)
        hi = np.ceil(idx.max(axis=1)).astype(int) + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, self.shape)
        if np.any(hi <= lo):
            return None
        return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))

    def index_to_lps(self, index: tuple[float, float, float]) -> tuple[float, float, float]:
        p = self.affine_lps @ np.array([*index, 1.0])
        return (float(p[0]), float(p[1]), float(p[2]))

    def lps_to_index(self, point: tuple[float, float, float]) -> np.ndarray:
        index: np.ndarray = (np.linalg.inv(self.affine_lps) @ np.array([*point, 1.0]))[:3]
        return index


def make_grid(
    *,
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    position: PatientPosition,
    rotation_deg: float,
    center_xy_mm: tuple[float, float],
    z_range_mm: tuple[float, float],
) -> Grid:
    """A grid whose in-plane centre is ``center_xy_mm`` and whose slices span ``z_range_mm``.

    ``spacing_mm`` is (slice, row, column). The first slice lies at the end of ``z_range_mm``
    the slice normal points away from.
    """
    n_slices, n_rows, n_cols = shape
    dz, dr, dc = spacing_mm
    theta = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0.0], [np.sin(theta), np.cos(theta), 0.0], [0, 0, 1.0]])
    if position == "HFS":
        row_cosine, col_cosine = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    else:  # feet first supine: the image's left-right is mirrored (PS3.3 C.7.6.2.1.1)
        row_cosine, col_cosine = np.array([-1.0, 0, 0]), np.array([0, 1.0, 0])
    row_cosine, col_cosine = rot @ row_cosine, rot @ col_cosine
    normal = np.cross(row_cosine, col_cosine)
    affine = np.eye(4)
    affine[:3, 0] = normal * dz
    affine[:3, 1] = col_cosine * dr  # increasing row index moves along the column cosine
    affine[:3, 2] = row_cosine * dc  # increasing column index moves along the row cosine
    z0 = z_range_mm[0] if normal[2] > 0 else z_range_mm[1]
    centre_index = np.array([(n_rows - 1) / 2.0, (n_cols - 1) / 2.0])
    offset_xy = affine[:2, 1] * centre_index[0] + affine[:2, 2] * centre_index[1]
    affine[0, 3] = center_xy_mm[0] - offset_xy[0]
    affine[1, 3] = center_xy_mm[1] - offset_xy[1]
    affine[2, 3] = z0
    return Grid(shape=(n_slices, n_rows, n_cols), affine_lps=affine)
