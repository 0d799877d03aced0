"""STOW-RS delivery and QIDO-RS confirmation against a real Orthanc with the DICOMweb plugin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_node.contracts import ResultBundle
from dicom_node.delivery import DeliveryIncomplete, confirm_qido, deliver
from dicom_node.settings import DicomwebDestinationSettings
from tests.support.orthanc import OrthancServer, orthanc
from tests.unit.dicom_node.delivery.objects import LABELMAP_SEG, UID_ROOT, make_result_bundle, write_object

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    with orthanc(tmp_path_factory.mktemp("orthanc")) as running:
        yield running


def _dest(server: OrthancServer, **kw: object) -> DicomwebDestinationSettings:
    return DicomwebDestinationSettings(kind="dicomweb", url=server.dicomweb_url, timeout_s=10, **kw)


def test_stow_then_qido_confirms_every_instance(server: OrthancServer, tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path / "r", study_instance_uid=UID_ROOT + "501")
    report = deliver(bundle, "ORTHANC", _dest(server, seg_type="labelmap"), calling_ae_title="CTAINODE")
    sent = {f.sop_instance_uid for f in bundle.files if f.sop_class_uid != "1.2.840.10008.5.1.4.1.1.66.4"}
    assert set(report.delivered_sop_instance_uids) == sent
    assert report.failed == {}
    assert report.confirmed is True, report.confirmation_detail
    # Orthanc itself holds them (independent of our QIDO code): labelmap SEG included
    held = server.sop_instance_uids()
    assert sent <= held
    labelmap = next(f.sop_instance_uid for f in bundle.files if f.sop_class_uid == LABELMAP_SEG)
    assert labelmap in held


def test_qido_reports_what_is_missing(server: OrthancServer, tmp_path: Path) -> None:
    bundle = make_result_bundle(
        tmp_path / "r", study_instance_uid=UID_ROOT + "502", kinds=("seg-binary", "sr")
    )
    deliver(bundle, "ORTHANC", _dest(server, objects=["seg"]), calling_ae_title="N")  # SR not sent
    ok, detail = confirm_qido(bundle.files, _dest(server), study_instance_uid=bundle.study_instance_uid)
    assert ok is False
    sr = next(f.sop_instance_uid for f in bundle.files if f.role == "sr")
    assert "1 of 2 instances not found" in detail and sr in detail


def test_retry_after_partial_sends_only_the_missing(server: OrthancServer, tmp_path: Path) -> None:
    bundle = make_result_bundle(
        tmp_path / "r", study_instance_uid=UID_ROOT + "503", kinds=("seg-binary", "sr", "gsps")
    )
    first_uid = bundle.files[0].sop_instance_uid
    report = deliver(
        bundle, "ORTHANC", _dest(server), calling_ae_title="N", already_delivered=[first_uid], attempt=2
    )
    assert set(report.delivered_sop_instance_uids) == {f.sop_instance_uid for f in bundle.files}
    held = server.sop_instance_uids()
    assert first_uid not in held  # never sent: counted as delivered by an earlier attempt
    assert {f.sop_instance_uid for f in bundle.files[1:]} <= held
    assert report.confirmed is False  # the query-back notices the one the server never got


def test_instance_of_another_study_is_refused_per_instance(server: OrthancServer, tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path / "r", study_instance_uid=UID_ROOT + "504", kinds=("sr",))
    stray = write_object(tmp_path / "r", "gsps", study_instance_uid=UID_ROOT + "999")
    mixed = ResultBundle(
        job_id=bundle.job_id, study_instance_uid=bundle.study_instance_uid, files=(*bundle.files, stray)
    )
    # Orthanc 1.10.1 + DICOMweb 1.7 answer 409 (no Content-Type) with the stray instance in
    # FailedSOPSequence, FailureReason 0x0110 "Processing failure": transient by our table, so the
    # retry policy dead-letters it after max_retries rather than failing it at once.
    with pytest.raises(DeliveryIncomplete) as info:
        deliver(mixed, "ORTHANC", _dest(server), calling_ae_title="N")
    report = info.value.report
    assert "0x0110" in report.failed[stray.sop_instance_uid]
    assert bundle.files[0].sop_instance_uid in report.delivered_sop_instance_uids
