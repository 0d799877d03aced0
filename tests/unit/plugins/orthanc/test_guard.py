from __future__ import annotations

import pytest
from pydicom.uid import PYDICOM_ROOT_UID

from dicom_node.identity import sop_set_digest
from plugins.orthanc.guard import NodeResultClassifier, decide

OWN_ROOT = "1.2.826.0.1.999999."
classifier = NodeResultClassifier(uid_root=OWN_ROOT, manufacturer="ct-ai-node")


def reason(**kw: object) -> str | None:
    args = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "modality": "CT",
        "manufacturer": "ACME",
        "series_instance_uid": "1.2.3.4",
        "sop_instance_uids": ("1.2.3.4.1",),
    }
    args.update(kw)
    return classifier.reason(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sop_class",
    [
        "1.2.840.10008.5.1.4.1.1.66.4",  # binary/fractional SEG
        "1.2.840.10008.5.1.4.1.1.66.7",  # label map SEG
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
        "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
        "1.2.840.10008.5.1.4.1.1.11.1",  # GSPS
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.4",  # multi-frame true colour SC
        "1.2.840.10008.5.1.4.1.1.4",  # MR: stored, but not input to a CT model
    ],
)
def test_non_ct_sop_classes_are_not_input(sop_class: str) -> None:
    why = reason(sop_class_uid=sop_class, modality="OT")
    assert why is not None and sop_class in why


@pytest.mark.parametrize(
    "sop_class", ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"]
)
def test_ct_sop_classes_are_input(sop_class: str) -> None:
    assert reason(sop_class_uid=sop_class) is None


def test_manufacturer_and_own_uid_root_mark_node_results() -> None:
    assert reason(manufacturer=" CT-AI-Node ") == "Manufacturer is this node's (ct-ai-node)"
    assert reason(manufacturer="ct-ai-node synthetic") is None
    assert reason(series_instance_uid=OWN_ROOT + "7") == f"UID under this node's root {OWN_ROOT}"
    assert reason(sop_instance_uids=("1.2.3", OWN_ROOT + "9.1")) == f"UID under this node's root {OWN_ROOT}"


def test_modality_decides_only_without_a_sop_class() -> None:
    assert reason(sop_class_uid="", modality="seg") == "modality SEG"
    assert reason(sop_class_uid="", modality="") == "modality (none)"
    assert reason(sop_class_uid="", modality="CT") is None
    # A CT SOP class with a mislabelled Modality is still CT input.
    assert reason(modality="OT") is None


def test_shared_pydicom_root_is_no_evidence_of_origin() -> None:
    shared = NodeResultClassifier(uid_root=PYDICOM_ROOT_UID + ".", manufacturer="ct-ai-node")
    uid = PYDICOM_ROOT_UID + ".123"
    assert (
        shared.reason(
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            modality="CT",
            manufacturer="ACME",
            series_instance_uid=uid,
            sop_instance_uids=(uid + ".1",),
        )
        is None
    )


def test_decide_first_unchanged_changed_and_empty() -> None:
    ct = {"1.2.3.1", "1.2.3.2"}
    first = decide(ct, node_result_count=0, previous_digest=None)
    assert first.submit and first.sop_set_digest == sop_set_digest(ct)
    # Same CT set again, now with 2 node results beside it: the feedback loop case.
    again = decide(ct, node_result_count=2, previous_digest=first.sop_set_digest)
    assert not again.submit and "unchanged" in again.reason and "2 node results" in again.reason
    late = decide(ct | {"1.2.3.3"}, node_result_count=2, previous_digest=first.sop_set_digest)
    assert late.submit and "late" in late.reason
    empty = decide(set(), node_result_count=3, previous_digest=None)
    assert not empty.submit and "no routable" in empty.reason
