"""Small CT volumes and geometries shared by the imaging and results tests.

Geometries cover what goes wrong in real life: head-first axial, feet-first (row axis pointing to
the patient's right, normal pointing to the feet), oblique (rotated about two axes), non-square
matrices with anisotropic pixels. Affines map (slice, row, column, 1) → LPS mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dicom_node.imaging.writer import PatientInfo, write_ct_series

UID_ROOT = "1.2.826.0.1.3680043.10.1111."  # test-only root
STUDY_UID = UID_ROOT + "1"
SERIES_UID = UID_ROOT + "2"
PATIENT = PatientInfo(name="SYNTHETIC^CASE0001", id="SYN-0001", birth_date="19700101", sex="O")


def affine_from(
    row_cosines: np.ndarray,
    column_cosines: np.ndarray,
    *,
    spacing_mm: tuple[float, float, float],
    origin_lps: tuple[float, float, float],
) -> np.ndarray:
    """Affine whose slice axis is spacing[0] × (row × column) (the sorted convention)."""
    row_cosines = np.asarray(row_cosines, dtype=np.float64)
    column_cosines = np.asarray(column_cosines, dtype=np.float64)
    normal = np.cross(row_cosines, column_cosines)
    affine = np.eye(4)
    affine[:3, 0] = normal * spacing_mm[0]
    affine[:3, 1] = column_cosines * spacing_mm[1]
    affine[:3, 2] = row_cosines * spacing_mm[2]
    affine[:3, 3] = origin_lps
    return affine


def axial_head_first(spacing_mm: tuple[float, float, float] = (2.5, 0.8, 0.7)) -> np.ndarray:
    return affine_from(
        np.array([1.0, 0, 0]),
        np.array([0, 1.0, 0]),
        spacing_mm=spacing_mm,
        origin_lps=(-100.0, -120.0, -50.0),
    )


def feet_first(spacing_mm: tuple[float, float, float] = (3.0, 0.75, 0.75)) -> np.ndarray:
    """FFS: IOP (-1,0,0, 0,1,0); the normal is (0,0,-1), so sorted slices run towards the feet."""
    return affine_from(
        np.array([-1.0, 0, 0]), np.array([0, 1.0, 0]), spacing_mm=spacing_mm, origin_lps=(110.0, -90.0, 300.0)
    )


def rotation(axis: tuple[float, float, float], angle_deg: float) -> np.ndarray:
    a = np.asarray(axis, dtype=np.float64)
    a /= np.linalg.norm(a)
    t = np.deg2rad(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def oblique(spacing_mm: tuple[float, float, float] = (2.0, 0.9, 0.6)) -> np.ndarray:
    r = rotation((1.0, 0.3, 0.0), 17.0) @ rotation((0.0, 0.0, 1.0), 11.0)
    return affine_from(
        r @ [1.0, 0, 0], r @ [0, 1.0, 0], spacing_mm=spacing_mm, origin_lps=(-75.5, 20.25, 113.0)
    )


GEOMETRIES = {"axial": axial_head_first, "feet-first": feet_first, "oblique": oblique}


def phantom_hu(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Integer HU (float32): air, an off-centre body ellipse, a bright block, noise."""
    rng = np.random.default_rng(seed)
    s, r, c = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    body = ((r - shape[1] * 0.45) / (shape[1] * 0.4)) ** 2 + (
        (c - shape[2] * 0.55) / (shape[2] * 0.42)
    ) ** 2 <= 1
    hu = np.where(body, 40.0, -1000.0).astype(np.float32)
    hu[:, shape[1] // 4 : shape[1] // 2, shape[2] // 3 : shape[2] // 2] = 700.0
    hu += rng.integers(-20, 21, size=shape).astype(np.float32)
    hu += s  # slices differ, so a sort error shows
    return hu


def write_case(
    out_dir: Path,
    hu: np.ndarray,
    affine: np.ndarray,
    *,
    series_uid: str = SERIES_UID,
    **kwargs: object,
) -> list[Path]:
    return write_ct_series(
        hu,
        affine,
        out_dir,
        study_instance_uid=STUDY_UID,
        series_instance_uid=series_uid,
        uid_root=UID_ROOT,
        patient=PATIENT,
        **kwargs,  # type: ignore[arg-type]
    )
