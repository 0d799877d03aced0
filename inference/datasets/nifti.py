"""NIfTI volumes in the project's convention: arrays indexed as stored, affines to LPS mm.

NIfTI affines map voxel indices to RAS; every affine in this project maps to LPS, so reading
and writing flip the first two world axes. nibabel is imported here only (the ``model`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def load_nifti_lps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI volume as its stored ``[i, j, k]`` array + affine (index → LPS mm)."""
    import nibabel as nib

    img: Any = nib.load(str(path))
    return np.asarray(img.dataobj), RAS_TO_LPS @ np.asarray(img.affine, dtype=np.float64)


def nifti_header(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Shape and voxel spacing (mm) without reading the voxels."""
    import nibabel as nib

    img: Any = nib.load(str(path))
    zooms = tuple(round(float(z), 4) for z in img.header.get_zooms()[:3])
    return tuple(int(n) for n in img.shape[:3]), zooms


def save_nifti_lps(path: Path, array: np.ndarray, affine_lps: np.ndarray) -> None:
    """Write ``array`` with an index → LPS affine as a (gzipped, by suffix) NIfTI file."""
    import nibabel as nib

    img: Any = nib.Nifti1Image(np.asarray(array), RAS_TO_LPS @ np.asarray(affine_lps, dtype=np.float64))  # type: ignore[no-untyped-call]
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def on_grid(
    mask: np.ndarray, affine_lps: np.ndarray, shape: tuple[int, ...], grid_affine_lps: np.ndarray
) -> np.ndarray:
    """``mask`` (a label or binary map) on another grid, nearest neighbour; itself when it is
    already there. TotalSegmentator's crops ship masks on a larger grid than the image
    (subject_c_pulmonary's heart), so every mask is brought to the image's grid by its affine."""
    if mask.shape == tuple(shape) and np.allclose(affine_lps, grid_affine_lps, atol=1e-3):
        return mask
    from inference.model.geometry import resample

    out: np.ndarray = resample(
        mask, affine_lps, (int(shape[0]), int(shape[1]), int(shape[2])), grid_affine_lps, order=0, cval=0
    )
    return out
