"""Read a CT series into a float32 HU volume with its LPS affine.

The node's geometry convention (``dicom_node.contracts``): the volume is ``[slice, row, column]``,
slices in increasing position along the slice normal ``row cosines × column cosines``
(PS3.3 C.7.6.2.1.1), and the 4×4 affine maps ``(slice, row, column, 1)`` to LPS millimetres, exactly
as highdicom's ``Volume`` does:

* column 0: the step from one slice to the next (ImagePositionPatient difference),
* column 1: column cosines × PixelSpacing[0] (moving down one row),
* column 2: row cosines × PixelSpacing[1] (moving right one column),
* column 3: ImagePositionPatient of the first slice.

Pixels are decoded by pydicom's plugins (python-gdcm, pylibjpeg, pyjpegls), so every transfer
syntax the node accepts reads the same way. Memory: headers are read first (no pixel data), the
volume is allocated once and each frame is decoded straight into it, so a 512×512×300 series needs
little more than the float32 volume itself.

Problems that make the series unusable as a volume (mixed orientation or matrix, a missing or
duplicated slice position, non-uniform spacing) raise :class:`PermanentError` with the reason:
retrying cannot help, and a model fed such a volume would silently misplace its output. So do
values no CT scanner writes, checked before any pixel is decoded (:func:`check_plausible`): a
rescale slope or intercept that is not finite or a slope that is not positive (PS3.3 C.11.1.1.2: an
SR "nothing measured" on NaN HU is a wrong answer, not an empty one); a pixel spacing or slice step
outside 0.05–20 mm / 0.05–50 mm (a spacing of 0 divided by zero, of 1e6 mm reported a body of
1e16 mL); orientation cosines that are not two orthogonal unit vectors (PS3.3 C.7.6.2.1.1); a
field of view beyond 1000 mm across or 3000 mm along the patient.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicom_node.errors import PermanentError

logger = logging.getLogger(__name__)

# Tags that carry pixels; headers handed on keep everything else.
_PIXEL_TAGS = frozenset(
    {
        0x7FE00010,  # PixelData
        0x7FE00008,  # FloatPixelData
        0x7FE00009,  # DoubleFloatPixelData
        0x7FE00001,  # ExtendedOffsetTable
        0x7FE00002,  # ExtendedOffsetTableLengths
        0xFFFCFFFC,  # DataSetTrailingPadding
    }
)

# Geometry tolerances. Cosines are unit vectors: 1e-3 is ~0.06°. Pixel spacing in mm.
ORIENTATION_TOLERANCE = 1e-3
PIXEL_SPACING_TOLERANCE_MM = 1e-3
# What a CT scanner writes. Generous on purpose: refuse only what no patient scan can be.
PIXEL_SPACING_RANGE_MM = (0.05, 20.0)
SLICE_STEP_RANGE_MM = (0.05, 50.0)
MAX_FIELD_OF_VIEW_MM = 1000.0  # across a slice (scanner bores are ~700-800 mm)
MAX_SCAN_LENGTH_MM = 3000.0  # along the patient
RESCALE_SLOPE_RANGE = (1e-6, 1e3)
MAX_ABS_RESCALE_INTERCEPT = 1e5
COSINE_TOLERANCE = 1e-2  # unit length and orthogonality of the orientation cosines
# Slice positions: a step may deviate from the median step by this fraction (and at least
# MIN_POSITION_TOLERANCE_MM) before the series counts as having a gap or irregular spacing.
SLICE_SPACING_TOLERANCE = 0.05
MIN_POSITION_TOLERANCE_MM = 0.01


@dataclass(frozen=True, eq=False)
class LoadedSeries:
    """A series as a volume; per-slice sequences are in the volume's (sorted) slice order.

    For a multi-frame (Enhanced CT) instance, ``datasets``, ``sop_instance_uids`` and ``paths``
    repeat the instance for each of its frames and ``frame_numbers`` says which frame (1-based,
    PS3.3 C.7.6.16); single-frame slices have frame number ``None``.
    """

    hu: np.ndarray  # float32 [slice, row, column], Hounsfield units
    affine_lps: np.ndarray  # float64 4×4: (slice, row, column, 1) → LPS mm
    datasets: list[Dataset]  # headers without pixel data
    sop_instance_uids: tuple[str, ...]
    paths: tuple[Path, ...]  # empty when loaded from in-memory datasets
    frame_numbers: tuple[int | None, ...] = ()

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Distance between neighbouring voxels along (slice, row, column), mm."""
        norms = np.linalg.norm(self.affine_lps[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].get("FrameOfReferenceUID", ""))

    @property
    def series_instance_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def study_instance_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)


