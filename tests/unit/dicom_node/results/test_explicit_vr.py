from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_node.results.explicit_vr import write_file
from tests.unit.dicom_node.results.conftest import Encoded


def _pydicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _fast_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    write_file(buffer, ds)
    return buffer.getvalue()


def test_result_objects_are_written_byte_for_byte_like_pydicom(encoded: Encoded) -> None:
    for record in encoded.bundle.files:
        ds = pydicom.dcmread(record.path)
        assert _fast_bytes(ds) == _pydicom_bytes(ds), record.path
    ct = pydicom.dcmread(encoded.case.paths[0])
    assert _fast_bytes(ct) == _pydicom_bytes(ct)


def _awkward(transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.ImageType = ["DERIVED", "SECONDARY", "X"]  # multi-valued CS
    ds.PatientName = "Müller^Jürgen"  # PN, non-ASCII
    ds.StudyDescription = "Über odd"  # LO, odd length after UTF-8 encoding
    ds.PixelSpacing = [0.7, 0.75]  # DS multi-valued
    ds.InstanceNumber = 7  # IS
    ds.FrameIncrementPointer = 0x00181063  # AT
    ds.Rows = 3  # US
    ds.ReferringPhysicianName = ""  # empty
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 100"  # an item may switch character sets
    item.TextValue = "café"
    item.GraphicData = [1.5, 2.25, 3.0]  # FL multi-valued
    ds.ContentSequence = Sequence([item])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return ds


def test_awkward_values_match_pydicom() -> None:
    ds = _awkward()
    assert _fast_bytes(ds) == _pydicom_bytes(ds)


@pytest.mark.parametrize("case", ["implicit", "undefined-length"])
def test_unusual_datasets_fall_back_to_pydicom(case: str) -> None:
    if case == "implicit":
        ds = _awkward(ImplicitVRLittleEndian)
    else:
        ds = _awkward()
        ds["ContentSequence"].is_undefined_length = True
    assert _fast_bytes(ds) == _pydicom_bytes(ds)
    assert pydicom.dcmread(io.BytesIO(_fast_bytes(ds))).ContentSequence[0].TextValue == "café"


def test_written_file_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    with open(path, "wb") as out:
        write_file(out, _awkward())
    ds = pydicom.dcmread(path)
    assert str(ds.PatientName) == "Müller^Jürgen" and ds.FrameIncrementPointer == 0x00181063
