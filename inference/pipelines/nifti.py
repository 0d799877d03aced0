"""NIfTI volumes on the grid a DICOM axial series gives: for checking pipelines on real CT.

The labelled real CTs we have (TotalSegmentator examples) are NIfTI. A pipeline is written for
what :func:`dicom_node.imaging.reader.load_series` hands the worker: ``[slice, row, column]``
with slices along the body axis, rows running anterior → posterior and columns the patient's
right → left (an axial image as a viewer shows it), and a 4×4 affine to LPS mm. This module puts
a NIfTI volume in that layout, so a check on real CT exercises the same code path as the node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_nifti_axial"]


def load_nifti_axial(path: Path | str, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``(volume [slice, row, column], affine_lps)`` of a NIfTI file, as an axial DICOM series lays
    it out (slice 0 most inferior, rows anterior → posterior, columns right → left).

    Only axis permutations and flips are applied (no resampling), so voxel values are untouched;
    an oblique NIfTI keeps its obliquity in the affine.
    """
    import nibabel as nib  # only needed here; the node reads DICOM

    image: Any = nib.as_closest_canonical(nib.load(str(path)))  # type: ignore[no-untyped-call]  # axes → R, A, S
    data = np.asarray(image.dataobj)
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    ras = np.asarray(image.affine, dtype=np.float64)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras  # same voxels, LPS world coordinates
    # canonical axes are (i: towards +R, j: towards +A, k: towards +S); we want
    # (slice: +S, row: +P, column: +L), i.e. (k, reversed j, reversed i)
    volume = np.transpose(data, (2, 1, 0))[:, ::-1, ::-1]
    ni, nj, _nk = data.shape
    affine = np.eye(4)
    affine[:3, 0] = lps[:3, 2]
    affine[:3, 1] = -lps[:3, 1]
    affine[:3, 2] = -lps[:3, 0]
    affine[:3, 3] = lps[:3, 3] + lps[:3, 0] * (ni - 1) + lps[:3, 1] * (nj - 1)
    return np.ascontiguousarray(volume, dtype=dtype), affine
