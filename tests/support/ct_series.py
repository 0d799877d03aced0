"""A small synthetic CT Image Storage series for tests (PS3.3 A.3), written with pydicom.

``make_ct_series`` writes one file per slice: an int16 "body" ellipse (soft tissue, a little
noise) in air, RescaleSlope 1 / Intercept -1024, axial slices along +z (LPS), with correct
ImagePositionPatient / ImageOrientationPatient / SliceLocation. Optional compressed transfer
syntaxes are those pydicom can encode itself (RLE, JPEG-LS, JPEG 2000 lossless, deflate); tests
that need JPEG baseline/lossless transcode the files with DCMTK ``dcmcjpeg``.

Patient values are clearly fake but real-looking enough to exercise the PHI log filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
# A test-only root (not pydicom's default root, which the node may treat as its own UID root).
TEST_UID_ROOT = "1.2.826.0.1.3680043.10.1111."

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)


def _phantom_slice(rows: int, cols: int, index: int, rng: np.random.Generator) -> np.ndarray:
    """Stored values (HU + 1024) of one slice: air, a soft-tissue ellipse, a brighter disc."""
    r = (np.arange(rows, dtype=np.float32) - rows / 2) / (rows * 0.42)
    c = (np.arange(cols, dtype=np.float32) - cols / 2) / (cols * 0.45)
    body = (r[:, None] ** 2 + c[None, :] ** 2) <= 1.0
    hu = np.full((rows, cols), -1000, dtype=np.int16)
    hu[body] = 40
    organ = ((r[:, None] + 0.2) ** 2 + (c[None, :] - 0.25) ** 2) <= (0.15 + 0.002 * (index % 10)) ** 2
    hu[organ] = 120
    hu += rng.integers(-8, 9, size=(rows, cols), dtype=np.int16)
    return (hu + 1024).astype(np.int16)


def make_ct_series(
    out_dir: Path,
    *,
    n_slices: int,
    rows: int = 512,
    cols: int = 512,
    spacing_mm: tuple[float, float, float] = (2.5, 0.7, 0.7),
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    patient_name: str = "TESTPATIENT^SYNTHETIC",
    patient_id: str = "SYN-000123",
    accession_number: str = "ACC-SYN-0042",
    transfer_syntax_uid: str = ExplicitVRLittleEndian,
    images_in_acquisition: bool = False,
    seed: int = 0,
    extra: dict[str, object] | None = None,
) -> list[Path]:
    """Write ``n_slices`` CT Image Storage files into ``out_dir``; return their paths in slice order.

    ``spacing_mm`` is (slice, row, column) spacing. ``images_in_acquisition`` sets
    ImagesInAcquisition = n_slices (a sender's expected-count hint). ``extra`` sets further top-level
    attributes by keyword on every slice.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid(prefix=TEST_UID_ROOT)
    series_uid = series_uid or generate_uid(prefix=TEST_UID_ROOT)
    frame_of_reference_uid = generate_uid(prefix=TEST_UID_ROOT, entropy_srcs=[series_uid, "for"])
    ts = UID(transfer_syntax_uid)
    dz, dy, dx = spacing_mm
    paths: list[Path] = []
    for index in range(n_slices):
        sop_uid = generate_uid(prefix=TEST_UID_ROOT, entropy_srcs=[series_uid, str(index)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = "20261123"
        ds.StudyTime = "101500"
        ds.AccessionNumber = accession_number
        ds.Modality = "CT"
        ds.Manufacturer = "tests.support.ct_series"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "SYNTHETIC CT"
        ds.SeriesDescription = f"SYNTHETIC AXIAL {series_number}"
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19600101"
        ds.PatientSex = "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = dz
        ds.KVP = 120
        ds.PatientPosition = "FFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [-cols * dx / 2, -rows * dy / 2, index * dz]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = index * dz
        if images_in_acquisition:
            ds.ImagesInAcquisition = n_slices
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.PixelSpacing = [dy, dx]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        for keyword, value in (extra or {}).items():
            setattr(ds, keyword, value)
        ds.PixelData = _phantom_slice(rows, cols, index, rng).tobytes()
        if ts in _UNCOMPRESSED:
            meta.TransferSyntaxUID = ts
        else:
            ds.compress(ts)  # RLE / JPEG-LS / JPEG 2000 via pydicom's encoders
        path = out_dir / f"ct{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def sop_instance_uids(paths: Sequence[Path]) -> list[str]:
    """The SOP Instance UIDs of written files (read back from their headers)."""
    from pydicom import dcmread

    return [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
