"""Painting solid shapes (ellipsoids, tubes) into a label map and a tissue map, in LPS mm.

Every shape is evaluated only inside the index box that covers it, so a small organ costs
little on a 512×512×300 grid. Later paints overwrite earlier ones unless restricted with
``where`` (paint only over voxels that currently carry one of the given labels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from inference.synth.grid import Grid

Box = tuple[slice, slice, slice]
PointLike = Sequence[float] | np.ndarray
PointsLike = Sequence[Sequence[float] | np.ndarray] | np.ndarray
RadiiLike = Sequence[float] | float | np.ndarray


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Rotation matrix: about z (yaw), then y (pitch), then x (roll); columns are the shape's axes."""
    a, b, c = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    out: np.ndarray = rz @ ry @ rx
    return out


class Canvas:
    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.labels = np.zeros(grid.shape, dtype=np.uint8)
        self.tissue = np.zeros(grid.shape, dtype=np.uint8)
        self.x2d, self.y2d = grid.plane_xy()
        self.z1d = grid.slice_z_mm.astype(np.float32)

    # -- coordinates --------------------------------------------------------------------------
    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable LPS x, y, z (float32) of the voxel centres in ``box``."""
        x = self.x2d[box[1], box[2]][None]
        y = self.y2d[box[1], box[2]][None]
        z = self.z1d[box[0]][:, None, None]
        return x, y, z

    def box_around(self, lo: PointLike, hi: PointLike) -> Box | None:
        return self.grid.index_box(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))

    # -- painting -----------------------------------------------------------------------------
    def paint(
        self,
        box: Box,
        mask: np.ndarray,
        *,
        label: int | None = None,
        tissue: int | None = None,
        where: Sequence[int] | None = None,
        where_tissue: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Write ``label``/``tissue`` where ``mask`` (shaped like ``box``) is true; return the mask used.

        ``where`` / ``where_tissue`` restrict the paint to voxels currently carrying one of those
        labels / tissue classes.
        """
        lab = self.labels[box]
        if where is not None:
            allowed = np.zeros(256, dtype=bool)
            allowed[list(where)] = True
            mask = mask & allowed[lab]
        if where_tissue is not None:
            allowed_t = np.zeros(256, dtype=bool)
            allowed_t[list(where_tissue)] = True
            mask = mask & allowed_t[self.tissue[box]]
        # np.copyto with where= is several times faster than boolean-index assignment.
        if label is not None:
            np.copyto(lab, np.uint8(label), where=mask)
        if tissue is not None:
            np.copyto(self.tissue[box], np.uint8(tissue), where=mask)
        return mask

    def ellipsoid_q(
        self, center: PointLike, radii: PointLike, rot: np.ndarray | None = None
    ) -> tuple[Box, np.ndarray] | None:
        """(box, q) with q = Σ(uᵢ/rᵢ)² in the ellipsoid's frame: q < 1 inside."""
        c = np.asarray(center, dtype=float)
        r = np.asarray(radii, dtype=float)
        rot = np.eye(3) if rot is None else rot
        half = np.abs(rot) @ r
        box = self.box_around(c - half, c + half)
        if box is None:
            return None
        x, y, z = self.coords(box)
        dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
        q = np.zeros(np.broadcast_shapes(dx.shape, dy.shape, dz.shape), dtype=np.float32)
        for i in range(3):
            u = dx * np.float32(rot[0, i]) + dy * np.float32(rot[1, i]) + dz * np.float32(rot[2, i])
            q += (u / np.float32(r[i])) ** 2
        return box, q

    def ellipsoid(
        self,
        center: PointLike,
        radii: PointLike,
        rot: np.ndarray | None = None,
        *,
        label: int | None = None,
        tissue: int | None = None,
        where: Sequence[int] | None = None,
        where_tissue: Sequence[int] | None = None,
        shell_mm: float = 0.0,
        inner_tissue: int | None = None,
        extra: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> tuple[Box, np.ndarray] | None:
        """Paint an ellipsoid; with ``shell_mm`` the outer shell gets ``tissue`` and the core
        ``inner_tissue`` (cortex and marrow, wall and contents). Returns (box, painted mask)."""
        hit = self.ellipsoid_q(center, radii, rot)
        if hit is None:
            return None
        box, q = hit
        inside = q < 1.0
        if extra is not None:
            inside &= extra(*self.coords(box))
        mask = self.paint(box, inside, label=label, tissue=tissue, where=where, where_tissue=where_tissue)
        if shell_mm > 0 and inner_tissue is not None:
            inner_r = [max(ri - shell_mm, 0.5) for ri in radii]
            hit_in = self.ellipsoid_q(center, inner_r, rot)
            if hit_in is not None:
                box_in, q_in = hit_in
                core = np.zeros_like(mask)
                core_view = _sub(box, box_in)
                core[core_view] = q_in < 1.0
                self.paint(box, core & mask, tissue=inner_tissue)
        return box, mask

    def tube(
        self,
        points: PointsLike,
        radii: RadiiLike,
        *,
        label: int | None = None,
        tissue: int | None = None,
        where: Sequence[int] | None = None,
        where_tissue: Sequence[int] | None = None,
        shrink_mm: float = 0.0,
    ) -> None:
        """Paint a tube along a polyline with per-point radii (linearly varying per segment)."""
        pts = np.asarray(points, dtype=float)
        rad = np.broadcast_to(np.asarray(radii, dtype=float), (len(pts),)) - shrink_mm
        for i in range(len(pts) - 1):
            a, b = pts[i], pts[i + 1]
            ra, rb = rad[i], rad[i + 1]
            if max(ra, rb) <= 0:
                continue
            rmax = max(ra, rb)
            box = self.box_around(np.minimum(a, b) - rmax, np.maximum(a, b) + rmax)
            if box is None:
                continue
            x, y, z = self.coords(box)
            ab = b - a
            length2 = float(ab @ ab) or 1e-9
            px, py, pz = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
            t = (px * np.float32(ab[0]) + py * np.float32(ab[1]) + pz * np.float32(ab[2])) / np.float32(
                length2
            )
            t = np.clip(t, 0.0, 1.0)
            ex = px - t * np.float32(ab[0])
            ey = py - t * np.float32(ab[1])
            ez = pz - t * np.float32(ab[2])
            d2 = ex * ex + ey * ey + ez * ez
            r = np.float32(ra) + t * np.float32(rb - ra)
            self.paint(box, d2 < r * r, label=label, tissue=tissue, where=where, where_tissue=where_tissue)


def _sub(outer: Box, inner: Box) -> Box:
    """``inner`` expressed relative to ``outer`` (inner must lie within outer)."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for o, i in zip(outer, inner, strict=True))  # type: ignore[return-value]


def smooth_path(control: np.ndarray, n: int) -> np.ndarray:
    """``n`` points along a Catmull-Rom spline through ``control`` points (k×3)."""
    p = np.asarray(control, dtype=float)
    if len(p) < 3:
        t = np.linspace(0, 1, n)[:, None]
        line: np.ndarray = p[0] * (1 - t) + p[-1] * t
        return line
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    seg = np.linspace(0, len(p) - 1, n)
    out = np.empty((n, 3))
    for k, s in enumerate(seg):
        i = min(int(s), len(p) - 2)
        u = s - i
        p0, p1, p2, p3 = padded[i], padded[i + 1], padded[i + 2], padded[i + 3]
        out[k] = 0.5 * (
            2 * p1
            + (-p0 + p2) * u
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u * u
            + (-p0 + 3 * p1 - 3 * p2 + p3) * u**3
        )
    return out


def paint_elliptic_cylinder(
    canvas: Canvas,
    center_xy: PointLike,
    radii_xy: PointLike,
    z_range: tuple[float, float],
    *,
    label: int | None = None,
    tissue: int | None = None,
    where: Sequence[int] | None = None,
    where_tissue: Sequence[int] | None = None,
    shell_mm: float = 0.0,
    inner_tissue: int | None = None,
) -> None:
    """An upright elliptic cylinder (flat ends), e.g. a vertebral body or a disc."""
    cx, cy = center_xy
    rx, ry = radii_xy
    z0, z1 = min(z_range), max(z_range)
    box = canvas.box_around((cx - rx, cy - ry, z0), (cx + rx, cy + ry, z1))
    if box is None:
        return
    x, y, z = canvas.coords(box)
    q = ((x - np.float32(cx)) / np.float32(rx)) ** 2 + ((y - np.float32(cy)) / np.float32(ry)) ** 2
    zin = (z >= z0) & (z <= z1)
    mask = canvas.paint(
        box, (q < 1.0) & zin, label=label, tissue=tissue, where=where, where_tissue=where_tissue
    )
    if shell_mm > 0 and inner_tissue is not None:
        qi = ((x - np.float32(cx)) / np.float32(max(rx - shell_mm, 0.5))) ** 2 + (
            (y - np.float32(cy)) / np.float32(max(ry - shell_mm, 0.5))
        ) ** 2
        zi = (z >= z0 + shell_mm) & (z <= z1 - shell_mm)
        canvas.paint(box, mask & (qi < 1.0) & zi, tissue=inner_tissue)
