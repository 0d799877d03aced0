"""Small, valid-enough result objects for delivery tests, written with pydicom.

Real SEG/SR/GSPS come from dicom_node.results; delivery only needs files whose SOP class, UIDs
and transfer syntax are right, that a peer (pynetdicom, storescp, Orthanc) stores. Each object
is a tiny Secondary-Capture-shaped image with the SOP class of the role it stands in for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_node.contracts import ResultBundle, ResultFile, ResultRole

UID_ROOT = "1.2.826.0.1.3680043.10.2222."
BINARY_SEG = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG = "1.2.840.10008.5.1.4.1.1.66.7"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

ROLE_CLASS = {
    "seg-binary": (ResultRole.SEG, BINARY_SEG, "SEG"),
    "seg-labelmap": (ResultRole.SEG_LABELMAP, LABELMAP_SEG, "SEG"),
    "sr": (ResultRole.SR, COMPREHENSIVE_3D_SR, "SR"),
    "gsps": (ResultRole.GSPS, GSPS, "PR"),
    "sc": (ResultRole.SC, SECONDARY_CAPTURE, "OT"),
}


def write_object(folder: Path, kind: str, *, study_instance_uid: str, index: int = 0) -> ResultFile:
    role, sop_class, modality = ROLE_CLASS[kind]
    sop_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[study_instance_uid, kind, str(index)])
    series_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[study_instance_uid, kind, "series"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = "DELIVERY^TEST"
    ds.PatientID = "DLV-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = "20261123"
    ds.StudyTime = "080000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = 900 + index
    ds.InstanceNumber = 1 + index
    ds.Manufacturer = "ct-ai-node tests"
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(64, dtype=np.uint8) % 7).tobytes()
    path = folder / f"{kind}-{index}.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ResultFile(
        role=role,
        path=str(path),
        sop_class_uid=sop_class,
        sop_instance_uid=sop_uid,
        series_instance_uid=series_uid,
        transfer_syntax_uid=str(ExplicitVRLittleEndian),
    )


def make_result_bundle(
    folder: Path,
    *,
    job_id: str = "3f1e0d1c-0000-5000-8000-000000000001",
    study_instance_uid: str = UID_ROOT + "1",
    kinds: tuple[str, ...] = ("seg-binary", "seg-labelmap", "sr", "gsps"),
) -> ResultBundle:
    files = tuple(
        write_object(folder, kind, study_instance_uid=study_instance_uid, index=i)
        for i, kind in enumerate(kinds)
    )
    return ResultBundle(job_id=job_id, study_instance_uid=study_instance_uid, files=files)
