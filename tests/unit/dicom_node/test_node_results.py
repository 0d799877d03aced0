"""The one "is this one of our results?" check, and that the SCP, routing and the Orthanc guard
all answer with it."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from dicom_node.constants import (
    COMPREHENSIVE_3D_SR_STORAGE,
    CT_IMAGE_STORAGE,
    ENCAPSULATED_PDF_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    LABEL_MAP_SEGMENTATION_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SEGMENTATION_STORAGE,
)
from dicom_node.node_results import NodeIdentity, is_input, node_result_reason
from dicom_node.routing.manifest import is_node_result as manifest_says_node_result
from plugins.orthanc.guard import NodeResultClassifier

PYDICOM_ROOT = "1.2.826.0.1.3680043.8.498."
SITE_ROOT = "1.2.826.0.1.3680043.10.999."
NODE = NodeIdentity(uid_root=SITE_ROOT, manufacturer="ct-ai-node")
SHARED = NodeIdentity(uid_root=PYDICOM_ROOT, manufacturer="ct-ai-node")


def _input(
    sop_class: str,
    *,
    series: str = "1.2.3.1",
    sop: str = "1.2.3.1.1",
    manufacturer: str = "SIEMENS",
    identity: NodeIdentity = NODE,
) -> bool:
    return is_input(
        sop_class_uid=sop_class,
        series_instance_uid=series,
        sop_instance_uid=sop,
        manufacturer=manufacturer,
        identity=identity,
    )


@pytest.mark.parametrize("sop_class", [CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE])
def test_ct_from_a_scanner_is_input(sop_class: str) -> None:
    assert _input(sop_class)


@pytest.mark.parametrize(
    "sop_class",
    [
        SEGMENTATION_STORAGE,
        LABEL_MAP_SEGMENTATION_STORAGE,
        COMPREHENSIVE_3D_SR_STORAGE,
        KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
        GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
        SECONDARY_CAPTURE_IMAGE_STORAGE,
        ENCAPSULATED_PDF_STORAGE,
        "1.2.840.10008.5.1.4.1.1.88.99",  # an SR class not listed by name: the family prefix decides
    ],
)
def test_derived_classes_are_never_input(sop_class: str) -> None:
    assert not _input(sop_class)
    assert not _input(sop_class, identity=SHARED)
    reason = node_result_reason(sop_class_uid=sop_class, identity=NODE)
    assert reason is not None and sop_class in reason


def test_ct_under_the_site_uid_root_is_the_nodes_own() -> None:
    assert not _input(CT_IMAGE_STORAGE, series=SITE_ROOT + "7")
    assert not _input(CT_IMAGE_STORAGE, sop=SITE_ROOT + "7.8")
    # a UID that merely starts with the same digits is not under the root
    assert _input(CT_IMAGE_STORAGE, series=SITE_ROOT.rstrip(".") + "1.5")


def test_shared_pydicom_root_does_not_mark_pydicom_made_uids_as_ours() -> None:
    assert not SHARED.root_identifies_node
    assert NODE.root_identifies_node
    assert _input(CT_IMAGE_STORAGE, series=PYDICOM_ROOT + "42", sop=PYDICOM_ROOT + "43", identity=SHARED)


def test_the_nodes_manufacturer_marks_its_objects_whatever_the_case() -> None:
    assert not _input(CT_IMAGE_STORAGE, manufacturer="ct-ai-node")
    assert not _input(CT_IMAGE_STORAGE, manufacturer=" CT-AI-NODE ")
    reason = node_result_reason(sop_class_uid=CT_IMAGE_STORAGE, manufacturer="ct-ai-node", identity=NODE)
    assert reason is not None and "Manufacturer" in reason


@pytest.mark.parametrize(
    ("sop_class", "series", "manufacturer"),
    [
        (CT_IMAGE_STORAGE, "1.2.3.1", "SIEMENS"),
        (CT_IMAGE_STORAGE, "1.2.3.1", "ct-ai-node"),
        (CT_IMAGE_STORAGE, SITE_ROOT + "9", "GE MEDICAL SYSTEMS"),
        (SEGMENTATION_STORAGE, "1.2.3.1", "OTHER AI"),
        (SECONDARY_CAPTURE_IMAGE_STORAGE, "1.2.3.1", "SIEMENS"),
    ],
)
def test_routing_and_the_orthanc_guard_agree_with_the_one_check(
    sop_class: str, series: str, manufacturer: str
) -> None:
    """The two checks that used to disagree (issue 10, item 5) now give the same answer."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = series + ".1"
    ds.Manufacturer = manufacturer
    ds.Modality = "CT"
    expected = not _input(sop_class, series=series, sop=series + ".1", manufacturer=manufacturer)
    assert manifest_says_node_result(ds, uid_root=NODE.uid_root, manufacturer=NODE.manufacturer) is expected
    guard = NodeResultClassifier(uid_root=NODE.uid_root, manufacturer=NODE.manufacturer)
    says_not_input = (
        guard.reason(
            sop_class_uid=sop_class,
            modality="CT",
            manufacturer=manufacturer,
            series_instance_uid=series,
            sop_instance_uids=(series + ".1",),
        )
        is not None
    )
    assert says_not_input is expected