@dataclass(frozen=True, eq=False)
class _Frame:
    """One plane of the future volume, before sorting."""

    header: Dataset
    source: Path | Dataset  # where its pixels are decoded from
    frame_index: int | None  # 0-based frame of a multi-frame instance
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient: row cosines then column cosines
    pixel_spacing_mm: tuple[float, float]  # (between rows, between columns)
    rows: int
    columns: int
    slope: float
    intercept: float
    path: Path | None


def load_series(
    paths: Sequence[Path], *, slice_spacing_tolerance: float = SLICE_SPACING_TOLERANCE
) -> LoadedSeries:
    """Read the files of one series (any order) into an HU volume; see the module docstring."""
    if not paths:
        raise PermanentError("no files given for the series")
    frames: list[_Frame] = []
    for path in paths:
        path = Path(path)
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise PermanentError(f"{path.name}: not readable as DICOM: {exc}") from exc
        frames.extend(_frames_of(header, source=path, path=path))
    return _assemble(frames, slice_spacing_tolerance=slice_spacing_tolerance)


def load_series_from_datasets(
    datasets: Sequence[Dataset], *, slice_spacing_tolerance: float = SLICE_SPACING_TOLERANCE
) -> LoadedSeries:
    """Same as :func:`load_series` for datasets already in memory (Orthanc / STOW-RS paths).

    The datasets are not modified; the returned headers are copies without pixel data.
    """
    if not datasets:
        raise PermanentError("no datasets given for the series")
    frames: list[_Frame] = []
    for ds in datasets:
        if "PixelData" not in ds:
            raise PermanentError(f"instance {ds.get('SOPInstanceUID', '?')} has no pixel data")
        frames.extend(_frames_of(_header_of(ds), source=ds, path=None))
    return _assemble(frames, slice_spacing_tolerance=slice_spacing_tolerance)


def _header_of(ds: Dataset) -> Dataset:
    header = Dataset()
    for element in ds:
        if element.tag not in _PIXEL_TAGS:
            header.add(element)
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    return header


def _float_list(value: object, count: int, what: str, uid: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"instance {uid}: {what} is not numeric") from exc
    if out.shape != (count,) or not np.all(np.isfinite(out)):
        raise PermanentError(f"instance {uid}: {what} must have {count} finite values")
    return out


def _number(dataset: Dataset, keyword: str, default: float, uid: str) -> float:
    """A DS value as float; absent or empty gives ``default`` (Type 1C/3 attributes)."""
    try:
        value = dataset.get(keyword)  # pydicom converts DS here: a non-number raises ValueError
        if value is None or value == "":
            return default
        return float(value)
    except (TypeError, ValueError) as exc:
        value = getattr(dataset.get_item(keyword), "value", "?")
        raise PermanentError(f"instance {uid}: {keyword} {value!r} is not a number") from exc


