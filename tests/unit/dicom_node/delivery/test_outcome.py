from __future__ import annotations

import pytest

from dicom_node.delivery.outcome import (
    DeliveryIncomplete,
    DeliveryRejected,
    InstanceOutcome,
    OutcomeKind,
    SendResult,
    classify_dimse_status,
    classify_http_status,
    describe_dimse_status,
    raise_for_outcome,
    report_for,
)
from dicom_node.errors import PermanentError, TransientError

K = OutcomeKind


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (0x0000, K.DELIVERED),
        (0x0001, K.WARNING),
        (0xB000, K.WARNING),
        (0xB006, K.WARNING),
        (0xB007, K.WARNING),
        (0x0111, K.WARNING),
        (0xA700, K.TRANSIENT),
        (0xA7FF, K.TRANSIENT),
        (0x0110, K.TRANSIENT),
        (0x0213, K.TRANSIENT),
        (None, K.TRANSIENT),
        (0xA900, K.PERMANENT),
        (0xA9FF, K.PERMANENT),
        (0xC000, K.PERMANENT),
        (0xCFFF, K.PERMANENT),
        (0x0122, K.PERMANENT),
        (0x0124, K.PERMANENT),
        (0x0117, K.PERMANENT),
    ],
)
def test_dimse_status_classes(status: int | None, kind: OutcomeKind) -> None:
    assert classify_dimse_status(status) == kind


def test_status_descriptions() -> None:
    assert describe_dimse_status(0xA701) == "0xA701 Refused: Out of Resources"
    assert describe_dimse_status(0xC123) == "0xC123 Error: Cannot understand"
    assert describe_dimse_status(0x0122) == "0x0122 Refused: SOP Class not supported"
    assert "no response" in describe_dimse_status(None)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (200, K.DELIVERED),
        (202, K.DELIVERED),
        (500, K.TRANSIENT),
        (503, K.TRANSIENT),
        (408, K.TRANSIENT),
        (429, K.TRANSIENT),
        (400, K.PERMANENT),
        (401, K.PERMANENT),
        (403, K.PERMANENT),
        (415, K.PERMANENT),
    ],
)
def test_http_status_classes(code: int, kind: OutcomeKind) -> None:
    assert classify_http_status(code) == kind


def test_errors_are_the_node_hierarchy_and_carry_reports() -> None:
    result = SendResult(
        (
            InstanceOutcome("1.1", K.DELIVERED, "ok", 0),
            InstanceOutcome("1.2", K.TRANSIENT, "0xA700 Refused: Out of Resources", 0xA700),
        )
    )
    report = report_for(result, job_id="j", destination="PACS", already_delivered=["1.0"])
    assert report.delivered_sop_instance_uids == ("1.0", "1.1")
    with pytest.raises(DeliveryIncomplete) as info:
        raise_for_outcome(report, result)
    assert isinstance(info.value, TransientError) and info.value.report is report
    assert "1 failed" in str(info.value) and "0xA700" in str(info.value)

    rejected = SendResult((InstanceOutcome("1.3", K.PERMANENT, "0xA900", 0xA900),))
    with pytest.raises(DeliveryRejected) as info2:
        raise_for_outcome(report_for(rejected, job_id="j", destination="PACS"), rejected)
    assert isinstance(info2.value, PermanentError)

    fine = SendResult((InstanceOutcome("1.4", K.WARNING, "0xB000", 0xB000),))
    ok = raise_for_outcome(report_for(fine, job_id="j", destination="PACS"), fine)
    assert ok.delivered_sop_instance_uids == ("1.4",) and ok.warnings == {"1.4": "0xB000"}
