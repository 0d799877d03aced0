"""Expected series sizes, patient identifiers found (routable vs derived: test_node_results.py)."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_node.constants import CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE
from dicom_node.ingest.classify import expected_series_instances, phi_values


def _header(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def test_expected_count_prefers_number_of_series_related_instances() -> None:
    assert (
        expected_series_instances(_header(NumberOfSeriesRelatedInstances=120, ImagesInAcquisition=60)) == 120
    )
    assert expected_series_instances(_header(ImagesInAcquisition=60)) == 60
    assert expected_series_instances(_header()) is None
    assert expected_series_instances(_header(ImagesInAcquisition=0)) is None


def test_expected_count_not_derived_for_multiframe() -> None:
    header = _header(ImagesInAcquisition=300)
    header.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    assert expected_series_instances(header) is None
    assert expected_series_instances(_header(ImagesInAcquisition=300, NumberOfFrames=300)) is None


def test_phi_values_finds_identifiers_including_nested() -> None:
    ds = _header(PatientName="DOE^JANE", PatientID="PID-777", AccessionNumber="ACC-9", Modality="CT")
    ds.PatientBirthDate = "19700101"
    other = Dataset()
    other.PatientID = "ALT-555"
    ds.OtherPatientIDsSequence = Sequence([other])
    values = set(phi_values(ds))
    assert {"DOE^JANE", "PID-777", "ACC-9", "19700101", "ALT-555"} <= values
    assert "CT" not in values