def _frames_of(header: Dataset, *, source: Path | Dataset, path: Path | None) -> list[_Frame]:
    uid = str(header.get("SOPInstanceUID", "?"))
    if "Rows" not in header or "Columns" not in header:
        raise PermanentError(f"instance {uid} is not an image (no Rows/Columns)")
    if header.get("SamplesPerPixel", 1) != 1:
        raise PermanentError(f"instance {uid} is not greyscale (SamplesPerPixel != 1): not a CT image")
    n_frames = int(header.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in header or n_frames > 1:
        return _enhanced_frames(header, source=source, path=path, n_frames=n_frames)
    image_type = [str(v).upper() for v in header.get("ImageType", [])]
    if len(image_type) > 2 and image_type[2] == "LOCALIZER":
        # Some scanners put the scout in the axial series; it is not part of the volume.
        logger.info("skipping localizer image", extra={"sop_instance_uid": uid})
        return []
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if keyword not in header:
            raise PermanentError(f"instance {uid} has no {keyword}: cannot place it in a volume")
    spacing = _float_list(header.PixelSpacing, 2, "PixelSpacing", uid)
    return [
        _Frame(
            header=header,
            source=source,
            frame_index=None,
            position=_float_list(header.ImagePositionPatient, 3, "ImagePositionPatient", uid),
            orientation=_float_list(header.ImageOrientationPatient, 6, "ImageOrientationPatient", uid),
            pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
            rows=int(header.Rows),
            columns=int(header.Columns),
            slope=_number(header, "RescaleSlope", 1.0, uid),
            intercept=_number(header, "RescaleIntercept", 0.0, uid),
            path=path,
        )
    ]


def _functional_item(header: Dataset, frame_item: Dataset | None, keyword: str) -> Dataset | None:
    """A functional group macro for one frame: per-frame if present there, else shared (PS3.3 C.7.6.16)."""
    if frame_item is not None and keyword in frame_item:
        return frame_item[keyword].value[0]
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0]:
        return shared[0][keyword].value[0]
    return None


