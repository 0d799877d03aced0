"""Large multi-frame CT files (Enhanced CT Image Storage header, native pixels) written as a
stream: a 512 MB instance costs a frame of memory to write, not 512 MB.

Only what ingest looks at is filled in (UIDs, Image Pixel module, NumberOfFrames); the Enhanced
CT functional groups are omitted, so these files are for receive-path tests and benches, not for
the imaging pipeline.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.support.ct_series import TEST_UID_ROOT

ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def write_multiframe_ct(
    path: Path,
    *,
    frames: int,
    rows: int = 512,
    columns: int = 512,
    study_uid: str | None = None,
    seed: int = 0,
) -> Path:
    """An int16 multi-frame CT of ``frames`` × ``rows`` × ``columns`` (2 bytes per pixel),
    Explicit VR Little Endian; its Pixel Data element is appended frame by frame."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=TEST_UID_ROOT)
    ds.StudyInstanceUID = study_uid or generate_uid(prefix=TEST_UID_ROOT)
    ds.SeriesInstanceUID = generate_uid(prefix=TEST_UID_ROOT)
    ds.Modality = "CT"
    ds.PatientName = "TESTPATIENT^MULTIFRAME"
    ds.PatientID = "SYN-MF-1"
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.save_as(path, enforce_file_format=True)
    frame_bytes = rows * columns * 2
    length = frame_bytes * frames
    if length > 0xFFFFFFFE:
        raise ValueError("native Pixel Data is limited to 4 GiB - 2 bytes (PS3.5 7.1.2)")
    rng = np.random.default_rng(seed)
    with open(path, "ab") as f:
        # (7FE0,0010) OW, reserved, 32-bit length (PS3.5 7.1.2)
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        base = rng.integers(-1024, 2000, size=(rows, columns), dtype=np.int16)
        for index in range(frames):
            f.write(np.roll(base, index, axis=0).tobytes())
    return path
