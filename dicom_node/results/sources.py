"""The source CT as the result encoders see it: one :class:`SourceSlice` per slice of the volume.

Encoders receive the source headers in the volume's slice order (``dicom_node.contracts``: sorted by
position along the slice normal). A single-frame series gives one dataset per slice. An Enhanced CT
instance arrives as the same header repeated once per slice (as ``dicom_node.imaging`` loads it);
its frames are matched to slices by sorting their positions along the normal the same way, so each
slice knows its frame number for references (PS3.3 C.7.6.16, C.10.5.1.2 Referenced Frame Number).

``dicom_node.results`` does not import ``dicom_node.imaging`` (stages stay independent), so the few
geometry facts needed here are derived from the headers again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.errors import PermanentError


@dataclass(frozen=True, eq=False)
class SourceSlice:
    """One slice of the source volume: what a reference to it needs."""

    dataset: Dataset  # the instance header (shared by all frames of a multi-frame instance)
    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None  # 1-based for multi-frame instances, None for single-frame
    position_lps: np.ndarray  # ImagePositionPatient, mm
    position_text: tuple[str, ...]  # ImagePositionPatient as written in the source (DS strings)

    @property
    def frame_numbers(self) -> list[int] | None:
        return None if self.frame_number is None else [self.frame_number]


@dataclass(frozen=True, eq=False)
class SourceVolume:
    """Source slices in volume order plus the geometry every encoder needs."""

    slices: tuple[SourceSlice, ...]
    affine_lps: np.ndarray  # (slice, row, column, 1) → LPS mm
    rows: int
    columns: int
    orientation: tuple[float, ...]  # ImageOrientationPatient
    pixel_spacing_mm: tuple[float, float]  # (between rows, between columns)
    frame_of_reference_uid: str
    series_instance_uid: str
    study_instance_uid: str

    @property
    def is_multiframe(self) -> bool:
        return self.slices[0].frame_number is not None

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine_lps[:3, :3]))) / 1000.0

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        norms = np.linalg.norm(self.affine_lps[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    def to_lps(self, index: Sequence[float] | np.ndarray) -> np.ndarray:
        """(slice, row, column) voxel coordinates (may be fractional) → LPS mm."""
        return (self.affine_lps @ np.array([*index, 1.0]))[:3]

    def to_index(self, point_lps: Sequence[float] | np.ndarray) -> np.ndarray:
        """LPS mm → fractional (slice, row, column)."""
        return (np.linalg.inv(self.affine_lps) @ np.array([*point_lps, 1.0]))[:3]


def _functional(header: Dataset, item: Dataset | None, keyword: str) -> Dataset | None:
    if item is not None and keyword in item:
        return item[keyword].value[0]
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0]:
        return shared[0][keyword].value[0]
    return None


def _multiframe_slices(header: Dataset, n_slices: int) -> tuple[list[SourceSlice], Dataset, Dataset]:
    per_frame = header.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != n_slices:
        raise PermanentError(
            f"multi-frame source has {len(per_frame)} frames but the label map has {n_slices} slices"
        )
    orientation_item = _functional(header, per_frame[0], "PlaneOrientationSequence")
    measures_item = _functional(header, per_frame[0], "PixelMeasuresSequence")
    if orientation_item is None or measures_item is None:
        raise PermanentError("multi-frame source lacks plane orientation or pixel measures")
    normal = _normal(orientation_item.ImageOrientationPatient)
    frames = []
    for index, item in enumerate(per_frame):
        position = _functional(header, item, "PlanePositionSequence")
        if position is None:
            raise PermanentError(f"multi-frame source frame {index + 1} has no plane position")
        frames.append((index, position.ImagePositionPatient))
    # Same order as the reader: by position along the normal, stable for ties.
    frames.sort(key=lambda f: float(np.dot(np.array([float(v) for v in f[1]]), normal)))
    slices = [
        SourceSlice(
            dataset=header,
            sop_class_uid=str(header.SOPClassUID),
            sop_instance_uid=str(header.SOPInstanceUID),
            frame_number=index + 1,
            position_lps=np.array([float(v) for v in ipp]),
            position_text=tuple(str(v) for v in ipp),
        )
        for index, ipp in frames
    ]
    return slices, orientation_item, measures_item


def _normal(orientation: Sequence[float]) -> np.ndarray:
    values = np.array([float(v) for v in orientation])
    normal = np.cross(values[:3], values[3:])
    return normal / np.linalg.norm(normal)


def source_volume(sources: Sequence[Dataset], shape: tuple[int, int, int]) -> SourceVolume:
    """Check the sources against a label map ``shape`` and describe them slice by slice."""
    n_slices, rows, columns = shape
    if not sources:
        raise PermanentError("no source images given")
    first = sources[0]
    if int(first.Rows) != rows or int(first.Columns) != columns:
        raise PermanentError(
            f"label map is {rows}×{columns} per slice but the source images are {first.Rows}×{first.Columns}"
        )
    if all(ds is first for ds in sources) and int(first.get("NumberOfFrames", 1) or 1) > 1:
        slices, orientation_item, measures_item = _multiframe_slices(first, n_slices)
        orientation = tuple(float(v) for v in orientation_item.ImageOrientationPatient)
        spacing = tuple(float(v) for v in measures_item.PixelSpacing)
    else:
        if len(sources) != n_slices:
            raise PermanentError(
                f"label map has {n_slices} slices but {len(sources)} source images were given"
            )
        slices = [
            SourceSlice(
                dataset=ds,
                sop_class_uid=str(ds.SOPClassUID),
                sop_instance_uid=str(ds.SOPInstanceUID),
                frame_number=None,
                position_lps=np.array([float(v) for v in ds.ImagePositionPatient]),
                position_text=tuple(str(v) for v in ds.ImagePositionPatient),
            )
            for ds in sources
        ]
        orientation = tuple(float(v) for v in first.ImageOrientationPatient)
        spacing = tuple(float(v) for v in first.PixelSpacing)
    normal = _normal(orientation)
    distances = [float(np.dot(s.position_lps, normal)) for s in slices]
    if any(b <= a for a, b in itertools.pairwise(distances)):
        raise PermanentError("source images are not sorted by position along the slice normal")
    affine = np.eye(4)
    affine[:3, 1] = np.array(orientation[3:]) * spacing[0]
    affine[:3, 2] = np.array(orientation[:3]) * spacing[1]
    affine[:3, 3] = slices[0].position_lps
    if len(slices) > 1:
        affine[:3, 0] = (slices[-1].position_lps - slices[0].position_lps) / (len(slices) - 1)
    else:
        affine[:3, 0] = normal * float(
            first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0
        )
    return SourceVolume(
        slices=tuple(slices),
        affine_lps=affine,
        rows=rows,
        columns=columns,
        orientation=orientation,
        pixel_spacing_mm=(spacing[0], spacing[1]),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        series_instance_uid=str(first.SeriesInstanceUID),
        study_instance_uid=str(first.StudyInstanceUID),
    )
