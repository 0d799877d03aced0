"""Write an HU volume as a CT Image Storage series (PS3.3 A.3).

Used by the synthetic-study CLI and by tests across the project, so it is deterministic and fast:
one dataset is filled once and only the per-slice attributes change between files (a 512×512×300
series takes about a second). SOP Instance UIDs derive from (series UID, slice index) under the
caller's UID root, the Frame of Reference UID from the series UID, so writing the same volume twice
gives the same files.

Geometry follows the node convention (``dicom_node.contracts``): ``hu`` is ``[slice, row, column]``
and ``affine_lps`` maps ``(slice, row, column, 1)`` to LPS mm. The slice axis must point along
+normal (row cosines × column cosines), i.e. the volume is already sorted the way
:func:`dicom_node.imaging.reader.load_series` sorts, so that InstanceNumber = slice index + 1 both
here and after reading back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from dicom_node.constants import CT_IMAGE_STORAGE

_IMPLEMENTATION_CLASS_UID = UID("1.2.826.0.1.3680043.8.498.1.1.1")  # pydicom root, ct-ai-node writer
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
_COMPRESSED = (RLELossless, JPEGLSLossless, JPEG2000Lossless)
SUPPORTED_TRANSFER_SYNTAXES: tuple[UID, ...] = _UNCOMPRESSED + _COMPRESSED

# Window presets (centre, width, explanation) shown by viewers as the first choices (PS3.3 C.11.2).
WINDOW_PRESETS: tuple[tuple[float, float, str], ...] = (
    (40.0, 400.0, "SOFT TISSUE"),
    (-600.0, 1500.0, "LUNG"),
    (400.0, 1800.0, "BONE"),
)

_INT16_MIN, _INT16_MAX = -32768, 32767


@dataclass(frozen=True)
class PatientInfo:
    """Patient module values for a written series (synthetic data: clearly fake values)."""

    name: str
    id: str
    birth_date: date | str | None = None  # date or DICOM DA "YYYYMMDD"
    sex: str = "O"  # M, F or O (PS3.3 C.7.1.1)


def _da(value: date | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return value


def _geometry(affine_lps: np.ndarray) -> tuple[list[float], list[float], np.ndarray, np.ndarray, float]:
    """(ImageOrientationPatient, PixelSpacing, slice step, normal, slice spacing) from the affine."""
    affine = np.asarray(affine_lps, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine_lps must be 4×4, got {affine.shape}")
    column_step = affine[:3, 1]  # one row down
    row_step = affine[:3, 2]  # one column right
    row_spacing_mm = float(np.linalg.norm(column_step))
    column_spacing_mm = float(np.linalg.norm(row_step))
    if row_spacing_mm <= 0 or column_spacing_mm <= 0:
        raise ValueError("affine_lps has a zero in-plane axis")
    row_cosines = row_step / column_spacing_mm
    column_cosines = column_step / row_spacing_mm
    if abs(float(np.dot(row_cosines, column_cosines))) > 1e-4:
        raise ValueError("affine_lps in-plane axes are not orthogonal")
    normal = np.cross(row_cosines, column_cosines)
    slice_step = affine[:3, 0]
    slice_spacing_mm = float(np.dot(slice_step, normal))
    if slice_spacing_mm <= 0:
        raise ValueError(
            "affine_lps slice axis must point along +normal (row cosines × column cosines): sort or flip the "
            "volume so slice index increases along the normal (node geometry convention)"
        )
    orientation = [float(v) for v in (*row_cosines, *column_cosines)]
    return orientation, [row_spacing_mm, column_spacing_mm], slice_step, normal, slice_spacing_mm


def _ds_number(value: float) -> str:
    """A DS string of at most 16 characters (PS3.5 6.2)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        text = f"{value:.9g}"
    return text


