"""Routable vs derived objects, expected series sizes, patient identifiers found."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_node.ingest.classify import (
    expected_series_instances,
    is_routable,
    phi_values,
    uses_shared_uid_root,
)
from dicom_node.ingest.sop_classes import (
    COMPREHENSIVE_3D_SR_STORAGE,
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    LABEL_MAP_SEGMENTATION_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SEGMENTATION_STORAGE,
)

PYDICOM_ROOT = "1.2.826.0.1.3680043.8.498."
SITE_ROOT = "1.2.826.0.1.3680043.10.999."


def routable(
    sop_class: str, *, series: str = "1.2.3.1", sop: str = "1.2.3.1.1", root: str = SITE_ROOT
) -> bool:
    return is_routable(
        sop_class_uid=sop_class, series_instance_uid=series, sop_instance_uid=sop, uid_root=root
    )


@pytest.mark.parametrize("sop_class", [CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE])
def test_ct_is_routable(sop_class: str) -> None:
    assert routable(sop_class)


@pytest.mark.parametrize(
    "sop_class",
    [
        SEGMENTATION_STORAGE,
        LABEL_MAP_SEGMENTATION_STORAGE,
        COMPREHENSIVE_3D_SR_STORAGE,
        GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
        SECONDARY_CAPTURE_IMAGE_STORAGE,
    ],
)
def test_derived_classes_are_never_routable(sop_class: str) -> None:
    assert not routable(sop_class)
    assert not routable(sop_class, root=PYDICOM_ROOT)


def test_ct_under_the_site_uid_root_is_the_nodes_own() -> None:
    assert not routable(CT_IMAGE_STORAGE, series=SITE_ROOT + "7")
    assert not routable(CT_IMAGE_STORAGE, sop=SITE_ROOT + "7.8")
    # a UID that merely starts with the same digits is not under the root
    assert routable(CT_IMAGE_STORAGE, series=SITE_ROOT.rstrip(".") + "1.5")


def test_shared_pydicom_root_does_not_mark_pydicom_made_uids_as_ours() -> None:
    assert uses_shared_uid_root(PYDICOM_ROOT)
    assert not uses_shared_uid_root(SITE_ROOT)
    assert routable(CT_IMAGE_STORAGE, series=PYDICOM_ROOT + "42", sop=PYDICOM_ROOT + "43", root=PYDICOM_ROOT)


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
