"""Small real DICOM files for routing tests: a few pixels each, headers as a modality writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
# A root owned by nobody in these tests (not pydicom's shared root, not the node's).
SOURCE_ROOT = "1.2.826.0.1.3680043.10.2222."
NODE_ROOT = "1.2.826.0.1.3680043.10.3333."

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct_header(
    *,
    study: str,
    series: str,
    sop: str,
    position: tuple[float, float, float] | None = (0.0, 0.0, 0.0),
    orientation: tuple[float, ...] | None = AXIAL,
    instance_number: int | None = 1,
    slice_thickness: float | None = 1.0,
    sop_class: str = CT_IMAGE_STORAGE,
    modality: str = "CT",
    series_number: int = 2,
    series_description: str = "Thorax 1.0 B31f",
    body_part: str = "CHEST",
    manufacturer: str = "ACME Scanners",
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.BodyPartExamined = body_part
    ds.Manufacturer = manufacturer
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = "120"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID-778899"
    ds.PatientBirthDate = "19600101"
    ds.AccessionNumber = "ACC-123456"
    ds.ReferringPhysicianName = "WHO^DR"
    ds.PhysiciansOfRecord = "HOUSE^GREGORY"  # a person name not in PHI_KEYWORDS
    ds.PatientSex = "F"
    ds.StudyDescription = "CT CHEST"
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    if position is not None:
        ds.ImagePositionPatient = list(position)
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    ds.Rows = 4
    ds.Columns = 4
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelSpacing = [0.7, 0.7]
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = np.zeros((4, 4), dtype=np.int16).tobytes()
    return ds


def write(ds: Dataset, path: Path) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_axial_series(
    folder: Path,
    *,
    study: str,
    series: str,
    z_positions_mm: list[float],
    **fields: Any,
) -> list[str]:
    """One file per slice, named so that directory order is NOT slice order; returns SOP UIDs by index."""
    sops = []
    for index, z in enumerate(z_positions_mm):
        sop = f"{series}.{index + 1}"
        ds = ct_header(study=study, series=series, sop=sop, position=(-100.0, -120.0, z), **fields)
        write(ds, folder / f"f{(index * 7919) % 1000:04d}_{index}.dcm")
        sops.append(sop)
    return sops
