"""Our volume ↔ the array an nnU-Net model was trained on.

Ours: ``[slice, row, column]`` with a 4×4 affine to LPS mm. nnU-Net's readers (SimpleITKIO,
the default in plans.json) give ``[z, y, x]`` arrays of the training NIfTI files and spacing in
that order. TotalSegmentator, and nnU-Net's ``NibabelIOWithReorient``, first turn every image to
the closest canonical RAS orientation (nibabel ``as_closest_canonical``), so the network sees
``[superior, anterior, right]``-increasing axes: that is ``orientation="RAS"`` (the default). A
model trained on arrays in another layout names it on its card; ``"as-is"`` feeds our
``[slice, row, column]`` unchanged (SimpleITK's own reading of the DICOM series).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from nibabel import orientations as _orientations

Orientation = Literal["RAS", "as-is"]
ornt: Any = _orientations  # nibabel ships no type hints for these
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Reorientation:
    """How our array was turned into the network's (so the answer can be turned back)."""

    transform: np.ndarray  # nibabel orientation transform, ours -> canonical (k, 2)
    shape: tuple[int, int, int]  # our array's shape
    transpose: tuple[int, int, int]  # canonical (i, j, k) -> nnU-Net's [z, y, x]


def to_network(
    hu: np.ndarray, affine_lps: np.ndarray, orientation: Orientation = "RAS"
) -> tuple[np.ndarray, tuple[float, float, float], Reorientation]:
    """(array in nnU-Net's axis order, its spacing in that order, how to undo it)."""
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    if orientation == "as-is":
        undo = Reorientation(np.array([[0, 1], [1, 1], [2, 1]], dtype=float), hu.shape, (0, 1, 2))
        return hu, (float(spacing[0]), float(spacing[1]), float(spacing[2])), undo
    ras_affine = LPS_TO_RAS @ affine_lps
    current = ornt.io_orientation(ras_affine)
    transform = ornt.ornt_transform(current, np.array([[0, 1], [1, 1], [2, 1]], dtype=float))
    canonical = ornt.apply_orientation(hu, transform)  # axes now increase to R, A, S
    # which of our axes became canonical axis n: transform[i] = (new axis, flip) for our axis i
    spacing_canonical = [0.0, 0.0, 0.0]
    for ours, (new_axis, _flip) in enumerate(transform):
        spacing_canonical[int(new_axis)] = float(spacing[ours])
    network = np.ascontiguousarray(canonical.transpose(2, 1, 0))  # SimpleITK order: [S, A, R]
    undo = Reorientation(transform, hu.shape, (2, 1, 0))
    sz, sy, sx = spacing_canonical[2], spacing_canonical[1], spacing_canonical[0]
    return network, (sz, sy, sx), undo


def from_network(labels: np.ndarray, undo: Reorientation) -> np.ndarray:
    """A label array in the network's axis order → our ``[slice, row, column]`` grid."""
    if undo.transpose == (0, 1, 2) and np.array_equal(undo.transform, [[0, 1], [1, 1], [2, 1]]):
        out = labels
    else:
        canonical = labels.transpose(undo.transpose)
        inverse = ornt.ornt_transform(np.array([[0, 1], [1, 1], [2, 1]], dtype=float), _inverse_target(undo))
        out = ornt.apply_orientation(canonical, inverse)
    if out.shape != undo.shape:
        raise ValueError(f"network answer has shape {out.shape}, the volume {undo.shape}")
    return np.ascontiguousarray(out)


def _inverse_target(undo: Reorientation) -> np.ndarray:
    """The orientation of our array expressed in canonical axes (what ``transform`` started from)."""
    target = np.zeros((3, 2), dtype=float)
    for ours, (new_axis, flip) in enumerate(undo.transform):
        target[ours] = (new_axis, flip)
    return target