def _enhanced_frames(
    header: Dataset, *, source: Path | Dataset, path: Path | None, n_frames: int
) -> list[_Frame]:
    uid = str(header.get("SOPInstanceUID", "?"))
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n_frames:
        raise PermanentError(f"instance {uid}: {len(per_frame)} per-frame items for {n_frames} frames")
    frames = []
    for index in range(n_frames):
        item = per_frame[index] if per_frame is not None else None
        position = _functional_item(header, item, "PlanePositionSequence")
        orientation = _functional_item(header, item, "PlaneOrientationSequence")
        measures = _functional_item(header, item, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            raise PermanentError(
                f"instance {uid} frame {index + 1}: plane position/orientation/pixel measures missing"
            )
        transform = _functional_item(header, item, "PixelValueTransformationSequence")
        frame_type = _functional_item(header, item, "CTImageFrameTypeSequence")
        if frame_type is not None:
            kinds = [str(v).upper() for v in frame_type.get("FrameType", [])]
            if len(kinds) > 2 and kinds[2] == "LOCALIZER":
                continue
        spacing = _float_list(measures.PixelSpacing, 2, "PixelSpacing", uid)
        frames.append(
            _Frame(
                header=header,
                source=source,
                frame_index=index,
                position=_float_list(position.ImagePositionPatient, 3, "ImagePositionPatient", uid),
                orientation=_float_list(
                    orientation.ImageOrientationPatient, 6, "ImageOrientationPatient", uid
                ),
                pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
                rows=int(header.Rows),
                columns=int(header.Columns),
                slope=_number(transform, "RescaleSlope", 1.0, uid) if transform is not None else 1.0,
                intercept=_number(transform, "RescaleIntercept", 0.0, uid) if transform is not None else 0.0,
                path=path,
            )
        )
    return frames


def slice_normal(orientation: Sequence[float] | np.ndarray) -> np.ndarray:
    """Unit normal row cosines × column cosines: the direction slices are sorted along."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    column = np.asarray(orientation[3:6], dtype=np.float64)
    normal = np.cross(row, column)
    return normal / np.linalg.norm(normal)


def check_plausible(frame: _Frame) -> None:
    """Refuse values no CT scanner writes (module docstring), naming the attribute and the value."""
    where = f"instance {_describe(frame)}"
    if not (np.isfinite(frame.slope) and np.isfinite(frame.intercept)):
        raise PermanentError(
            f"{where}: RescaleSlope {frame.slope} / RescaleIntercept {frame.intercept} are not finite numbers"
        )
    low, high = RESCALE_SLOPE_RANGE
    if not low <= frame.slope <= high:
        raise PermanentError(f"{where}: RescaleSlope {frame.slope:g} is not a CT rescale ({low:g}-{high:g})")
    if abs(frame.intercept) > MAX_ABS_RESCALE_INTERCEPT:
        raise PermanentError(f"{where}: RescaleIntercept {frame.intercept:g} is not a CT rescale")
    low, high = PIXEL_SPACING_RANGE_MM
    for spacing in frame.pixel_spacing_mm:
        if not low <= spacing <= high:
            raise PermanentError(
                f"{where}: PixelSpacing {spacing:g} mm is implausible for CT (expected {low:g}-{high:g} mm)"
            )
    field_of_view = max(frame.rows * frame.pixel_spacing_mm[0], frame.columns * frame.pixel_spacing_mm[1])
    if field_of_view > MAX_FIELD_OF_VIEW_MM:
        raise PermanentError(
            f"{where}: a field of view of {field_of_view:.0f} mm (Rows/Columns × PixelSpacing) is "
            f"implausible for CT (at most {MAX_FIELD_OF_VIEW_MM:.0f} mm)"
        )
    row, column = frame.orientation[:3], frame.orientation[3:]
    lengths = (float(np.linalg.norm(row)), float(np.linalg.norm(column)))
    if max(abs(length - 1.0) for length in lengths) > COSINE_TOLERANCE or (
        abs(float(np.dot(row, column))) > COSINE_TOLERANCE
    ):
        raise PermanentError(
            f"{where}: ImageOrientationPatient {list(np.round(frame.orientation, 4))} is not two "
            "orthogonal unit vectors (PS3.3 C.7.6.2.1.1)"
        )


def _check_consistent(frames: list[_Frame]) -> None:
    for frame in frames:
        check_plausible(frame)
    first = frames[0]
    series_uids = {str(f.header.get("SeriesInstanceUID", "")) for f in frames}
    if len(series_uids) > 1:
        raise PermanentError(f"files belong to {len(series_uids)} different series; a volume is one series")
    for frame in frames[1:]:
        uid = frame.header.get("SOPInstanceUID", "?")
        if (frame.rows, frame.columns) != (first.rows, first.columns):
            raise PermanentError(
                f"instance {uid} is {frame.rows}×{frame.columns}, others {first.rows}×{first.columns}: "
                "mixed matrix size"
            )
        if np.max(np.abs(frame.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise PermanentError(f"instance {uid} has a different ImageOrientationPatient: mixed orientation")
        if max(abs(a - b) for a, b in zip(frame.pixel_spacing_mm, first.pixel_spacing_mm, strict=True)) > (
            PIXEL_SPACING_TOLERANCE_MM
        ):
            raise PermanentError(f"instance {uid} has a different PixelSpacing: mixed pixel spacing")


def _describe(frame: _Frame) -> str:
    uid = frame.header.get("SOPInstanceUID", "?")
    return f"{uid} frame {frame.frame_index + 1}" if frame.frame_index is not None else str(uid)


def _sorted_with_affine(
    frames: list[_Frame], *, slice_spacing_tolerance: float
) -> tuple[list[_Frame], np.ndarray]:
    """Sort along the slice normal, check uniform spacing, build the (slice,row,column)→LPS affine."""
    first = frames[0]
    normal = slice_normal(first.orientation)
    distances = np.array([float(np.dot(f.position, normal)) for f in frames])
    order = np.argsort(distances, kind="stable")
    frames = [frames[i] for i in order]
    distances = distances[order]

    row_cosines = first.orientation[:3]
    column_cosines = first.orientation[3:]
    row_spacing_mm, column_spacing_mm = first.pixel_spacing_mm
    affine = np.eye(4)
    affine[:3, 1] = column_cosines * row_spacing_mm
    affine[:3, 2] = row_cosines * column_spacing_mm
    affine[:3, 3] = frames[0].position

    if len(frames) == 1:
        header = first.header
        thickness = header.get("SpacingBetweenSlices") or header.get("SliceThickness") or 1.0
        affine[:3, 0] = normal * float(thickness)
        return frames, affine

    steps = np.diff(distances)
    median_step = float(np.median(steps))
    duplicates = np.flatnonzero(steps < MIN_POSITION_TOLERANCE_MM)
    if duplicates.size:
        k = int(duplicates[0])
        raise PermanentError(
            f"duplicate slice position {distances[k]:.3f} mm along the slice normal "
            f"(instances {_describe(frames[k])} and {_describe(frames[k + 1])}); "
            f"{duplicates.size} duplicate(s) in the series"
        )
    low, high = SLICE_STEP_RANGE_MM
    if not low <= median_step <= high:
        raise PermanentError(
            f"slice step {median_step:g} mm along the slice normal is implausible for CT "
            f"(expected {low:g}-{high:g} mm)"
        )
    if distances[-1] - distances[0] > MAX_SCAN_LENGTH_MM:
        raise PermanentError(
            f"the series spans {distances[-1] - distances[0]:.0f} mm along the slice normal: implausible "
            f"for CT (at most {MAX_SCAN_LENGTH_MM:.0f} mm)"
        )
    tolerance = max(MIN_POSITION_TOLERANCE_MM, slice_spacing_tolerance * median_step)
    irregular = np.flatnonzero(np.abs(steps - median_step) > tolerance)
    if irregular.size:
        k = int(irregular[0])
        kind = "gap (missing slice?)" if steps[k] > median_step else "irregular slice spacing"
        raise PermanentError(
            f"{kind}: {steps[k]:.3f} mm between {distances[k]:.3f} and {distances[k + 1]:.3f} mm along the "
            f"slice normal, expected {median_step:.3f} mm; {irregular.size} irregular step(s) in the series"
        )
    # The step vector from first to last keeps a gantry tilt (slices sheared along the normal).
    step = (frames[-1].position - frames[0].position) / (len(frames) - 1)
    affine[:3, 0] = step
    predicted = frames[0].position + np.outer(np.arange(len(frames)), step)
    actual = np.stack([f.position for f in frames])
    off_line = np.linalg.norm(actual - predicted, axis=1)
    worst = int(np.argmax(off_line))
    if off_line[worst] > max(tolerance, 0.05 * min(row_spacing_mm, column_spacing_mm)):
        raise PermanentError(
            f"instance {_describe(frames[worst])} lies {off_line[worst]:.3f} mm off the line of slice "
            "positions: not one volume"
        )
    return frames, affine


def _assemble(frames: list[_Frame], *, slice_spacing_tolerance: float) -> LoadedSeries:
    if not frames:
        raise PermanentError("the series has no image slices (only localizers?)")
    _check_consistent(frames)
    frames, affine = _sorted_with_affine(frames, slice_spacing_tolerance=slice_spacing_tolerance)
    hu = np.empty((len(frames), frames[0].rows, frames[0].columns), dtype=np.float32)
    for k, frame in enumerate(frames):
        _decode_into(frame, hu[k])
    return LoadedSeries(
        hu=hu,
        affine_lps=affine,
        datasets=[f.header for f in frames],
        sop_instance_uids=tuple(str(f.header.SOPInstanceUID) for f in frames),
        paths=tuple(f.path for f in frames if f.path is not None),
        frame_numbers=tuple(None if f.frame_index is None else f.frame_index + 1 for f in frames),
    )


def _decode_into(frame: _Frame, out: np.ndarray) -> None:
    """Decode one frame and write its HU into ``out`` (a slice view of the volume)."""
    source: object = frame.source
    try:
        if isinstance(frame.source, Path):
            if frame.header.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                # The whole dataset is deflated (PS3.5 A.5): pydicom cannot seek to the pixels alone.
                source = pydicom.dcmread(frame.source)
            else:
                source = str(frame.source)  # decodes only this frame's pixels, not the whole file
        stored = pixel_array(source, index=frame.frame_index)  # type: ignore[arg-type]
    except Exception as exc:  # decoder plugins raise many types; all mean "cannot decode"
        raise PermanentError(f"instance {_describe(frame)}: pixel data cannot be decoded: {exc}") from exc
    if stored.shape != out.shape:
        raise PermanentError(
            f"instance {_describe(frame)}: decoded shape {stored.shape}, expected {out.shape}"
        )
    if frame.frame_index is None and "ModalityLUTSequence" in frame.header:
        # PS3.3 C.11.1: a Modality LUT replaces the rescale; rare in CT but legal.
        out[...] = apply_modality_lut(stored, frame.header)
        return
    # Rescale into the float32 slice without a float64 temporary (PS3.3 C.11.1.1.2: HU = m·SV + b).
    np.multiply(stored, np.float32(frame.slope), out=out, casting="unsafe")
    if frame.intercept:
        out += np.float32(frame.intercept)