def write_ct_series(
    hu: np.ndarray,
    affine_lps: np.ndarray,
    out_dir: Path,
    *,
    study_instance_uid: str,
    series_instance_uid: str,
    uid_root: str,
    patient: PatientInfo,
    series_number: int = 1,
    series_description: str = "",
    body_part_examined: str = "",
    study_description: str = "",
    accession_number: str = "",
    study_date: date | None = None,
    transfer_syntax_uid: str = ExplicitVRLittleEndian,
    manufacturer: str = "ct-ai-node synthetic",
    frame_of_reference_uid: str | None = None,
    slice_thickness_mm: float | None = None,
) -> list[Path]:
    """Write ``hu`` as one CT series under ``out_dir``; returns the files in slice order.

    HU are rounded to the nearest integer and clipped to int16, stored signed with RescaleSlope 1 and
    RescaleIntercept 0, so integer HU round-trip exactly. File ``IM{n:05d}.dcm`` holds InstanceNumber
    ``n`` = slice index + 1. Files are written under a temporary name and renamed (a reader never sees
    half a file). ``slice_thickness_mm`` defaults to the slice spacing.
    """
    volume = np.asarray(hu)
    if volume.ndim != 3 or 0 in volume.shape:
        raise ValueError(f"hu must be a non-empty [slice, row, column] array, got shape {volume.shape}")
    transfer_syntax = UID(transfer_syntax_uid)
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        names = ", ".join(uid.name for uid in SUPPORTED_TRANSFER_SYNTAXES)
        raise ValueError(f"cannot write {transfer_syntax.name}; supported: {names}")
    orientation, pixel_spacing, slice_step, normal, slice_spacing_mm = _geometry(affine_lps)
    affine = np.asarray(affine_lps, dtype=np.float64)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    n_slices, rows, columns = volume.shape
    stored = np.empty((rows, columns), dtype=np.int16)
    if frame_of_reference_uid is None:
        frame_of_reference_uid = generate_uid(
            prefix=uid_root, entropy_srcs=[series_instance_uid, "frame-of-reference"]
        )
    now = datetime.now()
    study_day = study_date or now.date()
    ds = _template(
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        frame_of_reference_uid=frame_of_reference_uid,
        patient=patient,
        series_number=series_number,
        series_description=series_description,
        body_part_examined=body_part_examined,
        study_description=study_description,
        accession_number=accession_number,
        study_day=study_day,
        manufacturer=manufacturer,
        rows=rows,
        columns=columns,
        orientation=orientation,
        pixel_spacing=pixel_spacing,
        slice_thickness_mm=slice_thickness_mm if slice_thickness_mm is not None else slice_spacing_mm,
        slice_spacing_mm=slice_spacing_mm,
    )
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    ds.file_meta.TransferSyntaxUID = (
        transfer_syntax if transfer_syntax in _UNCOMPRESSED else ExplicitVRLittleEndian
    )
    ds.file_meta.ImplementationClassUID = _IMPLEMENTATION_CLASS_UID
    ds.file_meta.ImplementationVersionName = "CTAINODE_1"

    origin = affine[:3, 3]
    paths: list[Path] = []
    for k in range(n_slices):
        np.clip(np.rint(volume[k]), _INT16_MIN, _INT16_MAX, out=stored, casting="unsafe")
        position = origin + k * slice_step
        sop_instance_uid = generate_uid(prefix=uid_root, entropy_srcs=[series_instance_uid, str(k)])
        ds.SOPInstanceUID = sop_instance_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds_number(float(v)) for v in position]
        # SliceLocation: position along the normal, the quantity slices are sorted by (PS3.3 C.7.6.2.1.2).
        ds.SliceLocation = _ds_number(float(np.dot(position, normal)))
        if transfer_syntax in _COMPRESSED:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.compress(transfer_syntax, stored, generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = transfer_syntax
            ds.PixelData = stored.tobytes()
            ds["PixelData"].VR = "OW"
        path = out_dir / f"IM{k + 1:05d}.dcm"
        tmp = path.with_name(f".{path.name}.tmp")
        ds.save_as(tmp, enforce_file_format=True, implicit_vr=transfer_syntax == ImplicitVRLittleEndian)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def _template(
    *,
    study_instance_uid: str,
    series_instance_uid: str,
    frame_of_reference_uid: str,
    patient: PatientInfo,
    series_number: int,
    series_description: str,
    body_part_examined: str,
    study_description: str,
    accession_number: str,
    study_day: date,
    manufacturer: str,
    rows: int,
    columns: int,
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_thickness_mm: float,
    slice_spacing_mm: float,
) -> Dataset:
    """Every attribute that is the same on all slices (CT Image IOD, PS3.3 A.3.3)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    study_da = study_day.strftime("%Y%m%d")
    ds.StudyDate = study_da
    ds.SeriesDate = study_da
    ds.ContentDate = study_da
    ds.AcquisitionDate = study_da
    ds.StudyTime = "090000"
    ds.SeriesTime = "090000"
    ds.ContentTime = "090000"
    ds.AcquisitionTime = "090000"
    ds.AccessionNumber = accession_number
    ds.Modality = "CT"
    ds.Manufacturer = manufacturer
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "ct-ai-node"
    # Patient module (PS3.3 C.7.1.1)
    ds.PatientName = patient.name
    ds.PatientID = patient.id
    ds.PatientBirthDate = _da(patient.birth_date)
    ds.PatientSex = patient.sex
    # General Equipment / CT Image / Image Plane
    if body_part_examined:
        ds.BodyPartExamined = body_part_examined.upper()[:16]
    else:
        # Body part unknown, so whether it is paired is unknown: Laterality (General Series, Type 2C)
        # is then sent empty, "unknown" (PS3.3 C.7.3.1); dciodvfy reports it missing otherwise.
        ds.Laterality = ""
    ds.SliceThickness = _ds_number(slice_thickness_mm)
    ds.SpacingBetweenSlices = _ds_number(slice_spacing_mm)
    ds.KVP = "120"
    ds.PatientPosition = _patient_position(orientation)
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds_number(v) for v in orientation]
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [_ds_number(v) for v in pixel_spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = [_ds_number(c) for c, _, _ in WINDOW_PRESETS]
    ds.WindowWidth = [_ds_number(w) for _, w, _ in WINDOW_PRESETS]
    ds.WindowCenterWidthExplanation = [name for _, _, name in WINDOW_PRESETS]
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def _patient_position(orientation: Sequence[float]) -> str:
    """HFS/FFS/HFP/FFP guessed from the orientation (PS3.3 C.7.3.1.1.2); synthetic data only.

    With the row axis pointing to the patient's left (+x) the patient is seen from the feet (head first
    supine); pointing right (-x) it is feet first supine. Prone flips the column axis (+y → -y).
    """
    row_x, column_y = orientation[0], orientation[4]
    supine = column_y >= 0
    head_first = (row_x >= 0) == supine
    return ("HF" if head_first else "FF") + ("S" if supine else "P")
